"""``litezoo cache list|clear`` — see and free the decoded-image cache (224 px of 13k photos is 2 GB)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from litezoo.cli.common import add_common, emit
from litezoo.errors import InputError
from litezoo.tables import format_table


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cache",
        help="list or clear the decoded-image cache",
        description="List or clear the decoded-image caches (one file per dataset, split and image size). "
        "Downloaded datasets in the cache folder are never touched.",
        epilog="example:\n  litezoo cache list\n  litezoo cache clear --older-than 30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=_missing_action, _cache_parser=p)
    actions = p.add_subparsers(dest="cache_command", metavar="<action>")

    ls = actions.add_parser(
        "list",
        help="each cache: dataset, split, image size, images, size on disk, last used",
        description="List every decoded-image cache with its dataset, split, stored image size, number of "
        "images, size on disk and when it was last used; unfinished builds are listed too.",
        epilog="example:\n  litezoo cache list --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cache_dir_arg(ls)
    add_common(ls)
    ls.set_defaults(func=run_list)

    clear = actions.add_parser(
        "clear",
        help="delete caches: --all, --older-than DAYS, or those of the given dataset paths",
        description="Delete decoded-image caches (they are rebuilt from the images when next needed). Say "
        "which: --all, --older-than DAYS (not used for that many days), or dataset paths / cache files. "
        "A cache being built right now is kept; a process reading one keeps reading it.",
        epilog="example:\n  litezoo cache clear ../shared/data/dogs-vs-cats\n  litezoo cache clear --all --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cache_dir_arg(clear)
    clear.add_argument("paths", nargs="*", metavar="PATH",
                       help="dataset folders/archives (or folders holding them), or cache files")
    clear.add_argument("--all", action="store_true", help="every cache (and unfinished build) in the cache folder")
    clear.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                       help="caches not used for more than DAYS days")
    add_common(clear)
    clear.set_defaults(func=run_clear)


def _cache_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $LITEZOO_CACHE or ~/.cache/litezoo)")


def _missing_action(args: argparse.Namespace) -> int:
    args._cache_parser.print_help(sys.stderr)
    return 2


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _ago(t: float) -> str:
    seconds = max(0.0, time.time() - t)
    if seconds >= 86400:
        return f"{seconds / 86400:.0f} d ago"
    return f"{seconds / 3600:.0f} h ago" if seconds >= 3600 else f"{seconds / 60:.0f} min ago"


def run_list(args: argparse.Namespace) -> int:
    from litezoo.data.cache import list_caches, resolve_cache_dir

    folder = resolve_cache_dir(args.cache_dir)
    entries = list_caches(folder)
    total = sum(e.bytes for e in entries)
    result = {"cache_dir": str(folder), "caches": [e.to_dict() for e in entries], "total_bytes": total}
    if not entries:
        emit(args, result, f"no decoded-image caches in {folder}")
        return 0
    rows = [{"dataset": e.dataset or "?", "split": e.split or "", "px": e.stored_size or "",
             "images": e.images if e.images is not None else "", "size": _gb(e.bytes), "last used": _ago(e.last_used),
             "file": e.path.name if e.kind == "images" else f"{e.path.name} ({e.kind})"} for e in entries]
    table = format_table(rows, ["dataset", "split", "px", "images", "size", "last used", "file"],
                         align_right={"px", "images", "size"})
    emit(args, result, f"{folder / 'decoded'}: {len(entries)} file(s), {_gb(total)}\n{table}")
    return 0


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def run_clear(args: argparse.Namespace) -> int:
    from litezoo.data.cache import list_caches, remove_cache_entry, resolve_cache_dir

    chosen = [bool(args.all), args.older_than is not None, bool(args.paths)]
    if sum(chosen) != 1:
        raise InputError("say what to clear: exactly one of --all, --older-than DAYS, or dataset PATH(s)")
    if args.older_than is not None and args.older_than < 0:
        raise InputError(f"--older-than must be >= 0 days, got {args.older_than:g}")
    folder = resolve_cache_dir(args.cache_dir)
    entries = list_caches(folder)
    if args.all:
        selected = entries
    elif args.older_than is not None:
        cutoff = time.time() - args.older_than * 86400
        selected = [e for e in entries if e.last_used < cutoff]
    else:
        selected = []
        for text in args.paths:
            target = os.path.realpath(Path(text).expanduser())
            # the dataset itself, a folder holding it (a CIFAR cache records its cifar-10-batches-* folder),
            # or a cache file named directly
            match = [e for e in entries if (e.dataset is not None and _within(e.dataset, target))
                     or os.path.realpath(e.path) == target]
            if not match:
                raise InputError(f"no cache of {text} in {folder} (see `litezoo cache list`)")
            selected += [e for e in match if e not in selected]
    removed, kept = [], []
    for entry in selected:
        why = remove_cache_entry(entry)
        (kept if why else removed).append((entry, why))
    freed = sum(e.bytes for e, _ in removed)
    result = {"cache_dir": str(folder), "removed": [e.to_dict() for e, _ in removed],
              "kept": [e.to_dict() | {"why": why} for e, why in kept], "freed_bytes": freed}
    lines = [f"removed {len(removed)} file(s) from {folder / 'decoded'}, freed {_gb(freed)}"]
    lines += [f"kept {e.path.name}: {why}" for e, why in kept]
    emit(args, result, "\n".join(lines))
    return 0
