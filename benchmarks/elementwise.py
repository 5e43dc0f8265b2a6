"""What do element-wise operators cost MobileNet V2 and V3 on this CPU? (ShuffleNet V2's G4, on whole networks.)

Two views per model, both from litezoo's own tools, in torch eager fp32 at batch 1:

  shares    ``litezoo.analysis.profile_model`` (the table of ``litezoo profile MODEL``), its rows grouped by what
            they compute: dense convs (1x1 and the stem), depthwise convs, BatchNorm, activations (ReLU, ReLU6,
            h-swish), squeeze-and-excitation (pool, two small convs, h-sigmoid gate, multiply), the residual adds
            (each block's own row), the classifier head — with each group's share of MACs, memory access cost
            and hook-timed time.
  ablation  the same network with its element-wise work taken away step by step, timed in interleaved rounds
            with ``litezoo.analysis.latency``: BatchNorm folded into the convs (what every deployment runtime
            does; same function), then ReLU6 removed and the shortcuts dropped (V2: the paper's G4 experiment),
            or h-swish replaced by ReLU and SE removed (V3). MACs are unchanged except where SE goes.

    python benchmarks/elementwise.py                                   # the three models, 1 thread
    python benchmarks/elementwise.py mobilenet_v2_x1_0 --size 160 --rounds 3 --out /tmp/e.json

Writes ``benchmarks/results/elementwise.json`` (machine block, every figure) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

MODELS = ["mobilenet_v2_x1_0", "mobilenet_v3_large_x1_0", "mobilenet_v3_small_x1_0"]
GROUPS = ["dense conv", "depthwise conv", "BatchNorm", "activation", "SE", "residual add", "head", "other"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- shares


def group_of(model, name: str) -> str:
    """What the profiler row ``name`` computes (rows are leaf modules, or containers with their own operators)."""
    import torch.nn as nn

    from litezoo.layers import SqueezeExcite

    modules = dict(model.named_modules())
    # Everything inside an SE module (and its own pool-and-multiply row) is the SE's cost.
    parts = name.split(".") if name else []
    for i in range(len(parts), 0, -1):
        if isinstance(modules.get(".".join(parts[:i])), SqueezeExcite):
            return "SE"
    if name == "head" or name.startswith("head."):
        return "head"
    module = modules[name]
    if isinstance(module, nn.Conv2d):
        return "depthwise conv" if module.groups > 1 and module.groups == module.in_channels else "dense conv"
    if isinstance(module, nn.BatchNorm2d):
        return "BatchNorm"
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid)):
        return "activation"
    if getattr(module, "use_residual", False):  # a block's own row: the shortcut's x + f(x)
        return "residual add"
    return "other"


def shares(name: str, size: int, threads: int, repeats: int) -> dict[str, Any]:
    """Profile ``name`` and sum its rows per group: MACs, FLOPs(all), memory access, activations, hook-timed ms."""
    from litezoo.analysis import profile_model
    from litezoo.registry import create_model

    model = create_model(name).eval()
    profile = profile_model(model, input_size=size, threads=threads, runs=repeats, warmup=5, name=name)
    groups = {g: {"rows": 0, "macs_paper": 0, "flops_all": 0, "mac_bytes": 0, "act_bytes": 0, "time_ms": 0.0}
              for g in GROUPS}  # fmt: skip
    for row in profile.rows:
        g = groups[group_of(model, row.name)]
        g["rows"] += 1
        for key in ("macs_paper", "flops_all", "mac_bytes", "act_bytes"):
            g[key] += getattr(row, key)
        g["time_ms"] += row.time_ms or 0.0
    totals = profile.totals
    hooked_ms = totals["time_ms"]  # all modules' own times, pure containers (hooks, dispatch) included
    for g in groups.values():
        g["macs_share"] = g["macs_paper"] / totals["macs_paper"]
        g["mac_bytes_share"] = g["mac_bytes"] / totals["mac_bytes"]
        g["time_share"] = g["time_ms"] / hooked_ms if hooked_ms else None
    latency = {k: profile.latency[k] for k in ("median_ms", "p10_ms", "p90_ms", "runs", "threads", "load_average")}
    return {"groups": groups, "totals": {k: totals[k] for k in ("params", "macs_paper", "flops_all", "mac_bytes",
                                                                "act_bytes")},
            "hook_timed_ms": hooked_ms, "containers_time_share": totals["time_share_containers"], "latency": latency, "uncounted_ops": profile.uncounted_ops}  # fmt: skip


# --------------------------------------------------------------------------------------------- ablation


def fold_batchnorm(model):
    """A copy with every Conv2d -> BatchNorm2d pair of a Sequential folded into one conv (eval: same outputs)."""
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        keys = list(seq._modules)
        for a, b in zip(keys, keys[1:]):
            if isinstance(seq._modules[a], nn.Conv2d) and isinstance(seq._modules[b], nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(seq._modules[a], seq._modules[b])
                seq._modules[b] = nn.Identity()
    return model


def replace_modules(model, kinds: tuple, make: Callable):
    """A copy with every module of a type in ``kinds`` replaced by ``make()`` (e.g. nn.Identity)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for key, child in list(parent._modules.items()):
            if isinstance(child, kinds):
                parent._modules[key] = make()
    return model


