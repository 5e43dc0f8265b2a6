"""Time-to-accuracy on CIFAR-10 (the shared JPEG copy), measured with litezoo's own trainer.

Runs (each one a `litezoo.train.fit` call; JSON rewritten after every epoch, so a stopped session keeps what it
measured):
  fast      configs/fast_cifar10.yaml (vgg_fast_cifar, 16 epochs: the 90%-in-15-minutes recipe), for each --seeds
  long      configs/fast_cifar10_long.yaml (vgg_fast_wide_cifar: the 93%-in-45-minutes recipe), for each --seeds
  baseline  configs/mobilenet_v1_cifar10.yaml: the MobileNet V1 tutorial recipe (fp32, batch 128, one-cycle over
            150 epochs), stopped once it reaches --baseline-stop (80%) or --max-minutes of training
  light     a lightweight family with a shortened fast recipe (mobilenet_v1_x0_5_cifar by default)
  throughput  training images/s of one model per family at 32 px, fp32 vs bf16 (where native), same process;
            --compile adds torch.compile'd copies (give --warmup 3 or more: compiling happens in the warm-up steps)
  summary   reads the JSONs above: time-to-threshold table, the fast/baseline ratio, the spread over seeds

Training time excludes evaluation (the trainer's `train_time_s`). Thresholds: 80, 85, 90, 93 % test top-1.

    python benchmarks/time_to_accuracy.py fast --seeds 0 1 2
    python benchmarks/time_to_accuracy.py baseline --max-minutes 60
    python benchmarks/time_to_accuracy.py throughput
    python benchmarks/time_to_accuracy.py throughput --compile --models vgg_fast_cifar mobilenet_v1_x0_5_cifar \
        --batch 512 --warmup 3 --out benchmarks/results/train_throughput_32px_compile.json
    python benchmarks/time_to_accuracy.py summary
    python benchmarks/time_to_accuracy.py long --set data.cutout=8 data.crop_padding=4 --suffix _cutout8_pad4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
THRESHOLDS = (80.0, 85.0, 90.0, 93.0)


def machine() -> dict:
    from litezoo.precision import cpu_info

    info = cpu_info()
    info["python"] = platform.python_version()
    info["load_average"] = list(os.getloadavg())
    return info


def isa_env() -> dict:
    """The variables that make torch/oneDNN use an older instruction set (how an AVX2-only CPU is emulated)."""
    names = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
    return {k: os.environ[k] for k in names if k in os.environ}


def write_json(path: Path, obj: dict) -> None:
    from litezoo.fsutil import atomic_write_bytes

    atomic_write_bytes(json.dumps(obj, indent=1).encode(), path)


def time_to(curve: list[dict]) -> dict:
    """First epoch at or above each threshold, with the training time (evaluation excluded) at that point."""
    out = {}
    for t in THRESHOLDS:
        hit = next((r for r in curve if r["test_top1"] is not None and r["test_top1"] >= t), None)
        out[f"{t:g}"] = None if hit is None else {"epoch": hit["epoch"], "train_time_s": hit["train_time_s"]}
    return out


def run_recipe(tag: str, recipe: str, overrides: dict, data: str, *, stop_at: float | None, max_minutes: float | None) -> dict:
    from litezoo.config import resolve, to_dict
    from litezoo.precision import choose_precision, resolve_device
    from litezoo.train import fit

    cfg = resolve(REPO / "configs" / recipe, {"data.path": data, **overrides})
    run_dir = REPO / ".cache" / "bench_runs" / f"{tag}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = RESULTS / f"time_to_accuracy_{tag}.json"
    prec = choose_precision(cfg.train.amp, resolve_device(cfg.train.device))
    result = {
        "benchmark": "time_to_accuracy",
        "run": tag,
        "dataset": "CIFAR-10 (JPEG copy), " + data,
        "recipe": recipe,
        "overrides": overrides,
        "config": to_dict(cfg),
        "precision": {"mode": prec.mode, "reason": prec.reason},
        "machine": machine(),
        "env": isa_env(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "status": "running",
        "stop_rule": {"stop_at_top1": stop_at, "max_train_minutes": max_minutes},
        "curve": [],
    }
    write_json(out, result)

    def on_epoch(row: dict) -> bool:
        keep = ("epoch", "step", "lr", "train_loss", "train_top1", "test_top1", "test_top5", "images_per_s",
                "epoch_time_s", "eval_time_s", "train_time_s", "time_s")  # fmt: skip
        result["curve"].append({k: row.get(k) for k in keep} | {"load_average": list(os.getloadavg())})
        result["time_to"] = time_to(result["curve"])
        write_json(out, result)
        if stop_at is not None and row["test_top1"] is not None and row["test_top1"] >= stop_at:
            result["status"] = f"stopped: reached {stop_at}%"
            return True
        if max_minutes is not None and row["train_time_s"] >= 60 * max_minutes:
            result["status"] = f"stopped: {max_minutes} min of training reached before {stop_at}%"
            return True
        return False

    final = fit(cfg, run_dir, callbacks=[on_epoch])
    if result["status"] == "running":
        result["status"] = "finished"
    result["final_test_top1"] = final.get("test_top1")
    result["best_test_top1"] = final.get("best_top1")
    result["machine_end"] = {"load_average": list(os.getloadavg())}
    write_json(out, result)
    print(f"{tag}: {result['status']}; time_to {result['time_to']}", file=sys.stderr)
    return result


def throughput(args) -> None:
    """Training images/s at 32 px, one model per family, fp32 and bf16, interleaved step by step."""
    import litezoo
    from litezoo.heap import heap_kept
    from litezoo.precision import cpu_native_bf16

    models = args.models or [
        "vgg_fast_cifar", "vgg_fast_wide_cifar", "mobilenet_v1_x1_0_cifar", "shufflenet_v2_x1_0_cifar", "shufflenet_v1_g3_x1_0_cifar",
        "squeezenet1_1_cifar", "efficientnet_b0_cifar", "vgg11_bn_cifar", "vit_tiny_cifar",
    ]  # fmt: skip
    native, _ = cpu_native_bf16()
    modes = ["fp32", "bf16"] if native else ["fp32"]
    setups = []
    for name in models:
        for mode in modes:
            torch.manual_seed(0)
            for compiled in (False, True) if args.compile else (False,):
                model = litezoo.create_model(name, num_classes=10).to(memory_format=torch.channels_last).train()
                opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                net = torch.compile(model) if compiled else model  # compiles on its first (warm-up) steps
                setups.append({"model": name, "mode": mode, "compiled": compiled, "net": net, "opt": opt, "times": []})
    x = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    with heap_kept():  # as the trainer does on a CPU
        for rnd in range(args.warmup + args.rounds):
            for s in setups:  # interleaved: a burst of other work slows every setup alike
                t0 = time.perf_counter()
                with torch.autocast("cpu", torch.bfloat16, enabled=s["mode"] == "bf16"):
                    loss = torch.nn.functional.cross_entropy(s["net"](x), y)
                s["opt"].zero_grad(set_to_none=True)
                loss.backward()
                s["opt"].step()
                if rnd >= args.warmup:
                    s["times"].append(time.perf_counter() - t0)
    rows = []
    for s in setups:
        times = sorted(s["times"])
        rows.append({"model": s["model"], "precision": s["mode"], "compiled": s["compiled"], "channels_last": True,
                     "batch": args.batch,
                     "median_step_s": times[len(times) // 2],
                     "images_per_s": round(args.batch / times[len(times) // 2], 1)})  # fmt: skip
    out = {"benchmark": "train_throughput_32px", "machine": machine(), "env": isa_env(), "threads": torch.get_num_threads(),
           "rounds": args.rounds, "rows": rows}  # fmt: skip
    write_json(Path(args.out) if args.out else RESULTS / "train_throughput_32px.json", out)
    for r in rows:
        compiled = "torch.compile" if r["compiled"] else "eager"
        print(f"{r['model']:32s} {r['precision']:5s} {compiled:13s} {r['images_per_s']:8.1f} img/s")


def summary() -> dict:
    """One table from the per-run JSONs: time to each threshold, the fast/baseline ratio at 80%, seed spread."""
    runs = {}
    for f in sorted(RESULTS.glob("time_to_accuracy_*.json")):
        d = json.loads(f.read_text())
        if d.get("benchmark") == "time_to_accuracy" and d.get("curve"):
            runs[d["run"]] = d
    rows = []
    for tag, d in runs.items():
        last = d["curve"][-1]
        rows.append({
            "run": tag, "model": d["config"]["model"]["name"], "precision": d["precision"]["mode"],
            "epochs_run": last["epoch"], "epochs_planned": d["config"]["train"]["epochs"], "status": d["status"],
            "train_time_s": round(last["train_time_s"], 1), "final_test_top1": last["test_top1"],
            "time_to_s": {k: (None if v is None else round(v["train_time_s"], 1)) for k, v in d["time_to"].items()},
            "cpu": d["machine"].get("model_name"), "flags": d["machine"].get("flags"), "started": d["started"],
        })  # fmt: skip
    out: dict = {"benchmark": "time_to_accuracy_summary", "machine": machine(), "rows": rows}
    # Seeds of one recipe: "fast_seed0", "fast_seed1", ... (runs with an epochs override or --set carry another
    # suffix). "_before_keep_heap": the same recipe measured before train.keep_heap, which changes speed only.
    def is_seed_run(tag: str, prefix: str) -> bool:
        rest = tag.removeprefix(f"{prefix}_seed").removesuffix("_before_keep_heap")
        return tag.startswith(f"{prefix}_seed") and rest.isdigit()

    for prefix in ("fast", "long"):
        finals = [r["final_test_top1"] for r in rows if is_seed_run(r["run"], prefix) and r["status"] == "finished"]
        if finals:
            mean = sum(finals) / len(finals)
            std = (sum((a - mean) ** 2 for a in finals) / max(1, len(finals) - 1)) ** 0.5
            out[f"{prefix}_seeds"] = {"n": len(finals), "final_test_top1": finals, "mean": round(mean, 2),
                                      "std": round(std, 2), "min": min(finals), "max": max(finals)}  # fmt: skip
    base = runs.get("baseline_mobilenet_v1")
    # The seed runs of the shipped recipe (not variants), median over seeds.
    fast80 = sorted(r["time_to_s"]["80"] for r in rows if is_seed_run(r["run"], "fast") and r["time_to_s"]["80"])
    if base and fast80:
        b80 = base["time_to"]["80"]
        fast_median = fast80[len(fast80) // 2]
        if b80 is not None:
            out["ratio_time_to_80"] = {"baseline_s": b80["train_time_s"], "fast_s": fast_median,
                                       "ratio": round(b80["train_time_s"] / fast_median, 1), "bound": "measured"}  # fmt: skip
        else:  # the baseline was stopped before 80%: its training time so far is a lower bound
            t = base["curve"][-1]["train_time_s"]
            out["ratio_time_to_80"] = {"baseline_s": f"> {t:.0f} (stopped at {base['curve'][-1]['test_top1']}%)",
                                       "fast_s": fast_median, "ratio": f"> {t / fast_median:.1f}", "bound": "lower"}  # fmt: skip
    write_json(RESULTS / "time_to_accuracy_summary.json", out)
    print(f"{'run':34s} {'model':22s} {'prec':5s} {'ep':>5s} {'final':>6s}  " + "  ".join(f"t{k:>5s}" for k in ("80", "85", "90", "93")))
    for r in rows:
        ts = "  ".join(f"{'-' if v is None else f'{v:.0f}':>6s}" for v in r["time_to_s"].values())
        print(f"{r['run']:34s} {r['model']:22s} {r['precision']:5s} {r['epochs_run']:>2}/{r['epochs_planned']:<2} "
              f"{r['final_test_top1']:6.2f}  {ts}")  # fmt: skip
    for k in ("fast_seeds", "long_seeds", "ratio_time_to_80"):
        if k in out:
            print(k, out[k])
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["fast", "long", "baseline", "light", "throughput", "summary"])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (fast, light)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    p.add_argument("--baseline-stop", type=float, default=80.0)
    p.add_argument("--light-model", default="mobilenet_v1_x0_5_cifar")
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="throughput: also time torch.compile'd copies")
    p.add_argument("--out", default=None, help="throughput: JSON path (default results/train_throughput_32px.json)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="recipe overrides for fast/long (e.g. data.cutout=8); use with --suffix")
    p.add_argument("--suffix", default="", help="appended to the run tag (and JSON name) of a variant")
    args = p.parse_args(argv)
    if args.set and not args.suffix:
        p.error("--set changes the recipe: name the variant with --suffix so the recipe's own results are kept")
    sets = {}  # strings: config.resolve coerces them to the fields' types (and names a bad key or value)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set expects KEY=VALUE, got {item!r}")
        sets[key] = value
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.what == "throughput":
        throughput(args)
    elif args.what == "summary":
        summary()
    elif args.what in ("fast", "long"):
        recipe = {"fast": "fast_cifar10.yaml", "long": "fast_cifar10_long.yaml"}[args.what]
        for seed in args.seeds:
            over = {"train.seed": seed}
            if args.epochs:
                over |= {"train.epochs": args.epochs, "schedule.warmup_epochs": round(0.23 * args.epochs, 2)}
            over |= sets
            tag = f"{args.what}_seed{seed}" + (f"_{args.epochs}ep" if args.epochs else "") + args.suffix
            run_recipe(tag, recipe, over, args.data, stop_at=None, max_minutes=args.max_minutes)
    elif args.what == "baseline":
        run_recipe("baseline_mobilenet_v1", "mobilenet_v1_cifar10.yaml", {"train.seed": 0}, args.data,
                   stop_at=args.baseline_stop, max_minutes=args.max_minutes)  # fmt: skip
    else:  # light: the fast recipe's schedule on a lightweight family (fp32: bf16 does not help depthwise nets)
        epochs = args.epochs or 20
        over = {"model.name": args.light_model, "train.epochs": epochs, "train.amp": "off",
                "data.batch_size": 512, "optim.lr": 0.4, "optim.weight_decay": 5e-4, "optim.momentum": 0.9,
                "schedule.name": "onecycle", "schedule.warmup_epochs": 0, "schedule.min_lr": 0.0,
                "train.label_smoothing": 0.1, "train.ema_decay": 0.99,
                "data.crop_padding": 4, "train.seed": 0}  # fmt: skip
        run_recipe(f"light_{args.light_model}_{epochs}ep", "fast_cifar10.yaml", over, args.data,
                   stop_at=None, max_minutes=args.max_minutes)  # fmt: skip


if __name__ == "__main__":
    main()
