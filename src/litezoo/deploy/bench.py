"""Runtime benchmark: one model, many runtimes, side by side in one process and one run.

Each row: median latency of one call on a batch with its spread (p10/p90), throughput, the process's peak
resident memory while that runtime was built and run, and the fp32 compute bound — the model's FLOPs divided
by this machine's fp32 matmul FLOP/s measured in the same run at the same thread count — so a reader sees how
close each runtime gets to what the arithmetic alone would cost.

Threads are set per runtime session (ONNX Runtime ``intra_op_num_threads``, OpenVINO ``INFERENCE_NUM_THREADS``);
torch's global thread count is set for its rows and restored after.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from litezoo.deploy.export import openvino_available, ort_session
from litezoo.deploy.quantize import prepared_fp32
from litezoo.deploy.source import Source, dataset_arrays, load_source
from litezoo.errors import InputError
from litezoo.machine import machine_info

RUNTIMES = ("torch", "torch-cl", "torch-compile", "ort", "ort-int8", "openvino", "openvino-int8")
FILE_RUNTIMES = ("ort", "openvino")  # an exported file runs as it is (its own precision)
CALIB_IMAGES = 64  # int8 rows: calibration inputs (the run's training images, else random)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _reset_peak_rss() -> bool:
    try:  # Linux: writing 5 resets VmHWM (the peak RSS) of this process
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def matmul_flops(threads: int | None, n: int = 1024, seconds: float = 0.5) -> float:
    """This machine's fp32 matmul FLOP/s at ``threads`` (torch.mm of n x n, best of a timed loop)."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    with torch_threads(threads), torch.no_grad():
        torch.mm(a, b)
        best = float("inf")
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


WARMUP_CALLS = 3  # untimed calls before a measurement ...
WARMUP_SECONDS = 2.0  # ... or 2 once those took longer than this


def time_calls(fn: Callable[[], Any], *, repeats: int, min_seconds: float, warmup: int = WARMUP_CALLS,
               max_seconds: float | None = None, min_calls: int = 10, warmup_seconds: float = WARMUP_SECONDS,
               info: dict[str, Any] | None = None) -> np.ndarray:
    """Per-call seconds after warm-up: at least ``repeats`` calls and at least ``min_seconds`` of them.

    ``max_seconds`` caps one measurement: once ``min_calls`` calls are timed and ``max_seconds`` have passed,
    it stops even if ``repeats`` / ``min_seconds`` are not reached (so a 2 s call is timed ~10 times, not 30,
    and p10/p90 still come from ``min_calls`` samples). Warm-up (not timed): ``warmup`` calls, or 2 once those
    two took more than ``warmup_seconds`` (the first call carries the one-time costs: compilation, allocation).
    The same rule for every runtime. ``info``, when given, receives ``warmup_calls`` and ``capped``.
    """
    t_warm = time.perf_counter()
    warmed = 0
    for _ in range(warmup):
        fn()
        warmed += 1
        if warmed >= 2 and time.perf_counter() - t_warm > warmup_seconds:
            break
    capped = False
    times = []
    start = time.perf_counter()
    deadline = start + min_seconds
    cap = None if max_seconds is None else start + max_seconds
    while len(times) < repeats or time.perf_counter() < deadline:
        if cap is not None and len(times) >= min_calls and time.perf_counter() >= cap:
            capped = True
            break
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    if info is not None:
        info.update(warmup_calls=warmed, capped=capped)
    return np.asarray(times)


class _Model:
    """What the runners of one target share: the torch model, its fp32 ONNX file and calibration inputs."""

    def __init__(self, src: Source | None, file: Path | None, workdir: Path, size: int):
        self.src, self.file, self.workdir, self.size = src, file, workdir, size
        self._onnx: Path | None = None
        self._int8: dict[str, Path] = {}
        self.notes: list[str] = []

    @property
    def name(self) -> str:
        return self.src.meta["model_name"] if self.src else self.file.name

    def onnx_path(self) -> Path:
        if self.file is not None:
            return self.file
        if self._onnx is None:
            self._onnx = prepared_fp32(self.src, self.workdir)
        return self._onnx

    def calib(self) -> np.ndarray:
        if self.src is not None and self.src.data:
            try:
                return dataset_arrays(self.src, "train", CALIB_IMAGES)[0]
            except Exception as exc:  # noqa: BLE001 — speed rows only: random calibration will do, and is noted
                self.notes.append(f"{self.name}: int8 calibrated on random inputs ({str(exc).splitlines()[0]})")
        elif self.src is not None:
            self.notes.append(f"{self.name}: int8 calibrated on random inputs (no training data: speed only)")
        c = int(self.src.meta["in_chans"]) if self.src else 3
        return np.random.default_rng(0).standard_normal((CALIB_IMAGES, c, self.size, self.size), dtype=np.float32)

    def int8_path(self, kind: str) -> Path:
        if kind not in self._int8:
            from litezoo.deploy.quantize import OrtQuantizer, openvino_quantize

            if kind == "ort":
                q = OrtQuantizer(self.onnx_path(), self.calib(), self.workdir, qop=False, per_channel=True)
                self._int8[kind] = q.quantize(self.workdir / "int8.onnx")
            else:
                self._int8[kind] = openvino_quantize(self.onnx_path(), self.calib(), (), self.workdir / "int8.xml",
                                                      {"model_name": self.name})  # fmt: skip
        return self._int8[kind]