def without_shortcuts(model):
    model = copy.deepcopy(model)
    for m in model.modules():
        if getattr(m, "use_residual", False):
            m.use_residual = False
    return model


def variants(name: str) -> list[tuple[str, Any]]:
    """(label, model) steps: each removes one more kind of element-wise work from the previous one."""
    import torch.nn as nn

    from litezoo.layers import SqueezeExcite
    from litezoo.registry import create_model

    base = create_model(name).eval()
    folded = fold_batchnorm(base)
    steps = [("as built (eager, BatchNorm separate)", base), ("BatchNorm folded into the convs", folded)]
    if name.startswith("mobilenet_v2"):
        no_act = replace_modules(folded, (nn.ReLU6,), nn.Identity)
        steps += [("folded, ReLU6 removed", no_act), ("folded, ReLU6 and shortcuts removed", without_shortcuts(no_act))]
    else:
        relu = replace_modules(folded, (nn.Hardswish,), lambda: nn.ReLU(inplace=True))
        steps += [("folded, h-swish -> ReLU", relu),
                  ("folded, h-swish -> ReLU, SE removed", replace_modules(relu, (SqueezeExcite,), nn.Identity))]
    return steps


def ablation(name: str, size: int, threads: int, rounds: int, runs: int) -> list[dict[str, Any]]:
    """Every variant timed in ``rounds`` interleaved rounds of ``runs`` calls (a burst of other work hits all)."""
    import torch

    from litezoo.analysis import count_macs
    from litezoo.analysis.latency import summarize, time_callable, torch_threads

    steps = variants(name)
    x = torch.randn(1, 3, size, size)
    times: dict[str, list[float]] = {label: [] for label, _ in steps}
    with torch_threads(threads), torch.inference_mode():
        reference = steps[0][1](x)
        folded_error = float((steps[1][1](x) - reference).abs().max())
        for _ in range(rounds):
            for label, model in steps:
                times[label] += time_callable(lambda m=model: m(x), torch.device("cpu"), 2, runs)
    out = []
    base_ms = None
    for label, model in steps:
        s = summarize(times[label])
        base_ms = base_ms or s["median_ms"]
        out.append({"variant": label, "macs_paper": count_macs(model, size), **s, "calls": len(times[label]),
                    "vs_as_built": s["median_ms"] / base_ms})  # fmt: skip
    out[1]["max_abs_logit_change"] = folded_error  # folding is exact up to rounding
    return out


# ------------------------------------------------------------------------------------------------- report


