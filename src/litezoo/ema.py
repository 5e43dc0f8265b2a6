"""Exponential moving average of a model's weights (evaluated instead of the raw weights when EMA is on).

After every optimizer step, ``ema.update(model)`` moves each floating-point tensor of the averaged copy toward
the model's: ``ema = d * ema + (1 - d) * weight``. BN running statistics are averaged the same way; integer
buffers (BN's ``num_batches_tracked``) are copied. With ``warmup`` the decay starts small and ramps up,
``d = min(decay, (1 + n) / (10 + n))`` after ``n`` earlier updates, so the average does not stay anchored to the
random initialisation for the first ~1/(1-decay) steps (TensorFlow's ExponentialMovingAverage ``num_updates``
rule).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from litezoo.distributed import unwrap
from litezoo.errors import InputError


class ModelEma:
    """An averaged copy of ``model`` (``.module``, in eval mode, never trained directly)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise InputError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.module.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update will use."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average ``model``'s current weights in (call after each optimizer step)."""
        d = self.current_decay()
        source = unwrap(model).state_dict()
        ema_floats, model_floats = [], []
        for name, ema_t in self.module.state_dict().items():
            if name not in source:
                raise InputError(f"EMA update: the model has no tensor {name!r} (was the architecture changed?)")
            src = source[name].detach()
            if ema_t.dtype.is_floating_point:
                ema_floats.append(ema_t)
                model_floats.append(src.to(dtype=ema_t.dtype, device=ema_t.device))
            else:
                ema_t.copy_(src)
        if ema_floats:
            # ema += (1 - d) * (weight - ema): one fused pass over all tensors, same as d*ema + (1-d)*weight.
            torch._foreach_lerp_(ema_floats, model_floats, 1.0 - d)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count (plain values and tensors: loads with weights_only=True)."""
        return {
            "module": self.module.state_dict(),
            "num_updates": self.num_updates,
            "decay": self.decay,
            "warmup": self.warmup,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the averaged weights and the update count (the decay stays the one this EMA was built with)."""
        if "module" not in state or "num_updates" not in state:
            raise InputError("not an EMA state: expected 'module' and 'num_updates' entries")
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])


class Lookahead:
    """Lookahead with airbench's ramp: every ``every`` steps the weights are pulled back to a slow average.

    Lookahead (Zhang et al., 2019, "k steps forward, 1 step back") keeps a slow copy of the weights. After every
    ``every``-th optimizer step the slow copy moves toward the trained weights and the weights jump to it::

        a = decay**every * (step / total_steps)**3      # airbench94's schedule
        slow = a * slow + (1 - a) * weights;  weights = slow

    Early in the run ``a`` is ~0, so the weights train freely while the lr is high; towards the end it rises to
    ``decay**every`` (0.77 for airbench's 0.95 and 5) and the jumps average out the noise of the last steps.
    After the last step the weights are set to the slow copy. Unlike :class:`ModelEma` this changes what is
    trained. BN running statistics are averaged like the weights (airbench does the same); integer buffers are
    left alone.
    """

    def __init__(self, model: nn.Module, every: int, decay: float, total_steps: int):
        if every < 1:
            raise InputError(f"lookahead needs a period of at least 1 step, got {every}")
        if not 0.0 < decay <= 1.0:
            raise InputError(f"lookahead decay must be in (0, 1], got {decay}")
        if total_steps < 1:
            raise InputError(f"lookahead needs the run's step count, got {total_steps}")
        self.every, self.decay, self.total_steps = int(every), float(decay), int(total_steps)
        source = unwrap(model).state_dict()
        self.slow = {k: v.detach().clone() for k, v in source.items() if v.dtype.is_floating_point}

    def weight(self, step: int) -> float:
        """The slow copy's share ``a`` in the update after global step ``step`` (1-based)."""
        return self.decay**self.every * (min(step, self.total_steps) / self.total_steps) ** 3

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        """Call after optimizer step number ``step`` (1-based, counted over the whole run)."""
        if step % self.every == 0:
            self._pull(model, self.weight(step))
        if step == self.total_steps:
            self._pull(model, 1.0)  # end of the run: the weights become the slow copy

    def _pull(self, model: nn.Module, a: float) -> None:
        source = unwrap(model).state_dict()
        names = list(self.slow)
        slow = [self.slow[k] for k in names]
        fast = [source[k] for k in names]
        torch._foreach_lerp_(slow, fast, 1.0 - a)  # slow = a*slow + (1-a)*fast
        torch._foreach_copy_(fast, slow)  # state_dict tensors share storage with the model's

    def state_dict(self) -> dict[str, Any]:
        """The slow weights (plain tensors: loads with weights_only=True)."""
        return {"slow": dict(self.slow), "every": self.every, "decay": self.decay, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "slow" not in state or set(state["slow"]) != set(self.slow):
            raise InputError("not a lookahead state of this model (its tensors differ)")
        for k, v in state["slow"].items():
            self.slow[k].copy_(v)


__all__ = ["Lookahead", "ModelEma"]
