"""ShuffleNet V1 / V2: channel shuffle, unit structure and semantics, sizes, variant tables, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import litezoo
from litezoo.layers import channel_shuffle
from litezoo.models.shufflenet_v1 import ShuffleNetV1, ShuffleV1Unit, _shufflenet_v1
from litezoo.models.shufflenet_v2 import ShuffleV2Unit

V1_NAMES = litezoo.list_models("shufflenet_v1_*", include_cifar=False)
V2_NAMES = litezoo.list_models("shufflenet_v2_*", include_cifar=False)



def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _reference_shuffle_order(channels: int, groups: int) -> list[int]:
    """Paper Sec. 3.1: reshape channels to (g, n), transpose to (n, g), flatten -- written as a plain loop."""
    n = channels // groups
    order = []
    for i in range(n):  # row of the transposed (n, g) matrix
        for g in range(groups):
            order.append(g * n + i)  # the element at (g, i) of the original (g, n) matrix
    return order


def _eval_unit_with_random_bn(unit: nn.Module) -> nn.Module:
    # Non-trivial BN statistics, so a wrong channel order cannot hide behind identical per-channel affines.
    torch.manual_seed(0)
    for m in unit.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return unit.eval()


# ---------------------------------------------------------------- channel shuffle


@pytest.mark.parametrize("groups,channels", [(1, 5), (2, 4), (2, 10), (3, 9), (3, 12), (4, 8), (8, 24), (5, 15)])
def test_channel_shuffle_matches_reference_permutation(groups, channels):
    x = torch.randn(2, channels, 3, 2)
    expected = x[:, _reference_shuffle_order(channels, groups)]
    assert torch.equal(channel_shuffle(x, groups), expected)


def test_channel_shuffle_feeds_every_group_from_every_group():
    # What the shuffle is for: after it, each of the g output groups holds one channel from each input group.
    groups, channels = 3, 12
    n = channels // groups
    x = torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1)
    out = channel_shuffle(x, groups).flatten().long()
    for k in range(groups):
        source_groups = {int(c) // n for c in out[k * n : (k + 1) * n]}
        assert source_groups == set(range(groups))


# ---------------------------------------------------------------- ShuffleNet V1 structure


@pytest.mark.parametrize("name,groups", [("shufflenet_v1_g3_x1_0", 3), ("shufflenet_v1_g8_x0_5", 8)])
def test_v1_pointwise_group_convs_are_single_grouped_conv2d(name, groups):
    model = litezoo.create_model(name)
    units = [u for u in model.modules() if isinstance(u, ShuffleV1Unit)]
    assert len(units) == 4 + 8 + 4
    for idx, unit in enumerate(units):
        convs = [m for m in unit.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 3, "one conv per layer: pw GConv, depthwise, pw GConv (no per-group conv loop)"
        pw1, dw, pw2 = convs
        assert pw1.kernel_size == (1, 1) and pw2.kernel_size == (1, 1)
        # Stage 2's first pointwise layer reads the 24-ch (or 12/16-ch) stem: the paper keeps it dense.
        assert pw1.groups == (1 if idx == 0 else groups)
        assert pw2.groups == groups
        assert dw.kernel_size == (3, 3) and dw.groups == dw.in_channels == dw.out_channels
        assert dw.stride == ((2, 2) if idx in (0, 4, 12) else (1, 1))
        assert pw1.out_channels == unit.pw2[0].in_channels  # bottleneck width
    assert units[0].pw1[0].in_channels == model.stem[0].out_channels


def test_v1_unit_forward_matches_paper_definition():
    """Stride 1: ReLU(x + GConv(DW(shuffle(GConv(x))))); stride 2: ReLU(concat(avgpool(x), branch))."""
    g = 3
    for in_chs, out_chs, stride in [(48, 48, 1), (48, 96, 2)]:
        unit = _eval_unit_with_random_bn(ShuffleV1Unit(in_chs, out_chs, groups=g, stride=stride, first_pw_groups=g))
        x = torch.randn(2, in_chs, 9, 9)
        with torch.no_grad():
            y = unit.pw1(x)
            y = y[:, _reference_shuffle_order(y.shape[1], g)]
            y = unit.pw2(unit.dw(y))
            if stride == 1:
                expected = F.relu(x + y)
            else:
                expected = F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], dim=1))
            assert torch.allclose(unit(x), expected, atol=1e-5)


def test_v1_unit_without_shuffle_differs():
    # Guard for the test above: dropping the shuffle must change the output (else the check is vacuous).
    unit = _eval_unit_with_random_bn(ShuffleV1Unit(48, 48, groups=3, stride=1, first_pw_groups=3))
    x = torch.randn(1, 48, 5, 5)
    with torch.no_grad():
        unshuffled = F.relu(x + unit.pw2(unit.dw(unit.pw1(x))))
        assert not torch.allclose(unit(x), unshuffled, atol=1e-3)


@pytest.mark.parametrize("size", [16, 15, 9])
def test_stride2_units_concat_channels_and_halve_spatial(size):
    x = torch.rand(2, 24, size, size)  # non-negative, like the post-ReLU input a unit receives
    half = (size + 1) // 2
    v1 = ShuffleV1Unit(24, 240, groups=3, stride=2, first_pw_groups=1).eval()
    assert v1.pw2[0].out_channels == 240 - 24  # the branch makes only the channels the pooled input lacks
    out = v1(x)
    assert out.shape == (2, 240, half, half)
    assert torch.allclose(out[:, :24], F.avg_pool2d(x, 3, 2, 1))  # shortcut channels come first, unchanged

    v2 = ShuffleV2Unit(24, 116, stride=2).eval()
    assert v2(x).shape == (2, 116, half, half)


def test_v2_stride1_unit_passes_half_the_channels_through():
    unit = ShuffleV2Unit(116, 116, stride=1).eval()
    x = torch.randn(2, 116, 7, 7)
    out = unit(x)
    assert out.shape == x.shape
    # out = shuffle(concat(x[:, :58], branch(x[:, 58:])), 2): the untouched half sits on the even channels.
    assert torch.equal(out[:, 0::2], x[:, :58])
    assert not torch.allclose(out[:, 1::2], x[:, 58:])


def test_v2_structure_has_no_group_convs_except_depthwise():
    model = litezoo.create_model("shufflenet_v2_x0_5")
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels and m.kernel_size == (3, 3)
    units = [u for u in model.modules() if isinstance(u, ShuffleV2Unit)]
    assert [u.stride for u in units] == [2, 1, 1, 1] + [2] + [1] * 7 + [2, 1, 1, 1]


# ---------------------------------------------------------------- sizes and variant tables

# Parameters at 1000 classes. "paper"/"torchvision" rows are external references; "computed" rows are this
# implementation's counts pinned against regressions (their MACs match the paper's MFLOPs tables).
PARAM_TABLE = [
    ("shufflenet_v1_g3_x1_0", 1.87e6),  # paper / megvii: 1.87M (1,865,728)
    ("shufflenet_v1_g1_x1_0", 1_531_936),  # computed
    ("shufflenet_v1_g2_x1_0", 1_733_848),  # computed
    ("shufflenet_v1_g4_x1_0", 1_968_344),  # computed
    ("shufflenet_v1_g8_x1_0", 2_434_768),  # computed (megvii: 2.4M)
    ("shufflenet_v1_g3_x0_5", 718_324),  # computed (megvii: 0.7M)
    ("shufflenet_v1_g3_x2_0", 5_450_776),  # computed (megvii: 5.4M)
    ("shufflenet_v1_g8_x1_5", 4_269_952),  # computed (megvii: 4.3M)
    ("shufflenet_v2_x0_5", 1_366_792),  # torchvision
    ("shufflenet_v2_x1_0", 2_278_604),  # torchvision (required: 2.28M)
    ("shufflenet_v2_x1_5", 3_503_624),  # torchvision
    ("shufflenet_v2_x2_0", 7_393_996),  # torchvision
]


@pytest.mark.parametrize("name,expected", PARAM_TABLE)
def test_parameter_counts(name, expected):
    assert _params(litezoo.create_model(name)) == pytest.approx(expected, rel=0.005)


# megvii-model/ShuffleNet-Series ShuffleNetV1 `stage_out_channels` (stem, stage 2, 3, 4) for g=3 and g=8.
MEGVII_CHANNELS = {
    (3, "0_5"): [12, 120, 240, 480],
    (3, "1_0"): [24, 240, 480, 960],
    (3, "1_5"): [24, 360, 720, 1440],
    (3, "2_0"): [48, 480, 960, 1920],
    (8, "0_5"): [16, 192, 384, 768],
    (8, "1_0"): [24, 384, 768, 1536],
    (8, "1_5"): [24, 576, 1152, 2304],
    (8, "2_0"): [48, 768, 1536, 3072],
}


@pytest.mark.parametrize("key", list(MEGVII_CHANNELS))
def test_v1_widths_follow_official_megvii_tables(key):
    groups, width = key
    model = litezoo.create_model(f"shufflenet_v1_g{groups}_x{width}")
    stem = model.stem[0].out_channels
    stages = [stage[-1].pw2[0].out_channels for stage in model.stages]
    assert [stem] + stages == MEGVII_CHANNELS[key]
    assert model.num_features == MEGVII_CHANNELS[key][-1]


def test_v1_registers_exactly_the_well_defined_combos():
    expected = {
        f"shufflenet_v1_g{g}_x{w}" for g in (1, 2, 3, 4, 8) for w in ("0_5", "1_0", "1_5", "2_0")
    } - {"shufflenet_v1_g2_x0_5", "shufflenet_v1_g2_x1_5", "shufflenet_v1_g4_x0_5", "shufflenet_v1_g4_x1_5"}
    assert set(V1_NAMES) == expected
    assert set(V2_NAMES) == {f"shufflenet_v2_x{w}" for w in ("0_5", "1_0", "1_5", "2_0")}
    for name in V1_NAMES + V2_NAMES:
        info = litezoo.model_info(name)
        assert info.default_size == 224 and not info.small_input
        assert litezoo.model_info(name + "_cifar").small_input


@pytest.mark.parametrize(
    "groups,width,needles",
    [
        (2, 0.5, ["groups=2", "width=0.5", "25"]),
        (2, 1.5, ["groups=2", "width=1.5", "75"]),
        (4, 0.5, ["groups=4", "width=0.5", "34"]),
        (4, 1.5, ["groups=4", "width=1.5", "102"]),
        (5, 1.0, ["groups=5", "[1, 2, 3, 4, 8]"]),
        (3, 0.25, ["width=0.25", "groups=3"]),
    ],
)
def test_v1_undefined_combos_raise_value_error_naming_values(groups, width, needles):
    with pytest.raises(ValueError) as err:
        _shufflenet_v1(groups, width, num_classes=10, in_chans=3, small_input=False, drop_rate=0.0)
    for needle in needles:
        assert needle in str(err.value)


def test_v1_unregistered_name_gets_suggestions():
    with pytest.raises(ValueError, match="unknown model 'shufflenet_v1_g2_x0_5'.*did you mean"):
        litezoo.create_model("shufflenet_v1_g2_x0_5")


def test_units_reject_inconsistent_channels():
    with pytest.raises(ValueError, match="in_chs \\(48\\) must equal out_chs \\(96\\)"):
        ShuffleV1Unit(48, 96, groups=3, stride=1, first_pw_groups=3)
    with pytest.raises(ValueError, match="not divisible by groups=3"):  # 100/4 = 25 bottleneck channels
        ShuffleNetV1([2], [100], 24, 3)
    with pytest.raises(ValueError, match="even"):
        ShuffleV2Unit(24, 117, stride=2)


# ---------------------------------------------------------------- interface: sizes, CIFAR form, head, channels


@pytest.mark.parametrize("name", V1_NAMES + V2_NAMES)
def test_cifar_forms_keep_spatial_maps_at_32px(name):
    model = litezoo.create_model(name + "_cifar", num_classes=10).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 32, 32))
        assert feats.shape == (1, model.num_features, 4, 4)  # stages at 16/8/4 px
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", ["shufflenet_v1_g3_x0_5", "shufflenet_v2_x0_5"])
@pytest.mark.parametrize("size,expected_hw", [(224, 7), (97, 4), (64, 2)])
def test_imagenet_form_downsamples_by_32_any_size(name, size, expected_hw):
    model = litezoo.create_model(name, num_classes=5).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, size, size))
        assert feats.shape == (1, model.num_features, expected_hw, expected_hw)
        assert model.forward_head(feats).shape == (1, 5)


@pytest.mark.parametrize("name", ["shufflenet_v1_g8_x0_5", "shufflenet_v2_x0_5"])
def test_reset_classifier_and_single_channel_input(name):
    model = litezoo.create_model(name + "_cifar", num_classes=10, in_chans=1, drop_rate=0.2).eval()
    assert model.in_chans == 1 and model.stem[0].in_channels == 1
    assert isinstance(model.head.drop, nn.Dropout) and model.head.drop.p == 0.2
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        model.reset_classifier(3)
        assert model.num_classes == 3 and model(x).shape == (2, 3)
        model.reset_classifier(0)  # no classifier: pooled features
        assert model(x).shape == (2, model.num_features)


def test_builders_are_keyword_only():
    from litezoo.models.shufflenet_v2 import shufflenet_v2_x1_0

    with pytest.raises(TypeError):
        shufflenet_v2_x1_0(10)


# ---------------------------------------------------------------- megvii's official V1 release (shuffle_order)
#
# A hand-written reference with the module names and forward of megvii-model/ShuffleNet-Series
# ShuffleNetV1/blocks.py + network.py: branch_main_1 = [1x1 (G)Conv, BN, ReLU, dw 3x3, BN], branch_main_2 =
# [1x1 GConv, BN]; the shuffle sits between the two (after the depthwise conv), views the channels as (C/g, g)
# and swaps the axes, and runs whenever g > 1 (also in the first unit, whose 1x1 is dense); a stride-2 unit
# returns cat(avgpool(x), relu(branch)); bias-free classifier.0.


def _megvii_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, c // groups, groups, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


class _MegviiV1Block(nn.Module):
    def __init__(self, inp: int, oup: int, *, group: int, first_group: bool, stride: int):
        super().__init__()
        mid = oup // 4
        outputs = oup - inp if stride == 2 else oup
        self.stride, self.group = stride, group
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid, 1, 1, 0, groups=1 if first_group else group, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(), nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
        )  # fmt: skip
        self.branch_main_2 = nn.Sequential(nn.Conv2d(mid, outputs, 1, 1, 0, groups=group, bias=False), nn.BatchNorm2d(outputs))
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch_main_1(x)
        if self.group > 1:
            y = _megvii_shuffle(y, self.group)
        y = self.branch_main_2(y)
        if self.stride == 1:
            return F.relu(x + y)
        return torch.cat([self.branch_proj(x), F.relu(y)], 1)


class _MegviiV1Net(nn.Module):
    def __init__(self, channels: list[int], group: int, classes: int = 1000):  # network.py's stage_out_channels[1:]
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, inp = [], channels[0]
        for stage, (repeats, out) in enumerate(zip([4, 8, 4], channels[1:])):
            for i in range(repeats):
                blocks.append(_MegviiV1Block(inp, out, group=group, first_group=stage == 0 and i == 0, stride=2 if i == 0 else 1))
                inp = out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Linear(inp, classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.maxpool(self.first_conv(x)))
        return self.classifier(x.mean((2, 3)))  # megvii: AvgPool2d(7), the same at 224 px (7x7 maps)


def _seeded(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Non-trivial weights and BN statistics (the torchvision fixtures' generator), loaded into ``module``."""
    from conftest import load_script

    make = load_script("tests/fixtures/torchvision/make_fixtures.py")
    own = module.state_dict()
    state = make.seeded_state_dict(list(own), [tuple(v.shape) for v in own.values()], seed)
    module.load_state_dict(state)
    return state