def markdown(result: dict[str, Any]) -> str:
    lines = []
    for entry in result["models"]:
        sh = entry["shares"]
        lines += [f"**{entry['model']}** ({result['settings']['input_size']} px, batch 1, torch eager fp32, "
                  f"{result['settings']['threads']} thread(s); latency {sh['latency']['median_ms']:.1f} ms "
                  f"(p10 {sh['latency']['p10_ms']:.1f}, p90 {sh['latency']['p90_ms']:.1f}), hook-timed "
                  f"{sh['hook_timed_ms']:.1f} ms)", "",
                  "| group | rows | MACs | memory access | time (hook-timed) |", "|---|---:|---:|---:|---:|"]  # fmt: skip
        for g in GROUPS:
            v = sh["groups"][g]
            if not v["rows"]:
                continue
            lines.append(f"| {g} | {v['rows']} | {100 * v['macs_share']:.1f}% | {v['mac_bytes'] / 2**20:.1f} MiB "
                         f"({100 * v['mac_bytes_share']:.0f}%) | {v['time_ms']:.2f} ms ({100 * v['time_share']:.0f}%) |")
        if sh["containers_time_share"] is not None:
            lines.append(f"| (containers: hooks, dispatch) | | | | "
                         f"{sh['containers_time_share'] * sh['hook_timed_ms']:.2f} ms "
                         f"({100 * sh['containers_time_share']:.0f}%) |")
        lines += ["", "| variant | MACs | median ms (p10–p90) | vs as built |", "|---|---:|---:|---:|"]
        for a in entry["ablation"]:
            lines.append(f"| {a['variant']} | {a['macs_paper'] / 1e6:.1f}M | {a['median_ms']:.2f} "
                         f"({a['p10_ms']:.2f}–{a['p90_ms']:.2f}) | {a['vs_as_built']:.2f}x |")
        lines.append("")
    m = result["machine"]
    lines.append(f"{m['cpu_model']} ({m['cpus_usable']} CPUs, {m['cpu_capability']}), torch {m['torch_version']}; "
                 f"load average {result['load_average_before']} before, {result['load_average_after']} after"
                 + (" — CPU shared with other jobs" if result["cpu_shared"] else ""))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", default=MODELS, help=f"registry names (default: {' '.join(MODELS)})")
    p.add_argument("--size", type=int, default=224, help="input resolution (default 224)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs of the profiler's latency (default 30)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved ablation rounds (default 5)")
    p.add_argument("--runs", type=int, default=10, help="timed calls per variant per round (default 10)")
    p.add_argument("--cpu-shared", action="store_true", help="record that other jobs shared the CPU")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "elementwise.json")
    args = p.parse_args(argv)
    if min(args.size, args.threads, args.repeats, args.rounds, args.runs) < 1:
        p.error("--size, --threads, --repeats, --rounds and --runs must be positive")

    from litezoo.errors import InputError
    from litezoo.fsutil import atomic_write_bytes
    from litezoo.machine import load_average, machine_info
    from litezoo.registry import model_info

    try:
        for name in args.models:
            model_info(name)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    result = {
        "benchmark": "elementwise",
        "command": " ".join(["python", "benchmarks/elementwise.py", *(argv if argv is not None else sys.argv[1:])]),
        "cpu_shared": args.cpu_shared,
        "load_average_before": load_average(),
        "machine": machine_info(),
        "settings": {"input_size": args.size, "batch": 1, "threads": args.threads, "profile_repeats": args.repeats,
                     "ablation_rounds": args.rounds, "ablation_runs_per_round": args.runs,
                     "time_share": "hook-timed own time per module (litezoo.analysis.profiler.time_layers); the hooks "
                                   "add a few microseconds per module, which inflates small layers"},  # fmt: skip
        "models": [],
    }
    for name in args.models:
        log(f"== {name}")
        result["models"].append({"model": name, "shares": shares(name, args.size, args.threads, args.repeats),
                                 "ablation": ablation(name, args.size, args.threads, args.rounds, args.runs)})
    result["load_average_after"] = load_average()
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["markdown"] = markdown(result)
    atomic_write_bytes((json.dumps(result, indent=1, default=str) + "\n").encode(), args.out)
    print(result["markdown"])
    print(f"\n{args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