def _runner(model: _Model, runtime: str, batch: int, threads: int | None) -> tuple[Callable[[], Any], dict]:
    """A zero-argument call that runs one batch, and what it runs with (precision, notes)."""
    c = int(model.src.meta["in_chans"]) if model.src else 3
    x = np.random.default_rng(0).standard_normal((batch, c, model.size, model.size), dtype=np.float32)
    if runtime.startswith("torch"):
        net = model.src.model
        xt = torch.from_numpy(x)
        if runtime == "torch-cl":
            net = net.to(memory_format=torch.channels_last)
            xt = xt.contiguous(memory_format=torch.channels_last)
        if runtime == "torch-compile":
            # Static shapes: one compile per batch size (the first warm-up call compiles). Inductor's C++
            # kernels read the thread count when they run (_compile_threads_at_run_time), so the rows of
            # both thread counts share one compile and each runs with its own thread count.
            net = torch.compile(net, dynamic=False)

        def call():
            with torch.no_grad():
                return net(xt)

        return call, {"precision": "fp32"}
    if runtime in ("ort", "ort-int8"):
        path = model.onnx_path() if runtime == "ort" else model.int8_path("ort")
        session = ort_session(path, threads)
        name = session.get_inputs()[0].name
        return (lambda: session.run(None, {name: x})), {"precision": "int8" if runtime == "ort-int8" else "file"
                                                        if model.file else "fp32"}  # fmt: skip
    import openvino as ov

    core = ov.Core()
    source = model.onnx_path() if runtime == "openvino" else model.int8_path("openvino")
    ov_model = core.read_model(str(source))
    if model.file is None or runtime == "openvino-int8":
        ov_model.reshape([batch, c, model.size, model.size])
    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    compiled = core.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    hint = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)  # e.g. 'bf16', 'f32'
    precision = ("int8 + " if runtime == "openvino-int8" else "") + hint  # OpenVINO picks bf16 itself on AMX CPUs
    return (lambda: request.infer({0: x})), {"precision": precision}


