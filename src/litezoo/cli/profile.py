"""``litezoo profile MODEL``: per-layer params, MACs, memory access cost, activations and time share."""

from __future__ import annotations

import argparse

from litezoo.cli.common import add_common, add_device, add_repeats, add_threads, emit, positive_int


def input_size_arg(text: str) -> int | tuple[int, int]:
    """``224`` or ``224x160`` (height x width)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW (e.g. 224 or 224x160), got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW with positive sizes, got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``profile`` and ``compare``: how to build and feed the model."""
    p.add_argument("--input-size", type=input_size_arg, default=None,
                   help="input resolution, SIZE or HxW (default: the model's own, else 224; "
                   "for compare: MODEL arguments only, runs use their own)")
    p.add_argument("--in-chans", type=positive_int, default=None,
                   help="input channels (default: model.in_chans, else 3)")
    p.add_argument("--num-classes", type=positive_int, default=1000,
                   help="classifier size for zoo models (default 1000)")
    add_device(p, "time the model on")
    add_threads(p)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "profile",
        help="per-layer params, MACs, memory access cost and time of a model",
        description=(
            "Count what one forward pass costs, layer by layer, from the operators that actually run.\n"
            "MODEL is a registry name (see `litezoo models`) or package.module:function returning an nn.Module.\n\n"
            "Conventions: MACs = multiply-accumulates of conv/linear/matmul/attention products (the papers'\n"
            "'FLOPs'); FLOPs(all) = 2*MACs + bias, BN, activation, pooling, softmax arithmetic; MAC bytes =\n"
            "memory access cost (bytes read + written); act bytes = new tensors allocated. Operators with no\n"
            "cost rule are listed as uncounted, never dropped silently."
        ),
        epilog=(
            "example:\n"
            "  litezoo profile shufflenet_v2_x1_0 --input-size 224\n"
            "  litezoo profile mobilenet_v1_x1_0_cifar --format csv > layers.csv\n"
            "  litezoo profile shufflenet_v2_x1_0_cifar --repeats 100 --threads 1 --json > profile.json\n"
            "  litezoo profile litezoo.analysis.seed_examples:standard_conv --input-size 5 --no-time"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="registry name or package.module:function")
    add_model_args(p)
    p.add_argument("--batch", type=positive_int, default=1, help="batch size (counts scale with it; default 1)")
    p.add_argument("--format", choices=["table", "csv"], default="table",
                   help="text output: table or csv (default table; --json gives everything as JSON)")
    add_repeats(p, 30, "timed forward passes for the latency")
    p.add_argument("--warmup", type=positive_int, default=5, help="untimed warm-up runs (default 5)")
    p.add_argument("--no-time", action="store_true", help="counts only: skip the latency and per-layer timing")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from litezoo.analysis.loading import load_model
    from litezoo.analysis.profiler import profile_model

    loaded = load_model(args.model, num_classes=args.num_classes, in_chans=args.in_chans)
    input_size = args.input_size or loaded.default_size or 224
    profile = profile_model(
        loaded.model, input_size=input_size, batch=args.batch, in_chans=args.in_chans, device=args.device,
        name=args.model, time_it=not args.no_time, warmup=args.warmup, runs=args.repeats, threads=args.threads,
    )
    if args.json:
        emit(args, profile.to_dict())
    elif args.format == "csv":
        print(profile.to_csv(), end="")
    else:
        print(profile.to_table())
    return 0
