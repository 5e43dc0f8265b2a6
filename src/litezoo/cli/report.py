"""``litezoo report RUN_DIR… [--out report.html]``: one self-contained HTML page comparing training runs."""

from __future__ import annotations

import argparse
import sys

from litezoo.cli.common import add_common, emit


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="one HTML page comparing runs: curves, leaderboard, accuracy vs MACs, confusion matrix",
        description=(
            "Write one self-contained HTML file (opens offline, no network requests) comparing training runs:\n"
            "training curves of every run on shared axes, a sortable leaderboard (params, MACs, latency where a\n"
            "bench/profile result is in the run folder, best top-1 and where, time to train, precision, CPU), the\n"
            "accuracy-vs-MACs bubble chart, the confusion matrix and prediction grid of the best run, and each\n"
            "run's config and machine. A run still training shows what it has so far. A folder that is not a run,\n"
            "or whose metrics.jsonl holds no complete epoch, is named and left out; exit 2 only if no run is left."
        ),
        epilog="example:\n  litezoo report runs/mbv1 runs/snv2 runs/fast --out report.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="`litezoo train` run folders")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from litezoo.report.page import write_report

    result = write_report(args.run_dirs, args.out)
    for _, why in result.skipped:
        print(f"litezoo report: left out {why}", file=sys.stderr)
    for name, problem in result.warnings:
        print(f"litezoo report: {name}: {problem}", file=sys.stderr)
    progress = f" ({len(result.in_progress)} still in progress)" if result.in_progress else ""
    human = f"wrote {result.path}: {len(result.reported)} run(s){progress}" + \
        (f", {len(result.skipped)} left out" if result.skipped else "")  # fmt: skip
    emit(args, {"report": str(result.path), "reported": result.reported, "in_progress": result.in_progress,
                "skipped": [{"run_dir": d, "reason": why} for d, why in result.skipped],
                "warnings": [{"run": n, "problem": p} for n, p in result.warnings]}, human)  # fmt: skip
    return 0
