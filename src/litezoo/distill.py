"""Knowledge distillation: a small net learns from a trained teacher's class probabilities (Hinton et al., 2015).

``train.distill_from: RUN_DIR`` names a trained run (its ``model.safetensors``, or a .pt / .safetensors file);
the teacher runs live, in inference mode, on every augmented training batch the student sees, and the
student's target becomes

    target = (1 - alpha) * onehot(y) + alpha * softmax(teacher_logits / temperature)       # (B, K)

which the trainer's cross-entropy (soft targets, as for mixup) turns into
``(1 - alpha) * CE(student, y) + alpha * CE(student, teacher)``: the usual distillation loss, whose gradient
equals that of the KL form; ``temperature`` softens the teacher's distribution (the student's logits are
not divided by it, so no T^2 factor is needed; 1 is the "patient and consistent teacher" setting of Beyer et
al., 2022, with the teacher seeing exactly the student's augmented view; under progressive resizing it sees
the same downscaled view: judging the full-size one instead gave sharper targets but no better student in a
measured 60-minute run, at 6% more training time).
The teacher runs in bf16 autocast where the device computes bf16 natively (its logits only need to rank
classes; measured on the fast net it is ~2.8x fp32), in channels_last like the batches; it draws no random
numbers, so seeds and exact resume are unaffected. ``train_top1`` then counts agreement with each target's top class.

``train.distill_cache: true`` trades that exactness for speed: before the first epoch the teacher judges each
training image once per flip and per training size (uncropped: the centre of the padded crop), and each step
looks its rows up in that :class:`TeacherTable` (CIFAR-10 with three sizes: 300,000 views, ~3-4 minutes on
two CPU cores, 12 MB, counted as training time), instead of running the teacher on every step's views
(~30-40% of a 32 px epoch of MobileNet V1 x0.75 on two cores). The table is kept in the run folder
(``teacher_table.safetensors``, written atomically, keyed by the teacher's weights, the training images and the
sizes), so a resumed run reads it instead of building it again; under torchrun each process judges its block
of the images and the blocks are summed.

A teacher must have been trained on the same classes, image size and normalisation (checked: an InputError
names the difference).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from litezoo.data import augment
from litezoo.data.loader import BatchView
from litezoo.errors import InputError, WorkError
from litezoo.fsutil import atomic_write_bytes
from litezoo.precision import autocast, choose_precision


class Teacher:
    """A trained model that gives class probabilities for training batches (no gradients, eval mode)."""

    def __init__(self, model: nn.Module, device: torch.device, *, temperature: float = 1.0, amp: str = "auto",
                 channels_last: bool = False, name: str = "teacher"):  # fmt: skip
        if temperature <= 0:
            raise InputError(f"train.distill_temperature must be > 0, got {temperature}")
        self.model = model.to(device=device, memory_format=torch.channels_last if channels_last else
                              torch.preserve_format).eval()  # fmt: skip
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        self.temperature = temperature
        self.precision = choose_precision(amp, device)
        self.name = name

    @classmethod
    def from_run(cls, target: str | os.PathLike, device: torch.device, *, classes: Sequence[str], image_size: int,
                 mean: Sequence[float], std: Sequence[float], temperature: float = 1.0, channels_last: bool = False,
                 amp: str = "auto") -> "Teacher":  # fmt: skip
        """Load the evaluated weights of a trained run and check it was trained for the student's task."""
        from litezoo.evaluate import load_trained_model

        if not os.path.exists(target):
            raise InputError(f"train.distill_from: {target} does not exist (a trained run folder or weights file)")
        model, meta = load_trained_model(target, device)
        wanted = {"classes": list(classes), "image_size": int(image_size),
                  "mean": [round(float(v), 4) for v in mean], "std": [round(float(v), 4) for v in std]}  # fmt: skip
        have = {"classes": list(meta["classes"]), "image_size": int(meta["image_size"]),
                "mean": [round(float(v), 4) for v in meta["mean"]], "std": [round(float(v), 4) for v in meta["std"]]}  # fmt: skip
        for key in wanted:
            if wanted[key] != have[key]:
                raise InputError(f"train.distill_from: the teacher {target} was trained with {key} {have[key]}, "
                                 f"this run has {wanted[key]}")  # fmt: skip
        return cls(model, device, temperature=temperature, amp=amp, channels_last=channels_last,
                   name=f"{meta['model_name']} ({target})")  # fmt: skip

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class logits (B, K), float32."""
        with autocast(self.precision, self.device):
            return self.model(x).float()  # (B, K)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softened class probabilities (B, K), float32."""
        return F.softmax(self.logits(x) / self.temperature, dim=-1)


