"""Time-to-accuracy on CIFAR-10, measured with litezoo's own trainer.

Data: the original pixels by default (``../shared/data/cifar10-original``: all 50,000 training images in the
official binary layout, the first 1,000 official test images). Every run reports test top-1 on two test sets,
each named beside its figure in the JSON:
  * ``test_top1`` (per epoch, the headline): the 1,000 original test images, evaluated by the trainer;
  * ``jpeg_test_top1`` (at the end; per epoch with --jpeg-every-epoch): the 10,000 test images of the JPEG copy
    (``../shared/data/cifar10`` split test: the same images JPEG-recompressed, a distribution shift).
Training time excludes evaluation (the trainer's ``train_time_s``). Thresholds: 80, 85, 90, 92, 93, 94, 95 %.

Runs (each one a `litezoo.train.fit` call; JSON rewritten after every epoch, so a stopped session keeps what it
measured; ``time_to_accuracy_orig_<run>.json`` on the original pixels, ``time_to_accuracy_<run>.json`` on the
JPEG copy, as in round 1):
  fast      recipe fast_cifar10 (vgg_fast_cifar: the 94%-in-15-minutes recipe), for each --seeds
  long      recipe fast_cifar10_long (vgg_fast_wide_cifar: the 95%-in-45-minutes recipe), for each --seeds
  avx2      recipe fast_cifar10_avx2 (fp32: the 93%-in-30-minutes recipe for AVX2-only CPUs; emulate one with
            ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2)
  baseline  recipe mobilenet_v1_cifar10: the MobileNet V1 tutorial recipe (fp32, batch 128, one-cycle over 150
            epochs), stopped once it reaches --baseline-stop (80%), after --max-minutes of training, or (with
            --fast-json) once its training time is --ratio times the fast run's time to 80% (the ratio is then
            proven as a lower bound)
  light     recipe light_cifar10 (a lightweight net <= 2.5M params, --light-model), optionally distilled from a
            trained fast run (--teacher RUN_DIR or --teacher-json JSON of a fast run)
  throughput  training images/s of one model per family at 32 px, fp32 vs bf16 (where native), same process;
            --compile adds torch.compile'd copies (give --warmup 3 or more: compiling happens in the warm-up steps)
  summary   reads the JSONs above: time-to-threshold tables per training set, the fast/baseline ratio, seeds

    python benchmarks/time_to_accuracy.py fast --seeds 0 1 2
    python benchmarks/time_to_accuracy.py baseline --fast-json benchmarks/results/time_to_accuracy_orig_fast_seed0.json
    python benchmarks/time_to_accuracy.py light --teacher-json benchmarks/results/time_to_accuracy_orig_fast_seed0.json
    python benchmarks/time_to_accuracy.py throughput
    python benchmarks/time_to_accuracy.py summary
    python benchmarks/time_to_accuracy.py long --set data.cutout=8 data.crop_padding=4 --suffix _cutout8_pad4
    python benchmarks/time_to_accuracy.py fast --data ../shared/data/cifar10 --seeds 0   # round 1: the JPEG copy
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
THRESHOLDS = (80.0, 85.0, 90.0, 92.0, 93.0, 94.0, 95.0)
SHARED = REPO.parent / "shared" / "data"
ORIGINAL = SHARED / "cifar10-original" / "cifar-10-batches-bin"
JPEG = SHARED / "cifar10"
RECIPES = {"fast": "fast_cifar10", "long": "fast_cifar10_long", "avx2": "fast_cifar10_avx2"}


def machine() -> dict:
    from litezoo.machine import machine_info

    info = machine_info()
    info["load_average_1_5_15"] = list(os.getloadavg())
    return info


def shown(path: str | os.PathLike) -> str:
    """A path as the JSONs record it: relative to the checkout (``../shared/data/...``), never this machine's."""
    return os.path.relpath(Path(path).resolve(), REPO)


def test_set_name(data: str) -> tuple[str, str]:
    """(file tag, description) of the test split of ``data``: what every figure from it is named."""
    from litezoo.data.cifar import detect

    src = detect(Path(data))
    if src is not None and src.kind == "binary":
        return "orig", f"CIFAR-10 original pixels, official binary test batch ({shown(data)})"
    if src is not None:
        return "orig", f"CIFAR-10 official python batches ({shown(data)})"
    return "jpeg", f"CIFAR-10 JPEG copy, test split ({shown(data)})"


