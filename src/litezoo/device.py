"""The one place that turns a ``--device`` / ``train.device`` string into a ``torch.device``.

``auto`` means CUDA, then Apple's MPS, then the CPU, for every command (training, evaluation, timing). Asking
for a device that is not there is bad input (:class:`InputError`), not a silent fall-back to the CPU.
"""

from __future__ import annotations

import re

import torch

from litezoo.errors import InputError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def mps_available() -> bool:
    """Whether Apple's MPS backend can run here (False on builds without it)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(requested: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None): cuda > mps > cpu. An explicit device that is not available is an InputError."""
    if isinstance(requested, torch.device):
        requested = str(requested)
    r = "auto" if requested is None else str(requested).strip().lower()
    if r == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if r == "cpu":
        return torch.device("cpu")
    if r == "cuda" or re.fullmatch(r"cuda:\d+", r):
        if not torch.cuda.is_available():
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch"
            raise InputError(f"device {requested!r} requested, but no CUDA GPU is available ({built}); use cpu or auto")
        device = torch.device(r)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device {requested!r} requested, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
        return device
    if r == "mps":
        if not mps_available():
            raise InputError("device 'mps' requested, but Apple's MPS backend is not available here; use cpu or auto")
        return torch.device("mps")
    raise InputError(f"unknown device {requested!r}; choose {DEVICE_CHOICES}")


def synchronize(device: torch.device) -> None:
    """Wait for the queued kernels of an asynchronous device (CUDA, MPS); a no-op on the CPU.

    Timings must read the clock only after this: on CUDA and MPS a forward call only queues work.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


__all__ = ["DEVICE_CHOICES", "mps_available", "resolve_device", "synchronize"]