class TeacherTable:
    """The teacher's logits for every training image, as is and mirrored, at each training size, computed once
    before training (``train.distill_cache``) so that no step runs the teacher.

    ``logits[side]``: (2, N, K) float32, [0] the image, [1] its mirror image, both uncropped (the centre of the
    padded-crop augmentation) and scaled to ``side`` as progressive resizing scales the student's batches. A
    training view differs from its table entry by the crop's shift (up to ``crop_padding`` px) and any cutout;
    that is the approximation this buys the speed with (the live teacher judges the exact view).
    """

    def __init__(self, logits: dict[int, torch.Tensor], temperature: float, name: str, build_time_s: float = 0.0):
        self.logits = logits
        self.temperature = temperature
        self.name = name
        self.build_time_s = build_time_s  # seconds the teacher took to fill it (kept in the saved file)

    @classmethod
    @torch.no_grad()
    def build(cls, teacher: Teacher, loader: Iterable[tuple[torch.Tensor, torch.Tensor, BatchView | None]],
              n_images: int, sides: Sequence[int], *, reduce=None) -> "TeacherTable":  # fmt: skip
        """Run ``teacher`` over every image of ``loader`` (an evaluation-mode loader's ``with_views()``: the whole
        training split in order, un-augmented) mirrored and not, at each of ``sides``.

        ``reduce``: under torchrun each process's loader holds its own block of the images; ``reduce`` (an
        in-place sum over processes, :func:`litezoo.distributed.all_reduce_sum`) adds the blocks up, each row
        being zero in every process but the one that judged it."""
        sides = sorted(set(int(s) for s in sides))
        table: dict[int, torch.Tensor] = {}
        seen = torch.zeros(n_images, dtype=torch.int32)  # how many processes judged each image: 1 in the end
        for x, _, view in loader:  # x: (B, C, S, S) normalised
            assert view is not None  # evaluation batches always name their images
            rows = torch.from_numpy(view.indices)
            seen[rows] = 1
            for flip in (0, 1):
                xf = x.flip(-1) if flip else x  # the mirror image, as the augmentation's flip makes it
                for side in sides:
                    out = teacher.logits(augment.resize_batch(xf, side)).cpu()  # (B, K)
                    if side not in table:
                        table[side] = torch.zeros(2, n_images, out.shape[-1])
                    table[side][flip, rows] = out
        if reduce is not None:
            seen = reduce(seen)
            for side in sides:  # a process whose block was empty made no tensor: it adds zeros
                table[side] = reduce(table.get(side, torch.zeros(2, n_images, int(teacher.model.num_classes))))
        if not bool((seen == 1).all()):
            raise WorkError(f"the teacher table has {int((seen != 1).sum())} of {n_images} training images "
                            "missing or judged twice")  # fmt: skip
        return cls(table, teacher.temperature, teacher.name)

    def save(self, path: str | os.PathLike, key: str) -> Path:
        """Write the table to ``path`` (safetensors, atomically) under ``key`` (:func:`teacher_table_key`)."""
        meta = {"key": key, "name": self.name, "build_time_s": repr(float(self.build_time_s))}
        tensors = {f"logits_{side}": t.contiguous() for side, t in self.logits.items()}
        return atomic_write_bytes(safetensors_bytes(tensors, metadata=meta), path)

    @classmethod
    def load(cls, path: str | os.PathLike, key: str, temperature: float) -> "TeacherTable | None":
        """The table saved at ``path`` if it was made under ``key``; None when there is none, it was made for
        another teacher, data or sizes, or it cannot be read (it is then built again and replaces the file)."""
        if not os.path.isfile(path):
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("key") != key:
                    return None
                logits = {int(name.split("_", 1)[1]): f.get_tensor(name) for name in f.keys()}
            return cls(logits, temperature, meta.get("name", "teacher"), float(meta.get("build_time_s", 0.0)))
        except (SafetensorError, OSError, ValueError):
            return None

    def probs(self, view: BatchView, side: int) -> torch.Tensor:
        """Softened class probabilities (B, K), float32, for the rows of a batch at ``side`` px."""
        if side not in self.logits:
            raise WorkError(f"the teacher table has sizes {sorted(self.logits)}, not {side} px")
        logits = self.logits[side][torch.from_numpy(view.flips.astype(np.int64)), torch.from_numpy(view.indices)]
        return F.softmax(logits / self.temperature, dim=-1)  # (B, K)

    @property
    def views(self) -> int:
        return sum(int(t.shape[0] * t.shape[1]) for t in self.logits.values())


