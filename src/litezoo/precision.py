"""Mixed-precision choice, by measured capability rather than assumption.

``train.amp`` is ``auto`` | ``bf16`` | ``fp16`` | ``off``. What ``auto`` picks, device by device:

- CUDA with native bf16 (compute capability 8.0+, or ROCm): bf16 autocast without a scaler. It runs on the
  tensor cores as fast as fp16 and has fp32's exponent range, so there is nothing to scale and no step to skip.
- older CUDA GPUs: fp16 autocast with a dynamic GradScaler.
- a CPU with native bf16 (x86: torch's kernel level is AVX512* and the CPU lists avx512_bf16 or amx_bf16;
  aarch64: the bf16 feature): bf16 autocast, which the AMX / AVX512-BF16 kernels run faster than fp32.
- any other CPU (e.g. AVX2 only): fp32, because bf16 there is emulated by conversions and runs slower than fp32.
- MPS: fp32 (MPS autocast coverage is still partial); ask for fp16 or bf16 explicitly to use it.

Measured on this project's Sapphire-Rapids-class Xeon (AMX), CPU time of one training step (forward, backward,
SGD) on 1 thread, batch 256 at 32 px, bf16 autocast relative to fp32: 0.37x for a plain 3x3-conv net, 0.64x for
a depthwise-separable net, 0.94x for shufflenet_v2_x1_0_cifar. The same machine limited to AVX2 kernels
(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): 12x, 2.6x and 5.4x slower than fp32. An fp16-autocast 3x3
conv (fwd+bwd) took ~160x the fp32 time there: the CPU has no fast fp16 convolution path.

Explicit requests: ``bf16`` on a CPU without native bf16 is honoured with a warning; ``fp16`` on a CPU is an
InputError (it would need loss scaling and gains nothing over bf16: use bf16 or off); ``bf16`` on a CUDA GPU
without native bf16 is an InputError (torch refuses it).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, ContextManager

import torch

from litezoo.errors import InputError
from litezoo.machine import cpu_native_bf16

AMP_REQUESTS = ("auto", "bf16", "fp16", "off", "fp32")  # fp32 = off


def _cuda_native_bf16(device: torch.device) -> bool:
    """Ampere (compute capability 8.0) and newer, and ROCm, do bf16 in hardware; torch emulates it on older GPUs."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


# ---------------------------------------------------------------------------------------------------------------
# Precision


@dataclass(frozen=True)
class Precision:
    mode: str  # fp32 | bf16 | fp16
    dtype: torch.dtype | None  # the autocast dtype; None: no autocast
    use_scaler: bool  # fp16 needs a GradScaler against gradient underflow
    reason: str  # one sentence for the run log: what was chosen and why


_FP32 = "fp32"


def choose_precision(requested: str, device: torch.device) -> Precision:
    """The autocast mode for ``train.amp`` = ``requested`` on ``device`` (see the module docstring)."""
    r = str(requested).strip().lower()
    if r not in AMP_REQUESTS:
        raise InputError(f"unknown amp mode {requested!r}; choose auto, bf16, fp16 or off")
    if r in ("off", "fp32"):
        return Precision(_FP32, None, False, "fp32: mixed precision is off (amp=off)")
    kind = device.type

    if kind == "cuda":
        native = _cuda_native_bf16(device)
        if r == "auto":
            if native:
                return Precision(
                    "bf16", torch.bfloat16, False,
                    "bf16 autocast (amp=auto): this GPU has native bf16, as fast as fp16 and needing no loss scaling",
                )  # fmt: skip
            return Precision(
                "fp16", torch.float16, True,
                "fp16 autocast with dynamic loss scaling (amp=auto): this GPU has no native bf16",
            )  # fmt: skip
        if r == "bf16":
            if not native:
                raise InputError("amp=bf16 needs a GPU with native bf16 (compute capability 8.0+); use fp16 or auto")
            return Precision("bf16", torch.bfloat16, False, "bf16 autocast as requested (amp=bf16)")
        return Precision("fp16", torch.float16, True, "fp16 autocast with dynamic loss scaling as requested (amp=fp16)")

    if kind == "cpu":
        native, evidence = cpu_native_bf16()
        if r == "auto":
            if native:
                return Precision(
                    "bf16", torch.bfloat16, False,
                    f"bf16 autocast (amp=auto): this CPU computes bf16 natively ({evidence})",
                )  # fmt: skip
            return Precision(
                _FP32, None, False,
                f"fp32 (amp=auto): this CPU has no native bf16 ({evidence}), "
                "where bf16 is emulated and slower than fp32",
            )  # fmt: skip
        if r == "bf16":
            if not native:
                warnings.warn(
                    f"amp=bf16 on a CPU without native bf16 ({evidence}): bf16 is emulated here and usually much "
                    "slower than fp32; amp=auto would pick fp32",
                    stacklevel=2,
                )
                return Precision(
                    "bf16", torch.bfloat16, False,
                    f"bf16 autocast as requested (amp=bf16), although this CPU has no native bf16 ({evidence})",
                )  # fmt: skip
            return Precision("bf16", torch.bfloat16, False, f"bf16 autocast as requested (amp=bf16; {evidence})")
        raise InputError(
            "amp=fp16 is not supported on the CPU (it needs loss scaling and gains nothing over bf16): "
            "use amp=bf16, auto or off"
        )

    if kind == "mps":
        if r == "auto":
            return Precision(
                _FP32, None, False, "fp32 (amp=auto): MPS autocast coverage is partial; ask for amp=fp16 to use it"
            )
        if r == "bf16":
            return Precision("bf16", torch.bfloat16, False, "bf16 autocast on MPS as requested (amp=bf16)")
        return Precision(
            "fp16", torch.float16, True, "fp16 autocast with dynamic loss scaling on MPS as requested (amp=fp16)"
        )

    if r == "auto":
        return Precision(_FP32, None, False, f"fp32 (amp=auto): no mixed-precision policy for device type {kind!r}")
    raise InputError(f"amp={r} is not supported on device type {kind!r}; use amp=off")


def autocast(prec: Precision, device: torch.device) -> ContextManager[Any]:
    """A fresh context for one forward pass: ``torch.autocast`` with ``prec.dtype``, or a no-op for fp32."""
    if prec.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=prec.dtype)


def make_scaler(prec: Precision, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler when the precision needs one (fp16), else None."""
    if not prec.use_scaler:
        return None
    return torch.amp.GradScaler(device.type)


__all__ = [
    "AMP_REQUESTS",
    "Precision",
    "choose_precision",
    "autocast",
    "make_scaler",
]
