"""Optimizers and learning-rate schedules. The scheduler is stepped once per optimizer step.

Every schedule has a closed form, :func:`lr_at`; the scheduler built by :func:`build_scheduler` follows it
exactly (tests check this step by step). With ``T`` = total steps, ``W`` = warm-up steps
(``warmup_epochs * steps_per_epoch``, rounded, at least 1 when warm-up is on), ``f`` = ``warmup_start_factor``,
``lr`` = the optimizer's learning rate and ``t = (s - W) / (T - W)`` the progress after the warm-up:

    warm-up, s < W    lr * (f + (1 - f) * s / W)         starts at f * lr, reaches lr at s = W
    cosine            min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2
    linear            lr - (lr - min_lr) * t             (SqueezeNet tutorial's 'linear', lr_end = min_lr)
    poly              min_lr + (lr - min_lr) * (1 - t) ** power
    steps             lr * gamma ** k, k = number of milestones m with s >= m * T (fractions of all T steps)
    constant          lr
    onecycle          torch's OneCycleLR: lr / div_factor -> lr (cosine) over the first pct_start * T steps,
                      then -> lr / div_factor / final_div_factor (cosine) at step T - 1. It IS the warm-up, so
                      warmup_epochs must be 0 (an InputError otherwise: set pct_start instead); min_lr and
                      warmup_start_factor do not apply. With cycle_momentum, SGD's momentum (AdamW's beta1)
                      runs max_momentum -> base_momentum -> max_momentum, replacing optim.momentum — exactly as
                      torch does, even for an SGD built with momentum 0 (the MobileNet tutorial's case).

Step ``s`` runs from 0 (the lr of the first update: the warm-up start) to ``T`` (the lr after the last update,
never used). Stepping past ``T`` is an error, as in torch's OneCycleLR. For onecycle the floor is reached at
``T - 1``; torch's formula at ``T`` runs past its last phase and gives a value above the floor (noticeably so
for very short runs), and litezoo keeps torch's numbers.

Scheduler state dicts hold only numbers, strings, lists and dicts (they load with ``weights_only=True``) and
record the schedule they were made for. Loading one restores the step position and recomputes the lr (and
one-cycle momentum) from the current config: an unchanged config resumes exactly; a changed one (e.g. more
epochs) continues from that step on the new curve, with a warning.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

from litezoo.config import OPTIMIZERS, SCHEDULES, OptimConfig, ScheduleConfig
from litezoo.errors import InputError

# ---------------------------------------------------------------------------------------------------------------
# Optimizer


def param_groups(
    model: nn.Module,
    weight_decay: float,
    no_decay_bn_bias: bool,
    *,
    head: set[str] | None = None,
    backbone_lr: float | None = None,
) -> list[dict[str, Any]]:
    """Trainable parameters split into a weight-decayed group and (optionally) a group without decay.

    Tensors with ndim <= 1 are BN/LayerNorm scales and shifts and biases: decaying them only pulls the
    normalisation toward zero without regularising anything, so ``no_decay_bn_bias`` exempts them.
    Frozen parameters (``requires_grad=False``) are left out.

    Discriminative learning rates (fine-tuning): with ``backbone_lr`` given, the parameters not named in
    ``head`` form their own groups at that lr; the classifier's groups come first (the lr the logs show).
    """
    split = backbone_lr is not None
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        in_head = not split or name in (head or set())
        buckets.setdefault((in_head, no_decay_bn_bias and p.ndim <= 1), []).append(p)
    if not buckets:
        raise InputError("the model has no trainable parameters (all have requires_grad=False)")
    groups = []
    for in_head in (True, False):
        for no_decay in (False, True):
            params = buckets.get((in_head, no_decay))
            if params:
                group: dict[str, Any] = {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
                if not in_head:
                    group["lr"] = backbone_lr
                groups.append(group)
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) or AdamW over the model's trainable parameters, at ``cfg.lr``.

    ``cfg.backbone_lr_scale`` != 1: everything but the classifier (``litezoo.weights.classifier_keys``) trains
    at ``lr * backbone_lr_scale`` -- e.g. 0.1 to move pretrained features gently while a fresh head learns.
    """
    head, backbone_lr = None, None
    if cfg.backbone_lr_scale != 1.0:
        from litezoo.weights import classifier_keys

        head, backbone_lr = classifier_keys(model), cfg.lr * cfg.backbone_lr_scale
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_bn_bias, head=head, backbone_lr=backbone_lr)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise InputError(f"unknown optimizer {cfg.name!r}; choose one of {', '.join(OPTIMIZERS)}")


