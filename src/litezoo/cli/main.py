"""``litezoo <subcommand> …`` — each subcommand module adds its parser and is a thin call into the library."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from litezoo.cli.common import CliUsageError
from litezoo.errors import InputError, WorkError

# Subcommand modules, in the order `litezoo --help` lists them. Each defines register(subparsers).
SUBCOMMANDS = ["models", "data", "train", "eval", "profile", "compare", "guidelines", "report"]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad flags already; keep its message to one line plus the usage hint."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="litezoo",
        description="Lightweight image-classification networks: build, train fast, measure, ship.",
        epilog="Run `litezoo <subcommand> --help` for an example of each.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<subcommand>", parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = import_module(f"litezoo.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"litezoo.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(sub)
    return parser


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
    try:
        return int(args.func(args) or 0)
    except (CliUsageError, InputError, ValueError, FileNotFoundError, NotADirectoryError, KeyError) as exc:
        if debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"litezoo {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"litezoo {args.command}: interrupted", file=sys.stderr)
        return 130
    except (WorkError, Exception) as exc:  # a failure during work: one line, exit 1
        if debug:
            raise
        print(f"litezoo {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
