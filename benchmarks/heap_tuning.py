"""Does keeping freed memory in the heap (litezoo.heap.heap_kept) speed up CPU training steps?

Each (model, setting) runs in its own fresh process, settings alternated (off, on, off, on ...), so one process's
heap never carries over into the next. A child times training steps (forward, backward, SGD) on random data at
32 px, channels_last, in the precision `amp auto` picks, and records per step: images/s, minor page faults and
kernel (sys) CPU seconds.

    python benchmarks/heap_tuning.py                    # writes benchmarks/results/heap_tuning.json
    python benchmarks/heap_tuning.py --repeats 3 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "heap_tuning.json"
CASES = [("vgg_fast_cifar", 1024), ("mobilenet_v1_x0_5_cifar", 512)]


def child(model_name: str, batch: int, steps: int, keep: bool) -> dict:
    import torch
    import torch.nn.functional as F

    import litezoo
    from litezoo.heap import heap_kept
    from litezoo.precision import autocast, choose_precision

    precision = choose_precision("auto", torch.device("cpu"))
    torch.manual_seed(0)
    model = litezoo.create_model(model_name, num_classes=10).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    rows = []
    with heap_kept(keep) as active:
        for _ in range(steps):
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            with autocast(precision, torch.device("cpu")):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
            rows.append({"images_per_s": batch / dt, "minor_faults": r1.ru_minflt - r0.ru_minflt,
                         "sys_s": r1.ru_stime - r0.ru_stime})  # fmt: skip
    steady = rows[2:]  # the first steps allocate the heap and warm oneDNN's caches
    med = lambda k: sorted(r[k] for r in steady)[len(steady) // 2]  # noqa: E731
    return {"model": model_name, "batch": batch, "precision": precision.mode, "keep_heap": keep,
            "active": active, "threads": torch.get_num_threads(), "median_images_per_s": round(med("images_per_s"), 1),
            "median_minor_faults_per_step": med("minor_faults"), "median_sys_s_per_step": round(med("sys_s"), 3),
            "steps": rows}  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2, help="fresh processes per (model, setting)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per process (the first 2 are not counted)")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "BATCH", "KEEP"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        name, batch, keep = args.child
        print(json.dumps(child(name, int(batch), args.steps, keep == "1")))
        return

    from litezoo.fsutil import atomic_write_bytes
    from litezoo.machine import machine_info

    result = {"benchmark": "heap_tuning", "machine": machine_info(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": []}  # fmt: skip
    for name, batch in CASES:
        for _ in range(args.repeats):
            for keep in ("0", "1"):
                cmd = [sys.executable, __file__, "--steps", str(args.steps), "--child", name, str(batch), keep]
                load = list(os.getloadavg())
                run = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                run["load_average_before"] = load
                result["runs"].append(run)
                print(f"{name:28s} b{batch} {run['precision']:4s} keep_heap={keep}: {run['median_images_per_s']:7.1f} "
                      f"img/s, {run['median_minor_faults_per_step']:7d} faults/step, "
                      f"{run['median_sys_s_per_step']:.2f} s sys/step", flush=True)  # fmt: skip
    summary = {}
    for name, batch in CASES:
        on = [r["median_images_per_s"] for r in result["runs"] if r["model"] == name and r["keep_heap"]]
        off = [r["median_images_per_s"] for r in result["runs"] if r["model"] == name and not r["keep_heap"]]
        summary[name] = {"keep_heap_images_per_s": on, "default_images_per_s": off,
                         "speedup_of_means": round(sum(on) / len(on) / (sum(off) / len(off)), 3)}  # fmt: skip
    result["summary"] = summary
    atomic_write_bytes(json.dumps(result, indent=1).encode(), OUT)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
