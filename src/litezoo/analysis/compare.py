"""Compare models side by side: size, cost, speed and (for trained runs) accuracy, in one table and one chart.

The chart follows Bianco et al., "Benchmark Analysis of Representative Deep Neural Network Architectures"
(IEEE Access 2018): accuracy against operations, bubble area proportional to the parameter count. Without
accuracies it plots measured latency against MACs instead — the picture where FLOPs and speed disagree.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import matplotlib
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from litezoo.analysis.counting import trace_costs
from litezoo.analysis.latency import measure_latency, torch_threads
from litezoo.analysis.loading import load_model
from litezoo.device import resolve_device
from litezoo.errors import InputError
from litezoo.fsutil import atomic_write_bytes
from litezoo.machine import machine_info
from litezoo.tables import printable

TABLE_COLUMNS = ["name", "input_size", "params", "macs_paper", "flops_all", "mac_bytes", "latency_ms",
                 "latency_p10_ms", "latency_p90_ms", "test_top1", "test_top5"]


def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Model name, input settings and best test accuracy of a ``litezoo train`` run directory.

    Needs ``config.yaml`` (``model: {name: ...}``) and ``metrics.jsonl`` (one JSON object per epoch with
    ``test_top1`` in percent). The accuracy is the best ``test_top1`` over the epochs, with its ``test_top5``.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"run directory {str(path)!r} does not exist")
    config_path, metrics_path = path / "config.yaml", path / "metrics.jsonl"
    if not config_path.is_file():
        raise InputError(f"run directory {str(path)!r} has no config.yaml (is it a `litezoo train` run?)")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{config_path}: not valid YAML ({exc})") from exc
    model_cfg = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict) or not isinstance(model_cfg.get("name"), str):
        raise InputError(f"{config_path}: no model.name")
    data_cfg = config.get("data") if isinstance(config.get("data"), dict) else {}

    best: dict[str, Any] | None = None
    epochs = 0
    if metrics_path.is_file():
        for lineno, line in enumerate(metrics_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{metrics_path}:{lineno}: not valid JSON ({exc.msg})") from exc
            top1 = record.get("test_top1") if isinstance(record, dict) else None
            if not isinstance(top1, (int, float)) or isinstance(top1, bool) or math.isnan(top1):
                continue
            epochs += 1
            if best is None or top1 > best["test_top1"]:
                best = record
    return {
        "run_dir": str(path),
        "model": model_cfg["name"],
        "num_classes": model_cfg.get("num_classes"),
        "in_chans": model_cfg.get("in_chans"),
        "image_size": data_cfg.get("image_size"),
        "test_top1": float(best["test_top1"]) if best else None,
        "test_top5": float(best["test_top5"]) if best and isinstance(best.get("test_top5"), (int, float)) else None,
        "best_epoch": best.get("epoch") if best else None,
        "evaluated_epochs": epochs,
    }


def compare_models(
    models: list[str],
    run_dirs: list[str] | None = None,
    input_size: int | tuple[int, int] | None = None,
    num_classes: int = 1000,
    device: str = "cpu",
    warmup: int = 5,
    runs: int = 20,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One row per MODEL and per run directory (a run's row carries its accuracy).

    A MODEL row is measured at ``input_size`` (default: the model's own resolution); a run's row at the run's
    ``data.image_size`` (default: the model's), where its accuracy was measured. Latency is batch 1 on ``device``.
    """
    run_dirs = run_dirs or []
    if not models and not run_dirs:
        raise InputError("nothing to compare: give at least one MODEL or --runs RUN_DIR")
    dev = resolve_device(device)
    entries: list[dict[str, Any]] = [{"name": m, "spec": m, "run": None} for m in models]
    for run_dir in run_dirs:
        run = read_run(run_dir)
        entries.append({"name": f"{run['model']} ({Path(run_dir).name})", "spec": run["model"], "run": run})

    rows = []
    for entry in entries:
        run = entry["run"]
        loaded = load_model(
            entry["spec"],
            num_classes=(run or {}).get("num_classes") or num_classes,
            in_chans=(run or {}).get("in_chans"),
        )
        # A run is measured at the resolution its accuracy was obtained at; MODEL arguments at input_size.
        size = ((run or {}).get("image_size") if run else input_size) or loaded.default_size or 224
        if progress:
            progress(f"measuring {entry['name']} at {size} px")
        in_chans = (run or {}).get("in_chans")
        trace = trace_costs(loaded.model, size, in_chans)
        chans = in_chans or int(getattr(loaded.model, "in_chans", 3))
        hw = (size, size) if isinstance(size, int) else tuple(size)
        latency = measure_latency(loaded.model, (1, chans, *hw), dev, warmup, runs, threads)
        rows.append({
            "name": entry["name"],
            "model": entry["spec"],
            "input_size": size,
            "params": sum(p.numel() for p in loaded.model.parameters()),
            "macs_paper": trace.total("macs"),
            "flops_all": trace.total("flops"),
            "mac_bytes": trace.total("mac_bytes"),
            "uncounted_ops": trace.uncounted_ops(),
            "latency_ms": latency["median_ms"],
            "latency_p10_ms": latency["p10_ms"],
            "latency_p90_ms": latency["p90_ms"],
            "test_top1": (run or {}).get("test_top1"),
            "test_top5": (run or {}).get("test_top5"),
            "run_dir": (run or {}).get("run_dir"),
        })
    with torch_threads(threads):
        machine = machine_info(dev)
    return {"rows": rows, "device": str(dev), "machine": machine, "latency_runs": runs, "latency_warmup": warmup}


