"""Device and mixed-precision choice, by measured capability rather than assumption.

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
import functools
import os
import platform
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

import torch

from litezoo.errors import InputError

AMP_REQUESTS = ("auto", "bf16", "fp16", "off", "fp32")  # fp32 = off
# CPU feature flags worth recording in run logs and benchmarks (x86 and aarch64 names, as /proc/cpuinfo spells them).
_REPORTED_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "asimd", "sve", "sve2", "bf16", "i8mm",
)  # fmt: skip
_X86_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


# ---------------------------------------------------------------------------------------------------------------
# Device


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``: cuda > mps > cpu. An explicit device that is not available is an InputError."""
    r = str(requested).strip().lower()
    if r == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
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
        if not _mps_available():
            raise InputError("device 'mps' requested, but Apple's MPS backend is not available here; use cpu or auto")
        return torch.device("mps")
    raise InputError(f"unknown device {requested!r}; choose auto, cpu, cuda, cuda:N or mps")


# ---------------------------------------------------------------------------------------------------------------
# CPU capability


@functools.lru_cache(maxsize=1)
def _proc_cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of the first CPU in /proc/cpuinfo; flags empty where there is no such file."""
    model, flags = "", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:  # x86 says 'flags', aarch64 'Features'
            flags = frozenset(value.split())
    return model or platform.processor() or platform.machine(), flags


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty on systems without it)."""
    return _proc_cpuinfo()[1]


def cpu_native_bf16(capability: str | None = None, flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and the evidence as a short phrase for messages."""
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    flags = cpu_flags() if flags is None else flags
    x86 = [f for f in _X86_BF16_FLAGS if f in flags]
    if x86 and capability.upper().startswith("AVX512"):
        return True, f"{', '.join(x86)}; torch capability {capability}"
    if "bf16" in flags and platform.machine().lower() in ("aarch64", "arm64"):
        return True, f"aarch64 bf16 feature; torch capability {capability}"
    if x86:  # the flags are there but torch runs its AVX2 (or older) kernels, e.g. ATEN_CPU_CAPABILITY=avx2
        return False, f"torch capability {capability} despite the {', '.join(x86)} flag"
    return False, f"torch capability {capability}, no avx512_bf16/amx_bf16 flag"


def cpu_info() -> dict[str, Any]:
    """What run logs and benchmarks record about the CPU."""
    model, flags = _proc_cpuinfo()
    capability = torch.backends.cpu.get_cpu_capability()
    native, _ = cpu_native_bf16(capability, flags)
    return {
        "model_name": model,
        "arch": platform.machine(),
        "flags": [f for f in _REPORTED_FLAGS if f in flags],
        "capability": capability,
        "native_bf16": native,
        "logical_cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }


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
    "resolve_device",
    "cpu_flags",
    "cpu_native_bf16",
    "cpu_info",
    "Precision",
    "choose_precision",
    "autocast",
    "make_scaler",
]
