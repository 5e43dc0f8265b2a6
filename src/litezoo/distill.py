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

A teacher must have been trained on the same classes, image size and normalisation (checked: an InputError
names the difference).
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from litezoo.errors import InputError
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
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softened class probabilities (B, K), float32."""
        with autocast(self.precision, self.device):
            logits = self.model(x)  # (B, K)
        return F.softmax(logits.float() / self.temperature, dim=-1)


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


def describe(teacher: Teacher, alpha: float) -> str:
    """One log line."""
    return (f"distilling from {teacher.name}: target = {1 - alpha:g} x label + {alpha:g} x teacher "
            f"(temperature {teacher.temperature:g}, teacher in {teacher.precision.mode})")


__all__ = ["Teacher", "soft_targets", "distilled_batches", "describe"]
