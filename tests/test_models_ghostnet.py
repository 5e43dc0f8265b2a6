"""GhostNet: the Ghost module against a hand-written reference, the bottleneck's shortcuts, Table 1."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import litezoo
from litezoo.layers import SqueezeExcite
from litezoo.models.ghostnet import _STAGES, GhostBottleneck, GhostModule


def test_ghost_module_matches_hand_written_reference() -> None:
    torch.manual_seed(0)
    m = GhostModule(6, 9, relu=True).eval()  # odd output: ceil(9 / 2) = 5 intrinsic maps + 5 ghosts, one dropped
    for bn in (m.primary_conv[1], m.cheap_operation[1]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 6, 7, 7)

    def conv_bn_relu(seq, inp, groups):
        conv, bn = seq[0], seq[1]
        y = F.conv2d(inp, conv.weight, padding=conv.padding, groups=groups)
        y = (y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        return torch.relu(y * bn.weight[:, None, None] + bn.bias[:, None, None])

    intrinsic = conv_bn_relu(m.primary_conv, x, 1)  # (2, 5, 7, 7)
    ghosts = conv_bn_relu(m.cheap_operation, intrinsic, 5)  # one 3x3 filter per intrinsic map
    expected = torch.cat([intrinsic, ghosts], 1)[:, :9]
    with torch.no_grad():
        assert torch.allclose(m(x), expected, atol=1e-5)
    # About half the parameters of the plain 1x1 conv it replaces (6 * 9): 6 * 5 + 5 * 9 weights.
    convs = [p for n, p in m.named_parameters() if p.ndim == 4]
    assert sum(p.numel() for p in convs) == 6 * 5 + 5 * 9


def test_bottleneck_shortcuts() -> None:
    same = GhostBottleneck(16, 48, 16, 3, 1, 0.0)
    assert isinstance(same.shortcut, nn.Identity) and isinstance(same.conv_dw, nn.Identity)
    down = GhostBottleneck(16, 48, 24, 3, 2, 0.25)
    dw, pw = down.shortcut[0][0], down.shortcut[1][0]
    assert (dw.groups, dw.stride[0], pw.out_channels) == (16, 2, 24)  # depthwise s2 then 1x1 to the new width
    assert isinstance(down.se, SqueezeExcite) and down.se.conv_reduce.out_channels == 12  # 48 * 0.25
    x = torch.randn(2, 16, 8, 8)
    assert down(x).shape == (2, 24, 4, 4) and same(x).shape == (2, 16, 8, 8)
    with pytest.raises(ValueError, match="stride"):
        GhostBottleneck(16, 48, 16, 3, 3, 0.0)


def test_network_follows_table_1() -> None:
    with torch.device("meta"):
        model = litezoo.create_model("ghostnet_x1_0")
    blocks = [m for m in model.modules() if isinstance(m, GhostBottleneck)]
    rows = [row for stage in _STAGES for row in stage]
    assert len(blocks) == len(rows) == 16
    for b, (kernel, exp_chs, out_chs, se_ratio, stride) in zip(blocks, rows):
        assert b.ghost1.out_chs == exp_chs and b.ghost2.out_chs == out_chs
        assert isinstance(b.se, SqueezeExcite) == (se_ratio > 0)
        if stride == 2:
            assert b.conv_dw[0].kernel_size == (kernel, kernel)
    assert sum(isinstance(b.se, SqueezeExcite) for b in blocks) == 7
    assert model.blocks[-1][0].out_channels == 960 and model.num_features == 1280


def test_width_1_3_rounds_to_multiples_of_4() -> None:
    with torch.device("meta"):
        model = litezoo.create_model("ghostnet_x1_3")
    assert model.stem[0].out_channels == 20  # 16 * 1.3 = 20.8 -> 20
    widths = [b.ghost2.out_chs for b in model.modules() if isinstance(b, GhostBottleneck)]
    assert all(w % 4 == 0 for w in widths) and widths[-1] == 208  # 160 * 1.3
    assert model.num_features == 1280  # the head's 1x1 conv is not scaled
    assert model.blocks[-1][0].out_channels == 1248  # 960 * 1.3
