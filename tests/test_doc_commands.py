"""Every `litezoo …` command shown in the README and the docs still parses, and its config overrides resolve.

Renaming a flag or a config key breaks the commands people copy from the docs; this test finds the commands in
their code blocks (inline code is often a fragment) and runs them through the real parser and `config.resolve`,
without doing the work. Commands with placeholders (`...`, `<run>`, `RUN_DIR`, `[--json]`, `a|b`) are not complete
commands and are skipped.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from litezoo import config as C
from litezoo.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"\.\.\.|…|<[a-z_-]+>|\b[A-Z][A-Z_]{2,}\b|\[-|\w\|\w")


def _commands(text: str) -> list[str]:
    found = []
    in_block = False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_block = not in_block
        elif in_block:
            cmd = line.strip().removeprefix("$ ").strip()
            while cmd.endswith("\\") and i + 1 < len(lines):  # a command continued on the next line
                i += 1
                cmd = cmd[:-1] + " " + lines[i].strip()
            cmd = re.sub(r"^.*?&&\s*(?=litezoo )", "", cmd)  # `... && litezoo train ...`
            if cmd.startswith("litezoo "):
                found.append(cmd)
        i += 1
    return found


def _cases() -> list[tuple[str, str]]:
    cases = []
    for doc in DOCS:
        for cmd in _commands(doc.read_text(encoding="utf-8")):
            cmd = cmd.split(" #", 1)[0].split(" > ", 1)[0].split(" | ", 1)[0].strip()
            if not PLACEHOLDER.search(cmd):
                cases.append((doc.name, cmd))
    return cases


CASES = _cases()


def test_the_docs_show_commands():
    assert len(CASES) >= 20 and any(doc == "README.md" for doc, _ in CASES)


@pytest.mark.parametrize("doc, command", CASES, ids=[f"{d}:{c[:60]}" for d, c in CASES])
def test_documented_command_parses(doc, command):
    argv = shlex.split(command)[1:]
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
    except SystemExit as exc:
        if exc.code == 0:  # --help, --version
            return
        pytest.fail(f"{doc}: `{command}` is rejected by the parser (exit {exc.code})")
    if extras:
        assert getattr(args, "accepts_overrides", False), f"{doc}: `{command}`: unknown arguments {extras}"
    if args.command == "train" and not getattr(args, "resume", None):
        overrides = C.parse_cli_overrides(extras)
        recipe = getattr(args, "config", None)
        for flag in ("model", "data", "epochs", "lr", "batch_size", "amp", "device", "threads"):
            value = getattr(args, flag, None)
            if value is not None and not isinstance(value, bool):
                overrides.setdefault(flag, str(value))
        C.resolve(recipe, overrides)  # raises InputError for a renamed key or an invalid value
