"""Where does a lightweight net's training step spend its time on this CPU? (Issue 20's "depthwise-conv training
speed" lever.)

One model's training step as the trainer runs it on a CPU (heap kept, channels_last, the chosen precision):
forward, cross-entropy, backward, SGD with nesterov momentum, on random data, under torch.profiler for a few
steps; every operator's *self* time grouped by what it computes: dense convs and depthwise convs (told apart by
the weight's shape, (C, 1, k, k) for depthwise), forward and backward each; BatchNorm; activations; the rest (loss,
optimizer, allocation, copies). Whole-step images/s per batch size, eager against torch.compile, are
``benchmarks/time_to_accuracy.py throughput --batch N --compile``.

    python benchmarks/train_step_profile.py      # mobilenet_v1_x0_75_cifar, fp32, 32 px, batch 512
    python benchmarks/train_step_profile.py --model shufflenet_v2_x1_0_cifar --amp bf16 --batch 256

Writes ``benchmarks/results/train_step_profile_<model>_<precision>.json`` (machine block, every figure).
Duration: under a minute on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ACTIVATIONS = ("relu", "threshold", "clamp", "hardtanh", "hardswish", "silu", "sigmoid", "gelu")


def is_depthwise_weight(shape) -> bool:
    """(C, 1, k, k) with C > 1: a depthwise conv's weight (the nets here have no 1-channel k x k activations)."""
    return len(shape) == 4 and shape[0] > 1 and shape[1] == 1 and shape[2] == shape[3] and shape[2] <= 7


def category(name: str, shapes) -> str:
    """What an operator of the profile computes: '<kind> fwd|bwd' or 'other'."""
    direction = "bwd" if "backward" in name else "fwd"
    if "conv" in name:
        return f"{'depthwise' if any(is_depthwise_weight(s) for s in shapes) else 'dense'} conv {direction}"
    if "batch_norm" in name:
        return f"batchnorm {direction}"
    if any(a in name for a in ACTIVATIONS):
        return f"activation {direction}"
    return "other"


def operator_times(events) -> dict[str, dict[str, float]]:
    """Self CPU time (us) of a profile's aten operators by category, then by operator name."""
    ops: dict[str, dict[str, float]] = {}
    for e in events:
        if not e.name.startswith("aten::"):
            continue  # autograd-engine and wrapper rows: their own time is bookkeeping, kept out of the shares
        named = ops.setdefault(category(e.name, e.input_shapes or []), {})
        named[e.name] = named.get(e.name, 0.0) + e.self_cpu_time_total
    return ops


def make_step(model, batch: int, size: int, precision, device):
    """A closure doing one training step on fixed random data (B, 3, size, size), channels_last."""
    import torch
    import torch.nn.functional as F

    from litezoo.precision import autocast

    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with autocast(precision, device):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilenet_v1_x0_75_cifar")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--amp", default="off", help="precision: off (fp32) | bf16 | auto's pick by CPU flags")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import torch

    import litezoo
    from litezoo.fsutil import atomic_write_bytes
    from litezoo.heap import heap_kept
    from litezoo.machine import machine_info
    from litezoo.precision import choose_precision

    device = torch.device("cpu")
    precision = choose_precision(args.amp, device)
    torch.manual_seed(0)

    result = {"benchmark": "train_step_profile", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": args.model,
              "size": args.size, "precision": precision.mode, "memory_format": "channels_last",
              "threads": torch.get_num_threads()}  # fmt: skip
    model = litezoo.create_model(args.model, num_classes=10).to(memory_format=torch.channels_last).train()
    batch = args.batch
    with heap_kept(True):  # as the trainer on a CPU (train.keep_heap)
        step = make_step(model, batch, args.size, precision, device)
        for _ in range(3):  # oneDNN creates its kernels, the heap grows to its working size
            step()
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(args.profile_steps):
                step()
        ops = operator_times(prof.events())
        totals = {cat: sum(named.values()) for cat, named in ops.items()}
        whole = sum(totals.values())
        result["profile"] = {
            "batch": batch, "steps": args.profile_steps,
            "ms_per_step": {k: round(v / 1e3 / args.profile_steps, 1) for k, v in sorted(totals.items())},
            "share": {k: round(v / whole, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
            "top_operators": {k: {n: round(t / 1e3 / args.profile_steps, 1) for n, t in
                                  sorted(v.items(), key=lambda kv: -kv[1])[:3]} for k, v in ops.items()},
        }  # fmt: skip
        print(f"{args.model} {precision.mode} b{batch} {args.size}px, share of the step's operator time:")
        for k, v in result["profile"]["share"].items():
            print(f"  {k:22s} {100 * v:5.1f}%  {result['profile']['ms_per_step'][k]:8.1f} ms/step")

    out = args.out or RESULTS / f"train_step_profile_{args.model}_{precision.mode}.json"
    atomic_write_bytes(json.dumps(result, indent=1).encode(), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
