"""litezoo.load_weights: torchvision's and megvii's layouts against reference outputs, litezoo's own files, bad input.

The torchvision fixtures (tests/fixtures/torchvision/*.pt) were made with torchvision itself by
make_fixtures.py there; they hold torchvision's key names and shapes, the input and torchvision's logits, and the
weights are regenerated here from the same seed (checked against the stored checksum).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import load_script

import litezoo
from litezoo.errors import InputError
from litezoo.weights import load_weights, to_torchvision

FIXTURES = Path(__file__).parent / "fixtures" / "torchvision"


MAKE = load_script("tests/fixtures/torchvision/make_fixtures.py")


def _reference(name: str):
    rec = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    state = MAKE.seeded_state_dict(rec["keys"], [tuple(s) for s in rec["shapes"]], rec["seed"])
    assert MAKE.checksum(state) == pytest.approx(rec["checksum"], rel=1e-12), "seeded weights drifted"
    return rec, state


@pytest.mark.parametrize("name", MAKE.MODELS)
def test_torchvision_layout_gives_torchvisions_outputs(name):
    rec, state = _reference(name)
    model = litezoo.create_model(name).eval()
    report = load_weights(model, state)
    assert report.layout == "torchvision"
    assert report.head_reset == [] and report.skipped == []
    with torch.no_grad():
        y = model(rec["input"])
    scale = rec["output"].abs().max().item()
    if "output_float64" not in rec:
        torch.testing.assert_close(y, rec["output"], atol=1e-5 * max(1.0, scale), rtol=1e-4)
        return
    # float32 summation order differs with the thread count (tests run on one, the fixture was made on two): on
    # MobileNet V3 Large's random-weight logits (up to ~300) that alone moves a logit by ~1e-5 of the scale.
    # float64 shows whether the networks are the same: torchvision's logits to ~1e-12.
    torch.testing.assert_close(y, rec["output"], atol=5e-5 * max(1.0, scale), rtol=1e-4)
    with torch.no_grad():
        y64 = model.double()(rec["input"].double())
    torch.testing.assert_close(y64, rec["output_float64"], atol=1e-9 * max(1.0, scale), rtol=1e-9)


@pytest.mark.parametrize(
    "name",
    ["squeezenet1_1", "shufflenet_v2_x0_5", "efficientnet_b0", "vgg11_bn", "mobilenet_v2_x0_35", "mobilenet_v3_large_x1_0",
     "mobilenet_v3_small_x0_75"],
)  # fmt: skip
def test_export_names_and_shapes_are_torchvisions(name):
    rec, state = _reference(name)
    model = litezoo.create_model(name)
    load_weights(model, state)
    exported = to_torchvision(model)
    assert list(exported) == rec["keys"]  # torchvision's own key order too
    assert [list(v.shape) for v in exported.values()] == rec["shapes"]
    for k in exported:
        torch.testing.assert_close(exported[k], state[k], rtol=0, atol=0)


def test_head_for_another_class_count_is_left_fresh_and_reported():
    _, state = _reference("squeezenet1_1")
    model = litezoo.create_model("squeezenet1_1", num_classes=2)
    fresh = model.head.conv.weight.clone()
    report = load_weights(model, state)
    assert sorted(report.head_reset) == ["head.conv.bias", "head.conv.weight"]
    assert report.source_num_classes == 1000
    torch.testing.assert_close(model.head.conv.weight, fresh, rtol=0, atol=0)
    torch.testing.assert_close(model.features.conv1[0].weight, state["features.0.weight"], rtol=0, atol=0)


def test_mobilenet_v2_torchvision_file_is_told_from_litezoos_by_its_classifier():
    # MobileNet V2's features have the same names in both layouts; only classifier.1 vs head.fc tells them apart.
    rec, state = _reference("mobilenet_v2_x1_0")
    model = litezoo.create_model("mobilenet_v2_x1_0", num_classes=2)
    report = load_weights(model, state)
    assert report.layout == "torchvision" and report.source_num_classes == 1000
    assert sorted(report.head_reset) == ["head.fc.bias", "head.fc.weight"]
    two = dict(state, **{"classifier.1.weight": torch.randn(2, 1280), "classifier.1.bias": torch.randn(2)})
    report = load_weights(model, two)
    assert report.layout == "torchvision" and report.head_reset == []
    torch.testing.assert_close(model.head.fc.weight, two["classifier.1.weight"], rtol=0, atol=0)
    # litezoo's own file, with or without its classifier, stays litezoo's
    own = model.state_dict()
    assert load_weights(litezoo.create_model("mobilenet_v2_x1_0", num_classes=2), own).layout == "litezoo"
    body = {k: v for k, v in own.items() if not k.startswith("head.")}
    report = load_weights(litezoo.create_model("mobilenet_v2_x1_0", num_classes=2), body)
    assert report.layout == "litezoo" and sorted(report.head_reset) == ["head.fc.bias", "head.fc.weight"]


def test_mobilenet_v3_keeps_its_hidden_layer_when_the_head_is_fresh():
    _, state = _reference("mobilenet_v3_small_x1_0")
    model = litezoo.create_model("mobilenet_v3_small_x1_0", num_classes=3)
    report = load_weights(model, state)
    assert report.layout == "torchvision" and sorted(report.head_reset) == ["head.fc.bias", "head.fc.weight"]
    torch.testing.assert_close(model.head.hidden.weight, state["classifier.0.weight"], rtol=0, atol=0)
    se = model.features[1].block[1]  # small's first block: depthwise, SE, project
    torch.testing.assert_close(se.conv_expand.bias, state["features.1.block.1.fc2.bias"], rtol=0, atol=0)


def test_mobilenet_weights_of_another_family_version_or_width_are_named():
    _, large = _reference("mobilenet_v3_large_x1_0")
    with pytest.raises(InputError, match="torchvision's mobilenet_v3 layout; they do not fit efficientnet_b0"):
        load_weights(litezoo.create_model("efficientnet_b0"), large)
    with pytest.raises(InputError, match="torchvision's mobilenet_v3 layout but their layers do not line up"):
        load_weights(litezoo.create_model("mobilenet_v3_small_x1_0"), large)
    _, effnet = _reference("efficientnet_b0")
    with pytest.raises(InputError, match="torchvision's efficientnet layout; they do not fit mobilenet_v3_large_x1_0"):
        load_weights(litezoo.create_model("mobilenet_v3_large_x1_0"), effnet)
    _, v2 = _reference("mobilenet_v2_x0_35")
    with pytest.raises(InputError, match="torchvision's mobilenet_v2 layout; they do not fit mobilenet_v3_small_x1_0"):
        load_weights(litezoo.create_model("mobilenet_v3_small_x1_0"), v2)
    with pytest.raises(InputError, match=r"features\.0\.0\.weight \(16, 3, 3, 3\) in the file vs \(32, 3, 3, 3\)"):
        load_weights(litezoo.create_model("mobilenet_v2_x1_0"), v2)
    _, small = _reference("mobilenet_v3_small_x0_75")  # 0.75x: expanded 72 -> 56 in block 2
    with pytest.raises(InputError, match=r"features\.2\.block\.0\.0\.weight \(56, 16, 1, 1\) in the file vs \(72, 16, 1, 1\)"):
        load_weights(litezoo.create_model("mobilenet_v3_small_x1_0"), small)


def test_wrapped_and_prefixed_files(tmp_path):
    _, state = _reference("squeezenet1_0")
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    model = litezoo.create_model("squeezenet1_0")
    assert load_weights(model, path).layout == "torchvision"
    torch.testing.assert_close(model.head.conv.weight, state["classifier.1.weight"], rtol=0, atol=0)
    from safetensors.torch import save_file

    st = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    other = litezoo.create_model("squeezenet1_0")
    assert load_weights(other, st).layout == "torchvision"
    torch.testing.assert_close(other.features.fire9.squeeze[0].bias, state["features.12.squeeze.bias"], rtol=0, atol=0)


def test_litezoo_layout_round_trip(tmp_path):
    torch.manual_seed(0)
    src = litezoo.create_model("shufflenet_v2_x0_5", num_classes=10)
    path = tmp_path / "own.pth"
    torch.save(src.state_dict(), path)
    dst = litezoo.create_model("shufflenet_v2_x0_5", num_classes=10)
    report = load_weights(dst, path)
    assert report.layout == "litezoo" and report.loaded == len(src.state_dict())
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one clear InputError each


def test_weights_of_another_architecture_are_refused():
    _, state = _reference("squeezenet1_1")
    with pytest.raises(InputError, match="torchvision's squeezenet layout; they do not fit shufflenet_v2_x0_5"):
        load_weights(litezoo.create_model("shufflenet_v2_x0_5"), state)


def test_weights_of_another_width_name_the_layers():
    _, state = _reference("shufflenet_v2_x0_5")  # stage 2 is 48 wide at 0.5x, 116 at 1.0x
    with pytest.raises(InputError, match=r"stages\.0\.0\.branch_proj\.1\.0\.weight \(24, 24, 1, 1\) in the file vs \(58, 24, 1, 1\)"):
        load_weights(litezoo.create_model("shufflenet_v2_x1_0"), state)
    report = load_weights(litezoo.create_model("shufflenet_v2_x1_0"), state, strict=False)
    assert any(s.startswith("stages.0.0.branch_proj.1.0.weight") for s in report.skipped)
    assert not any(s.startswith("stem.0.weight") for s in report.skipped)  # same shape at both widths: loaded


def test_weights_of_another_version_are_named():
    _, state = _reference("squeezenet1_0")  # 1.0 has its max-pools elsewhere, so its indices differ
    with pytest.raises(InputError, match="torchvision's squeezenet layout but their layers do not line up"):
        load_weights(litezoo.create_model("squeezenet1_1"), state)


def test_truncated_file(tmp_path):
    _, state = _reference("squeezenet1_1")
    path = tmp_path / "cut.pth"
    torch.save(state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_weights(litezoo.create_model("squeezenet1_1"), path)
    st = tmp_path / "cut.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    st.write_bytes(st.read_bytes()[:1000])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_weights(litezoo.create_model("squeezenet1_1"), st)


class _Payload:
    """A pickled object that would run code when unpickled without weights_only."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_payload_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _Payload()}, path)
    with pytest.raises(InputError, match="pickled Python objects, not a plain state dict: refused"):
        load_weights(litezoo.create_model("squeezenet1_1"), path)
    assert "this must never run" not in capsys.readouterr().out


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(InputError, match="is not a state dict"):
        load_weights(litezoo.create_model("squeezenet1_1"), path)
    with pytest.raises(InputError, match="does not exist"):
        load_weights(litezoo.create_model("squeezenet1_1"), tmp_path / "nope.pth")


