"""``litezoo <command> …``: each command module adds its parser and is a thin call into the library.

This module and every ``litezoo.cli.<command>`` module import only argparse-level code at the top (the library,
and so torch, load inside each command's ``run``): ``litezoo --help`` and argument errors answer at once.

Errors reach the terminal as one line: bad input (:class:`InputError`, or a path given on the command line
that does not exist / is not a folder) exits 2, a failure during work exits 1, Ctrl-C exits 130.
``LITEZOO_DEBUG=1`` shows the full traceback (and Python's own warning format) instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from importlib import import_module

from litezoo import __version__
from litezoo.errors import InputError, WorkError

# Command modules (litezoo.cli.<name>). Each defines register(subparsers) and imports no torch at the top.
SUBCOMMANDS = ["models", "data", "cache", "train", "eval", "profile", "compare", "guidelines", "report", "export", "quantize", "bench", "predict", "export_weights"]

# `litezoo --help` lists the commands in these groups, in this order; a command in no group is listed last.
GROUPS = [
    ("look at models and data", ["models", "data", "cache"]),
    ("train and evaluate", ["train", "eval", "report"]),
    ("measure cost and speed", ["profile", "compare", "guidelines", "bench"]),
    ("ship a model", ["export", "quantize", "predict", "export-weights"]),
]
EXAMPLE = (
    "litezoo train --config fast_cifar10 --data ../shared/data/cifar10-original/cifar-10-batches-bin "
    "--out runs/quick --epochs 2"
)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad flags already; keep its message to one line plus the usage hint."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _command_list(sub: argparse._SubParsersAction) -> str:
    """The git-style overview: commands by group, one line each."""
    helps = {action.dest: action.help or "" for action in sub._choices_actions}
    width = max(map(len, helps), default=0)
    grouped = [(title, [n for n in names if n in helps]) for title, names in GROUPS]
    listed = {n for _, names in grouped for n in names}
    grouped.append(("more", [n for n in helps if n not in listed]))
    lines = []
    for title, names in grouped:
        if names:
            lines.append(f"{title}:")
            lines += [f"   {n.ljust(width)}   {helps[n]}" for n in names]
            lines.append("")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="litezoo",
        usage="litezoo [--version] [--help] <command> [<args>]",
        description="Lightweight image-classification networks: build, train fast, measure, ship.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"litezoo {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="<command>", prog="litezoo", parser_class=_Parser, help=argparse.SUPPRESS
    )
    for name in SUBCOMMANDS:
        import_module(f"litezoo.cli.{name}").register(sub)
    parser.epilog = (
        _command_list(sub)
        + f"example:\n   {EXAMPLE}\n\n"
        "`litezoo <command> --help` shows a command's options and an example.\n"
        "Exit codes: 0 ok, 2 bad input, 1 failure during work, 130 interrupted.\n"
        "LITEZOO_DEBUG=1 shows the full traceback of an error instead of its one-line message."
    )
    return parser


def _one_line_warnings(command: str):
    """A ``warnings.showwarning`` that prints ``litezoo <command>: warning: …`` (no source path or line)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        kind = "" if issubclass(category, (UserWarning, RuntimeWarning)) else f" ({category.__name__})"
        print(f"litezoo {command}: warning: {text}{kind}", file=file or sys.stderr, flush=True)

    return show


def _os_error_text(exc: OSError) -> str:
    """``[Errno 20] Not a directory: 'x'`` -> ``not a folder (a file is in the way): x``."""
    what = {
        FileNotFoundError: "no such file or folder",
        NotADirectoryError: "not a folder (a file is in the way)",
        IsADirectoryError: "a folder, not a file",
        FileExistsError: "already exists",
    }.get(type(exc), (exc.strerror or type(exc).__name__).lower())
    if isinstance(exc, FileExistsError) and exc.filename is not None and not os.path.isdir(exc.filename):
        what = "a file is in the way of a folder"  # makedirs(exist_ok=True) on a file
    return f"{what}: {os.fsdecode(exc.filename)}" if exc.filename is not None else what


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        if not getattr(args, "accepts_overrides", False):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    args.overrides = extras
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    debug = bool(os.environ.get("LITEZOO_DEBUG"))
    previous_showwarning = warnings.showwarning
    if not debug:
        warnings.showwarning = _one_line_warnings(args.command)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        if debug:
            raise
        print(f"litezoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError) as exc:  # a path given is wrong
        if debug:
            raise
        print(f"litezoo {args.command}: error: {_os_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nlitezoo {args.command}: interrupted", file=sys.stderr)
        return 130
    except WorkError as exc:
        if debug:
            raise
        print(f"litezoo {args.command}: failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a failure during work (or a bug): one line, exit 1
        if debug:
            raise
        print(f"litezoo {args.command}: failed: {type(exc).__name__}: {exc} (LITEZOO_DEBUG=1 shows where)",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        warnings.showwarning = previous_showwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
