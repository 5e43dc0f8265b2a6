"""count_macs / count_params against the closed-form costs of the source material (seeds 001 and 004)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from litezoo.analysis import count_macs, count_params
from litezoo.analysis.counting import trace_costs
from litezoo.analysis import seed_examples
from litezoo.layers import channel_shuffle


# --- small units built here, independent of the zoo -------------------------------------------------------


class ResNetBottleneck(nn.Module):
    """1x1 c->m, 3x3 m->m (groups g: ResNeXt), 1x1 m->c, shortcut. Cost hw(2cm + 9m²/g)."""

    def __init__(self, c: int, m: int, groups: int = 1):
        super().__init__()
        self.reduce = nn.Conv2d(c, m, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        self.conv3 = nn.Conv2d(m, m, 3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(m)
        self.expand = nn.Conv2d(m, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.bn1(self.reduce(x)))
        y = F.relu(self.bn2(self.conv3(y)))
        return F.relu(x + self.bn3(self.expand(y)))


class ShuffleUnit(nn.Module):
    """ShuffleNet V1 unit, stride 1: 1x1 GConv c->m, shuffle, 3x3 DWConv, 1x1 GConv m->c. Cost hw(2cm/g + 9m)."""

    def __init__(self, c: int, m: int, groups: int):
        super().__init__()
        self.groups = groups
        self.gconv1 = nn.Conv2d(c, m, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        self.dwconv = nn.Conv2d(m, m, 3, padding=1, groups=m, bias=False)
        self.bn2 = nn.BatchNorm2d(m)
        self.gconv2 = nn.Conv2d(m, c, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.bn1(self.gconv1(x)))
        y = channel_shuffle(y, self.groups)
        y = self.bn2(self.dwconv(y))
        return F.relu(x + self.bn3(self.gconv2(y)))


# --- single layers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,m,n,size,stride", [(3, 3, 8, 5, 1), (3, 16, 32, 8, 2), (5, 4, 6, 7, 1), (1, 24, 12, 6, 1)])
def test_standard_conv_macs(k, m, n, size, stride):
    conv = nn.Conv2d(m, n, k, stride=stride, padding=k // 2)
    out = (size + 2 * (k // 2) - k) // stride + 1
    assert count_macs(conv, size, in_chans=m) == k * k * m * n * out * out


@pytest.mark.parametrize("k,m,n,size", [(3, 32, 64, 8), (5, 16, 16, 6), (3, 8, 256, 4)])
def test_depthwise_separable_ratio(k, m, n, size):
    standard = nn.Conv2d(m, n, k, padding=k // 2, bias=False)
    separable = nn.Sequential(
        nn.Conv2d(m, m, k, padding=k // 2, groups=m, bias=False), nn.Conv2d(m, n, 1, bias=False)
    )
    std, sep = count_macs(standard, size, m), count_macs(separable, size, m)
    assert sep == k * k * m * size * size + m * n * size * size
    assert sep / std == pytest.approx(1 / n + 1 / (k * k))


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_group_conv_has_one_gth_of_params_and_macs(groups):
    standard = nn.Conv2d(12, 6, 3, padding=1, bias=False)
    grouped = nn.Conv2d(12, 6, 3, padding=1, groups=groups, bias=False)
    assert count_params(grouped) * groups == count_params(standard)
    assert count_macs(grouped, 7, 12) * groups == count_macs(standard, 7, 12)


def test_linear_and_transposed_conv():
    assert count_macs(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10)), 4) == 48 * 10
    deconv = nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2)
    # Each input element is spread through (C_out/g) * k * k weights.
    assert count_macs(deconv, 5, 4) == 4 * 5 * 5 * (6 // 2) * 2 * 2


# --- units from seed 004: ResNet vs ResNeXt vs ShuffleNet -------------------------------------------------


def test_resnet_bottleneck_formula():
    c, m, h = 256, 64, 4  # the seed's example channels, a small map
    assert count_macs(ResNetBottleneck(c, m), h, c) == h * h * (2 * c * m + 9 * m * m)


def test_resnext_bottleneck_formula():
    c, m, g = 256, 128, 32  # cardinality 32, 4 channels per group
    assert count_macs(ResNetBottleneck(c, m, groups=g), 4, c) == 4 * 4 * (2 * c * m + 9 * m * m // g)


@pytest.mark.parametrize("g", [1, 2, 3, 4, 8])
def test_shufflenet_unit_formula(g):
    c, m, h = 240, 48 if g != 3 else 60, 4  # m divisible by g
    assert count_macs(ShuffleUnit(c, m, g), h, c) == h * h * (2 * c * m // g + 9 * m)


def test_shufflenet_unit_is_cheapest_at_equal_width():
    c, m, g, h = 240, 60, 3, 4
    resnet = count_macs(ResNetBottleneck(c, m), h, c)
    resnext = count_macs(ResNetBottleneck(c, m, groups=g), h, c)
    shuffle = count_macs(ShuffleUnit(c, m, g), h, c)
    assert shuffle < resnext < resnet


# --- the seeds' worked numbers ----------------------------------------------------------------------------


def test_seed_001_worked_example():
    # 2x2 kernel, 3 -> 8 channels, 5x5 input kept 5x5: 2*2*3*8*5*5 = 2400 vs 2*2*3*5*5 + 3*8*5*5 = 900.
    assert count_macs(seed_examples.standard_conv(), 5) == 2400
    assert count_macs(seed_examples.depthwise_separable_conv(), 5) == 900


def test_seed_004_worked_example():
    # 3x3 conv 12 -> 6: 3*3*12*6 = 648 weights; in 3 groups 3*3*(12/3)*(6/3)*3 = 216.
    assert count_params(seed_examples.standard_conv_12_6()) == 648
    assert count_params(seed_examples.group_conv_12_6()) == 216


@pytest.mark.parametrize(
    "build,per_pixel",
    [
        (seed_examples.resnet_bottleneck, 2 * 256 * 64 + 9 * 64 * 64),
        (seed_examples.resnext_bottleneck, 2 * 256 * 128 + 9 * 128 * 128 // 32),
        (seed_examples.shufflenet_unit, 2 * 240 * 60 // 3 + 9 * 60),
    ],
)
def test_seed_004_units_as_shipped(build, per_pixel):
    # The units the docs profile (module:function), at the seed's channel numbers.
    assert count_macs(build(), 7) == 7 * 7 * per_pixel


# --- attention and functional ops -------------------------------------------------------------------------


class TinyAttention(nn.Module):
    """ViT-style self-attention over the pixels of a feature map, with either explicit matmuls or SDPA."""

    def __init__(self, dim: int, heads: int, fused: bool):
        super().__init__()
        self.in_chans, self.heads, self.fused = dim, heads, fused
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        q, k, v = self.qkv(x).view(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1) @ v  # (B, H, N, d)
        return self.proj(y.transpose(1, 2).reshape(b, h * w, c))


@pytest.mark.parametrize("fused", [False, True])
def test_attention_matmuls_count(fused):
    dim, heads, side = 32, 4, 4
    n = side * side
    expected = n * dim * 3 * dim + n * dim * dim + 2 * heads * n * n * (dim // heads)
    assert count_macs(TinyAttention(dim, heads, fused), side) == expected


def test_multihead_attention_fast_path_counted():
    dim, heads, n = 16, 2, 9

    class Mha(nn.Module):
        in_chans = dim

        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)

        def forward(self, x):
            x = x.flatten(2).transpose(1, 2)
            return self.mha(x, x, x, need_weights=False)[0]

    assert count_macs(Mha(), 3) == 4 * n * dim * dim + 2 * n * n * dim


def test_functional_ops_charged_to_enclosing_module_and_uncounted_listed():
    lib = torch.library.Library("litezoo_test", "FRAGMENT")
    lib.define("double_it(Tensor x) -> Tensor")
    lib.impl("double_it", lambda x: x * 2, "CompositeExplicitAutograd")

    class Weird(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = torch.cumsum(self.conv(x), dim=1)
            return torch.ops.litezoo_test.double_it(y)

    trace = trace_costs(Weird(), 4)
    assert trace.uncounted_ops() == {"aten.cumsum": 1, "litezoo_test.double_it": 1}
    assert trace.modules[""].uncounted["aten.cumsum"] == 1  # the functional op belongs to the root's forward
    assert trace.modules["conv"].macs == 3 * 4 * 16
    assert trace.total("macs") == 3 * 4 * 16  # the uncounted ops add nothing silently


def test_mac_bytes_of_single_conv_by_hand():
    # ShuffleNet V2's MAC for a 1x1 conv: hw(c1 + c2) + c1*c2 values, here in float32 (4 bytes).
    c1, c2, h = 8, 16, 5
    trace = trace_costs(nn.Conv2d(c1, c2, 1, bias=False), h, c1)
    conv = trace.modules[""]
    assert conv.read_bytes == 4 * (h * h * c1 + c1 * c2)
    assert conv.write_bytes == 4 * h * h * c2
    assert conv.mac_bytes == 4 * (h * h * (c1 + c2) + c1 * c2)
    assert conv.alloc_bytes == 4 * h * h * c2


def test_flops_all_convention():
    # conv with bias: 2*MACs + one add per output; BN (eval): 2 per element; ReLU: 1 per element.
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    trace = trace_costs(model, 5)
    macs, out = 3 * 4 * 9 * 25, 4 * 25
    assert trace.total("macs") == macs
    assert trace.total("flops") == 2 * macs + out + 2 * out + out


def test_in_chans_and_input_errors():
    class WithChans(nn.Module):
        in_chans = 1

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1)

        def forward(self, x):
            return self.conv(x)

    assert count_macs(WithChans(), (3, 5)) == 2 * 15
    with pytest.raises(ValueError, match="input_size"):
        count_macs(WithChans(), 0)
    with pytest.raises(ValueError, match="cannot run"):
        count_macs(nn.Conv2d(3, 2, 1), 4, in_chans=5)
    with pytest.raises(ValueError, match="nn.Module"):
        count_params("resnet")
