"""``litezoo export-weights``: a litezoo run's weights under torchvision's names (checked against the fixture's
key list, which torchvision itself wrote), as .pth and .safetensors; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import litezoo
from litezoo import checkpoint as ckpt_io
from litezoo.cli.main import main
from litezoo.weights import load_weights

FIXTURES = Path(__file__).parent / "fixtures" / "torchvision"


def _run_folder(tmp_path: Path, name: str, num_classes: int) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = litezoo.create_model(name, num_classes=num_classes)
    run = tmp_path / "run"
    run.mkdir()
    meta = {"model_name": name, "num_classes": num_classes, "in_chans": 3, "image_size": 224,
            "classes": [f"c{i}" for i in range(num_classes)], "mean": [0.5] * 3, "std": [0.25] * 3, "epoch": 1}  # fmt: skip
    ckpt_io.export_safetensors(model.state_dict(), run / ckpt_io.SAFETENSORS, meta)
    return run, model


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_export_writes_torchvisions_names(tmp_path, capsys, suffix):
    run, model = _run_folder(tmp_path, "squeezenet1_1", 2)
    out = tmp_path / f"tv{suffix}"
    assert main(["export-weights", str(run), "--layout", "torchvision", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["out"] == str(out) and result["num_classes"] == 2
    if suffix == ".pth":
        state = torch.load(out, weights_only=True)
    else:
        from safetensors.torch import load_file

        state = load_file(str(out))
    ref = torch.load(FIXTURES / "squeezenet1_1.pt", weights_only=True)
    # torchvision's key order in the .pth; safetensors stores its keys sorted.
    assert list(state) == (ref["keys"] if suffix == ".pth" else sorted(ref["keys"]))
    head = {"classifier.1.weight": [2, 512, 1, 1], "classifier.1.bias": [2]}
    assert {k: head.get(k, s) for k, s in zip(ref["keys"], ref["shapes"])} == {k: list(v.shape) for k, v in state.items()}
    # ... and it loads back into litezoo as the same network.
    back = litezoo.create_model("squeezenet1_1", num_classes=2).eval()
    assert load_weights(back, out).layout == "torchvision"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model.eval()(x), rtol=0, atol=0)


def test_export_default_path_and_bad_input(tmp_path, capsys):
    run, _ = _run_folder(tmp_path, "shufflenet_v2_x0_5", 3)
    assert main(["export-weights", str(run)]) == 0
    assert (run / "shufflenet_v2_x0_5-torchvision.pth").is_file()
    capsys.readouterr()
    assert main(["export-weights", str(run), "--out", str(tmp_path / "w.npz")]) == 2
    assert "must end in .pth, .pt or .safetensors" in capsys.readouterr().err
    assert main(["export-weights", str(tmp_path / "missing")]) == 2
    assert main(["export-weights", str(tmp_path)]) == 2  # not a run folder
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("litezoo export-weights: error:") for line in err)


def test_export_refuses_families_torchvision_lacks(tmp_path, capsys):
    run, _ = _run_folder(tmp_path, "mobilenet_v1_x0_5", 2)
    assert main(["export-weights", str(run)]) == 2
    assert "torchvision's layout is known for the families" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "head"), [("mobilenet_v2_x0_35", ["classifier.1"]),
                                            ("mobilenet_v3_small_x0_75", ["classifier.3"])])  # fmt: skip
def test_export_mobilenets_in_torchvisions_layout(tmp_path, capsys, name, head):
    run, model = _run_folder(tmp_path, name, 2)
    out = tmp_path / "tv.pth"
    assert main(["export-weights", str(run), "--layout", "torchvision", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == []  # BatchNorm eps already torchvision's
    state = torch.load(out, weights_only=True)
    ref = torch.load(FIXTURES / f"{name}.pt", weights_only=True)  # written by torchvision's own model
    assert list(state) == ref["keys"]
    expected = {k: ([2] + s[1:] if k.rpartition(".")[0] in head else s) for k, s in zip(ref["keys"], ref["shapes"])}
    assert expected == {k: list(v.shape) for k, v in state.items()}
    back = litezoo.create_model(name, num_classes=2).eval()
    report = load_weights(back, out)
    assert report.layout == "torchvision" and report.head_reset == []
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model.eval()(x), rtol=0, atol=0)