def isa_env() -> dict:
    """The variables that make torch/oneDNN use an older instruction set (how an AVX2-only CPU is emulated)."""
    names = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
    return {k: os.environ[k] for k in names if k in os.environ}


def write_json(path: Path, obj: dict) -> None:
    from litezoo.fsutil import atomic_write_bytes

    atomic_write_bytes(json.dumps(obj, indent=1).encode(), path)


def time_to(curve: list[dict], key: str = "test_top1") -> dict:
    """First epoch at or above each threshold, with the training time (evaluation excluded) at that point."""
    out = {}
    for t in THRESHOLDS:
        hit = next((r for r in curve if r.get(key) is not None and r[key] >= t), None)
        out[f"{t:g}"] = None if hit is None else {"epoch": hit["epoch"], "train_time_s": hit["train_time_s"]}
    return out


def evaluate_run(target, data: str, cfg) -> dict:
    """Test top-1 of the run's evaluated weights (``target``: run folder or checkpoint) on ``data``'s test split,
    with the recipe's TTA, in the training precision's static choice (bf16 where native: as fast as the trainer's
    own evaluation). Its classes must match the training set's (litezoo.evaluate checks)."""
    from litezoo.evaluate import evaluate_saved

    tick = time.perf_counter()
    result, info = evaluate_saved(target, data, split="test", tta_flip=cfg.train.tta_flip,
                                  tta_translate=cfg.train.tta_translate, amp="auto" if cfg.train.amp == "auto" else
                                  cfg.train.amp, batch_size=cfg.data.eval_batch_size)  # fmt: skip
    return {"top1": round(result.top1, 2), "top5": round(result.top5, 2), "images": result.num_samples,
            "test_set": test_set_name(data)[1], "weights": info["weights"], "tta_flip": info["tta_flip"],
            "tta_translate": info["tta_translate"], "eval_time_s": round(time.perf_counter() - tick, 1)}  # fmt: skip


