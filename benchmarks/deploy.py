"""Deployment benchmark -> benchmarks/results/deploy_<tag>.json.

Three parts, each optional:

  latency  batch-1 and batch-32 latency at 224 px of every family's 1.0x model (FAMILY_MODELS: one per
           registered family, both MobileNet V3 sizes) on every runtime (torch, torch-cl, torch-compile, ort,
           ort-int8, openvino, openvino-int8) at 1 and 2 threads; torch-compile at --compile-batches (default 1)
  int8     for CIFAR-10 runs trained by litezoo: test top-1 fp32 vs int8 for each method / variant, and the
           speed of the int8 model against fp32 ONNX Runtime (batch 1 and 32, same threads)
  predict  `litezoo predict` end to end (decode included) on a folder of photos with ShuffleNetV2 1.0x, from its
           fp32 file and from an int8 one (ORT QDQ, per-channel; random weights: speed only)

Timing (the same for every runtime, recorded in the JSON): warm-up excluded (3 calls, or 2 once they took
over 2 s); then >= 30 calls and >= 1 s, but a row stops after 3 s once 10 calls are timed (``capped``).
A row, variant, model or run that fails is recorded with its error and the rest runs; the JSON is rewritten
after each model and run ("complete": false until the end).

Full run on an idle machine, from the repository root (run folders name their data relative to it):

    python benchmarks/deploy.py --runs runs/zoo_short/* --photos ../shared/data/dogs-vs-cats/valid \
        --train-note "..." --tag full

Estimated duration on the idle 2-core Zen 3 (AVX2): ~50 min, likely range 42-60 (not measured end to end: the
CPU was shared while this was written). Parts, idle-machine estimates:
  latency  ~28-35 min: batch-32 rows 11-16 min (per-call time at 1 thread ~ 32 x 1.6 x the idle batch-1
           2-thread ORT latency of which_net.json, x the runtime's ratio to ORT in the smoke run: eager torch
           ~2.1, torch-cl ~1.7, OpenVINO ~1.1, int8 0.7-1.2; half that at 2 threads; a row costs its warm-up +
           max(1 s, min(30 calls, max(3 s, 10 calls)))); batch-1 rows ~3 min (154 rows of ~1.2 s);
           torch-compile ~8-12 min (11 compiles: 89-145 s each in smoke runs beside three 1-thread trainings,
           ~75 s of CPU; the 2-thread row re-traces and hits inductor's cache); exports, int8 calibration at
           224 px and sessions ~4 min (~20 s per model: 88 s in a smoke run whose matmul rate was 4.4x below idle)
  int8     ~14-19 min: 9 runs x 5 variants, each a quantize_run (~12-15 s idle: smoke runs took 68-142 s at a
           5-7x slowdown on 500 test images) and 4 speed rows (~1.2 s each), plus ORT fp32 rows
  predict  ~2 min per precision (benchmarks/results/deploy_predict_idle.json)
Shorter: --compile-batches '' (no torch-compile rows, -8 to -12 min), --eval-limit 1000 (-1 min), no --photos
(-2 min).

Smoke run while the CPU is shared: --quick (5 calls, 0.2 s, cap 0.5 s) and --cpu-shared, --out /tmp/x.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# one 1.0x (or reference) model per family, ImageNet form, 224 px
FAMILY_MODELS = ["shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0", "mobilenet_v1_x1_0", "mobilenet_v2_x1_0",
                 "mobilenet_v3_large_x1_0", "mobilenet_v3_small_x1_0", "ghostnet_x1_0", "squeezenet1_1",
                 "efficientnet_b0", "vgg_fast", "vit_tiny"]  # fmt: skip
ALL_RUNTIMES = ["torch", "torch-cl", "torch-compile", "ort", "ort-int8", "openvino", "openvino-int8"]
# int8 variants measured per CIFAR run: (label, method, per_channel, exclude)
INT8_VARIANTS = [
    ("ort-qdq", "ort-qdq", False, []),
    ("ort-qdq per-channel", "ort-qdq", True, []),
    ("ort-qop", "ort-qop", False, []),
    ("ort-qdq depthwise fp32", "ort-qdq", True, ["depthwise"]),
    ("openvino (nncf)", "openvino", False, []),
    ("pt2e (torch inductor)", "pt2e", True, []),
]
# pt2e costs three inductor compiles per run (the accuracy model, then batch 1 and 32; ~1 min each on a 2-core
# Zen 3): not in the default set, ask for it with --variants
DEFAULT_VARIANTS = [v[0] for v in INT8_VARIANTS if v[1] != "pt2e"]
# Timing protocol (bench.time_calls): warm-up excluded; at least REPEATS calls and MIN_SECONDS, but a row stops
# after MAX_SECONDS once MIN_CALLS calls are timed (slow batch-32 rows: p10/p90 from >= 10 samples, not 30).
REPEATS, MIN_SECONDS, MAX_SECONDS, MIN_CALLS = 30, 1.0, 3.0, 10
EVAL_LIMIT = 2000  # int8 part: test images per accuracy figure (the full 10,000 cost ~5x the time of the part)


def latency_part(models, runtimes, threads, batches, timing, log, save=None, out=None, compile_batches=None):
    """One bench report per model; a row that fails is recorded in the report's ``errors`` and the rest runs.
    torch-compile rows only at ``compile_batches`` (each batch size is one inductor compile, ~1 min here)."""
    from litezoo.deploy.bench import bench

    out = [] if out is None else out  # filled as it goes, so ``save`` writes the rows so far
    compile_batches = [b for b in (batches if compile_batches is None else compile_batches)]
    plain = [r for r in runtimes if r != "torch-compile"]
    for name in models:
        t0 = time.perf_counter()
        try:
            report = bench([name], runtimes=plain, batches=batches, threads=threads, size=224, progress=log,
                           keep_going=True, **timing)  # fmt: skip
            if "torch-compile" in runtimes and compile_batches:
                try:
                    extra = bench([name], runtimes=["torch-compile"], batches=compile_batches, threads=threads,
                                  size=224, progress=log, keep_going=True, **timing)  # fmt: skip
                    report = _merged(report, extra)
                except Exception as exc:  # noqa: BLE001 — keep the rows of the other runtimes
                    report["errors"].append({"model": name, "runtime": "torch-compile", "error": _error_line(exc)})
            skipped = [b for b in batches if b not in compile_batches]
            if "torch-compile" in runtimes and skipped:
                report["skipped"].append(f"torch-compile rows at batch {', '.join(map(str, skipped))} not run "
                                         f"(--compile-batches {','.join(map(str, compile_batches)) or 'none'})")
        except Exception as exc:  # noqa: BLE001 — e.g. an unknown model name: recorded, the others still run
            report = {"model": name, "error": _error_line(exc)}
            log(f"{name}: FAILED {report['error']}")
        report["seconds"] = round(time.perf_counter() - t0, 1)
        out.append(report)
        if save:
            save()
    return out


def _merged(report, extra):
    """``extra``'s rows, errors and notes added to ``report``; the fastest runtime per batch over both."""
    report["rows"] += extra["rows"]
    report["errors"] += extra["errors"]
    report["skipped"] += extra["skipped"]
    report["notes"] += extra["notes"]
    for key, best in extra["fastest"].items():
        if key not in report["fastest"] or best["median_ms"] < report["fastest"][key]["median_ms"]:
            report["fastest"][key] = best
    return report


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def int8_part(runs, threads, batches, calib, timing, log, eval_limit=None, variants=None, save=None, out=None):
    """Per CIFAR run: ORT fp32 speed, then each int8 variant's test top-1 and speed. A run or a variant that
    fails is recorded (``error``) and the rest runs."""
    out = [] if out is None else out
    for run in runs:
        log(f"== int8: {run}")
        t0 = time.perf_counter()
        try:
            entry = _int8_run(run, threads, batches, calib, timing, log, eval_limit, variants or INT8_VARIANTS)
        except Exception as exc:  # noqa: BLE001 — e.g. a run still training (no weights yet)
            entry = {"run": str(run), "error": _error_line(exc)}
            log(f"{run}: FAILED {entry['error']}")
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        out.append(entry)
        if save:
            save()
    return out


