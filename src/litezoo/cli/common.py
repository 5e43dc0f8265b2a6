"""Helpers shared by the subcommands: the --json convention and argument types.

Exit codes: 0 success, 2 bad input (one line on stderr), 1 failure during work.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


class CliUsageError(Exception):
    """Bad command-line input found by a subcommand: exit code 2."""


def add_common(parser: argparse.ArgumentParser) -> None:
    """Flags every subcommand takes."""
    parser.add_argument("--json", action="store_true", help="print one machine-readable JSON object on stdout")


def emit(args: argparse.Namespace, result: dict[str, Any], human: str | None = None) -> None:
    """Print ``result`` as one JSON object with --json, otherwise the human text (if any)."""
    if getattr(args, "json", False):
        json.dump(result, sys.stdout, default=_json_default)
        sys.stdout.write("\n")
    elif human:
        print(human)


def human_out(args: argparse.Namespace):
    """Where progress text for people goes: stderr with --json (stdout is reserved for the JSON object)."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def format_table(rows: list[dict[str, Any]], columns: list[str], align_right: set[str] | None = None) -> str:
    """A plain-text table for people (``--json`` gives the data itself)."""
    align_right = align_right or set()
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def fmt(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if c in align_right else v.ljust(w) for v, w, c in zip(values, widths, columns)).rstrip()

    lines = [fmt(columns), fmt(["-" * w for w in widths])]
    lines += [fmt(row) for row in cells]
    return "\n".join(lines)
