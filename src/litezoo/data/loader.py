"""BatchLoader: batches of augmented, normalised images from an :class:`ImageDataset`, reproducibly.

Every random choice is a pure function of (seed, epoch, batch_index, rank): the epoch's permutation comes
from a generator seeded with (seed, epoch), each batch's augmentation from one seeded with
(seed, epoch, batch_index, rank). Nothing depends on global RNG state or on how many batches were drawn
before, so ``load_state_dict`` can resume in the middle of an epoch and produce bit-identical batches.

Sharding (``torch.distributed``): training — every rank computes the same permutation of (seed, epoch);
with ``drop_last`` (the default for training) the tail is dropped so the length is a multiple of
world_size, otherwise the permutation is padded by wrapping around (a few images twice); rank r takes
positions r, r + world_size, ... . Evaluation — no shuffling, no augmentation, no padding: rank r takes the
contiguous block [r N / W, (r+1) N / W), so every image is evaluated exactly once across ranks (ranks may
differ by one image, and so by one batch).

Within a training batch, images that share a crop position and flip are grouped (one tensor operation per
group instead of one per image); the batch is the same set of (image, augmentation) pairs either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from litezoo.data import augment
from litezoo.data.datasets import SMALL_IMAGE_MAX, ImageDataset
from litezoo.errors import InputError

_PERMUTATION_STREAM = 0x5045524D  # tags keep the permutation and augmentation generators independent
_AUGMENT_STREAM = 0x41554720
_FLIP_STREAM = 0x464C4950  # alternating flip: the per-image mirror of even epochs, fixed for the whole run


def _dist_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    dist = torch.distributed
    initialised = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    return rank, world_size


def rank_block(n: int, rank: int, world_size: int) -> np.ndarray:
    """The contiguous block of ``range(n)`` that process ``rank`` of ``world_size`` takes (evaluation shards)."""
    return np.arange(rank * n // world_size, (rank + 1) * n // world_size)


@dataclass(frozen=True)
class BatchView:
    """Which dataset image each row of a batch shows, whether mirrored, and where its padded crop was taken:
    (B,) int64, (B,) bool and (B,) int64 ``tops``/``lefts`` (the window's corner in the zero-padded image,
    :func:`augment.padded_crop_flip`; None for evaluation batches, which are not cropped), in the batch's row
    order. Cutout is left out. A per-view table (``litezoo.distill``'s cached teacher) looks its rows up by these."""

    indices: np.ndarray
    flips: np.ndarray
    tops: np.ndarray | None = None
    lefts: np.ndarray | None = None


class BatchLoader:
    """Iterate ``(x, y)`` batches: x float32 (B, 3, S, S) normalised on ``device``; y int64 (B,), or float
    (B, num_classes) soft targets when mixup/cutmix is on.

    Training (``train=True``): shuffle per epoch; random-resized-crop (default for image_size > 64, from
    ``rrc_scale``/``rrc_ratio``) or zero-padded random crop (``crop_padding``); horizontal ``flip`` (True: each
    image mirrored with probability 1/2, drawn afresh every epoch; ``"alternate"``: airbench's derandomised flip —
    a random half of the images, fixed for the run, is mirrored in even epochs and the other half in odd epochs, so
    every image is seen both ways in any two consecutive epochs);
    ``cutout`` (square side, 0 = off); mixup/cutmix with Beta(alpha, alpha) mixing (both on: one of the two
    per batch, with equal odds). Evaluation: the images in order, centre-cropped/resized to image_size.
    Normalisation uses the dataset's (train split) mean/std unless ``mean``/``std`` are given.

    ``threads``: torch intra-op threads while a batch is assembled (restored afterwards). 1 by default: the
    per-batch tensors are small, and on a 2-core or busy machine multi-threaded small ops stall behind the
    model's threads (measured: 36k vs 11k img/s for 32 px batches of 512 on a loaded 2-core machine).
    None keeps torch's setting.
    """

    def __init__(
        self,
        ds: ImageDataset,
        batch_size: int,
        *,
        train: bool,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool | None = None,
        crop_padding: int = 4,
        random_resized_crop: bool | None = None,
        flip: bool | str = True,
        cutout: int = 0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        channels_last: bool = False,
        num_classes: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        rrc_scale: tuple[float, float] = (0.08, 1.0),
        rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        threads: int | None = 1,
    ):
        rank, world_size = _dist_defaults(rank, world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..world_size-1 (world_size={world_size})")
        if crop_padding < 0 or cutout < 0 or mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError("crop_padding, cutout, mixup_alpha and cutmix_alpha must be >= 0")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        if not 0 < rrc_scale[0] <= rrc_scale[1] <= 1 or not 0 < rrc_ratio[0] <= rrc_ratio[1]:
            raise ValueError(f"bad random-resized-crop range: scale={rrc_scale}, ratio={rrc_ratio}")
        if len(ds) == 0:
            raise ValueError("the dataset has no images")
        if not (isinstance(flip, bool) or flip == "alternate"):
            raise ValueError(f"flip must be True, False or 'alternate', got {flip!r}")
        self.ds = ds
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = train if drop_last is None else drop_last
        self.image_size = ds.image_size
        self.crop_padding = crop_padding
        if random_resized_crop is None:
            random_resized_crop = ds.image_size > SMALL_IMAGE_MAX
        self.random_resized_crop = random_resized_crop
        self.flip = flip
        self._flip_base: np.ndarray | None = None  # alternating flip's per-image coins (drawn on first use)
        self.cutout = cutout
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.channels_last = channels_last
        self.num_classes = len(ds.classes) if num_classes is None else num_classes
        if self.num_classes < len(ds.classes):
            raise ValueError(f"num_classes={self.num_classes} but the dataset has {len(ds.classes)} classes")
        self.rrc_scale = rrc_scale
        self.rrc_ratio = rrc_ratio
        self.threads = threads
        self.mean = tuple(ds.mean if mean is None else mean)
        self.std = tuple(ds.std if std is None else std)
        self._scale, self._shift = augment.normalisation(self.mean, self.std, self.device)
        self._pin = self.device.type == "cuda"
        self.epoch = 0
        self._batch_index = 0  # the next batch to yield
        self._indices_epoch: int | None = None
        self._indices: np.ndarray | None = None
        if self.drop_last and len(self) == 0:
            raise InputError(
                f"batch size {batch_size} is larger than the {self.samples_per_rank} training images rank {rank} gets "
                f"per epoch, so every batch would be dropped: use a batch size of at most {self.samples_per_rank} "
                "(data.batch_size)"
            )

    # ------------------------------------------------------------------ epoch bookkeeping

    @property
    def mixing(self) -> bool:
        """True if batches carry soft targets (mixup or cutmix on, training)."""
        return self.train and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    @property
    def samples_per_rank(self) -> int:
        n, w = len(self.ds), self.world_size
        if not self.train:
            return (self.rank + 1) * n // w - self.rank * n // w
        return n // w if self.drop_last else math.ceil(n / w)

    def __len__(self) -> int:
        n = self.samples_per_rank
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` (reshuffled from (seed, epoch)), at its first batch — unless it already is the
        current epoch, whose position is kept (so calling it right after ``load_state_dict`` does not undo a
        mid-epoch resume)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self._batch_index = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch_index": self._batch_index,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "num_samples": len(self.ds),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state``'s epoch and next batch (and its seed). Mid-epoch resumption needs the same
        batch size, world size and dataset length, or the batches would not be the ones that were skipped."""
        batch_index = int(state["batch_index"])
        if batch_index:
            mine = {"batch_size": self.batch_size, "world_size": self.world_size, "num_samples": len(self.ds)}
            for name, value in mine.items():
                if name in state and int(state[name]) != value:
                    raise ValueError(
                        f"cannot resume mid-epoch: the saved loader had {name}={state[name]}, this one has {value}"
                    )
        self.seed = int(state["seed"])
        self._flip_base = None  # the alternating flip's coins come from the seed
        self.epoch = int(state["epoch"])
        self._batch_index = batch_index
        self._indices_epoch = None

    # ------------------------------------------------------------------ iteration

    def rank_indices(self, epoch: int | None = None) -> np.ndarray:
        """Dataset indices this rank visits in ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else epoch
        n, w = len(self.ds), self.world_size
        if not self.train:
            return rank_block(n, self.rank, w)
        perm = np.random.default_rng([self.seed % 2**63, epoch, _PERMUTATION_STREAM]).permutation(n)
        total = (n // w) * w if self.drop_last else math.ceil(n / w) * w
        perm = perm[:total] if total <= n else np.resize(perm, total)  # resize repeats: wrap-around padding
        return perm[self.rank :: w]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, _ in self.with_views():
            yield x, y

    def with_views(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, BatchView | None]]:
        """As iterating the loader, each batch with its :class:`BatchView` (None under mixup/cutmix and
        random-resized-crop, whose views are not a dataset image and a flip)."""
        if not self.train:
            self._batch_index = 0  # evaluation always covers the whole split
        if self._indices_epoch != self.epoch:
            self._indices = self.rank_indices()
            self._indices_epoch = self.epoch
        indices = self._indices
        n_batches = len(self)
        while self._batch_index < n_batches:
            b = self._batch_index
            batch = self._make_batch_in_threads(indices[b * self.batch_size : (b + 1) * self.batch_size], b)
            self._batch_index = b + 1  # before yielding: a checkpoint taken now resumes at the next batch
            yield batch
        # epoch done: the next iteration is the next epoch (set_epoch is still the way to choose one)
        self.epoch += 1
        self._batch_index = 0

    def make_batch(self, indices: np.ndarray, batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of dataset ``indices`` as batch ``batch_index`` of the current epoch makes it."""
        x, y, _ = self._make_batch_in_threads(indices, batch_index)
        return x, y

    def _make_batch_in_threads(self, indices: np.ndarray, batch_index: int):
        previous = torch.get_num_threads()
        if self.threads is None or self.threads == previous:
            return self._make_batch(np.asarray(indices, dtype=np.int64), batch_index)
        torch.set_num_threads(self.threads)
        try:
            return self._make_batch(np.asarray(indices, dtype=np.int64), batch_index)
        finally:
            torch.set_num_threads(previous)

    def _make_batch(self, indices: np.ndarray, batch_index: int
                    ) -> tuple[torch.Tensor, torch.Tensor, BatchView | None]:  # fmt: skip
        rng = np.random.default_rng([self.seed % 2**63, self.epoch, batch_index, self.rank, _AUGMENT_STREAM])
        size = self.image_size
        if not self.train:
            x = augment.fit_to_size(self._gather(indices), size)
            x = augment.normalise(x, self._scale, self._shift, channels_last=self.channels_last)
            return x, self._labels(indices), BatchView(indices, np.zeros(len(indices), dtype=bool))

        n = len(indices)
        stored = self.ds.stored_size
        if self.random_resized_crop:
            top, left, h, w = augment.sample_resized_crops(rng, n, stored, stored, self.rrc_scale, self.rrc_ratio)
            flips = self._flips(rng, indices)
            x = augment.resized_crop_flip(self._gather(indices), top, left, h, w, flips, size,
                                          self._scale, self._shift, channels_last=self.channels_last)
            view = None  # a box of varying scale: not one of the views BatchView names
        else:
            span = self.crop_span
            top = rng.integers(0, span + 1, n)
            left = rng.integers(0, span + 1, n)
            flips = self._flips(rng, indices)
            order = augment.crop_order(top, left, flips)
            indices, top, left, flips = indices[order], top[order], left[order], flips[order]
            x = self.crop_views(indices, top, left, flips)
            view = BatchView(indices, flips, top, left)
        y = self._labels(indices)
        if self.cutout:
            augment.cutout_(x, rng.integers(0, size, n), rng.integers(0, size, n), self.cutout)
        if self.mixing:
            target = F.one_hot(y, self.num_classes).float()
            use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < 0.5)
            if use_cutmix:
                lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha))
                cy, cx = (int(v) for v in rng.integers(0, size, 2))
                x, y = augment.cutmix_(x, target, lam, cy, cx)
            else:
                lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
                x, y = augment.mixup_(x, target, lam)
            view = None  # two images blended
        return x, y, view

    @property
    def crop_span(self) -> int:
        """Crop positions per axis of the padded-crop augmentation, minus one: ``top``/``left`` run over
        0..crop_span (the centre is crop_span / 2; for images stored at image_size, 2 * crop_padding)."""
        side = max(self.ds.stored_size, self.image_size)  # smaller images are first upsampled to image_size
        return side + 2 * self.crop_padding - self.image_size

    def crop_views(self, indices: np.ndarray, top: np.ndarray, left: np.ndarray, flips: np.ndarray) -> torch.Tensor:
        """The training views of dataset ``indices``: each image's ``image_size`` window at (top, left) of its
        zero-padded copy, mirrored where ``flips``, normalised: float32 (B, 3, S, S) on the device. Fastest in
        :func:`augment.crop_order` order."""
        pixels = self._gather(indices)
        if self.ds.stored_size < self.image_size:
            pixels = augment.fit_to_size(pixels, self.image_size)
        return augment.padded_crop_flip(pixels, top, left, flips, self.image_size, self.crop_padding,
                                        self._scale, self._shift, channels_last=self.channels_last)  # fmt: skip

    def _flips(self, rng: np.random.Generator, indices: np.ndarray) -> np.ndarray:
        """Which of the batch's images (dataset ``indices``) are mirrored, as a bool array."""
        if self.flip == "alternate":
            # One fair coin per dataset image for the whole run (from the seed alone, so every rank and a resumed
            # run agree), inverted in odd epochs. Drawn for all images at once (50k bools for CIFAR-10).
            if self._flip_base is None:
                coins = np.random.default_rng([self.seed % 2**63, _FLIP_STREAM]).random(len(self.ds))
                self._flip_base = coins < 0.5
            return self._flip_base[indices] ^ bool(self.epoch % 2)
        if self.flip:
            return rng.random(len(indices)) < 0.5
        return np.zeros(len(indices), dtype=bool)

    def _gather(self, indices: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) rows of the cache, on the device."""
        rows = torch.from_numpy(np.asarray(self.ds.images[indices]))  # fancy indexing copies out of the memmap
        if self._pin:
            return rows.pin_memory().to(self.device, non_blocking=True)
        return rows.to(self.device)

    def _labels(self, indices: np.ndarray) -> torch.Tensor:
        labels = torch.from_numpy(self.ds.labels[indices])
        return labels.to(self.device, non_blocking=self._pin)