def _int8_run(run, threads, batches, calib, timing, log, eval_limit, variants):
    from litezoo.deploy.bench import bench
    from litezoo.deploy.quantize import quantize_run

    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as tmp:
        fp32 = bench([run], runtimes=["ort"], batches=batches, threads=threads, **timing)["rows"]
        fp32_ms = {(r["batch"], r["threads"]): r["median_ms"] for r in fp32}
        rows = []
        model_name = None
        for label, method, per_channel, exclude in variants:
            suffix = {"openvino": ".xml", "pt2e": ".pt2"}.get(method, ".onnx")
            target = Path(tmp) / (label.replace(" ", "_").replace("(", "").replace(")", "") + suffix)
            t0 = time.perf_counter()
            try:
                q = quantize_run(run, target, calib=calib, method=method, per_channel=per_channel,
                                 exclude=exclude, eval_limit=eval_limit)  # fmt: skip
                model_name = q["model_name"]
                speed = _speed_of(target, method, batches, threads, timing, run=run, calib=calib)
            except Exception as exc:  # noqa: BLE001 — one variant failing is a result, not the end
                rows.append({"variant": label, "error": _error_line(exc)})
                log(f"{label}: FAILED {rows[-1]['error']}")
                continue
            for s in speed:
                base = fp32_ms.get((s["batch"], s["threads"]))
                s["speedup_vs_ort_fp32"] = base / s["median_ms"] if base else None
            rows.append({"variant": label, "method": method, "top1_fp32": q["top1_fp32"], "top1_int8": q["top1_int8"],
                         "top1_change": q["top1_change"], "kept_fp32": q["excluded"] + q["kept_fp32"],
                         "test_images": q["test_images"], "calibration_images": q["calibration_images"],
                         "speed": speed, "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
            log(f"{label}: top-1 {q['top1_fp32']:.2f} -> {q['top1_int8']:.2f}; "
                + ", ".join(f"b{s['batch']}/t{s['threads']} {s['median_ms']:.3f} ms "
                            f"({s['speedup_vs_ort_fp32'] or 0:.2f}x)" for s in speed))
        # a run folder still training has no model.safetensors yet: its weights are checkpoints/last.pt's
        finished = not Path(run).is_dir() or (Path(run) / "model.safetensors").is_file()
        entry = {"run": str(run), "model_name": model_name, "finished_run": finished, "ort_fp32": fp32,
                 "variants": rows, "summary": int8_summary(rows)}  # fmt: skip
        if not finished:
            log(f"{run}: NOTE unfinished run (no model.safetensors): measured with checkpoints/last.pt")
        log(f"{run}: " + "; ".join(f"{k}: {v}" for k, v in entry["summary"].items()))
        return entry


def int8_summary(variants, max_loss: float = 1.0):
    """Per (batch, threads): the fastest int8 variant over ORT fp32, and the fastest losing <= max_loss pt top-1."""
    out = {}
    for v in variants:
        for s in v.get("speed", []):
            if s.get("speedup_vs_ort_fp32") is None:
                continue
            key = f"batch {s['batch']} threads {s['threads']}"
            entry = out.setdefault(key, {"best": None, "best_within_1pt": None})
            pick = {"variant": v["variant"], "speedup": round(s["speedup_vs_ort_fp32"], 3),
                    "top1_change": round(v["top1_change"], 2)}  # fmt: skip
            if entry["best"] is None or pick["speedup"] > entry["best"]["speedup"]:
                entry["best"] = pick
            if v["top1_change"] >= -max_loss and (entry["best_within_1pt"] is None
                                                  or pick["speedup"] > entry["best_within_1pt"]["speedup"]):
                entry["best_within_1pt"] = pick
    return out


def _speed_of(path: Path, method: str, batches, threads, timing, *, run=None, calib=64):
    """Median latency of an int8 variant with the runtime that runs it, same timing loop as bench:
    ONNX Runtime for .onnx, OpenVINO for IR, torch (inductor-compiled graph) for pt2e."""
    import numpy as np

    from litezoo.deploy.bench import time_calls
    from litezoo.deploy.export import ort_session

    rows = []
    for t in threads:
        for b in batches:
            with contextlib.ExitStack() as stack:
                if method == "pt2e":
                    call, x = _pt2e_call(run, b, t, calib, stack)
                elif method == "openvino":
                    import openvino as ov

                    core = ov.Core()
                    model = core.read_model(str(path))
                    shape = [d.get_length() if d.is_static else b for d in model.inputs[0].get_partial_shape()]
                    shape[0] = b
                    model.reshape(shape)
                    request = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": t}).create_infer_request()
                    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
                    call = lambda: request.infer({0: x})  # noqa: E731
                else:
                    session = ort_session(path, t)
                    inp = session.get_inputs()[0]
                    shape = [b] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
                    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
                    call = lambda: session.run(None, {inp.name: x})  # noqa: E731
                how = {}
                times = time_calls(call, info=how, **timing)
            rows.append({"batch": b, "threads": t, "median_ms": 1e3 * float(np.median(times)),
                         "p10_ms": 1e3 * float(np.percentile(times, 10)),
                         "p90_ms": 1e3 * float(np.percentile(times, 90)), "calls": len(times),
                         "capped": how.get("capped")})  # fmt: skip
    return rows


def _pt2e_call(run, batch, threads, calib, stack):
    """pt2e's int8 graph compiled for one batch size at ``threads`` (inductor bakes both in), calibrated as the
    accuracy figure's model was (same training images, same quantiser config), and an input for it."""
    import numpy as np
    import torch

    from litezoo.deploy.bench import _compile_threads_at_run_time, torch_threads
    from litezoo.deploy.quantize import Pt2eModel
    from litezoo.deploy.source import dataset_arrays, load_source

    src = load_source(run)
    x_train, _ = dataset_arrays(src, "train", calib)
    x_calib = x_train[np.random.default_rng(0).permutation(len(x_train))]
    stack.enter_context(torch_threads(threads))
    # inductor's kernels read the thread count when they run (as bench's torch-compile rows): both thread counts
    # share one compile per batch size (inductor's cache), each row runs with its own
    stack.enter_context(_compile_threads_at_run_time())
    q = Pt2eModel(src.model, x_calib, batch=batch)
    x = torch.from_numpy(np.ascontiguousarray(x_calib[np.arange(batch) % len(x_calib)]))

    def call():
        with torch.no_grad():
            return q.module(x)

    return call, x


def predict_part(photos, limit, log):
    """`litezoo predict` on `limit` photos with an exported ShuffleNetV2 1.0x (random weights: speed only)."""
    import subprocess

    from litezoo.deploy.export import export_onnx

    with tempfile.TemporaryDirectory(prefix="deploy-predict-") as tmp:
        folder = Path(tmp) / "photos"
        files = sorted(p for p in Path(photos).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        step = max(1, len(files) // limit)
        for f in files[::step][:limit]:
            dst = folder / f.parent.name / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(f.resolve())
        model = export_onnx("shufflenet_v2_x1_0", Path(tmp) / "sn2.onnx", dynamic_batch=True, check_images=2)["path"]
        files = {"fp32": model, "int8": _int8_file(Path(model), Path(tmp))}
        runs = []
        for precision, path in files.items():
            for batch in (32, 64):
                proc = subprocess.run([sys.executable, "-m", "litezoo", "predict", str(path), str(folder), "--json",
                                       "--batch-size", str(batch)], capture_output=True, text=True,
                                      cwd=REPO)  # fmt: skip
                if proc.returncode != 0:
                    runs.append({"precision": precision, "batch": batch, "error": proc.stderr.strip()})
                    continue
                r = json.loads(proc.stdout)
                runs.append({"precision": precision, "batch": batch, "images": r["num_images"], "seconds": r["seconds"],
                             "images_per_second": r["images_per_second"], "runtime": r["runtime"]})  # fmt: skip
                log(f"predict {precision} batch {batch}: {r['num_images']} images, {r['images_per_second']} images/s")
        return {"photos": str(photos), "limit": limit, "model": "shufflenet_v2_x1_0 (224 px, random weights)",
                "int8": "ORT QDQ, per-channel weights, calibrated on 64 random inputs (speed only)", "runs": runs}


def _int8_file(fp32: Path, work: Path) -> Path:
    """The fp32 file quantised by `litezoo quantize`'s ONNX Runtime quantiser (QDQ, per-channel int8 weights), its
    preprocessing record kept, so `predict` reads it like any exported file. `quantize_run` itself needs a trained
    run to calibrate on; this file has random weights and random calibration inputs: for speed, not accuracy."""
    import numpy as np

    from litezoo.deploy.export import with_metadata
    from litezoo.deploy.quantize import OrtQuantizer
    from litezoo.runtime import read_metadata

    record = read_metadata(fp32)
    shape = (64, int(record["in_chans"]), int(record["image_size"]), int(record["image_size"]))
    calib = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    q = OrtQuantizer(fp32, calib, work, qop=False, per_channel=True).quantize(work / "int8.raw.onnx")
    out = work / "sn2.int8.onnx"
    out.write_bytes(with_metadata(q.read_bytes(), record | {"precision": "int8"}))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=FAMILY_MODELS)
    p.add_argument("--runtimes", default=",".join(ALL_RUNTIMES))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--runs", nargs="*", default=[], help="CIFAR-10 run folders for the int8 part")
    p.add_argument("--calib", type=int, default=512)
    p.add_argument("--eval-limit", type=int, default=EVAL_LIMIT,
                   help="int8 part: test images per accuracy figure, a class-balanced subset (0: the whole test "
                        "split; each variant evaluates fp32 and int8 on them)")  # fmt: skip
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="int8 part: comma-separated labels of INT8_VARIANTS (default: all but pt2e; 'all')")
    p.add_argument("--compile-batches", default="1",
                   help="batches of the torch-compile rows ('' for none; default 1: one compile per model)")
    p.add_argument("--photos", help="a folder of photos for the predict part")
    p.add_argument("--photo-limit", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--min-seconds", type=float, default=MIN_SECONDS)
    p.add_argument("--max-seconds", type=float, default=MAX_SECONDS,
                   help="cap per row once --min-calls calls are timed (0: no cap)")
    p.add_argument("--min-calls", type=int, default=MIN_CALLS)
    p.add_argument("--quick", action="store_true", help="smoke run: short timings (5 calls, 0.2 s, cap 0.5 s)")
    p.add_argument("--cpu-shared", action="store_true", help="record that other jobs shared the CPU")
    p.add_argument("--tag", default="smoke")
    p.add_argument("--out", help="JSON path (default benchmarks/results/deploy_<tag>.json)")
    p.add_argument("--train-note", default="", help="how the --runs were trained (recorded in the JSON)")
    args = p.parse_args(argv)

    from litezoo.deploy.bench import int8_instructions
    from litezoo.fsutil import atomic_write_bytes
    from litezoo.machine import machine_info

    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    runtimes = args.runtimes.split(",")
    if args.quick:
        timing = {"repeats": 5, "min_seconds": 0.2, "max_seconds": 0.5, "min_calls": 3}
    else:
        timing = {"repeats": args.repeats, "min_seconds": args.min_seconds,
                  "max_seconds": args.max_seconds or None, "min_calls": args.min_calls}  # fmt: skip
    compile_batches = [int(b) for b in args.compile_batches.split(",") if b.strip()]
    variants = INT8_VARIANTS
    if args.variants != "all":
        wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [w for w in wanted if w not in [v[0] for v in INT8_VARIANTS]]
        if unknown:
            p.error(f"unknown --variants {unknown}: choose from {[v[0] for v in INT8_VARIANTS]}")
        variants = [v for v in INT8_VARIANTS if v[0] in wanted]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"deploy_{args.tag}.json"
    result = {
        "benchmark": "deploy", "tag": args.tag, "cpu_shared": args.cpu_shared, "quick": args.quick,
        "command": " ".join(["python", "benchmarks/deploy.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(), "train_note": args.train_note, "timing": timing,
        "int8_instructions": int8_instructions(), "complete": False,
    }  # fmt: skip

    def save() -> None:  # after every model / run: a crash or a kill keeps what was measured
        result["seconds"] = round(time.perf_counter() - start, 1)
        atomic_write_bytes(json.dumps(result, indent=1, default=str).encode(), out)

    if args.models:
        result["latency"] = []
        latency_part(args.models, runtimes, threads, batches, timing, log, save=save, out=result["latency"],
                     compile_batches=compile_batches)  # fmt: skip
    if args.runs:
        result["int8"] = []
        int8_part(args.runs, threads, batches, args.calib, timing, log, args.eval_limit or None, variants,
                  save=save, out=result["int8"])  # fmt: skip
    if args.photos:
        try:
            result["predict"] = predict_part(args.photos, args.photo_limit, log)
        except Exception as exc:  # noqa: BLE001 — keep the latency and int8 parts
            result["predict"] = {"error": _error_line(exc)}
            log(f"predict: FAILED {result['predict']['error']}")
    result["complete"] = True
    save()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
