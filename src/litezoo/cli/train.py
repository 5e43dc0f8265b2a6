"""``litezoo train``: defaults <- recipe (--config) <- flags, checked before any work, then ``litezoo.train.fit``.

The library modules are imported inside :func:`run`, not at the top: ``litezoo --help`` must not load torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from litezoo.cli.common import add_common, emit, human_out
from litezoo.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on an image dataset (checkpoints, metrics, resume, multi-process)",
        description=(
            "Train MODEL on DATA into the run folder OUT: config.yaml, metrics.jsonl/.csv, checkpoints/\n"
            "(last.pt, best.pt, the last K epoch files) and model.safetensors.\n\n"
            "Config: defaults <- recipe (--config) <- flags. Any config field is a flag: --section.key VALUE\n"
            "(e.g. --optim.lr 0.05 --schedule.name onecycle) or its unique leaf name (--lr 0.05).\n"
            "Batch sizes are global: under torchrun each process takes batch_size / nproc.\n\n"
            "Ctrl-C or SIGTERM finishes the current step, writes checkpoints/last.pt and exits 130 / 143;\n"
            "--resume continues from there bit-identically. A second Ctrl-C stops at once."
        ),
        epilog=(
            "example:\n"
            "  litezoo train --model mobilenet_v1_x1_0_cifar --data /data/cifar10 --out runs/mbv1 --epochs 30\n"
            "  litezoo train --config mobilenet_v1_cifar10 --data /data/cifar10 --out runs/a --optim.lr 0.05\n"
            "  litezoo train --resume runs/mbv1                   # continue where it stopped (or was stopped)\n"
            "  torchrun --nproc-per-node 2 -m litezoo train --model shufflenet_v2_x1_0_cifar --data /data/cifar10 \\\n"
            "      --out runs/ddp"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --lr must not silently become some other flag
    )
    p.add_argument("--model", help="model name (see `litezoo models`); sets model.name")
    p.add_argument("--data", help="dataset folder/archive or a known dataset name; sets data.path")
    p.add_argument("--out", help="run folder to create (required unless --resume)")
    p.add_argument("--epochs", help="number of epochs; sets train.epochs")
    p.add_argument("--batch-size", help="global batch size; sets data.batch_size")
    p.add_argument("--seed", help="random seed; sets train.seed")
    p.add_argument("--config", metavar="RECIPE", help="YAML recipe file or shipped recipe name (configs/)")
    p.add_argument("--resume", metavar="RUN_DIR_OR_CKPT", help="continue a run from its last.pt (or a given .pt)")
    p.add_argument("--amp", help="mixed precision: auto | bf16 | fp16 | off (default auto)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default auto: cuda, then mps, then cpu)")
    p.add_argument("--threads", help="torch CPU threads for this run (default: leave torch's setting); sets "
                                     "train.threads")
    p.add_argument("--no-download", action="store_true",
                   help="never download a dataset named by --data (cifar10): fail if there is no local copy")
    p.add_argument("--on-nan", help="on a non-finite loss: stop (default) or skip the step")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    add_common(p)
    # Flags the parser does not know (--optim.lr 0.05) are config overrides: cli/main.py passes them on in
    # args.overrides, and the config module, which knows the valid keys, checks them and suggests close ones.
    p.set_defaults(func=run, accepts_overrides=True)


# Known flags -> the config field each one sets.
_FLAG_FIELDS = {
    "model": "model.name", "data": "data.path", "epochs": "train.epochs", "batch_size": "data.batch_size",
    "seed": "train.seed", "amp": "train.amp", "device": "train.device", "on_nan": "train.on_nan",
    "threads": "train.threads",
}  # fmt: skip


def build_config(args: argparse.Namespace):
    """The run's config and folder, and the checkpoint to resume (or None). Raises on any bad input."""
    from litezoo import checkpoint as ckpt_io
    from litezoo.config import apply_overrides, from_dict, parse_cli_overrides, resolve, validate

    overrides = parse_cli_overrides(args.overrides)
    for flag, key in _FLAG_FIELDS.items():
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)

    if args.resume:
        if args.config:
            raise InputError("--config cannot be used with --resume: the run's config is in its checkpoint")
        ckpt_path, run_dir = ckpt_io.resolve_resume_path(args.resume)
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise InputError(f"--out {args.out} differs from the resumed run folder {run_dir}")
        ckpt = ckpt_io.load_checkpoint(ckpt_path)
        # The run's own config, with any flags given now on top (e.g. --epochs to train longer).
        cfg = validate(apply_overrides(from_dict(ckpt.config), overrides))
        return cfg, run_dir, ckpt_path
    if not args.out:
        raise InputError("--out RUN_DIR is required (or --resume RUN_DIR to continue a run)")
    return resolve(args.config, overrides), Path(args.out), None


def run(args: argparse.Namespace) -> int:
    from litezoo.interrupt import Interrupted
    from litezoo.progress import Progress
    from litezoo.train import fit

    cfg, run_dir, ckpt_path = build_config(args)
    progress = Progress(human_out(args), bar=False if args.json else None, quiet=args.quiet)
    # On a terminal the bar (cleared by fit) or an echoed ^C holds the cursor's line: messages start a fresh one.
    lead = "\n" if sys.stderr.isatty() else ""
    try:
        if cfg.train.cache_features:  # head-only on features computed once (litezoo.weights.finetune)
            from litezoo.weights.finetune import fit_cached_head

            result = fit_cached_head(cfg, run_dir, note=progress.note, download=not args.no_download)
        else:
            result = fit(cfg, run_dir, resume=ckpt_path or False, progress=progress, download=not args.no_download)
    except Interrupted as exc:
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun the main process speaks for all
            print(f"{lead}litezoo train: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started: stop at once
        last = run_dir / "checkpoints" / "last.pt"
        hint = f"; the last checkpoint is {last} (litezoo train --resume {run_dir})" if last.is_file() else ""
        print(f"{lead}litezoo train: interrupted{hint}", file=sys.stderr, flush=True)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only the main process reports
        best = result.get("best_top1")
        best = "n/a" if best is None else f"{best:.2f}% (epoch {result['best_epoch']})"
        done = "nothing left to train" if result["steps_this_run"] == 0 else "done"
        emit(args, result, human=f"{done}: best test top-1 {best}; run folder {run_dir}; curves {result['curves']}")
    return 0
