"""Which net should I use on my CPU? Every family at ~1.0x, side by side -> benchmarks/results/which_net.json.

For each family's ~1.0x model (ImageNet form, 224 px by default): parameters and MACs (litezoo.analysis
counting, 1000 classes), batch-1 latency on torch eager fp32, ONNX Runtime fp32 and OpenVINO fp32 (median with
p10/p90, timed by ``litezoo.deploy.bench`` — the same loop as ``litezoo bench``), the fastest runtime named,
and CIFAR-10 top-1 of the family's ``_cifar`` form after one short recipe, read from ``litezoo train`` run
folders (``--runs``; each run's model name minus ``_cifar`` names its family). Writes the JSON (machine block,
every figure, the runs' recipe and test set), a chart (accuracy vs best latency, and latency vs MACs) and
prints a markdown table.

The runs (one short recipe, the same for every family):

    for f in shufflenet_v1_g3_x1_0 shufflenet_v2_x1_0 mobilenet_v1_x1_0 mobilenet_v2_x1_0 \\
             mobilenet_v3_large_x1_0 mobilenet_v3_small_x1_0 ghostnet_x1_0 squeezenet1_1 efficientnet_b0; do
      litezoo train --model ${f}_cifar --data ../shared/data/cifar10-original --epochs 3 \\
          --data.limit_train 10000 --out runs/zoo_short/$f --quiet
    done

The measurement (an idle machine; a few minutes on 2 cores):

    python benchmarks/which_net.py --runs runs/zoo_short/*

Re-read the runs' accuracy and redraw without timing again: ``--from-json benchmarks/results/which_net.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# One ~1.0x model per family, ImageNet form (the CIFAR runs train the same name + "_cifar").
FAMILIES = [
    "shufflenet_v1_g3_x1_0",
    "shufflenet_v2_x1_0",
    "mobilenet_v1_x1_0",
    "mobilenet_v2_x1_0",
    "mobilenet_v3_large_x1_0",
    "mobilenet_v3_small_x1_0",
    "ghostnet_x1_0",
    "squeezenet1_1",
    "efficientnet_b0",
]
HEAVY_REFERENCE = "vgg16"  # --with-vgg16: the tutorials' heavy baseline, for scale
RUNTIMES = ["torch", "ort", "openvino"]
RUNTIME_LABELS = {"torch": "torch eager", "ort": "ONNX Runtime", "openvino": "OpenVINO"}
SHORT_RUNTIME = {"torch": "torch", "ort": "ORT", "openvino": "OpenVINO"}
CIFAR_SUFFIX = "_cifar"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "which_net.json"
DEFAULT_CHART = REPO / "docs" / "images" / "which_net.png"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- costs and latency


def costs(name: str, size: int) -> dict[str, Any]:
    """Params, MACs, all-op FLOPs and memory access of ``name`` (1000 classes) at ``size`` px, batch 1, and of
    its CIFAR form (10 classes, 32 px) — counted on the meta device: no memory, no weights."""
    import torch

    from litezoo.analysis import count_params, trace_costs
    from litezoo.registry import create_model, model_info

    with torch.device("meta"):
        model = create_model(name)
    trace = trace_costs(model, size)
    out = {"params": count_params(model), "macs": trace.total("macs"), "flops_all": trace.total("flops"),
           "mac_bytes": trace.total("mac_bytes"), "uncounted_ops": trace.uncounted_ops()}  # fmt: skip
    cifar = name + CIFAR_SUFFIX
    cifar_size = model_info(cifar).default_size
    with torch.device("meta"):
        small = create_model(cifar, num_classes=10)
    out["cifar_form"] = {"model": cifar, "num_classes": 10, "input_size": cifar_size,
                         "params": count_params(small), "macs": trace_costs(small, cifar_size).total("macs")}
    return out


def latency(name: str, size: int, runtimes: list[str], threads: list[int], repeats: int, min_seconds: float):
    """``litezoo.deploy.bench`` rows for ``name`` at batch 1, and a summary per runtime (its best thread count)."""
    from litezoo.deploy.bench import bench

    report = bench([name], runtimes=runtimes, batches=(1,), threads=threads, size=size, repeats=repeats,
                   min_seconds=min_seconds, progress=log)  # fmt: skip
    per_runtime: dict[str, dict[str, Any]] = {}
    for row in report["rows"]:
        keep = {k: row[k] for k in ("runtime", "precision", "threads", "median_ms", "p10_ms", "p90_ms", "calls",
                                    "peak_rss_mib")}  # fmt: skip
        if row["runtime"] not in per_runtime or row["median_ms"] < per_runtime[row["runtime"]]["median_ms"]:
            per_runtime[row["runtime"]] = keep
    best = min(per_runtime.values(), key=lambda r: r["median_ms"]) if per_runtime else None
    return {"latency": per_runtime, "best": best, "bench_rows": report["rows"], "skipped": report["skipped"],
            "notes": report["notes"], "matmul_gflops": report["matmul_gflops"], "versions": report["versions"]}


# ------------------------------------------------------------------------------------------------- accuracy


def family_of(model_name: str) -> str:
    """``mobilenet_v2_x1_0_cifar`` -> ``mobilenet_v2_x1_0`` (the ImageNet form timed at 224 px)."""
    return model_name[: -len(CIFAR_SUFFIX)] if model_name.endswith(CIFAR_SUFFIX) else model_name


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epochs of ``metrics.jsonl`` that carry a test accuracy (read_run has already validated the file)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        top1 = record.get("test_top1") if isinstance(record, dict) else None
        if isinstance(top1, (int, float)) and not isinstance(top1, bool) and not math.isnan(top1):
            rows.append(record)
    return rows


def _test_images(data: dict[str, Any]) -> int | None:
    """How many test images the trainer evaluated on (the split of data.path, limited by data.limit_eval)."""
    from litezoo.data import open_dataset

    try:  # reopens the cache the run decoded; never downloads
        ds = open_dataset(data["path"], "test", image_size=data.get("image_size"), cache_dir=data.get("cache_dir"),
                          limit=data.get("limit_eval"), download=False)  # fmt: skip
        return len(ds)
    except Exception as exc:  # noqa: BLE001 — the count is a label; say why it is missing instead of failing
        log(f"note: could not count the test images of {data.get('path')}: {str(exc).splitlines()[0]}")
        return None


def read_accuracy(run_dir: str) -> dict[str, Any]:
    """One run folder: its family, final and best test top-1, progress, training time, recipe and test set."""
    import yaml

    from litezoo.analysis.compare import read_run

    run = read_run(run_dir)  # validates config.yaml / metrics.jsonl with one-line errors
    path = Path(run_dir)
    config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    epochs = _metrics(path)
    planned = (config.get("train") or {}).get("epochs")
    run_info = {}
    if (path / "run.json").is_file():
        run_info = json.loads((path / "run.json").read_text(encoding="utf-8"))
    last = epochs[-1] if epochs else None
    # The recipe is the whole resolved config but the model's name: identical for every family when the runs
    # were started with the same command.
    recipe = json.loads(json.dumps(config))
    recipe.get("model", {}).pop("name", None)
    data = config.get("data") or {}
    return {
        "run_dir": str(path),
        "model": run["model"],
        "family": family_of(run["model"]),
        "final_top1": float(last["test_top1"]) if last else None,
        "final_epoch": last.get("epoch") if last else None,
        "best_top1": run["test_top1"],
        "best_epoch": run["best_epoch"],
        "epochs_done": len(epochs),
        "epochs_planned": planned,
        "finished": bool(epochs) and planned is not None and len(epochs) >= planned,
        "train_time_s": last.get("time_s") if last else None,  # wall clock incl. evaluation, at the last epoch
        "precision": run_info.get("precision"),
        "trained_on": (run_info.get("machine") or {}).get("cpu_model"),
        "recipe": recipe,
        "test_set": {"data": data.get("path"), "split": "test", "limit_eval": data.get("limit_eval")},
    }


def collect_accuracy(run_dirs: list[str]) -> tuple[dict[str, dict], dict[str, Any]]:
    """Accuracy per family, and what the runs share: the recipe (or where it differs) and the test set."""
    from litezoo.errors import InputError

    per_family: dict[str, dict] = {}
    for run_dir in run_dirs:
        acc = read_accuracy(run_dir)
        if acc["family"] in per_family:
            raise InputError(f"two runs for {acc['family']}: {per_family[acc['family']]['run_dir']} and {run_dir}; "
                             f"give one run per family")  # fmt: skip
        per_family[acc["family"]] = acc
    if not per_family:
        return {}, {}
    recipes = {f: json.dumps(a["recipe"], sort_keys=True) for f, a in per_family.items()}
    first = next(iter(per_family.values()))
    shared: dict[str, Any] = {"recipe": first["recipe"], "recipe_identical": len(set(recipes.values())) == 1}
    if not shared["recipe_identical"]:
        shared["recipe_differs"] = {f: _differences(first["recipe"], a["recipe"]) for f, a in per_family.items()
                                    if recipes[f] != recipes[first["family"]]}  # fmt: skip
        log("warning: the runs do not share one recipe: " + json.dumps(shared["recipe_differs"]))
    test_set = dict(first["test_set"])
    data = first["recipe"].get("data") or {}
    test_set["images"] = _test_images({**data, "path": test_set["data"]}) if test_set["data"] else None
    shared["test_set"] = test_set
    for acc in per_family.values():
        acc.pop("recipe")
    return per_family, shared


def _differences(a: Any, b: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys whose values differ between two nested dicts: {key: [a, b]}."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: dict[str, Any] = {}
        for k in sorted(set(a) | set(b)):
            out.update(_differences(a.get(k), b.get(k), f"{prefix}{k}."))
        return out
    return {} if a == b else {prefix.rstrip("."): [a, b]}


def recipe_summary(recipe: dict[str, Any]) -> str:
    """The recipe in one line for the table's caption."""
    d, o, s, t = (recipe.get(k) or {} for k in ("data", "optim", "schedule", "train"))
    parts = [f"{t.get('epochs')} epochs", f"{d.get('limit_train') or 'all'} training images",
             f"batch {d.get('batch_size')}", f"{o.get('name')} lr {o.get('lr')}", f"{s.get('name')} schedule",
             f"seed {t.get('seed')}"]  # fmt: skip
    return ", ".join(parts)


