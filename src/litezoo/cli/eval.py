"""``litezoo eval``: top-1/top-5, per-class accuracy and the confusion matrix of a trained model.

The library modules are imported inside :func:`run`, not at the top: ``litezoo --help`` must not load torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from litezoo.cli.common import add_common, emit, human_out, positive_int
from litezoo.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a trained model: top-1/top-5, per-class accuracy, confusion matrix",
        description=(
            "Evaluate the model of a run folder (its model.safetensors, else checkpoints/last.pt), a .pt\n"
            "checkpoint or a .safetensors file on a split of DATA, with the training run's image size and\n"
            "normalisation, matching DATA's class folders to the model's (a run trained with a class-names\n"
            "file needs no names file here). Prints top-1, top-5, per-class accuracy and the confusion\n"
            "matrix; writes confusion_<split>.png and eval_<split>.json to --out (default: the run folder /\n"
            "the file's folder), <split> being the split folder actually read (e.g. valid when --split test\n"
            "finds valid/).\n"
            "Several targets are evaluated as one ensemble (their class probabilities averaged); --out is then\n"
            "required."
        ),
        epilog=(
            "example:\n"
            "  litezoo eval runs/mbv1 --data /data/cifar10\n"
            "  litezoo eval runs/mbv1/checkpoints/best.pt --data /data/cifar10 --tta-flip --json\n"
            "  litezoo eval runs/fast --data /data/cifar10 --tta-flip --tta-translate 1 --weights raw --out runs/fast/raw\n"
            "  litezoo eval runs/fast_s0 runs/fast_s1 runs/fast_s2 --data /data/cifar10 --tta-flip --out runs/ensemble"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("targets", nargs="+", metavar="RUN_DIR_OR_CKPT",
                   help="run folder, .pt checkpoint or .safetensors file; several: evaluate their ensemble")
    p.add_argument("--data", required=True, help="dataset folder/archive or known dataset name")
    p.add_argument("--split", default="test", help="train or test (val/valid are aliases of test; default test)")
    p.add_argument("--tta-flip", "--tta", dest="tta_flip", action="store_true",
                   help="flip test-time augmentation: average with mirrored images (--tta is the older spelling)")
    p.add_argument("--tta-translate", type=int, default=0, metavar="PX",
                   help="also average views shifted diagonally by +-PX pixels (airbench uses 1; default 0: off)")
    p.add_argument("--weights", choices=["auto", "raw", "ema"], default="auto",
                   help="auto: the weights the run evaluated (EMA when on); raw: the trained weights; ema: the "
                        "average (raw/ema read checkpoints/last.pt of a run folder)")
    p.add_argument("--batch-size", type=positive_int, default=500, help="evaluation batch size (default 500)")
    p.add_argument("--out", help="folder for confusion_<split>.png and eval_<split>.json")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto: cuda, then mps, "
                                                    "then cpu)")
    p.add_argument("--no-download", action="store_true",
                   help="never download a dataset named by --data (cifar10): fail if there is no local copy")
    p.add_argument("--amp", default="off", help="auto | bf16 | fp16 | off (default off: exact fp32 numbers)")
    p.add_argument("--cache-dir", help="decoded-image cache folder (default $LITEZOO_CACHE or ~/.cache/litezoo)")
    p.add_argument("--class-names", metavar="FILE",
                   help="names file for DATA's class folders (default: the names the run was trained with; "
                        "as `litezoo train --class-names`)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from litezoo.checkpoint import write_file
    from litezoo.evaluate import evaluate_saved, format_report, save_confusion_png

    targets = [Path(t) for t in args.targets]
    for target in targets:
        if not target.exists():
            raise InputError(f"{target} does not exist")
    if len(targets) > 1 and not args.out:
        raise InputError("evaluating an ensemble of several models: name the folder for its report with --out")
    target = targets[0]
    if any(t.suffix == ".onnx" for t in targets):  # an exported (fp32 or int8) file: measured by litezoo.deploy
        from litezoo.deploy.evaluate import evaluate_exported

        if len(targets) > 1 or args.tta_flip or args.tta_translate:
            raise InputError("an exported .onnx file is evaluated alone and without TTA")
        result, info = evaluate_exported(target, args.data, split=args.split, batch_size=args.batch_size,
                                         cache_dir=args.cache_dir, download=not args.no_download)  # fmt: skip
    else:
        result, info = evaluate_saved(
            targets, args.data, split=args.split, tta_flip=args.tta_flip, tta_translate=args.tta_translate,
            weights=args.weights, batch_size=args.batch_size, device=args.device, amp=args.amp,
            cache_dir=args.cache_dir, download=not args.no_download, class_names=args.class_names,
        )  # fmt: skip
    split = info["split"]  # the split folder actually read: "valid" when --split test found valid/
    views = (["flip"] if args.tta_flip else []) + ([f"translate {args.tta_translate}px"] if args.tta_translate else [])
    tta_text = f" ({' + '.join(views)} TTA)" if views else ""
    out = Path(args.out) if args.out else (target if target.is_dir() else target.parent)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    png = save_confusion_png(
        result, out / f"confusion_{split}.png",
        title=f"{info['model_name']} on {split}: top-1 {result.top1:.2f}%" + tta_text,
    )  # fmt: skip
    report = {"target": str(target) if len(targets) == 1 else [str(t) for t in targets],
              **{k: info[k] for k in ("model_name", "split", "data", "tta_flip", "tta_translate", "weights")},
              **result.to_dict(), "confusion_png": str(png)}  # fmt: skip
    report_path = write_file(json.dumps(report, indent=1).encode(), out / f"eval_{split}.json")
    report["report_json"] = str(report_path)
    if not args.json:
        where = target if len(targets) == 1 else ", ".join(str(t) for t in targets)
        print(f"{info['model_name']} ({where}) on {split} of {args.data}{tta_text}", file=human_out(args))
    emit(args, report, human=format_report(result) + f"\n\nwrote {png} and {report_path}")
    return 0
