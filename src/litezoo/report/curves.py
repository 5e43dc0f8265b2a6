"""``curves.png``: a run's loss, top-1 and learning rate per epoch, the picture ``litezoo train`` leaves behind."""

from __future__ import annotations

import io
import os
from pathlib import Path

from litezoo.errors import InputError
from litezoo.fsutil import atomic_write_bytes
from litezoo.report.runs import CONFIG, METRICS, number, read_metrics

CURVES = "curves.png"


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the rows where ``key`` holds a finite number (test_* only on evaluated epochs)."""
    pairs = [(r["epoch"], number(r.get(key))) for r in rows]
    pairs = [(e, v) for e, v in pairs if v is not None]
    return [e for e, _ in pairs], [v for _, v in pairs]


def save_curves(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Plot ``run_dir/metrics.jsonl`` into ``out`` (default ``run_dir/curves.png``), atomically; return its path.

    Three panels over epochs: train and test loss, train and test top-1 (%), learning rate (at each epoch's
    end). A cut-off last metrics line (a killed run) is left out. InputError if there is no complete row.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    metrics = run_dir / METRICS
    if not metrics.is_file():
        raise InputError(f"{run_dir}: no {METRICS} to plot")
    rows, _ = read_metrics(metrics)
    if not rows:
        raise InputError(f"{metrics} holds no complete epoch to plot")
    rows.sort(key=lambda r: r["epoch"])
    model = ""
    if (run_dir / CONFIG).is_file():
        import yaml

        config = yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8"))
        model = ((config or {}).get("model") or {}).get("name", "") if isinstance(config, dict) else ""

    fig = Figure(figsize=(12, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    panels = [
        ("loss", [("train_loss", "train"), ("test_loss", "test")]),
        ("top-1 accuracy (%)", [("train_top1", "train"), ("test_top1", "test")]),
        ("learning rate", [("lr", "lr")]),
    ]
    for k, (label, series) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        for key, name in series:
            xs, ys = _series(rows, key)
            if xs:
                # Markers too: with one or two epochs a line alone would show nothing.
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label=name)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(series) > 1 and ax.lines:
            ax.legend(fontsize=8)
    best = max((r for r in rows if number(r.get("test_top1")) is not None), key=lambda r: r["test_top1"], default=None)
    best_text = f", best test top-1 {best['test_top1']:.2f}% (epoch {best['epoch']})" if best else ""
    fig.suptitle(f"{run_dir.name}: {model}, {len(rows)} epoch(s){best_text}", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(buf.getvalue(), Path(out) if out is not None else run_dir / CURVES)


__all__ = ["save_curves", "CURVES"]
