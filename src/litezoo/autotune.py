"""Precision and memory format by measurement: ``train.amp: auto`` times real training steps and keeps the fastest.

Why measure instead of reading CPU flags: a native-bf16 CPU does not make bf16 faster for every net. On a
Sapphire Rapids Xeon (AMX) bf16 autocast trains the dense-conv ``vgg_fast_cifar`` 2.8x faster than fp32, but
the depthwise nets (MobileNet, ShuffleNet) 0.6-0.9x fp32 — their depthwise convs, shuffles and small tensors
have nothing for AMX to accelerate and pay for the casts. Which memory format wins depends on the net too.

:func:`measure_precision` takes a copy of the model, a synthetic batch of the training shape and, for each
candidate (precision x memory format), runs a few complete training steps — forward, loss, backward, SGD step —
interleaved round by round (a burst of other work slows every candidate alike), and picks the highest images/s.
Candidates: fp32 everywhere; bf16 on CPUs with native bf16 and on CUDA GPUs with it; fp16 (with a loss
scaler) on CUDA; channels_last on and off for 4-D inputs. The decision is cached as JSON in the litezoo cache
folder (``$LITEZOO_CACHE`` or ``~/.cache/litezoo``, file ``autotune.json``) keyed by what decides the outcome:
the CPU model, its ISA flags and torch's kernel level (so an ``ATEN_CPU_CAPABILITY=avx2`` emulation is its
own key), the ISA-limiting environment variables, the GPU name, torch version, threads, the model (name and
parameter count), the batch shape and the candidates. The second run of the same recipe on the same machine
reads the decision instead of measuring. A decision measured while other work loaded the CPUs is used for
that run but not cached (:func:`machine_contended`); delete the file to measure again.

Nothing global changes: the copy is thrown away, the synthetic data comes from a private generator, the global
RNG states (CPU and the device's) are saved and restored around the steps (a dropout or a data-dependent init
in the copy must not shift the run's random stream: seeds and exact resume stay as without autotune), and the
thread count is left alone (the steps run with the caller's threads, which is what they should measure).

Measuring costs a few seconds: each candidate gets one warm-up step (oneDNN creates its kernels on the first
call) and up to ``rounds`` timed steps, stopped early once ``budget_s`` is spent; the batch is capped at
``max_batch`` images, because on a CPU the time per image barely depends on the batch while a full batch of
1024 in fp32 can take seconds per step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from litezoo.device import synchronize
from litezoo.errors import InputError
from litezoo.machine import REPORTED_FLAGS, cpu_model_and_flags, cpu_native_bf16, load_average, usable_cpus
from litezoo.precision import Precision, choose_precision
from litezoo.precision import autocast as precision_autocast
from litezoo.precision import make_scaler

CACHE_FILE = "autotune.json"
CACHE_VERSION = 1
# Variables that hold torch / oneDNN / MKL to an older instruction set: part of the key (AVX2 emulation).
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


@dataclass(frozen=True)
class Candidate:
    mode: str  # fp32 | bf16 | fp16
    channels_last: bool

    @property
    def label(self) -> str:
        return f"{self.mode} {'channels_last' if self.channels_last else 'NCHW'}"


@dataclass
class Decision:
    """What :func:`measure_precision` chose, and what it measured (images/s per candidate label)."""

    precision: Precision
    channels_last: bool
    measured: dict[str, float]  # "bf16 channels_last" -> images/s
    measure_batch: int  # images per measured step (the batch, capped at max_batch)
    key: str  # the cache key (hex digest of key_fields)
    key_fields: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # read from the cache instead of measured now
    cache_path: Path | None = None
    contended: str | None = None  # measured while other work shared the CPUs: said, and not cached
    failed: dict[str, str] = field(default_factory=dict)  # candidates whose step raised (e.g. no bf16 kernel)

    @property
    def line(self) -> str:
        """One log line: what was measured and what was chosen."""
        rates = ", ".join([f"{label} {ips:.0f} img/s" for label, ips in self.measured.items()]
                          + [f"{label} failed ({why})" for label, why in self.failed.items()])  # fmt: skip
        layout = "channels_last" if self.channels_last else "NCHW"
        origin = f"cached in {CACHE_FILE}" if self.cached else "measured"
        busy = f" ({self.contended}: not cached)" if self.contended else ""
        return f"amp auto: {origin} (batch {self.measure_batch}) {rates} -> {self.precision.mode}, {layout}{busy}"


def machine_contended() -> str | None:
    """A phrase when other work shares the CPUs (1-minute load above 1.5x the usable CPUs), else None.

    Timings taken then can rank the candidates wrongly (measured: with a load of 19 on 2 cores, fp32 beat bf16
    for vgg_fast, which is 2.8x faster in bf16 on the idle machine), so such a decision is used once, not cached.
    """
    load, cpus = load_average(), usable_cpus()
    if load is not None and load > 1.5 * cpus:
        return f"contended: load {load:g} on {cpus} CPUs"
    return None


def default_cache_path() -> Path:
    from litezoo.data.cache import default_cache_dir

    return default_cache_dir() / CACHE_FILE


def candidates_for(device: torch.device, layouts: Sequence[bool]) -> list[Candidate]:
    """The precisions worth timing on ``device`` (fp32 always; bf16/fp16 where the hardware runs them natively)."""
    modes = ["fp32"]
    if device.type == "cpu":
        if cpu_native_bf16()[0]:
            modes.append("bf16")
    elif device.type == "cuda":
        if choose_precision("auto", device).mode == "bf16":  # native bf16 (compute capability 8.0+ or ROCm)
            modes.append("bf16")
        modes.append("fp16")
    return [Candidate(m, cl) for m in modes for cl in layouts]


def cache_key_fields(device: torch.device, model_name: str, num_params: int, batch_shape: Sequence[int],
                     candidates: Sequence[Candidate]) -> dict[str, Any]:  # fmt: skip
    """What decides which candidate is fastest: the hardware and kernels, torch, threads, the net, the shape."""
    cpu_model, flags = cpu_model_and_flags()
    fields: dict[str, Any] = {
        "version": CACHE_VERSION,
        "device": device.type,
        "cpu_model": cpu_model,
        "cpu_flags": [f for f in REPORTED_FLAGS if f in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_env": {k: os.environ[k] for k in ISA_ENV if k in os.environ},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": model_name,
        "params": int(num_params),
        "batch_shape": [int(s) for s in batch_shape],
        "candidates": [c.label for c in candidates],
    }
    if device.type == "cuda":
        fields["gpu"] = torch.cuda.get_device_name(device)
    return fields


def cache_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:24]


def read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries; an absent, unreadable or foreign file counts as empty (it is only a cache)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def write_cache_entry(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add one entry (read-modify-write; the file is replaced atomically, so a reader never sees half of it)."""
    from litezoo.fsutil import atomic_write_bytes

    entries = read_cache(path)
    entries[key] = entry
    atomic_write_bytes(json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1).encode(), path)


