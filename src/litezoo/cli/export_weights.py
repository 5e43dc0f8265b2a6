"""``litezoo export-weights RUN_DIR --layout torchvision``: a litezoo-trained model's weights for torchvision code."""

from __future__ import annotations

import argparse

from litezoo.cli.common import add_common, emit


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-weights",
        help="write a run's weights in torchvision's key layout (.pth or .safetensors)",
        description="Write the weights of a run (folder, .pt checkpoint or .safetensors) under torchvision's "
        "names, so that torchvision.models.<model>(num_classes=N).load_state_dict(torch.load(FILE)) takes them. "
        "Families: shufflenet_v2, squeezenet, efficientnet, vgg.",
        epilog="example:\n  litezoo export-weights runs/dogs --layout torchvision --out squeezenet_dogs.pth",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder, .pt checkpoint or litezoo .safetensors file")
    p.add_argument("--layout", choices=["torchvision"], default="torchvision", help="key layout (default torchvision)")
    p.add_argument("--weights", choices=["auto", "raw", "ema"], default="auto",
                   help="which weights of a checkpoint: the evaluated ones (auto), the trained or the EMA ones")  # fmt: skip
    p.add_argument("--out", help="output file, .pth/.pt (torch.save) or .safetensors "
                   "(default RUN_DIR/<model>-torchvision.pth)")  # fmt: skip
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from litezoo.weights import export_weights

    result = export_weights(args.run_dir, args.out, layout=args.layout, weights=args.weights)
    lines = [f"wrote {result['out']}: {result['model']} ({result['num_classes']} classes), "
             f"{result['tensors']} tensors in {result['layout']}'s layout"] + [f"note: {n}" for n in result["notes"]]  # fmt: skip
    emit(args, result, "\n".join(lines))
    return 0
