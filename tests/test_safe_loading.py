"""Loading never runs code: every ``torch.load(...)`` call in the source tree passes ``weights_only=True``.

Checkpoints and weight files given to litezoo may come from strangers, and unpickling arbitrary objects runs
code. The check parses every Python file of the tree and inspects each call of ``torch.load`` (also when
imported under another name, ``from torch import load``).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("src", "benchmarks", "tests", "examples", "scripts")


def torch_load_calls(source: str) -> list[tuple[int, bool]]:
    """(line, passes weights_only=True) for every call of torch.load in ``source``."""
    tree = ast.parse(source)
    aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "torch"
               for a in n.names if a.name == "load"}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        is_load = (isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name)
                   and f.value.id == "torch") or (isinstance(f, ast.Name) and f.id in aliases)  # fmt: skip
        if is_load:
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)  # fmt: skip
            found.append((node.lineno, safe))
    return found


def test_the_scanner_tells_safe_from_unsafe_calls():
    sample = (
        "import torch\nfrom torch import load as tl\n"
        "a = torch.load(p, map_location='cpu',\n    weights_only=True)\n"
        "b = torch.load(p)\nc = torch.load(p, weights_only=False)\nd = tl(p)\ne = other.load(p)\n"
    )
    assert torch_load_calls(sample) == [(3, True), (5, False), (6, False), (7, False)]


def test_every_torch_load_passes_weights_only_true():
    files = [p for d in SCANNED if (REPO / d).is_dir() for p in sorted((REPO / d).rglob("*.py"))]
    assert any(p.name == "checkpoint.py" for p in files)  # the scan covers the library
    calls, unsafe = 0, []
    for path in files:
        for line, safe in torch_load_calls(path.read_text(encoding="utf-8")):
            calls += 1
            if not safe:
                unsafe.append(f"{path.relative_to(REPO)}:{line}")
    assert calls >= 3  # checkpoint.py loads in two places; tests read raw files too
    assert not unsafe, f"torch.load without weights_only=True at {', '.join(unsafe)}"