def _precision_for(mode: str, device: torch.device, reason: str) -> Precision:
    base = choose_precision("off" if mode == "fp32" else mode, device)
    return dataclasses.replace(base, reason=reason)


class _Setup:
    """One candidate: its own copy of the model, optimizer and input, ready for training steps."""

    def __init__(self, cand: Candidate, model: nn.Module, device: torch.device, x: torch.Tensor, y: torch.Tensor):
        fmt = torch.channels_last if cand.channels_last else torch.contiguous_format
        self.cand = cand
        self.device = device
        self.model = copy.deepcopy(model).to(device=device, memory_format=fmt).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        # The recipe's optimizers cost the same per parameter up to a small factor: SGD with momentum stands in.
        self.opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9) if params else None
        self.prec = choose_precision("off" if cand.mode == "fp32" else cand.mode, device)
        self.scaler = make_scaler(self.prec, device)
        self.x = x.to(device).contiguous(memory_format=fmt) if x.ndim == 4 else x.to(device)
        self.y = y.to(device)
        self.times: list[float] = []

    def step(self) -> None:
        with precision_autocast(self.prec, self.device):
            logits = self.model(self.x)  # (B, K)
        loss = F.cross_entropy(logits.float(), self.y)
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            if self.opt is not None:
                self.opt.step()
        synchronize(self.device)  # the clock is read after the step's kernels ran


def _num_outputs(model: nn.Module) -> int:
    k = getattr(model, "num_classes", None)
    if not isinstance(k, int) or k < 1:
        raise InputError("autotune needs a model with a positive num_classes (the zoo's interface)")
    return k


