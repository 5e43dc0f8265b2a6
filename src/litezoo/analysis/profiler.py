"""Per-layer profile of a model: params, MACs, memory access cost, activation memory, time share.

Counts come from :mod:`litezoo.analysis.counting` (the operators that actually run); the time share comes
from a separate pass timed with module hooks. The hooks themselves cost a few microseconds per module, so
on small layers the shares are inflated; the whole-model latency (``latency``) is measured without hooks.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from litezoo.analysis.counting import CostTrace, example_input
from litezoo.analysis.latency import busy_warning, measure_latency, torch_threads
from litezoo.device import resolve_device
from litezoo.errors import InputError
from litezoo.tables import format_table

# Every number's convention, written into the JSON output and the table's footer.
CONVENTIONS = {
    "params": "parameters owned by the layer (shared ones once)",
    "macs_paper": "multiply-accumulates of conv, linear and matmul/attention products only (the papers' 'FLOPs')",
    "flops_all": "all-operator FLOPs: 2*macs_paper + bias adds + elementwise/norm/pool/softmax arithmetic",
    "mac_bytes": "memory access cost (ShuffleNet V2's MAC): bytes read + written by the layer's operators",
    "act_bytes": "activation memory: bytes of new tensors the layer's operators allocate",
    "time_share": "share of the hook-timed forward spent in the layer's own operators (hooks add overhead);"
    " totals.time_share_containers is the rest, spent in pure containers between their children",
}

COLUMNS = ["name", "type", "output_shape", "params", "macs_paper", "flops_all", "mac_bytes", "act_bytes",
           "time_ms", "time_share"]


@dataclass
class LayerRow:
    name: str  # module path, "" for the model's own forward (functional ops outside submodules)
    type: str
    output_shape: list | None
    params: int
    macs_paper: int
    flops_all: int
    mac_bytes: int
    act_bytes: int
    time_ms: float | None  # own time per forward, hook-timed
    time_share: float | None
    calls: int
    uncounted_ops: dict[str, int] = field(default_factory=dict)


@dataclass
class Profile:
    model: str
    input_shape: list[int]
    device: str
    dtype: str
    rows: list[LayerRow]
    totals: dict[str, Any]
    uncounted_ops: dict[str, int]
    op_counts: dict[str, int]
    latency: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": self.input_shape,
            "batch": self.input_shape[0],
            "device": self.device,
            "dtype": self.dtype,
            "conventions": CONVENTIONS,
            "totals": self.totals,
            "uncounted_ops": self.uncounted_ops,
            "op_counts": self.op_counts,
            "latency": self.latency,
            "layers": [asdict(r) for r in self.rows],
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in self.rows:
            writer.writerow([_csv_value(getattr(r, c)) for c in COLUMNS])
        writer.writerow(["TOTAL", "", "", *[_csv_value(self.totals.get(c)) for c in COLUMNS[3:]]])
        return buf.getvalue()

    def to_table(self) -> str:
        def row_cells(r: dict[str, Any]) -> dict[str, str]:
            return {
                "name": r["name"] or "(model)",
                "type": r["type"],
                "output_shape": _csv_value(r["output_shape"]),
                "params": human(r["params"]),
                "MACs": human(r["macs_paper"]),
                "FLOPs(all)": human(r["flops_all"]),
                "MAC bytes": human(r["mac_bytes"], binary=True),
                "act bytes": human(r["act_bytes"], binary=True),
                "time %": "" if r["time_share"] is None else f"{100 * r['time_share']:.1f}",
            }

        cells = [row_cells(asdict(r)) for r in self.rows]
        totals = {**self.totals, "name": "TOTAL", "type": "", "output_shape": None}
        cells.append(row_cells(totals))
        columns = list(cells[0])
        table = format_table(cells, columns, align_right=set(columns[3:]))
        lat = self.latency
        lines = [
            f"{self.model}  input {'x'.join(map(str, self.input_shape))}  {self.device} {self.dtype}",
            table,
            "",
            f"params {self.totals['params']:,}   MACs (paper: conv+linear+matmul) {self.totals['macs_paper']:,}"
            f"   FLOPs (all ops) {self.totals['flops_all']:,}",
            f"memory access cost {human(self.totals['mac_bytes'], binary=True)}B"
            f"   activations {human(self.totals['act_bytes'], binary=True)}B",
        ]
        if lat:
            lines.append(
                f"latency median {lat['median_ms']:.3f} ms (p10 {lat['p10_ms']:.3f}, p90 {lat['p90_ms']:.3f};"
                f" {lat['runs']} runs after {lat['warmup']} warm-up, {lat['threads']} threads,"
                f" torch {lat['torch_version']})"
            )
        warning = busy_warning(lat) if lat else None
        if warning:
            lines.append(warning)
        lines.append(
            "uncounted ops (ran, no cost rule): "
            + (", ".join(f"{k} x{v}" for k, v in self.uncounted_ops.items()) if self.uncounted_ops else "none")
        )
        lines.append("MACs = multiply-accumulates (1 MAC = 2 FLOPs); time % is hook-timed and approximate.")
        return "\n".join(lines)


def _flat_shape(shape: Any) -> bool:
    return isinstance(shape, list) and bool(shape) and all(isinstance(s, int) for s in shape)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return "x".join(map(str, value)) if _flat_shape(value) else str(value)
    return value


def human(value: int | float | None, binary: bool = False) -> str:
    """1234567 -> '1.23M' (or '1.18Mi' with ``binary``) for tables meant for people."""
    if value is None:
        return ""
    base = 1024.0 if binary else 1000.0
    suffixes = ["", "K", "M", "G", "T"]
    v, i = float(value), 0
    while abs(v) >= base and i < len(suffixes) - 1:
        v /= base
        i += 1
    if i == 0:
        return f"{int(value)}"
    return f"{v:.2f}{suffixes[i]}{'i' if binary else ''}"


def time_layers(model: nn.Module, x: torch.Tensor, warmup: int = 2, runs: int = 5) -> dict[str, float]:
    """Own time (ms per forward) of every module, from pre/post forward hooks.

    Own time = time between a module's pre- and post-hook minus the same for its child calls, so the own
    times of all modules add up to the whole forward. On CUDA every hook synchronises, which serialises the
    GPU and slows it down: use the shares, not the absolute numbers.
    """
    sync = (lambda: torch.cuda.synchronize(x.device)) if x.device.type == "cuda" else (lambda: None)
    name_of = {id(m): n for n, m in model.named_modules()}
    own: dict[str, float] = {n: 0.0 for n in name_of.values()}
    stack: list[list] = []  # [name, start, time spent in children]
    recording = [False]

    def pre(module, _inputs):
        sync()
        stack.append([name_of[id(module)], time.perf_counter(), 0.0])

    def post(module, _inputs, _output):
        sync()
        name, start, children = stack.pop()
        elapsed = time.perf_counter() - start
        if recording[0]:
            own[name] += elapsed - children
        if stack:
            stack[-1][2] += elapsed

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post, always_call=True))
    try:
        with torch.inference_mode():
            for i in range(warmup + runs):
                recording[0] = i >= warmup
                model(x)
    finally:
        for h in handles:
            h.remove()
    return {n: 1e3 * t / runs for n, t in own.items()}


def profile_model(
    model: nn.Module,
    input_size: int | tuple[int, int] = 224,
    batch: int = 1,
    in_chans: int | None = None,
    device: str | torch.device = "cpu",
    name: str | None = None,
    time_it: bool = True,
    warmup: int = 5,
    runs: int = 20,
    threads: int | None = None,
) -> Profile:
    """Count and time ``model`` on a random ``(batch, in_chans, H, W)`` input.

    Rows: every leaf module that ran, plus every container whose own ``forward`` ran operators (functional
    code such as a residual add or a channel shuffle) or owns parameters (e.g. ViT's position embedding).
    ``time_it=False`` skips both timing passes (counts only). ``threads``: CPU threads while timing.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"expected an nn.Module, got {type(model).__name__}")
    dev = resolve_device(device)
    was_training = model.training
    model = model.to(dev).eval()
    x = example_input(model, input_size, in_chans, batch, device=dev)
    trace = CostTrace(model)
    try:
        trace.run(x)
    except RuntimeError as exc:
        raise InputError(f"{type(model).__name__} cannot run on input {tuple(x.shape)}: {exc}".splitlines()[0]) from exc

    with torch_threads(threads):
        own_ms = time_layers(model, x) if time_it else {}
    total_ms = sum(own_ms.values())
    rows = []
    container_ms = 0.0  # own time of pure containers: the hooks' overhead and Python dispatch between children
    for mod_name in trace.order:
        m = trace.modules[mod_name]
        if m.has_children and not m.ops and not m.params:
            container_ms += own_ms.get(mod_name, 0.0)
            continue  # a pure container: its children have the rows
        t = own_ms.get(mod_name)
        rows.append(
            LayerRow(
                name=mod_name, type=m.type, output_shape=m.output_shape, params=m.params, macs_paper=m.macs,
                flops_all=m.flops, mac_bytes=m.mac_bytes, act_bytes=m.alloc_bytes,
                time_ms=t, time_share=(t / total_ms if t is not None and total_ms > 0 else None),
                calls=m.calls, uncounted_ops=dict(m.uncounted),
            )
        )
    # Parameters of modules that never ran (e.g. an unused head) still count in the model's size.
    totals = {
        "params": sum(p.numel() for p in model.parameters()),
        "params_unused": sum(trace.modules[n].params for n in trace.modules if trace.modules[n].calls == 0),
        "macs_paper": trace.total("macs"),
        "flops_all": trace.total("flops"),
        "mac_bytes": trace.total("mac_bytes"),
        "act_bytes": trace.total("alloc_bytes"),
        "time_ms": total_ms if time_it else None,
        "time_share": 1.0 if time_it else None,
        "time_share_containers": (container_ms / total_ms if total_ms > 0 else 0.0) if time_it else None,
    }
    latency = measure_latency(model, tuple(x.shape), dev, warmup, runs, threads) if time_it else None
    model.train(was_training)
    return Profile(
        model=name or getattr(model, "model_name", type(model).__name__),
        input_shape=list(x.shape),
        device=str(dev),
        dtype=str(x.dtype).replace("torch.", ""),
        rows=rows,
        totals=totals,
        uncounted_ops=trace.uncounted_ops(),
        op_counts=trace.op_counts(),
        latency=latency,
    )
