"""``litezoo models``: the zoo as a table (name, family, input size, params, MACs at the default resolution)."""

from __future__ import annotations

import argparse
import fnmatch

from litezoo.cli.common import add_common, emit
from litezoo.errors import InputError
from litezoo.model_sizes import SIZES
from litezoo.registry import CIFAR_SUFFIX
from litezoo.tables import format_table


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the model zoo with parameters and MACs",
        description="List the registered models: parameters (1000 classes, or --num-classes) and "
        "multiply-accumulates of conv+linear layers (the papers' convention) at each model's default resolution.",
        epilog="example:\n  litezoo models 'shufflenet_v2*'\n  litezoo models --cifar --num-classes 10 'mobilenet*'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern (default: all)")
    p.add_argument("--cifar", action="store_true", help="also list the CIFAR (32 px) form of every model")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier width for the counts (default 1000)")
    add_common(p)
    p.set_defaults(func=run)


def describe(name: str, num_classes: int = 1000) -> dict:
    """Params and MACs of one model from the zoo's size table (checked against real counts by the tests).

    A table, not a count: building 118 models on the meta device takes seconds, and loading torch alone most of
    the one-second budget of a listing.
    """
    size = SIZES[name]
    params, macs = size.at(num_classes)
    return {"name": name, "family": size.family, "input_size": size.input_size, "params": params, "macs": macs}


def run(args: argparse.Namespace) -> int:
    if args.num_classes < 1:
        raise InputError(f"--num-classes must be positive, got {args.num_classes}")
    names = sorted(
        n for n in SIZES if fnmatch.fnmatch(n, args.pattern) and (args.cifar or not n.endswith(CIFAR_SUFFIX))
    )
    if not names:
        raise InputError(f"no model matches {args.pattern!r}; try `litezoo models` for the full list")
    rows = [describe(n, args.num_classes) for n in names]
    table_rows = [
        {
            "name": r["name"],
            "family": r["family"],
            "size": r["input_size"],
            "params (M)": f"{r['params'] / 1e6:.2f}",
            "MACs (M)": f"{r['macs'] / 1e6:.1f}",
        }
        for r in rows
    ]
    human = format_table(table_rows, ["name", "family", "size", "params (M)", "MACs (M)"], {"size", "params (M)", "MACs (M)"})
    human += f"\n{len(rows)} models; MACs = multiply-accumulates of conv and linear layers (paper convention), batch 1."
    if not args.cifar:
        human += "\nEvery model also has a CIFAR (32 px) form named <name>_cifar: add --cifar to list them."
    emit(args, {"num_classes": args.num_classes, "models": rows}, human)
    return 0
