"""Time a forward pass honestly, and say on what it was timed.

A latency number is meaningless without its conditions, so every result carries them: warm-up runs (the
first calls pay for allocation, oneDNN primitive creation and cache misses), many timed runs reported as the
median with the 10th/90th percentiles (the mean is skewed by the occasional preemption on a shared machine),
the thread count, the torch version and the CPU model / ISA (or GPU name and compute capability). On CUDA
and MPS kernels launch asynchronously, so the clock is only read after the device has finished
(:func:`litezoo.device.synchronize`). The machine block is :func:`litezoo.machine.machine_info`.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

from litezoo.device import resolve_device, synchronize
from litezoo.errors import InputError
from litezoo.machine import machine_info


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op CPU threads (``None``: leave torch's setting), then restore."""
    if threads is None:
        yield
        return
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def busy_warning(info: dict[str, Any]) -> str | None:
    """A sentence for people when other work was competing for the CPUs during a timing."""
    load, cpus = info.get("load_average"), info.get("cpu_count") or 1
    if load is None or load <= 0.75 * cpus:
        return None
    return (
        f"warning: the machine was busy (load average {load:g} on {cpus} CPUs): timings are contended; "
        "with more threads than idle cores a thread pool can stall badly (try --threads 1)"
    )


def time_callable(fn: Callable[[], Any], device: torch.device, warmup: int, runs: int) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    if not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warmup must be a non-negative integer, got {warmup!r}")
    if not isinstance(runs, int) or runs < 1:
        raise InputError(f"runs must be a positive integer, got {runs!r}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        synchronize(device)  # on CUDA/MPS the call only queued kernels: wait for them before reading the clock
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summarize(times_ms: list[float]) -> dict[str, float]:
    """Median, 10th/90th percentiles, mean and standard deviation of a list of timings (ms)."""
    ordered = sorted(times_ms)

    def pct(q: float) -> float:
        # Linear interpolation between closest ranks (numpy's default).
        pos = q * (len(ordered) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return {
        "median_ms": statistics.median(ordered),
        "p10_ms": pct(0.10),
        "p90_ms": pct(0.90),
        "mean_ms": statistics.fmean(ordered),
        "std_ms": statistics.pstdev(ordered) if len(ordered) > 1 else 0.0,
        "min_ms": ordered[0],
    }


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    device: str | torch.device = "cpu",
    warmup: int = 10,
    runs: int = 50,
    threads: int | None = None,
) -> dict[str, Any]:
    """Latency of ``model(x)`` for a random ``x`` of ``input_shape`` (eval mode, no autograd).

    Returns ``median_ms, p10_ms, p90_ms, mean_ms, std_ms, min_ms, runs, warmup, batch, input_shape`` and the
    machine description of :func:`machine_info` (threads, load average, torch version, CPU model and flags,
    GPU). ``threads``: CPU threads for the measurement (``None``: torch's current setting).
    """
    dev = resolve_device(device)
    if not isinstance(input_shape, (tuple, list)) or not input_shape or not all(
        isinstance(s, int) and s > 0 for s in input_shape
    ):
        raise InputError(f"input_shape must be a tuple of positive ints, got {input_shape!r}")
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = first.dtype if first is not None else torch.get_default_dtype()
    was_training = model.training
    model = model.to(dev).eval()
    x = torch.randn(*input_shape, device=dev, dtype=dtype)
    try:
        with torch_threads(threads), torch.inference_mode():
            times = time_callable(lambda: model(x), dev, warmup, runs)
            machine = machine_info(dev)  # inside: records the thread count used
    finally:
        model.train(was_training)
    return {
        **summarize(times),
        "runs": runs,
        "warmup": warmup,
        "batch": int(input_shape[0]),
        "input_shape": list(input_shape),
        "device": str(dev),
        "dtype": str(dtype).replace("torch.", ""),
        **machine,
    }
