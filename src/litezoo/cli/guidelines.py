"""``litezoo guidelines``: re-run ShuffleNet V2's G1–G4 micro-benchmarks here, beside the paper's tables."""

from __future__ import annotations

import argparse

from litezoo.cli.common import add_common, add_device, add_repeats, add_threads, emit, human_out, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "guidelines",
        help="re-run ShuffleNet V2's four speed guidelines (G1-G4) on this machine",
        description=(
            "ShuffleNet V2 (Ma et al., ECCV 2018) showed that FLOPs do not predict speed: memory access\n"
            "cost and fragmentation do. This re-runs its four micro-experiments at fixed FLOPs - G1 1x1 conv\n"
            "pairs c1:c2 = 1:1..1:12, G2 group conv g = 1..8, G3 fragments in series/parallel, G4 ReLU and\n"
            "shortcut removed - and prints batches/s beside the paper's GPU/ARM numbers, with a verdict."
        ),
        epilog="example:\n  litezoo guidelines --threads 1     # the paper's single-thread ARM setting\n"
        "  litezoo guidelines --only G1 G2 --threads 2 --json > g.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_device(p, "run the micro-benchmarks on")
    p.add_argument("--quick", action="store_true", help="tiny settings (14x14, one column, 3 runs): a smoke test")
    p.add_argument("--only", nargs="+", choices=["G1", "G2", "G3", "G4"], default=None, help="run only these tables")
    add_threads(p)
    add_repeats(p, None, "timed runs per cell (default 20; 3 with --quick)")
    p.add_argument("--warmup", type=positive_int, default=None,
                   help="warm-up runs per cell (default 5; 1 with --quick)")
    p.add_argument("--out", default=None, help="also write the full results JSON to this file")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from litezoo.analysis.guidelines import format_guidelines, run_guidelines, write_json

    out = human_out(args)
    report = run_guidelines(
        device=args.device, quick=args.quick, which=args.only, warmup=args.warmup, runs=args.repeats,
        threads=args.threads, progress=lambda msg: print(msg, file=out, flush=True),
    )
    if args.out:
        report["written"] = write_json(report, args.out)
    emit(args, report, format_guidelines(report))
    return 0
