"""Loading never runs code: every ``torch.load(...)`` call in the source tree passes ``weights_only=True``.

Checkpoints and weight files given to litezoo may come from strangers, and unpickling arbitrary objects runs
code. The check parses every Python file of the tree and inspects each call of ``torch.load`` (also when
imported under another name, ``from torch import load``), and the library's one loader,
``litezoo.safeload.safe_torch_load``, is checked on missing, damaged and pickled files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from litezoo.errors import InputError
from litezoo.safeload import safe_torch_load

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
    assert calls >= 3  # the library loads in one place (safeload.py); tests read raw files too
    assert not unsafe, f"torch.load without weights_only=True at {', '.join(unsafe)}"


def test_the_library_loads_torch_files_in_one_place():
    """Every library read goes through litezoo.safeload, so every unusable file gets the same one-line errors."""
    src = REPO / "src" / "litezoo"
    places = {path.relative_to(src).as_posix() for path in sorted(src.rglob("*.py"))
              if torch_load_calls(path.read_text(encoding="utf-8"))}  # fmt: skip
    assert places == {"safeload.py"}


# ---------------------------------------------------------------------------------------------------------------
# safe_torch_load: one InputError line naming the file, what it is and the cause


class _Payload:
    """Runs code when unpickled without weights_only."""

    def __reduce__(self):
        return (print, ("this must never run",))


def _damaged_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(1000.0)}, good)
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 2], "empty": b"", "text": b"epochs: 3\n", "garbage": bytes(range(256))}
    for name, blob in files.items():
        (tmp_path / f"{name}.pt").write_bytes(blob)
    return {name: tmp_path / f"{name}.pt" for name in files}


def test_safe_torch_load_reads_plain_data(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.arange(3.0), "epoch": 2, "names": ["a"]}, path)
    state = safe_torch_load(path, "checkpoint")
    assert torch.equal(state["w"], torch.arange(3.0)) and state["epoch"] == 2 and state["names"] == ["a"]


def test_safe_torch_load_names_file_what_and_cause(tmp_path):
    with pytest.raises(InputError, match=r"^weights file .*nope\.pth does not exist$"):
        safe_torch_load(tmp_path / "nope.pth", "weights file")
    with pytest.raises(InputError, match="is a folder, not a file"):
        safe_torch_load(tmp_path, "checkpoint")
    for name, path in _damaged_files(tmp_path).items():
        with pytest.raises(InputError) as err:
            safe_torch_load(path, "checkpoint")
        msg = str(err.value)
        assert msg.startswith(f"checkpoint {path} is truncated or corrupt, or not a PyTorch file ("), (name, msg)
        assert "\n" not in msg and not msg.endswith("()"), (name, msg)  # one line, with a cause


def test_safe_torch_load_refuses_pickled_code(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Payload()}, path)
    with pytest.raises(InputError, match=r"^weights file .*evil\.pt holds pickled Python objects, .*refused"):
        safe_torch_load(path, "weights file")
    assert "this must never run" not in capsys.readouterr().out


def test_damaged_hint_is_asked_only_for_damaged_files(tmp_path):
    asked = []

    def hint(path: Path) -> str:
        asked.append(path)
        return "; see the newer one"

    torch.save({"w": torch.zeros(2)}, tmp_path / "ok.pt")
    torch.save({"x": _Payload()}, tmp_path / "evil.pt")
    safe_torch_load(tmp_path / "ok.pt", "checkpoint", damaged_hint=hint)
    for path in (tmp_path / "evil.pt", tmp_path / "missing.pt"):
        with pytest.raises(InputError):
            safe_torch_load(path, "checkpoint", damaged_hint=hint)
    assert asked == []
    cut = _damaged_files(tmp_path)["truncated"]
    with pytest.raises(InputError, match=r"\); see the newer one$"):
        safe_torch_load(cut, "checkpoint", damaged_hint=hint)
    assert asked == [cut]
