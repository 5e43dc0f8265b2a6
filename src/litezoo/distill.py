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
training image once per flip, per training size and per crop position of a ``train.distill_cache_grid`` x G grid
(G = 1: the uncropped image, the centre of the padded crop; G = 3: shifts of -3/0/+3 px, every view within 1 px
of an entry), and each step looks its rows up in that :class:`TeacherTable` instead of running the teacher on
every step's views (~30-40% of a 32 px epoch of MobileNet V1 x0.75 on two cores). CIFAR-10 with three sizes:
300,000 views for G = 1 (~2.5 minutes on two CPU cores, 12 MB, counted as training time), 9x that for G = 3.
The table is kept in the run folder (``teacher_table.safetensors``, written atomically, keyed by the teacher's
weights, the training images, the sizes and the grid), so a resumed run reads it instead of building it again,
or in a file runs of the same teacher share (``train.distill_table``): its build time then counts only in the run
that built it, like the teacher's own training. Under torchrun each process judges its block of the images and
the blocks are summed.

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


def crop_grid(span: int, cells: int) -> np.ndarray:
    """The crop positions a teacher table holds per axis: the 0..``span`` positions of the padded-crop
    augmentation split into ``cells`` runs of neighbours, each run represented by its middle position.
    CIFAR's 4 px padding (span 8): 1 cell -> [4] (the uncropped image); 3 -> [1, 4, 7] (shifts of -3, 0, +3 px:
    every view within 1 px of an entry); 9 -> every position (the table is then exact)."""
    if not 1 <= cells <= span + 1:
        raise InputError(f"train.distill_cache_grid must be between 1 and {span + 1} (the crop positions per axis "
                         f"of this run's padded-crop augmentation), got {cells}")  # fmt: skip
    return np.array([run[(len(run) - 1) // 2] for run in np.array_split(np.arange(span + 1), cells)], dtype=np.int64)


def grid_cell(positions: np.ndarray, span: int, cells: int) -> np.ndarray:
    """For each crop position (a view's top or left, 0..``span``), the index of its run in :func:`crop_grid`."""
    runs = np.array_split(np.arange(span + 1), cells)
    cell_of = np.concatenate([np.full(len(run), i, dtype=np.int64) for i, run in enumerate(runs)])
    return cell_of[np.asarray(positions, dtype=np.int64)]


class TeacherTable:
    """The teacher's logits for every training image, as is and mirrored, at a grid of crop positions and at each
    training size, computed once before training (``train.distill_cache``) so that no step runs the teacher.

    ``logits[side]``: (2, G, G, N, K) float32: [flip, row cell, column cell, image] the teacher's answer on the
    view the augmentation makes with the crop window at (grid[row], grid[column]) of the zero-padded image,
    mirrored for flip 1, scaled to ``side`` as progressive resizing scales the student's batches. ``grid``:
    :func:`crop_grid` (G = 1: the uncropped image only). A training view differs from its entry by the distance to
    the nearest grid position (up to ``crop_padding`` px with G = 1, 1 px with G = 3 and CIFAR's 4 px padding) and
    any cutout; that is the approximation this buys the speed with (the live teacher judges the exact view).
    """

    def __init__(self, logits: dict[int, torch.Tensor], span: int, grid: np.ndarray, temperature: float, name: str,
                 build_time_s: float = 0.0, built_by: str = ""):  # fmt: skip
        self.logits = logits
        self.span = int(span)  # crop positions per axis - 1 (BatchLoader.crop_span)
        self.grid = np.asarray(grid, dtype=np.int64)
        self.temperature = temperature
        self.name = name
        self.build_time_s = build_time_s  # seconds the teacher took to fill it (kept in the saved file)
        self.built_by = built_by  # the run folder that built it (kept in the file: whose training time it is)

    @classmethod
    @torch.no_grad()
    def build(cls, teacher: Teacher, views, blocks: Iterable[np.ndarray], n_images: int, sides: Sequence[int],
              span: int, cells: int, *, reduce=None) -> "TeacherTable":  # fmt: skip
        """Run ``teacher`` over the training views of the images in ``blocks`` (arrays of dataset indices) at every
        grid position, mirrored and not, at each of ``sides``. ``views(indices, tops, lefts, flips)`` makes them
        as the training augmentation does (:meth:`litezoo.data.loader.BatchLoader.crop_views`).

        ``reduce``: under torchrun each process passes its own block of the images; ``reduce`` (an in-place sum
        over processes, :func:`litezoo.distributed.all_reduce_sum`) adds the blocks up, each row being zero in
        every process but the one that judged it."""
        sides = sorted(set(int(s) for s in sides))
        grid = crop_grid(span, cells)
        g = len(grid)
        table: dict[int, torch.Tensor] = {}
        seen = torch.zeros(n_images, dtype=torch.int32)  # how many processes judged each image: 1 in the end
        for block in blocks:
            rows = torch.from_numpy(block)
            seen[rows] = 1
            ones = np.ones(len(block), dtype=np.int64)
            for flip in (0, 1):
                for r, top in enumerate(grid.tolist()):
                    for c, left in enumerate(grid.tolist()):
                        x = views(block, ones * top, ones * left, ones.astype(bool) & bool(flip))  # (B, C, S, S)
                        for side in sides:
                            out = teacher.logits(augment.resize_batch(x, side)).cpu()  # (B, K)
                            if side not in table:
                                table[side] = torch.zeros(2, g, g, n_images, out.shape[-1])
                            table[side][flip, r, c, rows] = out
        if reduce is not None:
            seen = reduce(seen)
            k = int(teacher.model.num_classes)
            for side in sides:  # a process whose block was empty made no tensor: it adds zeros
                table[side] = reduce(table.get(side, torch.zeros(2, g, g, n_images, k)))
        if not bool((seen == 1).all()):
            raise WorkError(f"the teacher table has {int((seen != 1).sum())} of {n_images} training images "
                            "missing or judged twice")  # fmt: skip
        return cls(table, span, grid, teacher.temperature, teacher.name)

    def save(self, path: str | os.PathLike, key: str) -> Path:
        """Write the table to ``path`` (safetensors, atomically) under ``key`` (:func:`teacher_table_key`)."""
        meta = {"key": key, "name": self.name, "build_time_s": repr(float(self.build_time_s)),
                "span": str(self.span), "grid": json.dumps(self.grid.tolist()), "built_by": self.built_by}  # fmt: skip
        tensors = {f"logits_{side}": t.contiguous() for side, t in self.logits.items()}
        return atomic_write_bytes(safetensors_bytes(tensors, metadata=meta), path)

    @classmethod
    def load(cls, path: str | os.PathLike, key: str, temperature: float) -> "TeacherTable | None":
        """The table saved at ``path`` if it was made under ``key``; None when there is none, it was made for
        another teacher, data, sizes or grid, or it cannot be read (it is then built again and replaces the file)."""
        if not os.path.isfile(path):
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("key") != key:
                    return None
                logits = {int(name.split("_", 1)[1]): f.get_tensor(name) for name in f.keys()}
                grid = np.asarray(json.loads(meta["grid"]), dtype=np.int64)
            return cls(logits, int(meta["span"]), grid, temperature, meta.get("name", "teacher"),
                       float(meta.get("build_time_s", 0.0)), meta.get("built_by", ""))  # fmt: skip
        except (SafetensorError, OSError, ValueError, KeyError):
            return None

    @staticmethod
    def stored_key(path: str | os.PathLike) -> str | None:
        """The key of the table saved at ``path``; None when there is none or it cannot be read."""
        try:
            with safe_open(str(path), framework="pt") as f:
                return (f.metadata() or {}).get("key")
        except (SafetensorError, OSError, ValueError):
            return None

    def probs(self, view: BatchView, side: int) -> torch.Tensor:
        """Softened class probabilities (B, K), float32, for the rows of a batch at ``side`` px: each row's entry
        at the grid position nearest its crop."""
        if side not in self.logits:
            raise WorkError(f"the teacher table has sizes {sorted(self.logits)}, not {side} px")
        centre = np.full(len(view.indices), self.span // 2)  # an uncropped (evaluation) batch's position
        tops, lefts = (centre, centre) if view.tops is None else (view.tops, view.lefts)
        r, c = (grid_cell(p, self.span, len(self.grid)) for p in (tops, lefts))
        index = [torch.from_numpy(np.asarray(a, dtype=np.int64)) for a in (view.flips, r, c, view.indices)]
        return F.softmax(self.logits[side][tuple(index)] / self.temperature, dim=-1)  # (B, K)

    @property
    def layout(self) -> str:
        """What it holds, for the log."""
        g, n = len(self.grid), next(iter(self.logits.values())).shape[3]
        return f"{n:,} images x 2 flips x {g}x{g} crop positions x sizes {sorted(self.logits)} px"

    @property
    def views(self) -> int:
        return sum(int(t[..., 0].numel()) for t in self.logits.values())


def teacher_table_key(teacher: Teacher, images: np.ndarray, labels: np.ndarray, sides: Sequence[int],
                      span: int = 0, cells: int = 1) -> str:  # fmt: skip
    """What a teacher table depends on, as a digest: the teacher's weights and precision, the training images
    and labels in order, the sizes and the crop grid. A table under another key was made for another run."""
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(np.ascontiguousarray(images).data)  # (N, H, W, 3) uint8: ~150 MB for CIFAR-10, a fraction of a second
    h.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    # not the teacher's path: a resumed run may name the same weights from another folder
    h.update(json.dumps({"sides": sorted(set(int(s) for s in sides)), "precision": teacher.precision.mode,
                         "span": int(span), "cells": int(cells)}).encode())  # fmt: skip
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


__all__ = ["Teacher", "TeacherTable", "crop_grid", "grid_cell", "teacher_table_key", "soft_targets",
           "distilled_batches", "table_distilled_batches", "describe"]
