"""``litezoo bench``: latency of a model on several runtimes side by side, with the fp32 compute bound."""

from __future__ import annotations

import argparse
import sys

from litezoo.cli.common import add_common, emit, human_out, positive_int


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def register(subparsers) -> None:
    from_names = "torch,torch-cl,torch-compile,ort,ort-int8,openvino,openvino-int8"
    p = subparsers.add_parser(
        "bench",
        help="latency/throughput of models on torch, ONNX Runtime and OpenVINO (fp32 and int8), side by side",
        description=(
            "Measure each target (run folder, registry name, or exported .onnx file) on each runtime, batch size\n"
            "and thread count in one process: median latency per call with p10/p90, images/s, the process's peak\n"
            "RSS, and the fp32 compute bound (model FLOPs / this machine's fp32 matmul FLOP/s, measured in the\n"
            f"same run). Runtimes: {from_names}. Names the fastest runtime per model and batch.\n"
            "Where OpenVINO is not installed its rows are skipped with a note. int8 rows calibrate on 64 of\n"
            "the run's training images (random inputs for a bare model name: speed only)."
        ),
        epilog=(
            "example:\n"
            "  litezoo bench shufflenet_v2_x1_0 --runtime torch,ort,openvino --batch 1,32 --threads 1,2\n"
            "  litezoo bench runs/shufflenet model.int8.onnx --runtime ort --batch 64 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("targets", nargs="+", metavar="MODEL|RUN_DIR|FILE", help="what to measure")
    p.add_argument("--runtime", default="torch,ort,openvino", help=f"comma list from {from_names} (default "
                   "torch,ort,openvino)")  # fmt: skip
    p.add_argument("--batch", type=_int_list, default=[1], help="batch sizes, comma list (default 1)")
    p.add_argument("--threads", type=_int_list, help="thread counts, comma list (default: each runtime's own)")
    p.add_argument("--size", type=positive_int, help="input side for a model name (default: its design size)")
    p.add_argument("--repeats", type=positive_int, default=20, help="timed calls at least (default 20)")
    p.add_argument("--min-seconds", type=float, default=0.5, help="timed seconds at least per row (default 0.5)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from litezoo.deploy.bench import bench, format_bench

    out = human_out(args)
    runtimes = [r.strip() for r in args.runtime.split(",") if r.strip()]
    report = bench(args.targets, runtimes=runtimes, batches=args.batch, threads=args.threads or [None],
                   size=args.size, repeats=args.repeats, min_seconds=args.min_seconds,
                   progress=lambda m: print(m, file=sys.stderr if not args.json else out, flush=True))  # fmt: skip
    emit(args, report, human=format_bench(report))
    return 0