def _atomic_savefig(fig, path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight")
    atomic_write_bytes(buf.getvalue(), path)


def plot_comparison(rows: list[dict[str, Any]], out_dir: str | os.PathLike, stem: str = "compare") -> dict[str, Any]:
    """Bubble chart saved as ``<stem>.png`` and ``<stem>.svg`` in ``out_dir``.

    With accuracies: top-1 vs MACs (rows without accuracy are left out of the chart, not the table).
    Without: latency vs MACs. Bubble area is proportional to the parameter count.
    """
    if not rows:
        raise InputError("nothing to plot")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with_acc = [r for r in rows if r.get("test_top1") is not None]
    kind = "accuracy" if with_acc else "latency"
    plotted = with_acc or rows
    ys = [r["test_top1"] if kind == "accuracy" else r["latency_ms"] for r in plotted]
    xs = [r["macs_paper"] / 1e6 for r in plotted]
    max_params = max(r["params"] for r in plotted) or 1
    sizes = [2000 * r["params"] / max_params + 20 for r in plotted]  # area ∝ params (matplotlib's s is area)

    # A Figure with its own Agg canvas: files only, and pyplot's global backend and figure list stay untouched.
    fig = Figure(figsize=(8, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = matplotlib.colormaps["tab10"].colors
    for i, (r, x, y, s) in enumerate(zip(plotted, xs, ys, sizes)):
        color = colors[i % len(colors)]
        ax.scatter([x], [y], s=s, alpha=0.5, color=color, edgecolors="black", linewidths=0.5)
        if kind == "latency":  # the spread of the timed runs: p10 to p90
            ax.errorbar([x], [y], yerr=[[y - r["latency_p10_ms"]], [r["latency_p90_ms"] - y]], color=color,
                        capsize=3, linewidth=1)
        ax.annotate(printable(r["name"]), (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("MACs (millions, conv + linear + matmul, batch 1)")
    if kind == "accuracy":
        ax.set_ylabel("test top-1 accuracy (%)")
        ax.set_title("Accuracy vs MACs (bubble area ∝ parameters)")
    else:
        ax.set_ylabel("latency (ms, median with p10-p90, batch 1)")
        ax.set_title("Latency vs MACs (bubble area ∝ parameters)")
    ax.grid(True, alpha=0.3)
    smallest = min(r["params"] for r in plotted)
    ax.text(0.99, 0.01, f"bubbles: {smallest / 1e6:.2f}M to {max_params / 1e6:.2f}M params",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="gray")
    paths = {}
    for fmt in ("png", "svg"):
        path = out / f"{stem}.{fmt}"
        _atomic_savefig(fig, path, fmt)
        paths[fmt] = str(path)
    return {"chart": kind, **paths}