def bench(
    targets: Sequence[str | os.PathLike],
    *,
    runtimes: Sequence[str] = ("torch", "ort", "openvino"),
    batches: Sequence[int] = (1,),
    threads: Sequence[int | None] = (None,),
    size: int | None = None,
    repeats: int = 20,
    min_seconds: float = 0.5,
    max_seconds: float | None = None,
    min_calls: int = 10,
    progress: Callable[[str], None] | None = None,
    keep_going: bool = False,
) -> dict[str, Any]:
    """Benchmark every target x runtime x batch x threads; see the module doc for the columns.

    ``max_seconds`` / ``min_calls``: the per-row cap of :func:`time_calls`. ``keep_going``: a row (or a target)
    that raises is recorded in ``errors`` and the rest runs, instead of raising.
    """
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise InputError(f"unknown runtime(s) {', '.join(unknown)}: choose from {', '.join(RUNTIMES)}")
    say = progress or (lambda _m: None)
    ov_ok, ov_why = openvino_available()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    notes: list[str] = []
    if not ov_ok and any(r.startswith("openvino") for r in runtimes):
        skipped.append(f"openvino rows skipped: {ov_why}")
        say(skipped[-1])
    errors: list[dict[str, Any]] = []
    peak_flops = {t: matmul_flops(t) for t in threads}
    for target in targets:
        with tempfile.TemporaryDirectory(prefix="litezoo-bench-") as tmp:
            try:
                model, flops = _open_target(target, size, Path(tmp))
            except Exception as exc:
                if not keep_going or isinstance(exc, InputError):
                    raise
                errors.append({"target": str(target), "error": _error_line(exc)})
                say(f"{target}: {errors[-1]['error']}")
                continue
            for runtime in runtimes:
                if runtime.startswith("openvino") and not ov_ok:
                    continue
                if model.file is not None and runtime not in FILE_RUNTIMES:
                    skipped.append(f"{model.name}: {runtime} needs a run or a model name (an exported file runs "
                                   f"only on {', '.join(FILE_RUNTIMES)})")  # fmt: skip
                    continue
                for t in threads:
                    for batch in batches:
                        try:
                            rows.append(_measure(model, runtime, batch, t, flops, peak_flops[t], repeats,
                                                 min_seconds, max_seconds, min_calls))  # fmt: skip
                        except Exception as exc:
                            if not keep_going:
                                raise
                            errors.append({"model": model.name, "runtime": runtime, "batch": batch,
                                           "threads": t or "default", "error": _error_line(exc)})  # fmt: skip
                            say(f"{model.name} {runtime} batch {batch} threads {t}: FAILED {errors[-1]['error']}")
                            continue
                        say(_row_line(rows[-1]))
            notes += list(dict.fromkeys(model.notes))
    _add_int8_speedups(rows)
    fastest = {}
    for row in rows:
        key = f"{row['model']} batch {row['batch']}"
        if key not in fastest or row["median_ms"] < fastest[key]["median_ms"]:
            fastest[key] = {"runtime": row["runtime"], "threads": row["threads"], "median_ms": row["median_ms"]}
    protocol = {"warmup_calls": WARMUP_CALLS, "warmup_seconds": WARMUP_SECONDS, "repeats": repeats,
                "min_seconds": min_seconds, "max_seconds": max_seconds, "min_calls": min_calls}  # fmt: skip
    return {"rows": rows, "fastest": fastest, "skipped": skipped, "notes": notes, "errors": errors,
            "timing": protocol,
            "matmul_gflops": {str(t): round(v / 1e9, 1) for t, v in peak_flops.items()},
            "versions": _versions(), "machine": machine_info(), "int8_instructions": int8_instructions()}  # fmt: skip


INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "i8mm")  # CPU features with int8 dot-product instructions


def int8_instructions() -> list[str]:
    """This CPU's int8 dot-product features. Empty (e.g. AVX2-only Zen 3): int8 convolutions run on AVX2's
    multiply-add pairs, which are not much faster than fp32 FMA, so int8 may not beat fp32 here."""
    from litezoo.machine import cpu_flags

    return [f for f in INT8_FLAGS if f in cpu_flags()]


def _add_int8_speedups(rows: list[dict[str, Any]]) -> None:
    """Each int8 row gets ``speedup_vs_fp32``: the same runtime's fp32 row (same model, batch, threads) over it."""
    fp32 = {(r["model"], r["runtime"], r["batch"], r["threads"]): r["median_ms"] for r in rows}
    for r in rows:
        if r["runtime"].endswith("-int8"):
            base = fp32.get((r["model"], r["runtime"][: -len("-int8")], r["batch"], r["threads"]))
            r["speedup_vs_fp32"] = base / r["median_ms"] if base else None


def _open_target(target, size: int | None, workdir: Path) -> tuple[_Model, float | None]:
    from litezoo.analysis.counting import count_macs

    path = Path(target)
    if path.suffix in (".onnx", ".xml") and path.exists():
        from litezoo.runtime import read_metadata

        meta = read_metadata(path) if path.suffix == ".onnx" else None
        if meta is None:
            raise InputError(f"{path}: bench an OpenVINO .xml through its run or model name (no metadata reader)")
        side = int(meta["image_size"])
        if size is not None and size != side:
            raise InputError(f"{path} takes {side} px input; --size {size} does not fit it")
        src = None
        flops = None
        with contextlib.suppress(Exception):  # FLOPs from the registry model of the same name, where known
            from litezoo.registry import create_model

            net = create_model(meta["model_name"], num_classes=len(meta["classes"]))
            flops = 2.0 * count_macs(net, side)
        return _Model(src, path, workdir, side), flops
    src = load_source(target, size=size)
    side = int(src.meta["image_size"])
    return _Model(src, None, workdir, side), 2.0 * count_macs(src.model, side)


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


@contextlib.contextmanager
def _compile_threads_at_run_time() -> Iterator[None]:
    """Inductor's ``cpp.dynamic_threads`` for the torch-compile rows, restored after. By default its C++ kernels
    bake in ``torch.get_num_threads()`` of compile time (``#pragma omp parallel num_threads(N)``), and dynamo's
    cache would hand a later row with another thread count those kernels; with it they use the thread count
    set when they run."""
    import torch._inductor.config as inductor_config

    previous = inductor_config.cpp.dynamic_threads
    inductor_config.cpp.dynamic_threads = True
    try:
        yield
    finally:
        inductor_config.cpp.dynamic_threads = previous


