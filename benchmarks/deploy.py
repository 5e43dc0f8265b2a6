"""Deployment benchmark -> benchmarks/results/deploy_<tag>.json.

Three parts, each optional:

  latency  batch-1 and batch-32 latency at 224 px of every family's 1.0x model on every runtime
           (torch, torch-cl, torch-compile, ort, ort-int8, openvino, openvino-int8) at 1 and 2 threads
  int8     for CIFAR-10 runs trained by litezoo: test top-1 fp32 vs int8 for each method / variant, and the
           speed of the int8 file against fp32 ONNX Runtime (batch 1 and 32, same threads)
  predict  `litezoo predict` end to end (decode included) on a folder of photos with ShuffleNetV2 1.0x

Full run on an idle machine (see docs/deploy.md for the training commands of the CIFAR-10 runs):

    python benchmarks/deploy.py --runs runs/deploy/* --photos ../shared/data/dogs-vs-cats/valid --tag full

Smoke run while the CPU is shared: --quick (fewer models/runtimes, short timings) and --cpu-shared.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# one 1.0x (or reference) model per family, ImageNet form, 224 px
FAMILY_MODELS = ["shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0", "mobilenet_v1_x1_0", "squeezenet1_1",
                 "efficientnet_b0", "vgg_fast", "vit_tiny"]  # fmt: skip
ALL_RUNTIMES = ["torch", "torch-cl", "torch-compile", "ort", "ort-int8", "openvino", "openvino-int8"]
# int8 variants measured per CIFAR run: (label, method, per_channel, exclude)
INT8_VARIANTS = [
    ("ort-qdq", "ort-qdq", False, []),
    ("ort-qdq per-channel", "ort-qdq", True, []),
    ("ort-qop", "ort-qop", False, []),
    ("ort-qdq depthwise fp32", "ort-qdq", True, ["depthwise"]),
    ("openvino (nncf)", "openvino", False, []),
]


def latency_part(models, runtimes, threads, batches, repeats, min_seconds, log):
    from litezoo.deploy.bench import bench

    out = []
    for name in models:
        t0 = time.perf_counter()
        report = bench([name], runtimes=runtimes, batches=batches, threads=threads, size=224, repeats=repeats,
                       min_seconds=min_seconds, progress=log)  # fmt: skip
        report["seconds"] = round(time.perf_counter() - t0, 1)
        out.append(report)
    return out


def int8_part(runs, threads, batches, calib, repeats, min_seconds, log):
    from litezoo.deploy.bench import bench
    from litezoo.deploy.quantize import quantize_run

    out = []
    for run in runs:
        log(f"== int8: {run}")
        with tempfile.TemporaryDirectory(prefix="deploy-bench-") as tmp:
            fp32 = bench([run], runtimes=["ort"], batches=batches, threads=threads, repeats=repeats,
                         min_seconds=min_seconds)["rows"]  # fmt: skip
            fp32_ms = {(r["batch"], r["threads"]): r["median_ms"] for r in fp32}
            rows = []
            for label, method, per_channel, exclude in INT8_VARIANTS:
                target = Path(tmp) / (label.replace(" ", "_").replace("(", "").replace(")", "")
                                      + (".xml" if method == "openvino" else ".onnx"))  # fmt: skip
                try:
                    q = quantize_run(run, target, calib=calib, method=method, per_channel=per_channel,
                                     exclude=exclude)  # fmt: skip
                except Exception as exc:  # noqa: BLE001 — one variant failing is a result, not the end
                    rows.append({"variant": label, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                speed = _speed_of(target, method, batches, threads, repeats, min_seconds)
                for s in speed:
                    s["speedup_vs_ort_fp32"] = fp32_ms[(s["batch"], s["threads"])] / s["median_ms"]
                rows.append({"variant": label, "top1_fp32": q["top1_fp32"], "top1_int8": q["top1_int8"],
                             "top1_change": q["top1_change"], "kept_fp32": q["excluded"] + q["kept_fp32"],
                             "test_images": q["test_images"], "calibration_images": q["calibration_images"],
                             "speed": speed})  # fmt: skip
                log(f"{label}: top-1 {q['top1_fp32']:.2f} -> {q['top1_int8']:.2f}; "
                    + ", ".join(f"b{s['batch']}/t{s['threads']} {s['speedup_vs_ort_fp32']:.2f}x" for s in speed))
            out.append({"run": str(run), "model_name": q["model_name"] if rows else None, "ort_fp32": fp32,
                        "variants": rows, "summary": int8_summary(rows)})  # fmt: skip
            log(f"{run}: " + "; ".join(f"{k}: {v}" for k, v in out[-1]["summary"].items()))
    return out


def int8_summary(variants, max_loss: float = 1.0):
    """Per (batch, threads): the fastest int8 variant over ORT fp32, and the fastest losing <= max_loss pt top-1."""
    out = {}
    for v in variants:
        for s in v.get("speed", []):
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


def _speed_of(path: Path, method: str, batches, threads, repeats, min_seconds):
    """Median latency of an int8 file: ONNX Runtime for .onnx, OpenVINO for IR (same timing loop as bench)."""
    import numpy as np

    from litezoo.deploy.bench import time_calls
    from litezoo.deploy.export import ort_session

    rows = []
    for t in threads:
        for b in batches:
            if method == "openvino":
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
            times = time_calls(call, repeats=repeats, min_seconds=min_seconds)
            rows.append({"batch": b, "threads": t, "median_ms": 1e3 * float(np.median(times))})
    return rows


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
        runs = []
        for batch in (32, 64):
            proc = subprocess.run([sys.executable, "-m", "litezoo", "predict", model, str(folder), "--json",
                                   "--batch-size", str(batch)], capture_output=True, text=True,
                                  cwd=REPO)  # fmt: skip
            if proc.returncode != 0:
                runs.append({"batch": batch, "error": proc.stderr.strip()})
                continue
            r = json.loads(proc.stdout)
            runs.append({"batch": batch, "images": r["num_images"], "seconds": r["seconds"],
                         "images_per_second": r["images_per_second"], "runtime": r["runtime"]})  # fmt: skip
            log(f"predict batch {batch}: {r['num_images']} images, {r['images_per_second']} images/s")
        return {"photos": str(photos), "limit": limit, "model": "shufflenet_v2_x1_0 (224 px, random weights)",
                "runs": runs}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=FAMILY_MODELS)
    p.add_argument("--runtimes", default=",".join(ALL_RUNTIMES))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--runs", nargs="*", default=[], help="CIFAR-10 run folders for the int8 part")
    p.add_argument("--calib", type=int, default=512)
    p.add_argument("--photos", help="a folder of photos for the predict part")
    p.add_argument("--photo-limit", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--quick", action="store_true", help="smoke run: short timings")
    p.add_argument("--cpu-shared", action="store_true", help="record that other jobs shared the CPU")
    p.add_argument("--tag", default="smoke")
    p.add_argument("--train-note", default="", help="how the --runs were trained (recorded in the JSON)")
    args = p.parse_args(argv)

    from litezoo.fsutil import atomic_write_bytes
    from litezoo.machine import machine_info
    from litezoo.deploy.bench import int8_instructions

    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    runtimes = args.runtimes.split(",")
    repeats, min_seconds = (5, 0.2) if args.quick else (args.repeats, args.min_seconds)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    result = {
        "benchmark": "deploy", "tag": args.tag, "cpu_shared": args.cpu_shared, "quick": args.quick,
        "command": " ".join(["python", "benchmarks/deploy.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(), "train_note": args.train_note,
        "int8_instructions": int8_instructions(),
    }  # fmt: skip
    if args.models:
        result["latency"] = latency_part(args.models, runtimes, threads, batches, repeats, min_seconds, log)
    if args.runs:
        result["int8"] = int8_part(args.runs, threads, batches, args.calib, repeats, min_seconds, log)
    if args.photos:
        result["predict"] = predict_part(args.photos, args.photo_limit, log)
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = REPO / "benchmarks" / "results" / f"deploy_{args.tag}.json"
    atomic_write_bytes(json.dumps(result, indent=1, default=str).encode(), out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