def teacher_table_key(teacher: Teacher, images: np.ndarray, labels: np.ndarray, sides: Sequence[int]) -> str:
    """What a teacher table depends on, as a digest: the teacher's weights and precision, the training images
    and labels in order, the sizes. A table under another key was made for another run."""
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(np.ascontiguousarray(images).data)  # (N, H, W, 3) uint8: ~150 MB for CIFAR-10, a fraction of a second
    h.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    # not the teacher's path: a resumed run may name the same weights from another folder
    h.update(json.dumps({"sides": sorted(set(int(s) for s in sides)), "precision": teacher.precision.mode}).encode())
    return h.hexdigest()


def soft_targets(y: torch.Tensor, teacher_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * hard + alpha * teacher, (B, K). ``y``: class indices (B,) or soft targets (B, K) (mixup)."""
    k = teacher_probs.shape[-1]
    hard = F.one_hot(y, k).to(teacher_probs.dtype) if y.ndim == 1 else y.to(teacher_probs.dtype)
    return (1.0 - alpha) * hard + alpha * teacher_probs


def distilled_batches(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], teacher: Teacher,
                      alpha: float) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """The loader's (x, y) with y replaced by the distillation target for x (the augmented view the student sees)."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"train.distill_alpha must be in [0, 1], got {alpha}")
    for x, y in batches:
        yield x, soft_targets(y, teacher.probs(x), alpha)


def table_distilled_batches(batches: Iterable[tuple[torch.Tensor, torch.Tensor, BatchView | None]],
                            table: TeacherTable, side: int,
                            alpha: float) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """A training loader's ``with_views()`` batches as (x, target), the teacher's part looked up in ``table`` for
    each row's image and flip at ``side`` px (the size the batches are then scaled to)."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"train.distill_alpha must be in [0, 1], got {alpha}")
    for x, y, view in batches:
        if view is None:
            raise InputError("train.distill_cache needs batches of whole images (padded crop and flip): not "
                             "mixup/cutmix or random-resized-crop; set train.distill_cache false")  # fmt: skip
        yield x, soft_targets(y, table.probs(view, side).to(x.device), alpha)


def describe(teacher: Teacher, alpha: float) -> str:
    """One log line."""
    return (f"distilling from {teacher.name}: target = {1 - alpha:g} x label + {alpha:g} x teacher "
            f"(temperature {teacher.temperature:g}, teacher in {teacher.precision.mode})")


__all__ = ["Teacher", "TeacherTable", "teacher_table_key", "soft_targets", "distilled_batches",
           "table_distilled_batches", "describe"]
