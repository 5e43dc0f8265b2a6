"""``litezoo data show|info DATA`` — look at a dataset before training on it."""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

from litezoo.cli.common import add_common, emit, human_out, positive_int
from litezoo.errors import InputError
from litezoo.tables import format_table


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="inspect a dataset: sample grid, class counts, cache",
        description="Open a dataset (decoding it once into the cache), show samples and class counts.",
        epilog="example:\n  litezoo data show ../shared/data/dogs-vs-cats --split train --out samples.png\n"
        "  litezoo data info cifar10 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=_missing_action, _data_parser=p)
    actions = p.add_subparsers(dest="data_command", metavar="<action>")

    show = actions.add_parser(
        "show",
        help="write a PNG grid of samples with class names, print class counts",
        description="Write a PNG grid of samples (class name above each) and print per-class counts.",
        epilog="example:\n  litezoo data show ../shared/data/cifar10 --split train --n 48 --augment\n"
        "  litezoo data show cifar10 --split test --out test.png --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _dataset_args(show)
    show.add_argument("--split", default="train", help="train or test (val/valid: aliases of test); default train")
    show.add_argument("--out", default=None, help="PNG to write (default: <dataset>_<split>_samples.png)")
    show.add_argument("--n", type=positive_int, default=32, help="number of samples in the grid (default 32)")
    show.add_argument("--augment", action="store_true", help="show the training augmentation instead of the eval view")
    show.add_argument("--cutout", type=int, default=0, help="with --augment: cutout square side in px (default 0)")
    show.add_argument("--seed", type=int, default=0, help="which samples and augmentations (default 0)")
    add_common(show)
    show.set_defaults(func=run_show)

    info = actions.add_parser(
        "info",
        help="class counts, mean/std and cache files of every split",
        description="Open every split of a dataset and print its class counts, mean/std and cache file.",
        epilog="example:\n  litezoo data info ../shared/data/dogs-vs-cats",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _dataset_args(info)
    add_common(info)
    info.set_defaults(func=run_info)


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="image-folder root, cifar-10-batches-py/-bin folder, .tar.gz, or 'cifar10'")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="side in px the model sees (default: 32 for CIFAR, native or 224 for image folders)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $LITEZOO_CACHE or ~/.cache/litezoo)")
    p.add_argument("--limit", type=positive_int, default=None, help="use only N images (class-balanced)")
    p.add_argument("--no-download", action="store_true", help="never download (cifar10): fail if no local copy")
    p.add_argument("--class-names", default=None, metavar="PATH",
                   help="file of display names for the class folders (default: classes.txt at the dataset root; "
                   "ImageNet names for WordNet-id folders)")


def _missing_action(args: argparse.Namespace) -> int:
    args._data_parser.print_help(sys.stderr)
    return 2


def _open(args: argparse.Namespace, split: str):
    from tqdm import tqdm

    from litezoo.data import BadImageWarning, open_dataset

    out = human_out(args)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None or bar.total != total:  # a download (bytes), then decoding (images)
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, desc=f"preparing {split}", unit="img", file=sys.stderr, leave=False,
                       disable=not sys.stderr.isatty())
        bar.update(done - bar.n)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BadImageWarning)
            ds = open_dataset(args.data, split, image_size=args.image_size, cache_dir=args.cache_dir,
                              download=not args.no_download, limit=args.limit, progress=progress,
                              class_names=args.class_names)
    finally:
        if bar is not None:
            bar.close()
    for w in caught:  # one line each on stderr (the library's warning already is a single line)
        print(f"warning: {w.message}", file=sys.stderr)
    if ds.decoded:
        print(f"decoded {len(ds) + len(ds.skipped)} files into {ds.cache_path}", file=out)
    return ds


def _summary(ds) -> dict:
    return {
        "dataset": str(ds.root),
        "split": ds.split,
        "source": ds.source,
        "num_images": len(ds),
        "classes": ds.classes,
        "class_folders": ds.class_folders,
        "counts": ds.class_counts(),
        "image_size": ds.image_size,
        "stored_size": ds.stored_size,
        "mean": list(ds.mean),
        "std": list(ds.std),
        "skipped": ds.skipped,
        "skipped_reasons": ds.skipped_reasons,
        "small_images": {p: list(wh) for p, wh in ds.small_images.items()},
        "pixel_notes": ds.pixel_notes,
        "cache": str(ds.cache_path),
    }


def _counts_text(ds) -> str:
    rows = [{"class": name, "images": n} for name, n in ds.class_counts().items()]
    rows.append({"class": "total", "images": len(ds)})
    lines = [
        f"{Path(ds.root).name} / {ds.split}: {len(ds)} images, {len(ds.classes)} classes, {ds.image_size} px "
        f"(cached at {ds.stored_size} px)",
        format_table(rows, ["class", "images"], align_right={"images"}),
        "mean " + " ".join(f"{v:.4f}" for v in ds.mean) + "   std " + " ".join(f"{v:.4f}" for v in ds.std)
        + "  (train split)",
    ]
    if ds.skipped:
        lines.append(f"skipped {len(ds.skipped)} unreadable file(s):")
        lines += [f"  {p}: {ds.skipped_reasons.get(p, '')}" for p in ds.skipped]
    return "\n".join(lines)


def run_show(args: argparse.Namespace) -> int:
    from litezoo.data import save_sample_grid

    if args.cutout < 0:
        raise InputError(f"--cutout must be >= 0, got {args.cutout}")
    ds = _open(args, args.split)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(ds.root).name)
    out = Path(args.out) if args.out else Path(f"{name}_{ds.split}_samples.png")
    if out.suffix.lower() != ".png":
        raise InputError(f"--out must end in .png, got {out}")
    png = save_sample_grid(ds, out, n=args.n, seed=args.seed, augmented=args.augment, cutout=args.cutout)
    result = _summary(ds) | {"png": str(png)}
    emit(args, result, _counts_text(ds) + f"\nwrote {png}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from litezoo.data import dataset_splits

    splits = []
    texts = []
    # a folder without split folders (or an empty one) has no splits: opening "train" raises the same
    # message `data show` and `train` give (exit 2) instead of printing nothing
    for split in dataset_splits(args.data) or ["train"]:
        ds = _open(args, split)
        splits.append(_summary(ds))
        texts.append(_counts_text(ds) + f"\ncache: {ds.cache_path}")
    emit(args, {"dataset": args.data, "splits": splits}, "\n\n".join(texts))
    return 0