def measure_precision(
    model: nn.Module,
    device: torch.device,
    batch_shape: Sequence[int],
    *,
    model_name: str | None = None,
    layouts: Sequence[bool] = (False, True),
    cache_path: str | os.PathLike | None = None,
    use_cache: bool = True,
    max_batch: int = 128,
    rounds: int = 3,
    budget_s: float = 5.0,
    timer: Callable[[], float] = time.perf_counter,
) -> Decision:
    """Time training steps of a copy of ``model`` in each candidate precision and memory format; the fastest wins.

    ``batch_shape``: the training batch (N, C, H, W) of one process. ``layouts``: the channels_last settings to
    try ((False, True), or just the one the recipe fixes). ``cache_path``: the decision cache (default
    ``<litezoo cache>/autotune.json``); ``use_cache=False`` measures and overwrites the entry. ``timer``:
    seconds as a float (tests pass a fake clock). ``model`` itself is not touched.
    """
    if len(batch_shape) < 2 or any(int(s) < 1 for s in batch_shape):
        raise InputError(f"autotune needs a batch shape like (N, C, H, W) of positive sizes, got {tuple(batch_shape)}")
    if not layouts:
        raise InputError("autotune needs at least one memory format to try")
    layouts = tuple(dict.fromkeys(bool(v) for v in layouts)) if len(batch_shape) == 4 else (False,)
    cands = candidates_for(device, layouts)
    name = model_name or type(model).__name__
    num_params = sum(p.numel() for p in model.parameters())
    fields = cache_key_fields(device, name, num_params, batch_shape, cands)
    key = cache_key(fields)
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    measure_batch = min(int(batch_shape[0]), max_batch)

    if use_cache:
        hit = read_cache(path).get(key)
        if hit and hit.get("fields") == fields and hit.get("choice") in {c.label for c in cands}:
            best = next(c for c in cands if c.label == hit["choice"])
            decision = Decision(_precision_for(best.mode, device, ""), best.channels_last, dict(hit["measured"]),
                                int(hit["measure_batch"]), key, fields, cached=True, cache_path=path,
                                failed=dict(hit.get("failed", {})))  # fmt: skip
            decision.precision = dataclasses.replace(decision.precision, reason=decision.line)
            return decision

    measured, failed = _time_candidates(model, device, (measure_batch, *batch_shape[1:]), cands, rounds, budget_s,
                                        timer)  # fmt: skip
    best = max((c for c in cands if c.label in measured), key=lambda c: measured[c.label])
    decision = Decision(_precision_for(best.mode, device, ""), best.channels_last,
                        {label: round(v, 1) for label, v in measured.items()}, measure_batch, key, fields,
                        failed=failed)  # fmt: skip
    decision.contended = machine_contended()
    decision.precision = dataclasses.replace(decision.precision, reason=decision.line)
    if decision.contended:
        return decision
    entry = {"fields": fields, "measured": decision.measured, "failed": failed, "measure_batch": measure_batch,
             "choice": best.label,
             "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average": load_average()}  # fmt: skip
    with contextlib.suppress(OSError):  # an unwritable cache costs a re-measurement next time, nothing else
        write_cache_entry(path, key, entry)
        decision.cache_path = path
    return decision


def choose_for_run(cfg: Any, model: nn.Module, device: torch.device, batch_shape: Sequence[int], *,
                   static_channels_last: bool, dist_info: Any = None) -> tuple[Precision, bool, Decision | None]:
    """The trainer's precision step: (precision, channels_last, decision or None).

    ``train.amp: auto`` measures (:func:`measure_precision`) — both memory formats when ``train.channels_last`` is
    ``auto``, else only the one it fixes; an explicit amp (bf16, fp16, off) is honoured without measuring, with
    ``static_channels_last`` (the trainer's rule for ``channels_last: auto``). The decision is cached in
    ``data.cache_dir`` (default: the litezoo cache folder). Under torchrun the main process
    measures alone (the others wait: their steps would share its cores) and every process takes its decision.
    """
    from litezoo import distributed

    if str(cfg.train.amp).strip().lower() != "auto":
        return choose_precision(cfg.train.amp, device), static_channels_last, None
    fixed = cfg.train.channels_last
    layouts = (False, True) if not isinstance(fixed, bool) else (fixed,)
    decision = None
    if dist_info is None or dist_info.is_main:
        from litezoo.data.cache import resolve_cache_dir

        cache = resolve_cache_dir(cfg.data.cache_dir) / CACHE_FILE  # beside the decoded images
        decision = measure_precision(model, device, batch_shape, model_name=cfg.model.name, layouts=layouts,
                                     cache_path=cache)  # fmt: skip
    decision = distributed.broadcast_object(decision)
    return decision.precision, decision.channels_last, decision


def _time_candidates(model, device, shape, cands, rounds, budget_s, timer) -> tuple[dict[str, float], dict[str, str]]:
    """Images/s of each candidate: one warm-up step each, then timed rounds (every candidate one step per
    round) until ``rounds`` rounds or ``budget_s`` seconds; the fastest step of each counts. A reduced-precision
    candidate whose warm-up step raises (an op without a kernel for that dtype) is left out and reported."""
    gen = torch.Generator().manual_seed(0)  # private: the synthetic batch draws nothing from the global RNG
    x = torch.randn(*shape, generator=gen)  # (B, C, H, W)
    y = torch.randint(0, _num_outputs(model), (shape[0],), generator=gen)
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    start = timer()
    with torch.random.fork_rng(devices=rng_devices), torch.enable_grad():
        setups, failed = [], {}
        for c in cands:  # warm-up: kernel creation, the whitening stem's init, allocator growth
            s = _Setup(c, model, device, x, y)
            try:
                s.step()
            except RuntimeError as exc:
                if c.mode == "fp32":  # the model itself fails: training would too, say it there
                    raise
                failed[c.label] = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
                continue
            setups.append(s)
        for r in range(max(1, rounds)):
            for s in setups:
                t0 = timer()
                s.step()
                s.times.append(timer() - t0)
            if timer() - start > budget_s:
                break
    return {s.cand.label: shape[0] / max(min(s.times), 1e-9) for s in setups}, failed


__all__ = ["Candidate", "Decision", "measure_precision", "choose_for_run", "candidates_for", "cache_key_fields", "cache_key",
           "read_cache", "write_cache_entry", "default_cache_path", "CACHE_FILE"]  # fmt: skip