def pareto(families: list[dict[str, Any]]) -> list[str]:
    """Families no other family beats on both best latency and CIFAR-10 top-1 (final epoch)."""
    scored = [f for f in families if f.get("best") and (f.get("accuracy") or {}).get("final_top1") is not None]
    front = []
    for f in scored:
        ms, acc = f["best"]["median_ms"], f["accuracy"]["final_top1"]
        dominated = any(g is not f and g["best"]["median_ms"] <= ms and g["accuracy"]["final_top1"] >= acc
                        and (g["best"]["median_ms"] < ms or g["accuracy"]["final_top1"] > acc) for g in scored)
        if not dominated:
            front.append(f["model"])
    return front


# ------------------------------------------------------------------------------------------- table and chart


FP32 = ("fp32", "f32")


def _ms(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    # OpenVINO chooses its own inference precision (bf16 on AMX CPUs): a row not in fp32 is marked
    mark = "" if str(r.get("precision")).lower() in FP32 else f" [{r.get('precision')}]"
    return f"{r['median_ms']:.1f} ({r['p10_ms']:.1f}–{r['p90_ms']:.1f}){mark}"


def markdown_table(result: dict[str, Any]) -> str:
    runtimes = result["settings"]["runtimes"]
    size = result["settings"]["input_size"]
    header = ["model", "params", f"MACs @{size}"] + [f"{RUNTIME_LABELS.get(r, r)} ms" for r in runtimes]
    header += ["fastest", "CIFAR-10 top-1 %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    front = set(result.get("pareto") or [])
    for f in result["families"]:
        acc = f.get("accuracy")
        if acc and acc.get("final_top1") is not None:
            top1 = f"{acc['final_top1']:.1f}" + ("" if acc["finished"] else
                                                  f" ({acc['epochs_done']}/{acc['epochs_planned']} ep)")
        else:
            top1 = "—"
        best = f.get("best")
        fastest = f"{RUNTIME_LABELS.get(best['runtime'], best['runtime'])}" if best else "—"
        name = f"**{f['model']}**" if f["model"] in front else f["model"]
        cells = [name, f"{f['params'] / 1e6:.2f}M", f"{f['macs'] / 1e6:.0f}M"]
        cells += [_ms(f["latency"].get(r)) for r in runtimes] + [fastest, top1]
        lines.append("| " + " | ".join(cells) + " |")
    m = result["machine"]
    threads = ",".join(str(t) for t in result["settings"]["threads"])
    notes = [
        f"Batch-1 latency at {size} px, median (p10–p90) of ≥ {result['settings']['repeats']} calls and "
        f"≥ {result['settings']['min_seconds']} s per runtime, fp32, {threads} thread(s), on {m['cpu_model']} "
        f"({m['cpus_usable']} CPUs, {m['cpu_capability']}); load average {result['load_average_before']} before, "
        f"{result['load_average_after']} after" + (" — **CPU shared with other jobs**" if result["cpu_shared"] else "")
        + ".",
        "Params and MACs: ImageNet form, 1000 classes (litezoo.analysis, conv + linear).",
    ]
    shared = result.get("runs_shared") or {}
    if shared:
        ts = shared["test_set"]
        images = f"{ts['images']:,} " if ts.get("images") else ""
        notes.append(f"CIFAR-10 top-1: the `_cifar` form (32 px, 10 classes), last epoch, on the {images}test images "
                     f"of `{Path(str(ts['data'])).name}`; recipe: {recipe_summary(shared['recipe'])}"
                     + ("" if shared["recipe_identical"] else " (**recipes differ between runs: see the JSON**)")
                     + ". Bold: no other model here is both faster and more accurate.")  # fmt: skip
    return "\n".join(lines) + "\n\n" + "\n".join(notes)


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy vs best latency (when accuracies exist) beside latency vs MACs; points labelled, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from litezoo.fsutil import atomic_write_bytes

    fams = [f for f in result["families"] if f.get("best")]
    if not fams:
        raise SystemExit("error: nothing to plot (no latency measured)")
    with_acc = [f for f in fams if (f.get("accuracy") or {}).get("final_top1") is not None]
    panels = 2 if with_acc else 1
    # A Figure with its own Agg canvas: pyplot's global backend and figure list stay untouched.
    fig = Figure(figsize=(6.5 * panels, 5))
    FigureCanvasAgg(fig)
    size = result["settings"]["input_size"]
    front = set(result.get("pareto") or [])

    def points(ax, rows, x_of, y_of):
        xs, ys = [x_of(f) for f in rows], [y_of(f) for f in rows]
        for f, x, y in zip(rows, xs, ys):
            ax.scatter([x], [y], s=30 + 400 * f["params"] / max(g["params"] for g in fams), alpha=0.6,
                       color="tab:red" if f["model"] in front else "tab:blue", edgecolors="black", linewidths=0.5)
        ax.grid(True, alpha=0.3)
        return xs, ys

    def label(ax, rows, xs, ys):
        """One-line labels placed where they overlap no earlier label (clustered families are common)."""
        ax.autoscale_view()
        to_pt = 72.0 / fig.dpi
        placed: list[tuple[float, float, float, float]] = []
        order = sorted(range(len(rows)), key=lambda i: (ys[i], xs[i]))
        for i in order:
            f = rows[i]
            text = f"{f['model']} ({SHORT_RUNTIME.get(f['best']['runtime'], f['best']['runtime'])})"
            w, h = 4.0 * len(text), 9.0  # points at fontsize 7
            px, py = (v * to_pt for v in ax.transData.transform((xs[i], ys[i])))
            # right of the point first (left-hand labels run into the y axis), nearest offsets first
            candidates = [(6, 3), (6, -11), (6, 14), (6, -22), (6, 25), (6, -33), (-6 - w, 3), (-6 - w, -11),
                          (-6 - w, 14), (-6 - w, -22)]  # fmt: skip
            dx, dy = candidates[0]
            for cx, cy in candidates:
                box = (px + cx, py + cy, px + cx + w, py + cy + h)
                if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                    dx, dy = cx, cy
                    break
            placed.append((px + dx, py + dy, px + dx + w, py + dy + h))
            far = abs(dy) > 12
            ax.annotate(text, (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                        arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.5} if far else None)

    if with_acc:
        ax = fig.add_subplot(1, panels, 1)
        xs, ys = points(ax, with_acc, lambda f: f["best"]["median_ms"], lambda f: f["accuracy"]["final_top1"])
        ordered = sorted((f for f in with_acc if f["model"] in front), key=lambda f: f["best"]["median_ms"])
        if len(ordered) > 1:
            ax.plot([f["best"]["median_ms"] for f in ordered], [f["accuracy"]["final_top1"] for f in ordered],
                    color="tab:red", linewidth=1, alpha=0.6, label="no other net both faster and more accurate")
            ax.legend(fontsize=7, loc="lower right")
        if min(xs) > 0 and max(xs) / min(xs) > 20:  # e.g. with --with-vgg16
            ax.set_xscale("log")
        ax.set_xlabel(f"batch-1 latency at {size} px, fastest runtime (ms)")
        ax.set_ylabel("CIFAR-10 top-1 after the short recipe (%)")
        ax.set_title("Accuracy vs latency (area ∝ params)", fontsize=10)
        label(ax, with_acc, xs, ys)
    ax = fig.add_subplot(1, panels, panels)
    xs, ys = points(ax, fams, lambda f: f["macs"] / 1e6, lambda f: f["best"]["median_ms"])
    macs = [f["macs"] for f in fams]
    if min(macs) > 0 and max(macs) / min(macs) > 20:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(f"MACs at {size} px (millions)")
    ax.set_ylabel("batch-1 latency, fastest runtime (ms)")
    ax.set_title("Latency vs MACs: FLOPs are not speed", fontsize=10)
    label(ax, fams, xs, ys)
    m = result["machine"]
    fig.suptitle(f"{m['cpu_model']}, {m['cpus_usable']} CPUs, {','.join(map(str, result['settings']['threads']))}"
                 f" thread(s), fp32" + (" (CPU shared)" if result["cpu_shared"] else ""), fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    atomic_write_bytes(buf.getvalue(), path)


# ---------------------------------------------------------------------------------------------------- main


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _check_families(names: list[str]) -> None:
    from litezoo.errors import InputError
    from litezoo.registry import model_info

    for name in names:
        info = model_info(name)  # unknown names: InputError with close matches
        if info.small_input:
            raise InputError(f"{name} is a CIFAR form; give the ImageNet name ({family_of(name)}): it is timed at "
                             f"the --size resolution, and its {CIFAR_SUFFIX} form's runs give the accuracy")


def main(argv: list[str] | None = None) -> int:
    from litezoo.machine import usable_cpus

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", default=None, metavar="MODEL",
                   help=f"~1.0x ImageNet-form registry names (default: {' '.join(FAMILIES)})")
    p.add_argument("--with-vgg16", action="store_true", help="add vgg16 as the heavy reference (~1 min more)")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR",
                   help="`litezoo train` run folders of the _cifar forms (accuracy)")
    p.add_argument("--no-accuracy", action="store_true", help="latency and costs only: ignore --runs")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma list (default torch,ort,openvino)")
    p.add_argument("--threads", type=_int_list, default=[usable_cpus()],
                   help="comma list of thread counts; each runtime's best is kept (default: usable CPUs)")
    p.add_argument("--size", type=int, default=224, help="input resolution in px (default 224)")
    p.add_argument("--repeats", type=int, default=50, help="at least this many timed calls per runtime (default 50)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="and at least this long per runtime (default 2)")
    p.add_argument("--cpu-shared", action="store_true", help="record that other jobs shared the CPU")
    p.add_argument("--out", type=Path, default=DEFAULT_JSON, help=f"JSON (default {DEFAULT_JSON.relative_to(REPO)})")
    p.add_argument("--chart", type=Path, default=DEFAULT_CHART, help=f"PNG (default {DEFAULT_CHART.relative_to(REPO)})")
    p.add_argument("--from-json", type=Path, default=None,
                   help="reuse the costs and latencies of an earlier result: re-read --runs, redraw, reprint")
    args = p.parse_args(argv)

    from litezoo.errors import InputError

    try:
        return _run(args, argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from litezoo.deploy.bench import RUNTIMES as BENCH_RUNTIMES
    from litezoo.errors import InputError
    from litezoo.fsutil import atomic_write_bytes
    from litezoo.machine import load_average, machine_info

    runtimes = [r for r in args.runtimes.split(",") if r]
    unknown = [r for r in runtimes if r not in BENCH_RUNTIMES]
    if unknown or not runtimes:
        raise InputError(f"unknown runtime(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(BENCH_RUNTIMES)}")
    if args.size < 1 or args.repeats < 1 or args.min_seconds < 0:
        raise InputError("--size and --repeats must be positive and --min-seconds not negative")
    run_dirs = [] if args.no_accuracy else args.runs
    for run_dir in run_dirs:
        if not Path(run_dir).is_dir():
            raise InputError(f"run folder {run_dir!r} does not exist")

    start = time.perf_counter()
    if args.from_json:
        if not args.from_json.is_file():
            raise InputError(f"{args.from_json} does not exist")
        result = json.loads(args.from_json.read_text(encoding="utf-8"))
        log(f"costs and latencies from {args.from_json} (measured {result.get('measured_at', '?')})")
        result["reread_command"] = " ".join(["python", "benchmarks/which_net.py",
                                             *(argv if argv is not None else sys.argv[1:])])  # fmt: skip
    else:
        names = list(args.families or FAMILIES)
        if args.with_vgg16 and HEAVY_REFERENCE not in names:
            names.append(HEAVY_REFERENCE)
        _check_families(names)
        result = {
            "benchmark": "which_net",
            "question": "which net should I use on my CPU: every family at ~1.0x, cost, batch-1 latency, accuracy",
            "command": " ".join(["python", "benchmarks/which_net.py", *(argv if argv is not None else sys.argv[1:])]),
            "cpu_shared": args.cpu_shared,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average_before": load_average(),
            "machine": machine_info(),
            "settings": {"input_size": args.size, "batch": 1, "precision": "fp32", "runtimes": runtimes,
                         "threads": args.threads, "repeats": args.repeats, "min_seconds": args.min_seconds,
                         "timing": "litezoo.deploy.bench: 3 warm-up calls, then >= repeats calls and >= min_seconds;"
                                   " median, p10, p90 of the per-call times"},  # fmt: skip
            "families": [],
        }
        for name in names:
            t0 = time.perf_counter()
            log(f"== {name}")
            entry = {"model": name, "family": _family_label(name), "input_size": args.size, **costs(name, args.size)}
            measured = latency(name, args.size, runtimes, args.threads, args.repeats, args.min_seconds)
            result["versions"] = measured.pop("versions")  # the same in every call
            result.setdefault("matmul_gflops", {})[name] = measured.pop("matmul_gflops")
            entry.update(measured)
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            result["families"].append(entry)
            best = entry["best"]
            log(f"{name}: {entry['params'] / 1e6:.2f}M params, {entry['macs'] / 1e6:.0f}M MACs, fastest "
                + (f"{best['runtime']} {best['median_ms']:.2f} ms" if best else "(none measured)"))
        result["load_average_after"] = load_average()
        result["measure_seconds"] = round(time.perf_counter() - start, 1)

    # Accuracy: re-read every time (the runs may have finished since the latencies were measured).
    per_family, shared = collect_accuracy(run_dirs) if run_dirs else ({}, {})
    measured_names = {f["model"] for f in result["families"]}
    for family in sorted(set(per_family) - measured_names):
        log(f"warning: run {per_family[family]['run_dir']} trains {family}, which is not among the measured models")
    for f in result["families"]:
        f["accuracy"] = per_family.get(f["model"])
    result["runs_shared"] = shared or None
    result["accuracy_source"] = ("CIFAR-10 test top-1 of the _cifar form after the runs' recipe: last epoch (final_top1)"
                                 " and best epoch (best_top1) of metrics.jsonl") if per_family else None  # fmt: skip
    result["pareto"] = pareto(result["families"])
    result["chart"] = str(args.chart)

    table = markdown_table(result)
    result["markdown_table"] = table
    atomic_write_bytes((json.dumps(result, indent=1, default=str) + "\n").encode(), args.out)
    plot(result, args.chart)
    print(table)
    print(f"\n{args.out}\n{args.chart}")
    return 0


def _family_label(name: str) -> str:
    from litezoo.registry import model_info

    return model_info(name).family


if __name__ == "__main__":
    sys.exit(main())
