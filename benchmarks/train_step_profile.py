"""Where does a lightweight net's training step spend its time on this CPU, and would torch.compile or another
batch size make it faster? (Issue 20's "depthwise-conv training speed" lever.)

One model's training step as the trainer runs it on a CPU (heap kept, channels_last, the chosen precision):
forward, cross-entropy, backward, SGD with nesterov momentum, on random data. Three measurements in one process:

  profile   torch.profiler over a few steps; every operator's *self* time grouped by what it computes: dense
            convs and depthwise convs (told apart by the weight's shape, (C, 1, k, k) for depthwise), forward and
            backward each; BatchNorm; activations; the rest (loss, optimizer, allocation, copies).
  batch     images/s at each of --batches, the sizes interleaved round by round so a drift hits all alike.
  compile   images/s of the eager model and of ``torch.compile(model)`` (inductor), alternated, at the first batch
            size; the compile's first step is timed on its own.

    python benchmarks/train_step_profile.py      # mobilenet_v1_x0_75_cifar, fp32, 32 px, batches 512 256 128
    python benchmarks/train_step_profile.py --model shufflenet_v2_x1_0_cifar --amp bf16 --no-compile

Writes ``benchmarks/results/train_step_profile_<model>_<precision>.json`` (machine block, every figure).
Duration: ~3 minutes at the defaults on a 2-core machine (the compile ~40 s of it).
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def images_per_s(step, batch: int, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilenet_v1_x0_75_cifar")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--amp", default="off", help="precision: off (fp32) | bf16 | auto's pick by CPU flags")
    p.add_argument("--batches", type=int, nargs="+", default=[512, 256, 128])
    p.add_argument("--images", type=int, default=5120, help="images per timed round (default 5120)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison")
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

    def fresh_model():
        return litezoo.create_model(args.model, num_classes=10).to(memory_format=torch.channels_last).train()

    result = {"benchmark": "train_step_profile", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": args.model,
              "size": args.size, "precision": precision.mode, "memory_format": "channels_last",
              "threads": torch.get_num_threads()}  # fmt: skip
    model = fresh_model()
    with heap_kept(True):  # as the trainer on a CPU (train.keep_heap)
        # --- profile: where one step's time goes, at the first batch size -------------------------------------------
        batch = args.batches[0]
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

        # --- batch: images/s per batch size, interleaved -------------------------------------------------------------
        steps_of = {b: make_step(model, b, args.size, precision, device) for b in args.batches}
        for b, s in steps_of.items():
            s(), s()  # warm each shape
        per_batch: dict[int, list[float]] = {b: [] for b in args.batches}
        for _ in range(args.rounds):
            for b, s in steps_of.items():
                per_batch[b].append(round(images_per_s(s, b, max(1, args.images // b)), 1))
        result["batch"] = {str(b): {"images_per_s": v, "median": statistics.median(v)} for b, v in per_batch.items()}
        print("images/s by batch size: " + ", ".join(f"{b}: {statistics.median(v):.0f}" for b, v in per_batch.items()))

        # --- compile: eager against inductor, alternated -------------------------------------------------------------
        if not args.no_compile:
            compiled_model = torch.compile(fresh_model())
            compiled = make_step(compiled_model, batch, args.size, precision, device)
            t = time.perf_counter()
            compiled()  # traces and compiles forward and backward
            compile_s = time.perf_counter() - t
            compiled()
            rounds = {"eager": [], "compiled": []}
            for _ in range(args.rounds):
                rounds["eager"].append(round(images_per_s(step, batch, max(1, args.images // batch)), 1))
                rounds["compiled"].append(round(images_per_s(compiled, batch, max(1, args.images // batch)), 1))
            result["compile"] = {"batch": batch, "first_step_s": round(compile_s, 1),
                                 **{k: {"images_per_s": v, "median": statistics.median(v)} for k, v in rounds.items()}}  # fmt: skip
            print(f"torch.compile: first step {compile_s:.0f} s; eager {statistics.median(rounds['eager']):.0f} "
                  f"vs compiled {statistics.median(rounds['compiled']):.0f} images/s")  # fmt: skip

    out = args.out or RESULTS / f"train_step_profile_{args.model}_{precision.mode}.json"
    atomic_write_bytes(json.dumps(result, indent=1).encode(), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
