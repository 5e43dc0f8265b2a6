"""One leaderboard row per run: model, size, cost, measured latency, best accuracy and where it was measured,
time to train, precision and CPU — each figure taken from the run folder, never invented.

Parameters and MACs are counted on the model rebuilt from the run's config (``litezoo.analysis.counting``, the
numbers ``litezoo models`` and ``compare`` print); that needs torch. Latency appears only when a ``bench`` or
``profile`` result was saved in the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from litezoo.report.runs import RunRecord, number


@dataclass
class Entry:
    run: str  # unique display name
    record: RunRecord
    status: str  # "finished" | "stopped early" | "in progress"
    model: str
    image_size: int | None
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    latency_source: str = ""  # file and conditions, e.g. "profile.json: median of 30, batch 1, cpu, 2 threads"
    best_top1: float | None = None
    best_source: str = ""  # e.g. "cifar10 test split, epoch 9" or "eval_test.json (flip TTA)"
    epochs_done: int = 0
    epochs_planned: int | None = None
    time_s: float | None = None  # wall-clock of training including evaluation, at the last logged epoch
    train_time_s: float | None = None  # training steps only
    precision: str = ""
    precision_note: str = ""  # why it was chosen (run.json), for the tooltip
    cpu: str = ""
    notes: list[str] = field(default_factory=list)


def evaluated_on(record: RunRecord) -> str:
    """What the trainer evaluated on: the test split of data.path (and how much of it)."""
    data = record.section("data")
    path = str(data.get("path") or "?")
    name = Path(path).name or path
    limit = data.get("limit_eval")
    return f"{name} test" + (f", first {limit}" if isinstance(limit, int) else "")


def _latency(record: RunRecord) -> tuple[float | None, str]:
    """Batch-1 latency from a saved result in the run folder: (ms, where it comes from and how it was measured).

    ``litezoo profile --json`` holds one ``latency`` block; ``litezoo bench --json`` one row per runtime, batch and
    thread count, of which the fastest batch-1 row is taken (the runtime named in the source).
    """
    for found in record.timings:
        file = found["file"]
        if isinstance(found.get("rows"), list):  # bench
            rows = [r for r in found["rows"] if isinstance(r, dict) and r.get("batch") == 1
                    and number(r.get("median_ms")) is not None]  # fmt: skip
            if not rows:
                continue
            r = min(rows, key=lambda r: r["median_ms"])
            how = ", ".join(str(x) for x in (r.get("runtime"), r.get("precision")) if x)
            return r["median_ms"], f"{file}: fastest batch-1 row, {how}, {r.get('threads')} threads, " \
                f"median of {r.get('calls', '?')} calls"  # fmt: skip
        latency = found.get("latency") if isinstance(found.get("latency"), dict) else found  # profile
        ms = number(latency.get("median_ms"))
        if ms is None:
            continue
        conditions = [f"batch {latency['batch']}" if "batch" in latency else "", str(latency.get("device") or ""),
                      str(latency.get("dtype") or ""),
                      f"{latency['threads']} threads" if "threads" in latency else ""]  # fmt: skip
        runs = f"median of {latency['runs']}" if "runs" in latency else "median"
        return ms, f"{file}: {runs}, " + ", ".join(c for c in conditions if c)
    return None, ""


def _best(record: RunRecord) -> tuple[float | None, str]:
    """Best test top-1 of the metrics rows, or of a saved ``litezoo eval`` result if that is higher."""
    best_row = record.best
    top1, source = (best_row["test_top1"], f"{evaluated_on(record)}, epoch {best_row['epoch']}") if best_row \
        else (None, "")  # fmt: skip
    for ev in record.evals:
        value = number(ev.get("top1"))
        if value is None or (top1 is not None and value <= top1):
            continue
        views = (["flip"] if ev.get("tta_flip") else []) + ([f"shift {ev['tta_translate']}px"]
                                                             if ev.get("tta_translate") else [])  # fmt: skip
        data = Path(str(ev.get("data") or "")).name or "?"
        tta = f", {' + '.join(views)} TTA" if views else ""
        top1, source = value, f"{data} {ev.get('split', '?')} split{tta} ({ev['file']})"
    return top1, source


def _precision(record: RunRecord) -> str:
    """The precision the run used when recorded (run.json), else the config's train.amp setting."""
    recorded = record.run_info.get("precision")
    if isinstance(recorded, str) and recorded:
        return recorded
    amp = record.section("train").get("amp")
    return f"amp {amp}" if amp not in (None, "") else ""