# ---------------------------------------------------------------------------------------------------------------
# megvii's official ShuffleNet V2 release: a hand-written reference with their module names and their forward


class _MegviiBlock(torch.nn.Module):
    """ShuffleNet-Series ShuffleNetV2/blocks.py's ShuffleV2Block, written from its description: the stride-1
    unit splits even / odd channels, passes the even ones and concatenates without shuffling."""

    def __init__(self, inp, oup, mid, stride):
        super().__init__()
        nn = torch.nn
        self.stride = stride
        outputs = oup - inp
        self.branch_main = nn.Sequential(
            nn.Conv2d(inp, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
            nn.Conv2d(mid, outputs, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(),
        )  # fmt: skip
        if stride == 2:
            self.branch_proj = nn.Sequential(
                nn.Conv2d(inp, inp, 3, 2, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, inp, 1, bias=False), nn.BatchNorm2d(inp), nn.ReLU(),
            )  # fmt: skip

    def forward(self, x):
        if self.stride == 2:
            return torch.cat([self.branch_proj(x), self.branch_main(x)], 1)
        return torch.cat([x[:, 0::2], self.branch_main(x[:, 1::2])], 1)


class _MegviiShuffleNetV2(torch.nn.Module):
    def __init__(self, channels=(24, 48, 96, 192, 1024), classes=1000):
        super().__init__()
        nn = torch.nn
        self.first_conv = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, inp = [], channels[0]
        for repeats, out in zip([4, 8, 4], channels[1:4]):
            for i in range(repeats):
                blocks.append(_MegviiBlock(inp if i == 0 else inp // 2, out, out // 2, 2 if i == 0 else 1))
                inp = out
        self.features = nn.Sequential(*blocks)
        self.conv_last = nn.Sequential(nn.Conv2d(inp, channels[4], 1, bias=False), nn.BatchNorm2d(channels[4]), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(channels[4], classes, bias=False))

    def forward(self, x):
        x = self.conv_last(self.features(self.maxpool(self.first_conv(x))))
        return self.classifier(x.mean((2, 3)))


def test_megvii_shufflenet_v2_gives_the_references_outputs(tmp_path):
    ref = _MegviiShuffleNetV2().eval()
    keys = list(ref.state_dict())
    state = MAKE.seeded_state_dict(keys, [tuple(v.shape) for v in ref.state_dict().values()], seed=7)
    ref.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ref(x)
    path = tmp_path / "ShuffleNetV2.0.5x.pth.tar"  # the release: DataParallel names under "state_dict"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = litezoo.create_model("shufflenet_v2_x0_5").eval()
    report = load_weights(model, path)
    assert report.layout == "megvii"
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)
    # The channel order really differs: unit 2's first conv reads its inputs in another order than megvii's.
    assert not torch.equal(model.stages[0][1].branch_main[0][0].weight, state["features.1.branch_main.0.weight"])


def test_megvii_shufflenet_v1_is_refused_with_the_reason():
    state = {"first_conv.0.weight": torch.zeros(24, 3, 3, 3), "features.0.branch_main_1.0.weight": torch.zeros(60, 24, 1, 1)}
    with pytest.raises(InputError, match="inverse of litezoo's"):
        load_weights(litezoo.create_model("shufflenet_v1_g3_x1_0"), state)


def test_public_name():
    from litezoo import weights

    assert litezoo.load_weights is weights.load_weights
