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

The cost is that the process keeps its peak heap until the context exits; on exit both settings go back to glibc's
starting values and the heap is trimmed (glibc's *dynamic* mmap threshold stays off afterwards, as after any
``mallopt`` call; the threshold keeps the value it had). Off glibc (macOS, Windows, musl) this is a no-op, and CUDA training does not need it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
from collections.abc import Iterator

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# glibc's defaults, restored on exit (the threshold is dynamic by default; 128 KiB is where it starts).
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536


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
    libc = _glibc() if enabled else None
    # mallopt returns 1 on success.
    active = libc is not None and libc.mallopt(_M_MMAP_MAX, 0) == 1
    if active:
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield active
    finally:
        if active:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)  # give the training peak back to the OS
