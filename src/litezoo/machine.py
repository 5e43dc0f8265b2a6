"""What a measurement ran on: the one reader of CPU model / flags, versions and the code's git commit.

Every benchmark JSON, ``litezoo profile`` / ``compare`` / ``guidelines`` result and run log records the same
block, :func:`machine_info`, so figures from different scripts can be compared and traced back to the code
that produced them (``git_commit``, with ``git_dirty`` when the checkout had uncommitted changes).

torch is imported only by the functions that ask it something (its kernel level, versions, threads): the
torch-free runtime (:mod:`litezoo.runtime`) reads the CPU model here too.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

# CPU features that decide which kernels oneDNN / ATen pick, and so how fast a model runs (x86 and aarch64
# names, as /proc/cpuinfo spells them).
REPORTED_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "neon", "asimd", "sve", "sve2", "bf16", "i8mm",
)  # fmt: skip
_X86_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of the first CPU in /proc/cpuinfo; flags empty where there is no such file."""
    model, flags = "", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: keep what platform knows
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "model", "hardware") and not model and not value.strip().isdigit():
            model = value.strip()  # x86 'model' is a number; aarch64 boards name the SoC in 'Model'/'Hardware'
        elif key in ("flags", "features") and not flags:  # x86 says 'flags', aarch64 'Features'
            flags = frozenset(value.split())
    return model or platform.processor() or platform.machine(), flags


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty on systems without it)."""
    return cpu_model_and_flags()[1]


def cpu_native_bf16(capability: str | None = None, flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and the evidence as a short phrase for messages.

    Both must hold on x86: the CPU lists avx512_bf16 or amx_bf16, and torch runs its AVX512 kernels (under
    ``ATEN_CPU_CAPABILITY=avx2`` the flags are there but the bf16 kernels are not used).
    """
    if capability is None:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags() if flags is None else flags
    x86 = [f for f in _X86_BF16_FLAGS if f in flags]
    if x86 and capability.upper().startswith("AVX512"):
        return True, f"{', '.join(x86)}; torch capability {capability}"
    if "bf16" in flags and platform.machine().lower() in ("aarch64", "arm64"):
        return True, f"aarch64 bf16 feature; torch capability {capability}"
    if x86:
        return False, f"torch capability {capability} despite the {', '.join(x86)} flag"
    return False, f"torch capability {capability}, no avx512_bf16/amx_bf16 flag"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_average() -> float | None:
    """1-minute load average (None where the OS has none). Above the CPU count, timings are contended."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):  # no git installed, or a hung file system
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"commit": short hash, "dirty": bool}`` of the checkout ``path`` (default: this file) belongs to.

    Both are None outside a git checkout, and for an installed copy that git does not track (a wheel installed
    into a virtual environment that happens to sit inside some repository). ``dirty``: tracked files differ
    from the commit, so the figures came from code that no commit holds exactly.
    """
    where = Path(path if path is not None else __file__).resolve()
    folder = where if where.is_dir() else where.parent
    none = {"commit": None, "dirty": None}
    if where.is_file() and _git(["ls-files", "--error-unmatch", where.name], folder) is None:
        return none  # outside a checkout, or not tracked by it: not that checkout's code
    commit = _git(["rev-parse", "--short", "HEAD"], folder)
    if not commit:
        return none
    status = _git(["status", "--porcelain", "--untracked-files=no"], folder)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine_info(device: Any = "cpu") -> dict[str, Any]:
    """The machine block of every measurement: CPU model, ISA flags, torch's kernel level, cores, threads,
    load, versions and the git commit of the code; the GPU's name and capability when ``device`` is CUDA."""
    import torch

    dev = torch.device(device)
    model, flags = cpu_model_and_flags()
    capability = torch.backends.cpu.get_cpu_capability()  # the ATen kernel ISA in use
    git = git_commit()
    info: dict[str, Any] = {
        "cpu_model": model,
        "arch": platform.machine(),
        "cpu_flags": [f for f in REPORTED_FLAGS if f in flags],
        "cpu_capability": capability,
        "native_bf16": cpu_native_bf16(capability, flags)[0],
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "threads": torch.get_num_threads(),
        "load_average": load_average(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
    }
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        info["gpu_name"] = torch.cuda.get_device_name(index)
        info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info


def cpu_tag() -> str:
    """A short file-name-safe name for this machine class, e.g. ``x86_64-avx512-amx-2cpu``."""
    import torch

    parts = [platform.machine() or "cpu", torch.backends.cpu.get_cpu_capability().lower()]
    if "amx_tile" in cpu_flags():
        parts.append("amx")
    parts.append(f"{os.cpu_count()}cpu")
    return "-".join(p.replace(" ", "_") for p in parts)


__all__ = [
    "REPORTED_FLAGS",
    "cpu_model_and_flags",
    "cpu_flags",
    "cpu_native_bf16",
    "usable_cpus",
    "load_average",
    "git_commit",
    "machine_info",
    "cpu_tag",
]
