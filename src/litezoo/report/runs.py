"""Read a ``litezoo train`` run folder for reports: config, metrics rows, status, and what else lies there.

Torch-free on purpose (a report is made where the runs were copied, not where they trained). Tolerant where a
real run can be incomplete: a run killed while appending to ``metrics.jsonl`` leaves a cut-off last line; that
line is dropped and named in ``RunRecord.problems``. What is not a run at all (no ``config.yaml`` with a model
name, no complete metrics row) is an :class:`InputError` naming the folder.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from litezoo.errors import InputError

METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
# Files other commands leave in a run folder (or in a folder one level below it, e.g. `eval --out run/raw`).
RUN_INFO = "run.json"  # the trainer's: {"machine": {...}, "device", "precision", "precision_reason", ...}
CONFUSION_GLOB = "confusion_*.png"  # litezoo eval
EVAL_GLOB = "eval_*.json"  # litezoo eval
GRID_GLOBS = ("predictions*.png", "*grid*.png")  # litezoo predict --grid (blue right, red wrong)
TIMING_GLOBS = ("bench*.json", "profile*.json", "latency*.json")  # litezoo bench / profile --json saved there


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]  # complete metrics rows, in epoch order
    finished: bool  # the trainer exported the final weights after the last row
    problems: list[str] = field(default_factory=list)  # what was wrong but did not stop the report
    run_info: dict[str, Any] = field(default_factory=dict)  # run.json: device, precision, ... of the latest start
    machine: dict[str, Any] = field(default_factory=dict)  # run.json's machine block
    confusion_pngs: list[Path] = field(default_factory=list)
    grid_pngs: list[Path] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)  # eval_*.json contents (+ "file")
    timings: list[dict[str, Any]] = field(default_factory=list)  # bench/profile JSON contents (+ "file")

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def model(self) -> str:
        return str(self.section("model").get("name"))

    @property
    def planned_epochs(self) -> int | None:
        epochs = self.section("train").get("epochs")
        return epochs if isinstance(epochs, int) else None

    @property
    def best(self) -> dict[str, Any] | None:
        """The metrics row with the highest test top-1 (the first such row on ties), or None if none evaluated."""
        scored = [r for r in self.rows if number(r.get("test_top1")) is not None]
        return max(scored, key=lambda r: r["test_top1"]) if scored else None


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, null, NaN, a string, a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_metrics(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """Complete rows of a ``metrics.jsonl`` and a list of problems found.

    A last line without its newline that does not parse is a write cut off by a kill: dropped, reported. A bad
    line elsewhere is dropped and reported too (the rows around it still count). Rows without an integer
    ``epoch`` are not metrics rows and are dropped.
    """
    path = Path(path)
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    lines = data.split(b"\n")
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        last = lineno == len(lines)  # the text after the final newline: a line still being written
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if last:
                problems.append(f"{path.name}: last line cut off ({len(raw)} bytes; killed while writing?), dropped")
            else:
                problems.append(f"{path.name}:{lineno}: not valid JSON, dropped")
            continue
        if not isinstance(row, dict) or isinstance(row.get("epoch"), bool) or not isinstance(row.get("epoch"), int):
            problems.append(f"{path.name}:{lineno}: not a metrics row (no integer epoch), dropped")
            continue
        rows.append(row)
    return rows, problems


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (8-byte little-endian length, then JSON): shapes and metadata."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("shorter than its 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise ValueError(f"header length {n} is implausible")
        header = json.loads(f.read(n).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name}: unreadable ({type(exc).__name__}), ignored")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path.name}: not a JSON object, ignored")
        return None
    return value


def _found(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Files matching ``patterns`` in ``root`` and in its direct sub-folders (not checkpoints/ or tensorboard/)."""
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir() and p.name not in ("checkpoints", "tensorboard"))
    hits: list[Path] = []
    for folder in folders:
        for pattern in patterns:
            hits += sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
    return list(dict.fromkeys(hits))  # a file matching two patterns once


def load_run(path: str | os.PathLike) -> RunRecord:
    """Everything a report shows about one run folder. InputError if it is not a run or has no metrics row."""
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: does not exist")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    config_path = root / CONFIG
    if not config_path.is_file():
        inside = sorted(p.name for p in root.iterdir() if (p / CONFIG).is_file())
        hint = f"; it holds {len(inside)} run folder(s) ({', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''})" \
            f": pass them, e.g. {root / '*'}" if inside else ""  # fmt: skip
        raise InputError(f"{root}: not a run folder (no {CONFIG}){hint}")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise InputError(f"{root}: {CONFIG} is not valid YAML") from None
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise InputError(f"{root}: not a run folder ({CONFIG} names no model)")
    metrics_path = root / METRICS
    if not metrics_path.is_file():
        raise InputError(f"{root}: no {METRICS} yet (the run has not finished an epoch)")
    rows, problems = read_metrics(metrics_path)
    if not rows:
        detail = "; ".join(problems) if problems else "empty"
        raise InputError(f"{root}: {METRICS} holds no complete epoch ({detail})")
    rows.sort(key=lambda r: r["epoch"])

    record = RunRecord(root, config, rows, finished=False, problems=problems)
    weights = root / WEIGHTS
    if weights.is_file():
        try:
            header = safetensors_header(weights)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            record.problems.append(f"{WEIGHTS}: unreadable header ({exc}), ignored")
        else:
            meta = header.get("__metadata__", {}).get("litezoo")
            epoch = json.loads(meta).get("epoch") if isinstance(meta, str) else None
            # Finished when the exported weights are those of the last logged epoch (a resumed, longer run
            # still shows the earlier export until it ends).
            record.finished = epoch == rows[-1]["epoch"] if isinstance(epoch, int) else (
                record.planned_epochs is not None and rows[-1]["epoch"] >= record.planned_epochs)
    if (root / RUN_INFO).is_file() and (found := _read_json(root / RUN_INFO, record.problems)) is not None:
        record.run_info = found
        record.machine = found["machine"] if isinstance(found.get("machine"), dict) else {}
    record.confusion_pngs = _found(root, (CONFUSION_GLOB,))
    record.grid_pngs = [p for p in _found(root, GRID_GLOBS) if p not in record.confusion_pngs]
    for target, patterns in ((record.evals, (EVAL_GLOB,)), (record.timings, TIMING_GLOBS)):
        for file in _found(root, patterns):
            if (found := _read_json(file, record.problems)) is not None:
                target.append({**found, "file": str(file.relative_to(root))})
    return record


__all__ = ["RunRecord", "load_run", "read_metrics", "number", "safetensors_header", "METRICS", "CONFIG", "WEIGHTS"]