def _cpu(record: RunRecord) -> str:
    """The CPU the run trained on (run.json's machine block), with its CPU count and any GPU; "" if not recorded.

    Not taken from a profile/bench result: that may have been measured on another machine.
    """
    m = record.machine
    name = m.get("cpu_model")
    if not isinstance(name, str) or not name:
        return ""
    count = m.get("cpus_usable") or m.get("cpu_count")
    gpu = m.get("gpu_name")
    return name + (f", {count} CPUs" if isinstance(count, int) else "") + (f"; {gpu}" if isinstance(gpu, str) else "")


def _costs(record: RunRecord, image_size: int | None, cache: dict) -> tuple[int | None, int | None, str]:
    """(parameters, MACs at image_size, problem) of the run's model rebuilt from its config (batch 1)."""
    model_cfg = record.section("model")
    key = (record.model, model_cfg.get("num_classes"), model_cfg.get("in_chans"), image_size)
    if key not in cache:
        try:
            from litezoo.analysis.counting import trace_costs
            from litezoo.registry import create_model

            model = create_model(record.model, num_classes=model_cfg.get("num_classes") or 1000,
                                 in_chans=model_cfg.get("in_chans") or 3)  # fmt: skip
            params = sum(p.numel() for p in model.parameters())
            macs = int(trace_costs(model, image_size, model_cfg.get("in_chans")).total("macs")) if image_size else None
            cache[key] = (params, macs, "" if image_size else "no data.image_size in config.yaml: MACs not counted")
        except ImportError as exc:
            cache[key] = (None, None, f"params/MACs need torch ({exc.name} not importable)")
        except ValueError as exc:  # unknown model name (e.g. a zoo newer than this one)
            cache[key] = (None, None, f"params/MACs not counted: {str(exc).splitlines()[0]}")
    return cache[key]


def build_entries(records: list[RunRecord]) -> list[Entry]:
    """Leaderboard rows in the order of ``records``; run names made unique by their parent folder if needed."""
    names = [r.name for r in records]
    cache: dict = {}
    entries = []
    for record, name in zip(records, names):
        if names.count(name) > 1:
            name = f"{record.path.parent.name}/{name}"
        planned = record.planned_epochs
        done = record.rows[-1]["epoch"]
        status = "in progress" if not record.finished else ("stopped early" if planned and done < planned
                                                             else "finished")  # fmt: skip
        size = record.section("data").get("image_size")
        size = size if isinstance(size, int) else None
        params, macs, problem = _costs(record, size, cache)
        latency, latency_source = _latency(record)
        best, best_source = _best(record)
        last = record.rows[-1]
        entries.append(Entry(
            run=name, record=record, status=status, model=record.model, image_size=size, params=params, macs=macs,
            latency_ms=latency, latency_source=latency_source, best_top1=best, best_source=best_source,
            epochs_done=done, epochs_planned=planned, time_s=number(last.get("time_s")),
            train_time_s=number(last.get("train_time_s")), precision=_precision(record),
            precision_note=str(record.run_info.get("precision_reason") or ""), cpu=_cpu(record),
            notes=[problem] if problem else [],
        ))  # fmt: skip
    return entries


def format_duration(seconds: float | None) -> str:
    """``95.2`` -> ``1m 35s``; ``3725`` -> ``1h 02m``; None -> ``""``."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def format_count(n: int | float | None) -> str:
    """``1_330_000`` -> ``1.33M``; ``149_500_000`` -> ``149.5M``; ``37.7e9`` -> ``37.75G``."""
    if n is None:
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.2f}{unit}" if value < 100 else f"{value:.1f}{unit}"
    return f"{n:g}"


__all__ = ["Entry", "build_entries", "evaluated_on", "format_duration", "format_count"]