# ---------------------------------------------------------------------------------------------------------------
# Closed form


def warmup_steps(cfg: ScheduleConfig, steps_per_epoch: int) -> int:
    """Warm-up length in optimizer steps (fractional epochs allowed; at least one step when warm-up is on)."""
    if cfg.warmup_epochs <= 0:
        return 0
    return max(1, round(cfg.warmup_epochs * steps_per_epoch))


def _check(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> int:
    """Validate the arguments shared by lr_at and build_scheduler; return the warm-up length."""
    if cfg.name not in SCHEDULES:
        raise InputError(f"unknown lr schedule {cfg.name!r}; choose one of {', '.join(SCHEDULES)}")
    for name, value in (("total_steps", total_steps), ("steps_per_epoch", steps_per_epoch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if cfg.warmup_epochs < 0:
        raise InputError(f"schedule.warmup_epochs must be >= 0, got {cfg.warmup_epochs}")
    if cfg.name == "onecycle":
        if cfg.warmup_epochs > 0:
            raise InputError(
                "schedule.warmup_epochs must be 0 with the onecycle schedule: its warm-up is the first "
                f"schedule.pct_start ({cfg.pct_start}) of training"
            )
        if not 0.0 < cfg.pct_start < 1.0:
            raise InputError(f"schedule.pct_start must be in (0, 1), got {cfg.pct_start}")
        if float(cfg.pct_start * total_steps) - 1 == 0.0:  # torch's first phase would have zero length
            raise InputError(
                f"onecycle with pct_start={cfg.pct_start} over {total_steps} steps has a 1-step warm-up phase, "
                "which torch's OneCycleLR cannot anneal (division by zero): change pct_start or the step count"
            )
        return 0
    warm = warmup_steps(cfg, steps_per_epoch)
    if warm >= total_steps:
        raise InputError(
            f"the warm-up ({cfg.warmup_epochs} epochs = {warm} steps) must be shorter than training "
            f"({total_steps} steps)"
        )
    return warm


def _cos_anneal(start: float, end: float, pct: float) -> float:
    """Cosine from ``start`` (pct 0) to ``end`` (pct 1), written as torch's OneCycleLR writes it."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def lr_at(cfg: ScheduleConfig, base_lr: float, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step ``step`` (0 = first update) for peak learning rate ``base_lr``."""
    warm = _check(cfg, total_steps, steps_per_epoch)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise InputError(f"step must be a non-negative integer, got {step!r}")
    if step > total_steps:
        raise InputError(f"step {step} is past the end of the lr schedule ({total_steps} steps)")

    if cfg.name == "onecycle":
        initial = base_lr / cfg.div_factor
        final = initial / cfg.final_div_factor
        end_warm = float(cfg.pct_start * total_steps) - 1  # torch's phase boundaries, in steps
        if step <= end_warm:
            return _cos_anneal(initial, base_lr, step / end_warm)
        return _cos_anneal(base_lr, final, (step - end_warm) / (total_steps - 1 - end_warm))

    if step < warm:
        f = cfg.warmup_start_factor
        return base_lr * (f + (1.0 - f) * step / warm)
    t = (step - warm) / (total_steps - warm)  # 0 at the end of the warm-up, 1 at the last step
    if cfg.name == "cosine":
        return cfg.min_lr + (base_lr - cfg.min_lr) * (1.0 + math.cos(math.pi * t)) / 2.0
    if cfg.name == "linear":
        return base_lr - (base_lr - cfg.min_lr) * t
    if cfg.name == "poly":
        return cfg.min_lr + (base_lr - cfg.min_lr) * (1.0 - t) ** cfg.power
    if cfg.name == "steps":
        passed = sum(step >= m * total_steps for m in cfg.milestones)
        return base_lr * cfg.gamma**passed
    return base_lr  # constant


# ---------------------------------------------------------------------------------------------------------------
# Schedulers


def _identity(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> dict[str, Any]:
    """What a scheduler state belongs to, as plain values (kept in its state dict)."""
    plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
    return {"schedule": plain, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch}


class _ResumableSchedule:
    """Resuming takes the step position from a saved state; the curve comes from this scheduler's own config.

    With an unchanged config that is an exact resume. With a changed one (typically more epochs, so more
    total steps) the lr continues from the saved step on the new curve, with a warning saying what changed.
    """

    litezoo_schedule: dict[str, Any]
    optimizer: torch.optim.Optimizer
    last_epoch: int

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k != "_cfg"}  # type: ignore[misc]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("litezoo_schedule")
        if saved is None or "last_epoch" not in state_dict:
            raise InputError("not a litezoo lr scheduler state (no 'litezoo_schedule' entry)")
        step, ours = int(state_dict["last_epoch"]), self.litezoo_schedule
        if step > ours["total_steps"]:
            raise InputError(
                f"the saved lr schedule is at step {step}, past the end of this run's schedule "
                f"({ours['total_steps']} steps)"
            )
        if saved != ours:
            theirs = saved.get("schedule", {})
            diffs = [k for k in ours if k != "schedule" and saved.get(k) != ours[k]]
            diffs += [f"schedule.{k}" for k in ours["schedule"] if theirs.get(k) != ours["schedule"][k]]
            warnings.warn(
                f"resuming on a changed lr schedule (differs in {', '.join(diffs)}): the lr continues from step "
                f"{step} of the new schedule",
                stacklevel=2,
            )
        self.last_epoch = step
        self._step_count = int(state_dict.get("_step_count", step + 1))
        self._restore_group_settings()
        self._get_lr_called_within_step = True  # get_lr is torch's per-step hook; calling it here is deliberate
        try:
            values = self.get_lr()  # type: ignore[attr-defined]
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _restore_group_settings(self) -> None:
        """Undo what optimizer.load_state_dict put into the param groups from the old run's schedule."""
        raise NotImplementedError


class ClosedFormLR(_ResumableSchedule, LRScheduler):
    """Warm-up + cosine / linear / poly / steps / constant, computed by :func:`lr_at` at every step."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
        _check(cfg, total_steps, steps_per_epoch)
        self._cfg = cfg
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        super().__init__(optimizer)
        self.litezoo_schedule = {**_identity(cfg, total_steps, steps_per_epoch), "base_lrs": list(self.base_lrs)}

    def get_lr(self) -> list[float]:
        step, total, per_epoch = self.last_epoch, self.total_steps, self.steps_per_epoch
        return [lr_at(self._cfg, base, step, total, per_epoch) for base in self.base_lrs]

    def _restore_group_settings(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["initial_lr"] = base


class OneCycle(_ResumableSchedule, OneCycleLR):
    """torch's OneCycleLR (two phases, cosine), resumable like ClosedFormLR."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
        _check(cfg, total_steps, steps_per_epoch)
        super().__init__(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],  # max_lr = the optimizer's lr
            total_steps=total_steps,
            pct_start=float(cfg.pct_start),
            anneal_strategy="cos",
            cycle_momentum=cfg.cycle_momentum,
            base_momentum=cfg.base_momentum,
            max_momentum=cfg.max_momentum,
            div_factor=cfg.div_factor,
            final_div_factor=cfg.final_div_factor,
            three_phase=False,
        )
        self.litezoo_schedule = {**_identity(cfg, total_steps, steps_per_epoch), "base_lrs": list(self.base_lrs)}
        # OneCycleLR reads its lr/momentum end points from the param groups: keep this config's values.
        keys = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")
        self._group_settings = [{k: g[k] for k in keys if k in g} for g in optimizer.param_groups]

    def _restore_group_settings(self) -> None:
        for group, settings in zip(self.optimizer.param_groups, self._group_settings):
            group.update(settings)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int
) -> LRScheduler:
    """The scheduler for ``cfg``; call ``.step()`` after every ``optimizer.step()``, ``total_steps`` times."""
    if cfg.name == "onecycle":
        return OneCycle(optimizer, cfg, total_steps, steps_per_epoch)
    return ClosedFormLR(optimizer, cfg, total_steps, steps_per_epoch)


__all__ = [
    "param_groups",
    "build_optimizer",
    "warmup_steps",
    "lr_at",
    "ClosedFormLR",
    "OneCycle",
    "build_scheduler",
]
