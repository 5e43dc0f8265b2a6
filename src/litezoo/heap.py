"""Keep freed memory in the process heap while training on a CPU (glibc only).

Why: glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns it
to the kernel on ``free``. A CPU training step allocates activations and gradients of tens to hundreds of MiB
(vgg_fast at batch 1024: a (1024, 64, 32, 32) bf16 activation is 128 MiB) and frees them a few milliseconds later,
so every step maps fresh pages and the kernel zero-fills each one on first touch: ~120,000 minor page faults and
~0.3-0.4 s of kernel time per step. Turning off mmap for large blocks (``M_MMAP_MAX=0``)
and never trimming the heap (``M_TRIM_THRESHOLD``) lets the second step reuse the first step's pages.

Measured (benchmarks/results/heap_tuning.json, ``python benchmarks/heap_tuning.py``): vgg_fast_cifar, batch
1024, bf16, channels_last, 2 threads: page faults per step ~120,000 -> 0, images/s 1088-1190 -> 1294-1322 (1.15x);
mobilenet_v1_x0_5_cifar at batch 512 (smaller activations, more time in compute): 1.03x.

The cost is that the process keeps its peak heap until the context exits. On exit both settings go back to what
the process started with and the heap is trimmed. glibc has no way to read a ``mallopt`` setting back, so "what it
started with" is glibc's default unless the environment set it at start-up (``GLIBC_TUNABLES`` entries
``glibc.malloc.mmap_max`` / ``glibc.malloc.trim_threshold``, or the older ``MALLOC_MMAP_MAX_`` /
``MALLOC_TRIM_THRESHOLD_``); a value the program itself set with ``mallopt`` before entering cannot be seen and is
replaced by that start-up value. Contexts nest (and may be entered from several threads): the settings change when
the first one enters and are restored when the last one exits. glibc's *dynamic* mmap threshold stays off afterwards,
as after any ``mallopt`` call. Off glibc (macOS, Windows, musl) this is a no-op, and CUDA training does not need it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import threading
from collections.abc import Iterator, Mapping

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# glibc's defaults (the threshold is dynamic by default; 128 KiB is where it starts).
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536

_lock = threading.Lock()
_depth = 0  # heap_kept contexts currently active in this process


def startup_settings(environ: Mapping[str, str] = os.environ) -> dict[int, int]:
    """``{mallopt parameter: value}`` the process started with: glibc's defaults, overridden by the environment.

    Later ``GLIBC_TUNABLES`` entries win over earlier ones and over the ``MALLOC_*_`` variables; values that are
    not integers are ignored, as glibc ignores them.
    """
    settings = {_M_MMAP_MAX: _DEFAULT_MMAP_MAX, _M_TRIM_THRESHOLD: _DEFAULT_TRIM_THRESHOLD}
    legacy = {"MALLOC_MMAP_MAX_": _M_MMAP_MAX, "MALLOC_TRIM_THRESHOLD_": _M_TRIM_THRESHOLD}
    tunables = {"glibc.malloc.mmap_max": _M_MMAP_MAX, "glibc.malloc.trim_threshold": _M_TRIM_THRESHOLD}
    pairs = [(legacy[k], environ[k]) for k in legacy if k in environ]
    for item in environ.get("GLIBC_TUNABLES", "").split(":"):
        name, _, value = item.partition("=")
        if name.strip() in tunables:
            pairs.append((tunables[name.strip()], value))
    for param, value in pairs:
        try:
            number = int(value.strip(), 0)  # glibc accepts decimal and 0x hex
        except ValueError:
            continue
        if number >= 0:
            settings[param] = number
    return settings


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


@contextlib.contextmanager
def heap_kept(enabled: bool = True) -> Iterator[bool]:
    """Within the block, large freed blocks stay in the heap for reuse. Yields whether the setting is active."""
    global _depth
    libc = _glibc() if enabled else None
    with _lock:
        active = libc is not None and (_depth > 0 or libc.mallopt(_M_MMAP_MAX, 0) == 1)  # mallopt: 1 = success
        if active:
            if _depth == 0:
                libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
            _depth += 1
    try:
        yield active
    finally:
        if active:
            with _lock:
                _depth -= 1
                if _depth == 0:  # the last one out puts back what the process started with
                    for param, value in startup_settings().items():
                        libc.mallopt(param, value)
                    libc.malloc_trim(0)  # give the training peak back to the OS


__all__ = ["heap_kept", "startup_settings"]