def _measure(model: _Model, runtime: str, batch: int, threads: int | None, flops: float | None,
             peak: float, repeats: int, min_seconds: float, max_seconds: float | None = None,
             min_calls: int = 10) -> dict[str, Any]:  # fmt: skip
    reset = _reset_peak_rss()
    compile_ctx = _compile_threads_at_run_time() if runtime == "torch-compile" else contextlib.nullcontext()
    with torch_threads(threads if runtime.startswith("torch") else None), compile_ctx:
        call, info = _runner(model, runtime, batch, threads)
        t0 = time.perf_counter()
        how: dict[str, Any] = {}
        times = time_calls(call, repeats=repeats, min_seconds=min_seconds, max_seconds=max_seconds,
                           min_calls=min_calls, info=how)  # fmt: skip
        timed_s = time.perf_counter() - t0
    med = float(np.median(times))
    bound_ms = 1e3 * flops * batch / peak if flops else None
    return {
        "model": model.name, "runtime": runtime, "precision": info["precision"], "batch": batch,
        "threads": threads or "default", "median_ms": 1e3 * med,
        "p10_ms": 1e3 * float(np.percentile(times, 10)), "p90_ms": 1e3 * float(np.percentile(times, 90)),
        "images_per_s": batch / med, "calls": len(times),
        "warmup_calls": how["warmup_calls"], "capped": how["capped"],
        "row_seconds": round(timed_s, 2),  # warm-up (compilation included) + timed calls
        "peak_rss_mib": _peak_rss_mib() if reset else None,
        "gflops_per_image": flops / 1e9 if flops else None,
        "fp32_bound_ms": bound_ms, "bound_fraction": (bound_ms / (1e3 * med)) if bound_ms else None,
    }  # fmt: skip


def _row_line(r: dict[str, Any]) -> str:
    return (f"{r['model']} {r['runtime']} ({r['precision']}) batch {r['batch']} threads {r['threads']}: "
            f"{r['median_ms']:.3f} ms [{r['p10_ms']:.3f}-{r['p90_ms']:.3f}]")  # fmt: skip


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__}
    for mod in ("onnxruntime", "openvino", "onnx", "nncf"):
        with contextlib.suppress(ImportError):
            out[mod] = __import__(mod).__version__
    return out


def format_bench(report: dict[str, Any]) -> str:
    from litezoo.tables import format_table

    rows = []
    for r in report["rows"]:
        rows.append({
            "model": r["model"], "runtime": r["runtime"], "precision": r["precision"], "batch": r["batch"],
            "threads": r["threads"], "median ms": f"{r['median_ms']:.3f}",
            "p10-p90 ms": f"{r['p10_ms']:.3f}-{r['p90_ms']:.3f}", "img/s": f"{r['images_per_s']:.0f}",
            "peak MiB": "" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}",
            "fp32 bound ms": "" if r["fp32_bound_ms"] is None else f"{r['fp32_bound_ms']:.3f}",
            "of bound": "" if r["bound_fraction"] is None else f"{100 * r['bound_fraction']:.0f}%",
        })  # fmt: skip
    cols = ["model", "runtime", "precision", "batch", "threads", "median ms", "p10-p90 ms", "img/s", "peak MiB",
            "fp32 bound ms", "of bound"]  # fmt: skip
    lines = [format_table(rows, cols, align_right=set(cols[3:]))]
    gf = ", ".join(f"{v} GFLOP/s at {t} thread(s)" for t, v in report["matmul_gflops"].items())
    lines.append(f"\nfp32 matmul peak measured in this run: {gf}")
    for key, f in report["fastest"].items():
        lines.append(f"fastest for {key}: {f['runtime']} ({f['threads']} threads) {f['median_ms']:.3f} ms")
    for r in report["rows"]:
        if r.get("speedup_vs_fp32"):
            lines.append(f"int8 speed-up {r['model']} {r['runtime']} batch {r['batch']} threads {r['threads']}: "
                         f"{r['speedup_vs_fp32']:.2f}x over its fp32 row")  # fmt: skip
    machine = report.get("machine") or {}
    if machine:
        int8 = report.get("int8_instructions") or []
        lines.append(f"CPU: {machine.get('cpu_model')}, {machine.get('cpus_usable')} usable cores, flags "
                     f"{' '.join(machine.get('cpu_flags') or []) or 'none listed'}; int8 dot-product instructions: "
                     f"{', '.join(int8) if int8 else 'none (int8 may not beat fp32 here)'}")  # fmt: skip
    lines += report["skipped"] + [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)
