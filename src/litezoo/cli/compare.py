"""``litezoo compare MODEL|RUN_DIR… [--runs RUN_DIR…]``: one table and a Bianco-style bubble chart."""

from __future__ import annotations

import argparse
from pathlib import Path

from litezoo.cli.common import add_common, add_repeats, emit, human_out, positive_int
from litezoo.tables import format_table, printable
from litezoo.cli.profile import add_model_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare models: params, MACs, memory access, latency, accuracy, and a chart",
        description=(
            "One table of params, MACs (conv+linear+matmul), FLOPs (all ops), memory access cost, batch-1\n"
            "latency and, for trained runs, best test top-1; plus a bubble chart (area = params) saved as\n"
            "PNG and SVG: accuracy vs MACs when runs are given, latency vs MACs otherwise.\n"
            "MODEL is a registry name or package.module:function; RUN_DIR is a `litezoo train` run folder\n"
            "(an existing folder given among the MODELs counts as a run folder)."
        ),
        epilog=(
            "example:\n"
            "  litezoo compare mobilenet_v1_x1_0_cifar shufflenet_v2_x1_0_cifar --out reports/\n"
            "  litezoo compare runs/mnv1 runs/snv2 --out reports/"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="*", metavar="MODEL|RUN_DIR",
                   help="registry names, package.module:function, or run folders")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR",
                   help="trained run folders (accuracy from metrics.jsonl)")
    add_model_args(p)
    p.add_argument("--out", default="compare_out", help="folder for compare.png / compare.svg (default compare_out)")
    add_repeats(p, 20, "timed batch-1 forward passes per model")
    p.add_argument("--warmup", type=positive_int, default=5, help="warm-up runs per model (default 5)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from litezoo.analysis.compare import TABLE_COLUMNS, compare_models, plot_comparison
    from litezoo.analysis.latency import busy_warning
    from litezoo.analysis.profiler import human

    out = human_out(args)
    # A folder among the positional arguments is a run folder; anything else names a model.
    models = [m for m in args.models if not Path(m).is_dir()]
    runs = [m for m in args.models if Path(m).is_dir()] + args.runs
    result = compare_models(
        models, runs, input_size=args.input_size, num_classes=args.num_classes, device=args.device,
        warmup=args.warmup, runs=args.repeats, threads=args.threads,
        progress=lambda msg: print(printable(msg), file=out, flush=True),
    )
    result["files"] = plot_comparison(result["rows"], args.out)
    table = [
        {
            "name": r["name"],
            "size": r["input_size"] if isinstance(r["input_size"], int) else "x".join(map(str, r["input_size"])),
            "params": human(r["params"]),
            "MACs": human(r["macs_paper"]),
            "FLOPs(all)": human(r["flops_all"]),
            "MAC bytes": human(r["mac_bytes"], binary=True),
            "latency ms": f"{r['latency_ms']:.2f} [{r['latency_p10_ms']:.2f}-{r['latency_p90_ms']:.2f}]",
            "top-1 %": "" if r["test_top1"] is None else f"{r['test_top1']:.2f}",
        }
        for r in result["rows"]
    ]
    m = result["machine"]
    human_text = "\n".join([
        format_table(table, list(table[0]), align_right=set(list(table[0])[1:])),
        f"MACs = multiply-accumulates of conv/linear/matmul (paper convention); latency = median [p10-p90] of "
        f"{args.repeats} batch-1 runs on {result['device']}, {m['threads']} threads, torch {m['torch_version']}",
        f"chart ({result['files']['chart']} vs MACs): {result['files']['png']}, {result['files']['svg']}",
        *([warning] if (warning := busy_warning(m)) else []),
    ])
    result["columns"] = TABLE_COLUMNS
    emit(args, result, human_text)
    return 0
