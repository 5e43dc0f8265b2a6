"""Re-run ShuffleNet V2's guideline experiments (G1-G4) at full settings and save the figures for this machine.

    python benchmarks/guidelines.py                 # 1 thread (the paper's ARM setting)
    python benchmarks/guidelines.py --threads 1 2   # one report per thread count

Writes ``benchmarks/results/guidelines_<cpu-tag>.json``: the machine (``litezoo.machine.machine_info``: CPU model,
ISA flags such as avx512_bf16 / amx, torch version, git commit; plus lscpu's cache sizes), and every measured cell (batches/s,
median / p10 / p90 ms, MACs and memory access bytes per image) beside the paper's numbers. Prints the tables.
Time it on a quiet machine: other processes on the same cores make every number slower and noisier.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from litezoo.analysis.guidelines import format_guidelines, run_guidelines, write_json
from litezoo.machine import cpu_tag, load_average, machine_info

RESULTS = Path(__file__).resolve().parent / "results"


def lscpu() -> dict[str, str]:
    """``lscpu`` as a dict (empty where lscpu is missing, e.g. macOS)."""
    if not shutil.which("lscpu"):
        return {}
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    info = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value:
            info[key.strip()] = value.strip()
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts to run (default 1)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per cell (default 30)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/guidelines_<cpu-tag>.json")
    args = parser.parse_args(argv)

    cpu = lscpu()
    reports = []
    for threads in args.threads:
        print(f"== {threads} thread(s); load average {load_average()}", file=sys.stderr, flush=True)
        report = run_guidelines(
            device=args.device, threads=threads, runs=args.runs, warmup=args.warmup,
            progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
        print(format_guidelines(report), flush=True)
        reports.append(report)

    result = {
        "command": "python benchmarks/guidelines.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu_tag": cpu_tag(),
        "machine": machine_info(),
        "lscpu": {k: cpu[k] for k in ("Model name", "Architecture", "CPU(s)", "Thread(s) per core",
                                      "L1d cache", "L2 cache", "L3 cache", "Hypervisor vendor") if k in cpu},
        "reports": reports,
    }
    out = args.out or str(RESULTS / f"guidelines_{cpu_tag()}.json")
    print(f"wrote {write_json(result, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