def run_recipe(tag: str, recipe: str, overrides: dict, data: str, jpeg: str | None, *, stop_at: float | None,
               max_minutes: float | None, max_train_s: float | None = None, jpeg_every_epoch: bool = False) -> dict:  # fmt: skip
    from litezoo import checkpoint as ckpt_io
    from litezoo.config import resolve, to_dict
    from litezoo.train import fit

    cfg = resolve(recipe, {"data.path": data, **overrides})
    file_tag, test_set = test_set_name(data)
    run_dir = REPO / ".cache" / "bench_runs" / f"{tag}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = RESULTS / (f"time_to_accuracy_{tag}.json" if file_tag == "jpeg" else f"time_to_accuracy_{file_tag}_{tag}.json")
    result = {
        "benchmark": "time_to_accuracy",
        "run": tag,
        "dataset": ("CIFAR-10 original pixels, " if file_tag == "orig" else "CIFAR-10 (JPEG copy), ") + shown(data),
        "test_sets": {
            "test_top1": test_set + (", first 1,000 official test images" if "binary" in test_set else ""),
            "jpeg_test_top1": None if jpeg is None else test_set_name(jpeg)[1],
        },
        "recipe": recipe,
        "overrides": {k: (shown(v) if k == "train.distill_from" else v) for k, v in overrides.items()},
        "config": recorded_config(to_dict(cfg)),
        "run_dir": shown(run_dir),
        "machine": machine(),
        "env": isa_env(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "status": "running",
        "stop_rule": {"stop_at_top1": stop_at, "max_train_minutes": max_minutes, "max_train_s": max_train_s},
        "curve": [],
    }
    write_json(out, result)

    def on_epoch(row: dict) -> bool:
        keep = ("epoch", "step", "lr", "train_loss", "train_top1", "test_top1", "test_top5", "images_per_s",
                "epoch_time_s", "eval_time_s", "train_time_s", "time_s")  # fmt: skip
        entry = {k: row.get(k) for k in keep} | {"load_average": list(os.getloadavg())}
        if jpeg_every_epoch and jpeg is not None:  # after the epoch's checkpoint was written; not training time
            entry["jpeg_test_top1"] = evaluate_run(ckpt_io.epoch_path(run_dir, row["epoch"]), jpeg, cfg)["top1"]
        result["curve"].append(entry)
        result["time_to"] = time_to(result["curve"])
        write_json(out, result)
        if stop_at is not None and row["test_top1"] is not None and row["test_top1"] >= stop_at:
            result["status"] = f"stopped: reached {stop_at}%"
            return True
        if max_minutes is not None and row["train_time_s"] >= 60 * max_minutes:
            result["status"] = f"stopped: {max_minutes} min of training reached before {stop_at}%"
            return True
        if max_train_s is not None and row["train_time_s"] >= max_train_s:
            result["status"] = f"stopped: {max_train_s:.0f} s of training reached before {stop_at}%"
            return True
        return False

    progress = NoteRecorder()
    final = fit(cfg, run_dir, callbacks=[on_epoch], progress=progress)
    if result["status"] == "running":
        result["status"] = "finished"
    result["run_log"] = progress.notes  # model, device, memory format, precision (what amp=auto measured and chose)
    result["final_test_top1"] = final.get("test_top1")
    result["best_test_top1"] = final.get("best_top1")
    result["machine_end"] = {"load_average": list(os.getloadavg())}
    write_json(out, result)
    # The headline test set was evaluated by the trainer after the last epoch; the second one now, with the same
    # weights and TTA, outside the training clock.
    last = result["curve"][-1]
    result["final_eval"] = {"test_top1": {"top1": last["test_top1"], "top5": last["test_top5"],
                                          "test_set": result["test_sets"]["test_top1"]}}  # fmt: skip
    if jpeg is not None:
        result["final_eval"]["jpeg_test_top1"] = evaluate_run(run_dir, jpeg, cfg)
    write_json(out, result)
    finals = ", ".join(f"{v['top1']}% on {v['test_set']}" for v in result["final_eval"].values())
    print(f"{tag}: {result['status']}; time_to {result['time_to']}; final {finals}", file=sys.stderr)
    return result


def recorded_config(d: dict) -> dict:
    """The config as the JSON records it: its paths relative to the checkout."""
    d["data"]["path"] = shown(d["data"]["path"])
    if d["train"].get("distill_from"):
        d["train"]["distill_from"] = shown(d["train"]["distill_from"])
    return d


def NoteRecorder():
    """The trainer's console progress, keeping its one-off lines (device, precision choice) for the JSON."""
    from litezoo.progress import Progress

    class Recorder(Progress):
        def __init__(self):
            super().__init__()
            self.notes: list[str] = []

        def note(self, text: str) -> None:
            self.notes.append(text)
            super().note(text)

    return Recorder()


def throughput(args) -> None:
    """Training images/s at 32 px, one model per family, fp32 and bf16, interleaved step by step."""
    import litezoo
    from litezoo.heap import heap_kept
    from litezoo.machine import cpu_native_bf16

    models = args.models or [
        "vgg_fast_cifar", "vgg_fast_wide_cifar", "mobilenet_v1_x1_0_cifar", "shufflenet_v2_x1_0_cifar", "shufflenet_v1_g3_x1_0_cifar",
        "squeezenet1_1_cifar", "efficientnet_b0_cifar", "vgg11_bn_cifar", "vit_tiny_cifar", "mobilenet_v2_x1_0_cifar",
        "mobilenet_v3_large_x1_0_cifar", "mobilenet_v3_small_x1_0_cifar", "ghostnet_x1_0_cifar",
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
    """Tables from the per-run JSONs, one per training set: time to each threshold, final top-1 on each test set
    named, the fast/baseline ratio at 80%, the spread over seeds."""
    runs = {}
    for f in sorted(RESULTS.glob("time_to_accuracy_*.json")):
        d = json.loads(f.read_text())
        if d.get("benchmark") == "time_to_accuracy" and d.get("curve"):
            runs[f.stem.removeprefix("time_to_accuracy_")] = d
    rows = []
    for name, d in runs.items():
        last = d["curve"][-1]
        final_eval = d.get("final_eval", {})
        rows.append({
            "run": name, "training_set": "original" if name.startswith("orig_") else "jpeg",
            "model": d["config"]["model"]["name"],
            "precision": (d.get("precision") or {}).get("mode") or next(
                (n.rsplit(" | ", 1)[-1] for n in d.get("run_log", []) if "params" in n), None),
            "epochs_run": last["epoch"], "epochs_planned": d["config"]["train"]["epochs"], "status": d["status"],
            "train_time_s": round(last["train_time_s"], 1), "final_test_top1": last["test_top1"],
            "test_set": (d.get("test_sets") or {}).get("test_top1", d.get("dataset")),
            "final_jpeg_test_top1": (final_eval.get("jpeg_test_top1") or {}).get("top1"),
            "jpeg_test_set": (final_eval.get("jpeg_test_top1") or {}).get("test_set"),
            "time_to_s": {k: (None if v is None else round(v["train_time_s"], 1)) for k, v in time_to(d["curve"]).items()},
            "cpu": d["machine"].get("cpu_model", d["machine"].get("model_name")), "env": d.get("env"),
            "started": d["started"],
        })  # fmt: skip
    out: dict = {"benchmark": "time_to_accuracy_summary", "machine": machine(), "rows": rows}

    # Seeds of one recipe: "[orig_]fast_seed0", "..._seed1", ... (runs with an epochs override or --set carry
    # another suffix). "_before_keep_heap": the same recipe measured before train.keep_heap (speed only).
    def is_seed_run(name: str, prefix: str) -> bool:
        rest = name.removeprefix(f"{prefix}_seed").removesuffix("_before_keep_heap")
        return name.startswith(f"{prefix}_seed") and rest.isdigit()

    for prefix in ("fast", "long", "orig_fast", "orig_long", "orig_avx2"):
        finals = [r["final_test_top1"] for r in rows if is_seed_run(r["run"], prefix) and r["status"] == "finished"]
        if finals:
            mean = sum(finals) / len(finals)
            std = (sum((a - mean) ** 2 for a in finals) / max(1, len(finals) - 1)) ** 0.5
            out[f"{prefix}_seeds"] = {"n": len(finals), "final_test_top1": finals, "mean": round(mean, 2),
                                      "std": round(std, 2), "min": min(finals), "max": max(finals),
                                      "test_set": next(r["test_set"] for r in rows if is_seed_run(r["run"], prefix))}  # fmt: skip
    for data_prefix in ("", "orig_"):
        base = runs.get(f"{data_prefix}baseline_mobilenet_v1")
        # The seed runs of the shipped recipe (not variants), median over seeds.
        fast80 = sorted(r["time_to_s"]["80"] for r in rows if is_seed_run(r["run"], f"{data_prefix}fast") and r["time_to_s"]["80"])
        if not (base and fast80):
            continue
        b80 = time_to(base["curve"])["80"]
        fast_median = fast80[len(fast80) // 2]
        key = f"{data_prefix}ratio_time_to_80"
        if b80 is not None:
            out[key] = {"baseline_s": b80["train_time_s"], "fast_s": fast_median,
                        "ratio": round(b80["train_time_s"] / fast_median, 1), "bound": "measured"}  # fmt: skip
        else:  # the baseline was stopped before 80%: its training time so far is a lower bound
            t = base["curve"][-1]["train_time_s"]
            out[key] = {"baseline_s": f"> {t:.0f} (stopped at {base['curve'][-1]['test_top1']}%)",
                        "fast_s": fast_median, "ratio": f"> {t / fast_median:.1f}", "bound": "lower"}  # fmt: skip
    write_json(RESULTS / "time_to_accuracy_summary.json", out)
    for training_set in ("original", "jpeg"):
        chosen = [r for r in rows if r["training_set"] == training_set]
        if not chosen:
            continue
        print(f"\ntrained on CIFAR-10 {'original pixels' if training_set == 'original' else 'JPEG copy'}; "
              f"test top-1 on: {chosen[0]['test_set']}")  # fmt: skip
        print(f"{'run':46s} {'model':24s} {'ep':>5s} {'final':>6s} {'jpeg':>6s}  "
              + "  ".join(f"t{k:>5s}" for k in chosen[0]["time_to_s"]))  # fmt: skip
        for r in chosen:
            ts = "  ".join(f"{'-' if v is None else f'{v:.0f}':>6s}" for v in r["time_to_s"].values())
            jp = "-" if r["final_jpeg_test_top1"] is None else f"{r['final_jpeg_test_top1']:.2f}"
            print(f"{r['run']:46s} {r['model']:24s} {r['epochs_run']:>2}/{r['epochs_planned']:<2} "
                  f"{r['final_test_top1']:6.2f} {jp:>6s}  {ts}")  # fmt: skip
    for k in ("orig_fast_seeds", "orig_long_seeds", "orig_avx2_seeds", "orig_ratio_time_to_80", "fast_seeds",
              "long_seeds", "ratio_time_to_80"):  # fmt: skip
        if k in out:
            print(k, out[k])
    return out


def teacher_dir(args) -> str | None:
    """The teacher's run folder: --teacher, or the run_dir recorded in --teacher-json (a finished fast run)."""
    if args.teacher:
        return args.teacher
    if args.teacher_json:
        d = json.loads(Path(args.teacher_json).read_text())
        if d.get("status") != "finished":
            sys.exit(f"error: the teacher run in {args.teacher_json} has status {d.get('status')!r}, not finished")
        return os.path.relpath(REPO / d["run_dir"])  # relative: the run log (kept in the JSON) names no machine path
    return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["fast", "long", "avx2", "baseline", "light", "throughput", "summary"])
    p.add_argument("--data", default=str(ORIGINAL), help="training data (default: the original pixels, binary)")
    p.add_argument("--jpeg-test", default=str(JPEG),
                   help="second test set, evaluated at the end (default: the JPEG copy); 'none' to skip")
    p.add_argument("--jpeg-every-epoch", action="store_true", help="evaluate the second test set after every epoch")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (fast, long, avx2, light)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    p.add_argument("--baseline-stop", type=float, default=80.0)
    p.add_argument("--fast-json", default=None,
                   help="baseline: stop once its training time reaches --ratio x this fast run's time to 80%%")
    p.add_argument("--ratio", type=float, default=10.5, help="see --fast-json (default 10.5)")
    p.add_argument("--light-model", default=None, help="light: the net (default: the recipe's)")
    p.add_argument("--teacher", default=None, help="light: distil from this trained run folder")
    p.add_argument("--teacher-json", default=None, help="light: distil from the run of this time-to-accuracy JSON")
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="throughput: also time torch.compile'd copies")
    p.add_argument("--out", default=None, help="throughput: JSON path (default results/train_throughput_32px.json)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="recipe overrides (e.g. data.cutout=8); use with --suffix")
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
    jpeg = None if args.jpeg_test.lower() == "none" else args.jpeg_test
    common = dict(jpeg_every_epoch=args.jpeg_every_epoch)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.what == "throughput":
        throughput(args)
    elif args.what == "summary":
        summary()
    elif args.what in RECIPES:
        for seed in args.seeds:
            over = {"train.seed": seed}
            if args.epochs:  # the triangle schedule's warm-up is 23% of the run (airbench)
                over |= {"train.epochs": args.epochs, "schedule.warmup_epochs": round(0.23 * args.epochs, 2)}
            over |= sets
            tag = f"{args.what}_seed{seed}" + (f"_{args.epochs}ep" if args.epochs else "") + args.suffix
            run_recipe(tag, RECIPES[args.what], over, args.data, jpeg, stop_at=None, max_minutes=args.max_minutes,
                       **common)  # fmt: skip
    elif args.what == "baseline":
        max_train_s = None
        if args.fast_json:
            fast = json.loads(Path(args.fast_json).read_text())
            hit = time_to(fast["curve"])["80"]
            if hit is None:
                sys.exit(f"error: the fast run in {args.fast_json} has not reached 80%")
            max_train_s = args.ratio * hit["train_time_s"]
        run_recipe("baseline_mobilenet_v1", "mobilenet_v1_cifar10", {"train.seed": 0, **sets}, args.data, jpeg,
                   stop_at=args.baseline_stop, max_minutes=args.max_minutes, max_train_s=max_train_s, **common)  # fmt: skip
    else:  # light: a lightweight net, distilled from a trained fast run when a teacher is named
        teacher = teacher_dir(args)
        over = {"train.seed": args.seeds[0]}
        if args.light_model:
            over["model.name"] = args.light_model
        if args.epochs:
            over |= {"train.epochs": args.epochs}
        if teacher:
            over["train.distill_from"] = teacher
        over |= sets
        from litezoo.config import resolve

        model = over.get("model.name") or resolve("light_cifar10").model.name
        tag = f"light_{model}" + ("_distill" if teacher else "") + (f"_{args.epochs}ep" if args.epochs else "") + args.suffix
        run_recipe(tag, "light_cifar10", over, args.data, jpeg, stop_at=None, max_minutes=args.max_minutes,
                   **common)  # fmt: skip


if __name__ == "__main__":
    main()
