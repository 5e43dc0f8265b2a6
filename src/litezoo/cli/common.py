"""What every subcommand shares: the ``--json`` convention, the common flags, argument types.

Exit codes (cli/main.py): 0 success, 2 bad input (:class:`InputError`, one line on stderr), 1 failure during
work, 130 after Ctrl-C. This module is imported by ``litezoo --help``: it must not import torch (nor numpy).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

from litezoo.tables import printable

def add_common(parser: argparse.ArgumentParser) -> None:
    """Flags every subcommand takes."""
    parser.add_argument("--json", action="store_true", help="print one machine-readable JSON object on stdout")


def add_device(parser: argparse.ArgumentParser, what: str = "run the model on") -> None:
    """``--device``, default ``auto`` (cuda, then mps, then cpu), resolved by :func:`litezoo.device.resolve_device`."""
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help=f"where to {what}: auto, cpu, cuda, cuda:N or mps (default auto: cuda, then mps, then cpu)")  # fmt: skip


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: default leaves torch's setting alone; when given, set for the command and restored after."""
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for torch during the command (default: torch's own setting; restored after)")  # fmt: skip


def add_repeats(parser: argparse.ArgumentParser, default: int | None, what: str = "timed repetitions") -> None:
    """``--repeats N``: how many times a timing is repeated."""
    shown = "" if default is None else f" (default {default})"
    parser.add_argument("--repeats", type=positive_int, default=default, metavar="N", help=f"{what}{shown}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# ---------------------------------------------------------------------------------------------------------------
# JSON on stdout

def json_safe(obj: Any) -> Any:
    r"""``obj`` with only values strict JSON parsers accept.

    Strings lose their lone surrogates (a non-UTF-8 file name arrives as ``'caf\udce9.png'``; it is written
    as ``'caf\\xe9.png'``); paths become strings; numpy/torch scalars and arrays become numbers and lists;
    tuples and sets become lists; NaN and infinities become null (JSON has no such numbers).
    """
    if isinstance(obj, str):
        return printable(obj)
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {json_safe(k if isinstance(k, str) else str(k)): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return json_safe(os.fspath(obj))
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays, without importing either
        return json_safe(obj.tolist())
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_text(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON text (see :func:`json_safe`)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def emit(args: argparse.Namespace, result: dict[str, Any], human: str | None = None) -> None:
    """Print ``result`` as one JSON object with --json, otherwise the human text (if any)."""
    if getattr(args, "json", False):
        sys.stdout.write(json_text(result) + "\n")
    elif human:
        print(printable(human))  # a pipe's strict UTF-8 encoder would fail on a lone surrogate


def human_out(args: argparse.Namespace):
    """Where progress text for people goes: stderr with --json (stdout is reserved for the JSON object)."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


__all__ = [
    "add_common",
    "add_device",
    "add_threads",
    "add_repeats",
    "positive_int",
    "json_safe",
    "json_text",
    "emit",
    "human_out",
]
