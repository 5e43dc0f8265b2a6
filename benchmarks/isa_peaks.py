"""fp32 / bf16 peak rates of this CPU, natively and with the instruction set limited to AVX2 (how litezoo emulates
an AVX2-only machine), measured one after the other in the same run.

Why: the AVX2 time-to-accuracy runs (benchmarks/time_to_accuracy.py with ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2) run on an AVX-512 machine told to use AVX2 code only. Whether that is faster or slower
than a real AVX2-only machine is read off these rates: a matmul (MKL, as the issue's "fp32 matmul GFLOP/s"
figures) and the 3x3 convolution that dominates vgg_fast (oneDNN), forward and full training step
(forward + both backward passes), in fp32 and, where the CPU has it natively, bf16.

Each configuration runs in a fresh process (the ISA variables are read when torch loads).

    python benchmarks/isa_peaks.py                      # writes benchmarks/results/isa_peaks.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

CONFIGS = {
    "native": {},
    "avx2_emulated": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def _best_seconds(fn, repeats: int) -> float:
    fn()
    fn()  # warm-up: kernel selection, allocations
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tick)
    return best


def measure(threads: int, repeats: int) -> dict:
    """Runs in the child process: GFLOP/s of each kernel (best of ``repeats``)."""
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from litezoo.machine import cpu_native_bf16

    torch.set_num_threads(threads)
    bf16, why = cpu_native_bf16()
    rates = {}
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    # A conv of vgg_fast as trained: group 2's first conv, 64 -> 256 channels, 3x3 on 15x15 maps, batch 256,
    # channels_last.
    x = torch.randn(256, 64, 15, 15).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(64, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    conv_flop = 2 * 256 * 15 * 15 * 64 * 256 * 9  # multiply-adds x 2, forward

    for dtype in [torch.float32] + ([torch.bfloat16] if bf16 else []):
        name = "fp32" if dtype == torch.float32 else "bf16"
        aa, bb = a.to(dtype), b.to(dtype)
        rates[f"matmul_{name}_gflops"] = 2 * n**3 / _best_seconds(lambda: aa @ bb, repeats) / 1e9

        def conv_fwd():
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
                conv(x)

        def conv_step():
            xi = x.detach().requires_grad_(True)
            with torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
                out = conv(xi)
            out.float().sum().backward()

        rates[f"conv3x3_fwd_{name}_gflops"] = conv_flop / _best_seconds(conv_fwd, repeats) / 1e9
        rates[f"conv3x3_train_step_{name}_gflops"] = 3 * conv_flop / _best_seconds(conv_step, repeats) / 1e9
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": bf16,
        "native_bf16_why": why,
        "torch_version": torch.__version__,
        "rates": {k: round(v, 1) for k, v in rates.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=RESULTS / "isa_peaks.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.threads, args.repeats)))
        return 0

    sys.path.insert(0, str(REPO / "src"))
    from litezoo.fsutil import atomic_write_bytes
    from litezoo.machine import machine_info

    result = {
        "benchmark": "isa_peaks",
        "command": "python benchmarks/isa_peaks.py",
        "machine": machine_info(),
        "threads": args.threads,  # what each child measured with (machine.threads is this process's setting)
        "configs": {},
    }
    for name, env in CONFIGS.items():
        child_env = {k: v for k, v in os.environ.items() if k not in CONFIGS["avx2_emulated"]}
        child_env.update(env)
        cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, env=child_env, capture_output=True, text=True, check=True).stdout
        result["configs"][name] = {"env": env, **json.loads(out.strip().splitlines()[-1])}
        print(name, json.dumps(result["configs"][name]["rates"]))
    atomic_write_bytes(json.dumps(result, indent=1).encode(), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