def _megvii_table(channels: list[int], group: int, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """megvii's V1 state-dict layout written out from network.py / blocks.py with plain loops (no modules)."""
    table: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            table[f"{prefix}.{leaf}"] = (c,)
        table[f"{prefix}.num_batches_tracked"] = ()

    table["first_conv.0.weight"] = (channels[0], 3, 3, 3)
    bn("first_conv.1", channels[0])
    i, inp = 0, channels[0]
    for stage, (repeats, oup) in enumerate(zip([4, 8, 4], channels[1:])):
        for u in range(repeats):
            mid, first_group = oup // 4, stage == 0 and u == 0
            outputs = oup - inp if u == 0 else oup
            table[f"features.{i}.branch_main_1.0.weight"] = (mid, inp // (1 if first_group else group), 1, 1)
            bn(f"features.{i}.branch_main_1.1", mid)
            table[f"features.{i}.branch_main_1.3.weight"] = (mid, 1, 3, 3)
            bn(f"features.{i}.branch_main_1.4", mid)
            table[f"features.{i}.branch_main_2.0.weight"] = (outputs, mid // group, 1, 1)
            bn(f"features.{i}.branch_main_2.1", outputs)
            i, inp = i + 1, oup
    table["classifier.0.weight"] = (classes, inp)
    return table


def test_megvii_shuffle_is_the_inverse_of_the_papers():
    from litezoo.weights.megvii import megvii_shuffle_order

    for channels, groups in [(12, 3), (60, 3), (48, 8), (24, 2)]:
        paper, megvii = _reference_shuffle_order(channels, groups), megvii_shuffle_order(channels, groups)
        x = torch.randn(1, channels, 2, 2)
        assert torch.equal(_megvii_shuffle(x, groups), x[:, megvii])
        assert [paper[j] for j in megvii] == list(range(channels))  # one undoes the other
        assert paper != megvii  # ... and they are not the same permutation (C != g^2)


@pytest.mark.parametrize("stride,first_group", [(1, False), (2, False), (2, True)])
def test_v1_unit_in_megvii_order_matches_megvii_block(stride, first_group):
    g, inp, oup = 3, (24 if first_group else 48), (96 if stride == 2 else 48)
    ref = _MegviiV1Block(inp, oup, group=g, first_group=first_group, stride=stride).eval()
    state = _seeded(ref, seed=3)
    unit = ShuffleV1Unit(inp, oup, groups=g, stride=stride, first_pw_groups=1 if first_group else g, shuffle_order="megvii")
    names = {"branch_main_1.0": "pw1.0", "branch_main_1.1": "pw1.1", "branch_main_1.3": "dw.0",
             "branch_main_1.4": "dw.1", "branch_main_2.0": "pw2.0", "branch_main_2.1": "pw2.1"}  # fmt: skip
    mapped = {}
    for key, value in state.items():
        module, leaf = key.rsplit(".", 1)
        mapped[f"{names[module]}.{leaf}"] = value
    # megvii shuffles after the depthwise conv, litezoo before it: the per-channel dw conv + BN take their
    # channels in megvii's shuffled order. In the first unit litezoo does not shuffle at all (dense 1x1), so the
    # 1x1's output rows are stored shuffled too.
    rows = [(o % (oup // 4 // g)) * g + o // (oup // 4 // g) for o in range(oup // 4)]  # megvii's shuffle
    for key in [k for k in mapped if k.startswith("dw.") or (first_group and k.startswith("pw1."))]:
        if not key.endswith("num_batches_tracked"):
            mapped[key] = mapped[key][rows]
    unit.load_state_dict(mapped)
    unit.eval()
    x = torch.rand(2, inp, 9, 9)  # non-negative, as after the previous ReLU
    with torch.no_grad():
        torch.testing.assert_close(unit(x), ref(x), atol=1e-5, rtol=1e-5)
        if not first_group:  # the paper's order on the same weights is another function
            unit.shuffle_order = "paper"
            assert not torch.allclose(unit(x), ref(x), atol=1e-3)


@pytest.mark.parametrize(
    "name,channels,group",
    [("shufflenet_v1_g3_x1_0", [24, 240, 480, 960], 3), ("shufflenet_v1_g8_x0_5", [16, 192, 384, 768], 8)],
)
def test_megvii_v1_release_gives_the_references_outputs(tmp_path, name, channels, group):
    from litezoo.weights import load_weights

    ref = _MegviiV1Net(channels, group).eval()
    state = _seeded(ref, seed=11)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ref(x)
    path = tmp_path / "snetv1.pth.tar"  # as released: saved from DataParallel, under "state_dict"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = litezoo.create_model(name, shuffle_order="megvii").eval()
    report = load_weights(model, path)
    assert report.layout == "megvii" and report.head_reset == [] and report.skipped == []
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-4 * max(1.0, expected.abs().max().item()), rtol=1e-4)
    # A paper-order model with the same weights is a different network (why the option exists).
    paper = litezoo.create_model(name).eval()
    paper.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(paper(x), expected, atol=1e-2)


def test_megvii_v1_key_and_shape_table_g3_x1_0():
    """megvii's release layout for g=3 1.0x (written out from network.py) is exactly what the loader reads."""
    from litezoo.weights.megvii import shufflenet_v1_to_litezoo

    table = _megvii_table([24, 240, 480, 960], 3)
    assert len(table) == 6 + 16 * 18 + 1  # stem conv + BN, 16 units x (3 convs + 3 BNs), classifier
    assert table["features.0.branch_main_1.0.weight"] == (60, 24, 1, 1)  # first unit: dense 1x1 (first_group)
    assert table["features.0.branch_main_2.0.weight"] == (216, 20, 1, 1)  # stride 2: 240 - 24 outputs, g=3
    assert table["features.4.branch_main_1.0.weight"] == (120, 80, 1, 1)  # stage 3 entry: 240 in, mid 480/4
    assert table["classifier.0.weight"] == (1000, 960)
    ref = _MegviiV1Net([24, 240, 480, 960], 3)
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == table  # the reference has that layout

    read: set[str] = set()

    class Recording(dict):
        def __getitem__(self, key):
            read.add(key)
            return super().__getitem__(key)

    src = Recording({k: torch.zeros(s) for k, s in table.items()})
    model = litezoo.create_model("shufflenet_v1_g3_x1_0", shuffle_order="megvii")
    own = model.state_dict()
    mapped = shufflenet_v1_to_litezoo(src, model)
    assert read == set(table)  # every tensor of the release is used
    assert set(mapped) == set(own)  # and every tensor of the model is filled, with its shape
    assert all(tuple(mapped[k].shape) == tuple(own[k].shape) for k in own)
    params = sum(math.prod(s) for k, s in table.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert _params(model) == params + 1000  # megvii's classifier has no bias; litezoo's has 1000


def test_megvii_v1_into_a_paper_order_model_says_how_to_build_the_right_one():
    from litezoo.errors import InputError
    from litezoo.weights import load_weights

    state = {k: torch.zeros(s) for k, s in _megvii_table([16, 192, 384, 768], 8).items()}
    build = r"create_model\('shufflenet_v1_g8_x0_5', shuffle_order='megvii'\)"  # read from the file's shapes
    with pytest.raises(InputError, match=r"inverse of litezoo's.*" + build):
        load_weights(litezoo.create_model("shufflenet_v1_g3_x1_0"), state)
    misfit = r"do not fit shufflenet_v1_g3_x1_0: stem\.0\.weight \(16, 3, 3, 3\) in the file"  # right order, wrong width
    with pytest.raises(InputError, match=misfit):
        load_weights(litezoo.create_model("shufflenet_v1_g3_x1_0", shuffle_order="megvii"), state)


def test_shuffle_order_keeps_parameters_and_rejects_unknown_orders():
    for name in ("shufflenet_v1_g3_x1_0", "shufflenet_v1_g8_x1_5_cifar", "shufflenet_v1_g1_x1_0"):
        paper, megvii = litezoo.create_model(name), litezoo.create_model(name, shuffle_order="megvii")
        assert {k: v.shape for k, v in paper.state_dict().items()} == {k: v.shape for k, v in megvii.state_dict().items()}
        assert megvii.shuffle_order == "megvii" and paper.shuffle_order == "paper"
    assert "shuffle_order" in litezoo.model_info("shufflenet_v1_g3_x1_0").options
    with pytest.raises(ValueError, match="shuffle_order must be one of .*'paper', 'megvii'.*'tf'"):
        litezoo.create_model("shufflenet_v1_g3_x1_0", shuffle_order="tf")
