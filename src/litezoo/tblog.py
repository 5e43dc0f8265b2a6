"""TensorBoard event files for a training run, written by the real ``tensorboard`` package (an optional extra).

``train.tensorboard: true`` makes the trainer open a :class:`TensorBoardLog` in ``<run>/tensorboard`` and log
the loss and learning rate of every step (tags ``step/…``) and every metrics row of every epoch (tags
``epoch/…``); ``tensorboard --logdir runs/`` then shows them. The writer is torch's
``torch.utils.tensorboard.SummaryWriter``, which needs ``pip install 'litezoo[tensorboard]'``; asking for
TensorBoard without it installed is an :class:`InputError`, raised before any work starts.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from litezoo.errors import InputError

STEP_PREFIX = "step/"
EPOCH_PREFIX = "epoch/"


def require_tensorboard() -> None:
    """Raise InputError (one line, with the fix) unless the ``tensorboard`` package can be imported."""
    if importlib.util.find_spec("tensorboard") is None:
        raise InputError(
            "train.tensorboard: true needs the tensorboard package: pip install 'litezoo[tensorboard]' "
            "(or set train.tensorboard false)"
        )


class TensorBoardLog:
    """Scalars per step and per epoch (and optionally the model graph) as TensorBoard event files in ``log_dir``.

    Events are flushed at every epoch and on :meth:`close`, so a run killed mid-epoch keeps every finished
    epoch's scalars. Non-numeric and non-finite values (``None`` for epochs without evaluation, NaN) are skipped.
    """

    def __init__(self, log_dir: str | os.PathLike):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when asked for

        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def _add(self, prefix: str, step: int, scalars: Mapping[str, Any]) -> None:
        for name, value in scalars.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            self._writer.add_scalar(prefix + name, float(value), int(step))

    def log_step(self, step: int, scalars: Mapping[str, Any]) -> None:
        """One optimizer step's scalars, e.g. ``{"loss": 2.1, "lr": 0.05}``, under tags ``step/<name>``."""
        self._add(STEP_PREFIX, step, scalars)

    def log_epoch(self, epoch: int, scalars: Mapping[str, Any]) -> None:
        """One epoch's metrics row under tags ``epoch/<name>`` at x = ``epoch`` (1-based), then flush to disk."""
        self._add(EPOCH_PREFIX, epoch, scalars)
        self._writer.flush()

    def log_graph(self, model, example_input) -> None:
        """The model's graph (traced once with ``example_input``, e.g. a (1, C, H, W) batch) for the Graphs tab.

        Traced in eval mode without gradients, so BatchNorm statistics and dropout RNG are left untouched;
        the model's train/eval mode is restored afterwards.
        """
        import torch

        was_training = model.training
        model.eval()
        try:
            # Tracing warns about Python-level checks on shapes (e.g. channel divisibility): expected, not news;
            # and add_graph's use of torch.jit.trace is deprecated in torch, which the caller cannot change.
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                self._writer.add_graph(model, example_input)
        finally:
            model.train(was_training)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "TensorBoardLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["TensorBoardLog", "require_tensorboard", "STEP_PREFIX", "EPOCH_PREFIX"]
