"""The command line's frame: import graph, start-up without torch, --help, the JSON helper."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import litezoo
from litezoo.cli.common import json_safe, json_text
from litezoo.cli.main import SUBCOMMANDS, build_parser

PACKAGE = Path(litezoo.__file__).parent


def _imported_modules(source: str, module: str) -> set[str]:
    """Every module the code of ``module`` imports anywhere (top level or inside functions), absolute names."""
    package = module.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                imported = f"{base}.{node.module}" if node.module else base
            else:
                imported = node.module or ""
            names.add(imported)
            names.update(f"{imported}.{alias.name}" for alias in node.names)  # `from litezoo import cli`
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def test_import_graph_parser_sees_every_form():
    source = (
        "import litezoo.cli.main\nfrom litezoo.cli.common import emit\nfrom litezoo import cli as c\n"
        "from ..cli import common\nimport importlib\nimportlib.import_module('litezoo.cli.train')\n"
        "def f():\n    from litezoo.cli.data import run\n"
    )
    found = _imported_modules(source, "litezoo.analysis.fake")
    assert {"litezoo.cli.main", "litezoo.cli.common", "litezoo.cli", "litezoo.cli.train", "litezoo.cli.data"} <= found
    assert "litezoo.cli.common" in _imported_modules("from .cli import common", "litezoo.fake")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] + (("__init__",) if parts[-1] == "__init__" else (parts[-1],)))


def test_no_library_module_imports_the_cli():
    """The CLI depends on the library, never the reverse (litezoo.cli may import anything)."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "cli") in path.parents or path == PACKAGE / "__main__.py":
            continue  # the CLI itself, and `python -m litezoo`, which is the CLI's entry point
        imported = _imported_modules(path.read_text(encoding="utf-8"), _module_name(path))
        bad = sorted(m for m in imported if m == "litezoo.cli" or m.startswith("litezoo.cli."))
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert not offenders, f"library modules importing litezoo.cli: {offenders}"


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("LITEZOO_DEBUG", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


_TORCH_FREE = """
import sys
from litezoo.cli.main import main
for argv in {argvs!r}:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    print("EXIT", argv, code, file=sys.stderr)
heavy = sorted(m for m in ("torch", "numpy", "matplotlib", "PIL") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def test_help_and_argument_errors_do_not_import_torch():
    argvs = [["--help"], ["--version"], []] + [[name, "--help"] for name in SUBCOMMANDS]
    argvs += [["profile"], ["nosuchcommand"], ["compare", "--repeats", "0"], ["train", "--no-such-flag", "--epochs"]]
    proc = _run_python(_TORCH_FREE.format(argvs=argvs))
    assert proc.returncode == 0, proc.stderr
    heavy = proc.stdout.strip().splitlines()[-1]
    assert heavy == "HEAVY=", f"--help / argument errors imported {heavy[6:]}"
    exits = [line for line in proc.stderr.splitlines() if line.startswith("EXIT")]
    assert len(exits) == len(argvs)
    assert exits[0].endswith(" 0") and exits[3].endswith(" 0")  # --help, `litezoo models --help`
    assert all(line.endswith(" 2") for line in exits[-4:-1]), exits[-4:]  # argument errors exit 2


def test_top_level_help_reads_like_gits():
    proc = _run_python("from litezoo.cli.main import main\nmain(['--help'])")
    text = proc.stdout
    assert text.startswith("usage: litezoo [--version] [--help] <command> [<args>]")
    lines = text.splitlines()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        entry = [line for line in lines if line.startswith("   ") and line.split()[:1] == [name]]
        assert len(entry) == 1 and len(entry[0].split()) > 2, f"{name}: expected one line with its summary"
    assert "example:" in text and "litezoo train --config fast_cifar10" in text
    assert "LITEZOO_DEBUG=1" in text
    assert len(lines) < 50  # a screen, not a manual


def test_every_command_has_an_example_in_its_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert "example" in (command.epilog or "").lower(), f"`litezoo {name} --help` has no example"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("caf\udce9.png", "caf\\xe9.png"),  # PEP 383: the undecodable byte 0xe9
        ("a\ud800b", "a\\ud800b"),  # some other lone surrogate
        ("plain ü ✓", "plain ü ✓"),
        (float("nan"), None),
        (math.inf, None),
        ((1, 2), [1, 2]),
        (Path("x") / "y", "x/y"),
        ({1: "a"}, {"1": "a"}),
    ],
)
def test_json_safe_table(value, expected):
    assert json_safe(value) == expected


def test_json_text_is_strict_utf8_json_for_a_real_non_utf8_file_name(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"\xff.png")
    with open(raw, "wb"):
        pass
    (name,) = [p.name for p in tmp_path.iterdir()]  # what os.listdir gives for the byte 0xff
    assert name == "\udcff.png"
    text = json_text({"files": [tmp_path / name], "n": 1})
    text.encode("utf-8")  # no lone surrogate
    assert json.loads(text)["files"][0].endswith("/\\xff.png")
    numpy = pytest.importorskip("numpy")
    assert json.loads(json_text({"a": numpy.float32(0.5), "b": numpy.arange(2)})) == {"a": 0.5, "b": [0, 1]}
