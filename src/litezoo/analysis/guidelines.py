"""ShuffleNet V2's four micro-experiments (guidelines G1–G4), re-run on this machine beside the paper's numbers.

Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018
(arXiv:1807.11164), Section 2, Tables 1–4. The paper measured a GTX 1080Ti (cuDNN 7.0, "Batches/sec.") and a
Qualcomm Snapdragon 810 ARM CPU on a single thread ("Images/sec."; the paper labels it "ARM" in Table 1 and
"CPU" in Tables 2–4). Every network is 10 stacked blocks on 56x56 inputs; the channel counts are chosen so
that all rows of a column have the same FLOPs, and the columns scale the channels by x1, x2, x4 (G1, G2) or
use three widths c (G3, G4).

What we build (the paper shows the blocks only in figures; our reading of them is stated here):

G1  block = 1x1 conv c1 -> c2, then 1x1 conv c2 -> c1.                        (equal FLOPs: c1*c2 fixed)
G2  block = one 1x1 group conv c -> c with g groups.                           (equal FLOPs: c*c/g fixed)
G3  block = 1, 2 or 4 1x1 convs in series, or 2 or 4 in parallel (branch outputs summed, so blocks stack at
    constant width). Fragmented blocks use c/sqrt(n) channels so every block has the FLOPs of one c -> c conv.
G4  block = ResNet bottleneck at width c: 1x1 c -> c/4, 3x3 c/4 -> c/4, 1x1 c/4 -> c, with or without the
    ReLUs and the identity shortcut.
No BatchNorm anywhere (it folds into the convs at inference; the paper lists only the ops above).

On CUDA we use the paper's GPU channel counts and batch 8 (the batch of the paper's GPU figures); on CPU we use
its ARM channel counts (16x fewer FLOPs) and batch 1, so the full run takes a minute or two on a laptop CPU.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from litezoo.analysis.counting import CostTrace
from litezoo.analysis.latency import busy_warning, summarize, time_callable, torch_threads
from litezoo.device import resolve_device
from litezoo.errors import InputError
from litezoo.fsutil import atomic_write_bytes
from litezoo.machine import load_average, machine_info
from litezoo.tables import format_table

# ----------------------------------------------------------------------------------------------------------
# The paper's tables (ShuffleNet V2, Tables 1–4), transcribed. GPU: batches/s on a GTX 1080Ti; ARM: images/s
# on a Snapdragon 810, one thread.

PAPER = {
    "G1": {
        "caption": "Table 1: 1x1 conv pairs with c1:c2 varied at fixed FLOPs, 56x56 input, 10 blocks",
        "columns": ["x1", "x2", "x4"],
        "rows": ["1:1", "1:2", "1:6", "1:12"],
        "gpu_config": ["(128,128)", "(90,180)", "(52,312)", "(36,432)"],
        "gpu": [[1480, 723, 232], [1296, 586, 206], [876, 489, 189], [748, 392, 163]],
        "arm_config": ["(32,32)", "(22,44)", "(13,78)", "(9,108)"],
        "arm": [[76.2, 21.7, 5.3], [72.9, 20.5, 5.1], [69.1, 17.9, 4.6], [57.6, 15.1, 4.4]],
    },
    "G2": {
        "caption": "Table 2: 1x1 group conv with g varied at fixed FLOPs, 56x56 input, 10 layers",
        "columns": ["x1", "x2", "x4"],
        "rows": ["g=1", "g=2", "g=4", "g=8"],
        "gpu_config": ["c=128", "c=180", "c=256", "c=360"],
        "gpu": [[2451, 1289, 437], [1725, 873, 341], [1026, 644, 338], [634, 445, 230]],
        "arm_config": ["c=64", "c=90", "c=128", "c=180"],
        "arm": [[40.0, 10.2, 2.3], [35.0, 9.5, 2.2], [32.9, 8.7, 2.1], [27.8, 7.5, 1.8]],
    },
    "G3": {
        "caption": "Table 3: fragments in series / parallel at fixed FLOPs, 56x56 input, 10 blocks",
        "columns": ["c (small)", "c (medium)", "c (large)"],
        "rows": ["1-fragment", "2-fragment-series", "4-fragment-series", "2-fragment-parallel", "4-fragment-parallel"],
        "gpu_widths": [128, 256, 512],
        "gpu": [[2446, 1274, 434], [1790, 909, 336], [752, 745, 349], [1537, 803, 320], [691, 572, 292]],
        "arm_widths": [64, 128, 256],
        "arm": [[40.2, 10.1, 2.3], [38.6, 10.1, 2.2], [38.4, 10.1, 2.3], [33.4, 9.1, 2.2], [35.0, 8.4, 2.1]],
    },
    "G4": {
        "caption": "Table 4: ResNet bottleneck with ReLU and/or shortcut removed, 10 units",
        "columns": ["c (small)", "c (medium)", "c (large)"],
        "rows": ["ReLU+shortcut", "ReLU only", "shortcut only", "neither"],
        "gpu_widths": [32, 64, 128],
        "gpu": [[2427, 2066, 1436], [2647, 2256, 1735], [2672, 2121, 1458], [2842, 2376, 1782]],
        "arm_widths": [32, 64, 128],
        "arm": [[56.7, 16.9, 5.0], [61.9, 18.8, 5.2], [57.3, 18.2, 5.1], [66.3, 20.2, 5.4]],
    },
}

PAPER_SOURCE = (
    "Ma et al., ShuffleNet V2, ECCV 2018 (arXiv:1807.11164), Tables 1-4: GPU = GTX 1080Ti batches/s, "
    "ARM = Snapdragon 810 single-thread images/s"
)

# ----------------------------------------------------------------------------------------------------------
# The benchmark blocks.


def _conv1x1(c_in: int, c_out: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, groups=groups, bias=False)


class ParallelSum(nn.Module):
    """Branches on the same input, outputs summed: G3's parallel fragments at constant width."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class Bottleneck(nn.Module):
    """G4's ResNet bottleneck c -> c/4 -> c/4 -> c, with the ReLUs and the shortcut switchable."""

    def __init__(self, c: int, relu: bool, shortcut: bool):
        super().__init__()
        mid = max(1, c // 4)
        self.conv1 = _conv1x1(c, mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.conv3 = _conv1x1(mid, c)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv1(x))
        y = self.relu(self.conv2(y))
        y = self.conv3(y)
        if self.shortcut:
            y = y + x
        return self.relu(y)


def g1_net(c1: int, c2: int, blocks: int = 10) -> nn.Module:
    return nn.Sequential(*[nn.Sequential(_conv1x1(c1, c2), _conv1x1(c2, c1)) for _ in range(blocks)])


def g2_net(c: int, groups: int, blocks: int = 10) -> nn.Module:
    return nn.Sequential(*[_conv1x1(c, c, groups) for _ in range(blocks)])


def g3_net(c: int, fragments: int, parallel: bool, blocks: int = 10) -> tuple[nn.Module, int]:
    """Returns the network and its width: fragmented blocks use round(c / sqrt(n)) channels."""
    width = c if fragments == 1 else round(c / math.sqrt(fragments))
    layers: list[nn.Module] = []
    for _ in range(blocks):
        convs = [_conv1x1(width, width) for _ in range(fragments)]
        layers.append(ParallelSum(convs) if parallel and fragments > 1 else nn.Sequential(*convs))
    return nn.Sequential(*layers), width


def g4_net(c: int, relu: bool, shortcut: bool, blocks: int = 10) -> nn.Module:
    return nn.Sequential(*[Bottleneck(c, relu, shortcut) for _ in range(blocks)])


def _parse_pair(text: str) -> tuple[int, int]:
    a, b = text.strip("()").split(",")
    return int(a), int(b)


@dataclass
class Case:
    """One cell of a table: the network, its input channels and how it is labelled."""

    row: str
    column: str
    config: str
    build: Callable[[], tuple[nn.Module, int]]  # -> (network, input channels)


def _cases(guideline: str, platform: str, scales: list[int]) -> list[Case]:
    """The cells of one table for ``platform`` ('gpu' or 'arm'), at channel scales ``scales`` (1, 2, 4)."""
    paper = PAPER[guideline]
    cases: list[Case] = []
    if guideline == "G1":
        for row, cfg in zip(paper["rows"], paper[f"{platform}_config"]):
            c1, c2 = _parse_pair(cfg)
            for s in scales:
                cases.append(Case(row, f"x{s}", f"({c1 * s},{c2 * s})",
                                  lambda a=c1 * s, b=c2 * s: (g1_net(a, b), a)))
    elif guideline == "G2":
        for row, cfg in zip(paper["rows"], paper[f"{platform}_config"]):
            g, c = int(row.split("=")[1]), int(cfg.split("=")[1])
            for s in scales:
                # The ARM table's c=180 at g=8 is not a multiple of 8: use the nearest multiple (184).
                width = g * round(c * s / g + 1e-9) if (c * s) % g else c * s
                label = f"c={width}" + (f" (paper {c * s})" if width != c * s else "")
                cases.append(Case(row, f"x{s}", label, lambda c=width, g=g: (g2_net(c, g), c)))
    elif guideline == "G3":
        widths = paper[f"{platform}_widths"]
        for row in paper["rows"]:
            n, parallel = int(row[0]), row.endswith("parallel")
            for s in scales:
                c = widths[[1, 2, 4].index(s)]
                _, width = g3_net(c, n, parallel, blocks=1)
                cases.append(Case(row, f"c={c}", f"width {width}",
                                  lambda c=c, n=n, p=parallel: g3_net(c, n, p)))
    elif guideline == "G4":
        widths = paper[f"{platform}_widths"]
        flags = {"ReLU+shortcut": (True, True), "ReLU only": (True, False), "shortcut only": (False, True),
                 "neither": (False, False)}
        for row in paper["rows"]:
            relu, shortcut = flags[row]
            for s in scales:
                c = widths[[1, 2, 4].index(s)]
                cases.append(Case(row, f"c={c}", f"c={c}",
                                  lambda c=c, r=relu, sc=shortcut: (g4_net(c, r, sc), c)))
    return cases


def _verdict(guideline: str, rows: list[str], columns: list[str], speed: list[list[float]]) -> str:
    """One sentence on whether the paper's conclusion held here."""
    if guideline == "G4":
        full, bare = speed[0], speed[-1]
        gains = [100 * (b / f - 1) for f, b in zip(full, bare)]
        held = all(g > 0 for g in gains)
        return (
            f"G4 {'held' if held else 'did not hold'} here: removing ReLU and shortcut changed speed by "
            + ", ".join(f"{g:+.0f}%" for g in gains)
            + f" ({', '.join(columns)}; the paper saw about +20%)."
        )
    # G1-G3: the paper's first row (balanced channels / no groups / one fragment) should be fastest.
    best = [max(range(len(rows)), key=lambda r: speed[r][c]) for c in range(len(columns))]
    wins = sum(1 for b in best if b == 0)
    ratio = [speed[0][c] / speed[-1][c] for c in range(len(columns))]
    claim = {
        "G1": "equal channel widths (1:1) run fastest at fixed FLOPs",
        "G2": "more groups run slower at fixed FLOPs",
        "G3": "one fragment runs faster than fragmented blocks at fixed FLOPs",
    }[guideline]
    verdict = "held" if wins == len(columns) and all(r > 1.05 for r in ratio) else (
        "held partly" if wins > 0 or any(r > 1.05 for r in ratio) else "did not hold"
    )
    return (
        f"{guideline} ({claim}) {verdict} here: '{rows[0]}' was fastest in {wins}/{len(columns)} columns and "
        + ", ".join(f"{r:.2f}x" for r in ratio)
        + f" the speed of '{rows[-1]}' ({', '.join(columns)})."
    )


def run_guideline(
    guideline: str,
    device: str | torch.device = "cpu",
    quick: bool = False,
    warmup: int | None = None,
    runs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure one table. ``quick``: 14x14 inputs, x1 column only, 3 runs — for tests, not for conclusions."""
    if guideline not in PAPER:
        raise InputError(f"unknown guideline {guideline!r}; choose from {', '.join(PAPER)}")
    dev = resolve_device(device)
    platform = "gpu" if dev.type == "cuda" else "arm"
    batch = 8 if platform == "gpu" else 1
    size = 14 if quick else 56
    scales = [1] if quick else [1, 2, 4]
    warmup = (1 if quick else 5) if warmup is None else warmup
    runs = (3 if quick else 20) if runs is None else runs
    paper = PAPER[guideline]
    cases = _cases(guideline, platform, scales)

    # Build and warm every cell first, then time them in interleaved rounds (one call of each cell per round):
    # a burst of other work on a shared machine then slows every cell alike instead of a few unlucky ones.
    nets, inputs, traces = [], [], []
    for case in cases:
        net, chans = case.build()
        net = net.to(dev).eval()
        x = torch.randn(batch, chans, size, size, device=dev)
        trace = CostTrace(net)
        trace.run(x[:1])  # counts for one image
        nets.append(net)
        inputs.append(x)
        traces.append(trace)
    times: list[list[float]] = [[] for _ in cases]
    with torch.inference_mode():
        for net, x in zip(nets, inputs):
            time_callable(lambda: net(x), dev, warmup, 1)
        for _ in range(runs):
            for i, (net, x) in enumerate(zip(nets, inputs)):
                times[i] += time_callable(lambda: net(x), dev, 0, 1)

    measured: dict[tuple[str, str], dict[str, Any]] = {}
    for case, trace, cell_times in zip(cases, traces, times):
        stats = summarize(cell_times)
        measured[(case.row, case.column)] = {
            "config": case.config,
            "batches_per_s": 1e3 / stats["median_ms"],
            "median_ms": stats["median_ms"],
            "p10_ms": stats["p10_ms"],
            "p90_ms": stats["p90_ms"],
            "min_ms": stats["min_ms"],
            "macs_per_image": trace.total("macs"),
            "mac_bytes_per_image": trace.total("mac_bytes"),
        }
        if progress:
            progress(f"{guideline} {case.row:>20s} {case.column:>10s}: {1e3 / stats['median_ms']:9.1f} batches/s")

    columns = list(dict.fromkeys(c.column for c in cases))
    rows = paper["rows"]
    speed = [[measured[(r, c)]["batches_per_s"] for c in columns] for r in rows]
    return {
        "guideline": guideline,
        "caption": paper["caption"],
        "input_size": size,
        "batch": batch,
        "warmup": warmup,
        "runs": runs,
        "platform_settings": platform,
        "columns": columns,
        "rows": [
            {"row": r, **{c: measured[(r, c)] for c in columns}} for r in rows
        ],
        "paper": {
            "source": PAPER_SOURCE,
            "columns": paper["columns"],
            "gpu_batches_per_s": {r: v for r, v in zip(rows, paper["gpu"])},
            "arm_images_per_s": {r: v for r, v in zip(rows, paper["arm"])},
            "gpu_config": paper.get("gpu_config") or [f"c={w}" for w in paper["gpu_widths"]],
            "arm_config": paper.get("arm_config") or [f"c={w}" for w in paper["arm_widths"]],
        },
        "verdict": _verdict(guideline, rows, columns, speed) + (" (quick settings: not conclusive)" if quick else ""),
    }


def run_guidelines(
    device: str | torch.device = "cpu",
    quick: bool = False,
    which: list[str] | None = None,
    warmup: int | None = None,
    runs: int | None = None,
    threads: int | None = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """All four tables plus the machine they ran on.

    ``threads``: CPU threads during the run (default 1, as the paper's ARM runs; ``None`` keeps torch's
    setting). One thread also keeps a shared machine's other work from stalling a thread pool mid-layer.
    """
    dev = resolve_device(device)
    unknown = sorted(set(which or []) - set(PAPER))
    if unknown:
        raise InputError(f"unknown guideline(s) {', '.join(unknown)}; choose from {', '.join(PAPER)}")
    start = time.perf_counter()
    results = {}
    with torch_threads(threads):
        machine = machine_info(dev)  # records the thread count in use
        for g in which or list(PAPER):
            results[g] = run_guideline(g, dev, quick=quick, warmup=warmup, runs=runs, progress=progress)
    machine["load_average_after"] = load_average()
    return {
        "machine": machine,
        "device": str(dev),
        "quick": quick,
        "seconds": time.perf_counter() - start,
        "paper_source": PAPER_SOURCE,
        "guidelines": results,
    }


def format_guidelines(report: dict[str, Any]) -> str:
    """The measured tables beside the paper's, and the verdicts, as plain text."""
    m = report["machine"]
    lines = [
        f"ShuffleNet V2 guidelines on {m['cpu_model']} ({m['cpu_capability']}, {m['threads']} threads, "
        f"torch {m['torch_version']}){' on ' + m['gpu_name'] if 'gpu_name' in m else ''}",
        f"paper: {report['paper_source']}",
    ]
    busiest = max(m.get("load_average") or 0, m.get("load_average_after") or 0)
    warning = busy_warning({**m, "load_average": busiest or None})
    if warning:
        lines.append(warning)
    for g, res in report["guidelines"].items():
        on_gpu = res["platform_settings"] == "gpu"
        paper_vals = res["paper"]["gpu_batches_per_s" if on_gpu else "arm_images_per_s"]
        paper_label = "paper GPU" if on_gpu else "paper ARM"
        table_rows = []
        for i, row in enumerate(res["rows"]):
            cells = {"": row["row"], "config (1st col)": row[res["columns"][0]]["config"]}
            for col in res["columns"]:
                cells[f"here {col}"] = f"{row[col]['batches_per_s']:.1f}"
            for j, col in enumerate(res["paper"]["columns"][: len(res["columns"])]):
                cells[f"{paper_label} {col}"] = f"{paper_vals[row['row']][j]:g}"
            table_rows.append(cells)
        cols = list(table_rows[0])
        lines += [
            "",
            f"{g}: {res['caption']}  (here: {res['input_size']}x{res['input_size']}, batch {res['batch']},"
            f" batches/s = 1000 / median ms over {res['runs']} interleaved runs)",
            format_table(table_rows, cols, align_right=set(cols[2:])),
            res["verdict"],
        ]
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str) -> str:
    """Write ``report`` atomically (temp file in the same folder, fsync, rename); returns the path."""
    return str(atomic_write_bytes((json.dumps(report, indent=1) + "\n").encode("utf-8"), path))
