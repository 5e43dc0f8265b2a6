"""The run's metrics files: one row per epoch in metrics.jsonl and metrics.csv (and TensorBoard if asked for).

Every number the trainer logs goes through :class:`MetricsLog`, written by the main process only. A row holds
the columns of :data:`METRIC_COLUMNS` (``None`` where there was no evaluation that epoch).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from litezoo.fsutil import atomic_write_bytes
from litezoo.tblog import TensorBoardLog

METRIC_COLUMNS = [
    "epoch", "step", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5",
    "images_per_s", "epoch_time_s", "eval_time_s", "train_time_s", "time_s", "skipped_steps",
    "constant_predictions",
]  # fmt: skip


class MetricsLog:
    """metrics.jsonl (one JSON object per epoch), metrics.csv, and with ``tensorboard`` TensorBoard event files
    in ``run_dir/tensorboard`` (every row's numbers per epoch, the loss and lr per step: litezoo.tblog)."""

    def __init__(self, run_dir: Path, history: list[dict[str, Any]], tensorboard: bool = False):
        self.jsonl = run_dir / "metrics.jsonl"
        self.csv = run_dir / "metrics.csv"
        self.rows = list(history)
        # Rewrite from the checkpoint's history: a run killed after its last checkpoint may have logged rows
        # for epochs that will now be trained again.
        atomic_write_bytes("".join(json.dumps(r) + "\n" for r in self.rows).encode(), self.jsonl)
        self._write_csv()
        self.tb = TensorBoardLog(run_dir / "tensorboard") if tensorboard else None

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._write_csv()
        if self.tb is not None:
            self.tb.log_epoch(row["epoch"], {key: row.get(key) for key in METRIC_COLUMNS[1:]})

    def log_step(self, step: int, loss: float, lr: float) -> None:
        """One optimizer step's loss and lr (TensorBoard only: metrics.jsonl holds one row per epoch)."""
        if self.tb is not None:
            self.tb.log_step(step, {"loss": loss, "lr": lr})

    def _write_csv(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(buf.getvalue().encode(), self.csv)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

