"""MobileNet V2 and V3: the papers' tables, torchvision's module layout, linear bottlenecks, widths."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import litezoo
from litezoo.layers import SqueezeExcite
from litezoo.models import mobilenet_v2, mobilenet_v3


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return litezoo.create_model(name, **kw)


# torchvision mobilenet_v2 state_dict entries (name -> shape), written down from its module layout.
V2_KEYS = {
    "features.0.0.weight": (32, 3, 3, 3),
    "features.0.1.running_mean": (32,),
    "features.1.conv.0.0.weight": (32, 1, 3, 3),  # t = 1: no expand conv, the depthwise conv comes first
    "features.1.conv.1.weight": (16, 32, 1, 1),
    "features.1.conv.2.weight": (16,),
    "features.2.conv.0.0.weight": (96, 16, 1, 1),
    "features.2.conv.1.0.weight": (96, 1, 3, 3),
    "features.2.conv.2.weight": (24, 96, 1, 1),
    "features.2.conv.3.bias": (24,),
    "features.17.conv.2.weight": (320, 960, 1, 1),
    "features.18.0.weight": (1280, 320, 1, 1),
    "head.fc.weight": (1000, 1280),  # torchvision: classifier.1.weight
}

# torchvision mobilenet_v3_large / small entries: SE convs are fc1/fc2 there, conv_reduce/conv_expand here.
V3_LARGE_KEYS = {
    "features.0.0.weight": (16, 3, 3, 3),
    "features.1.block.0.0.weight": (16, 1, 3, 3),  # exp == in: no expand conv
    "features.4.block.2.conv_reduce.weight": (24, 72, 1, 1),  # SE: make_divisible(72 // 4, 8) = 24
    "features.4.block.3.0.weight": (40, 72, 1, 1),
    "features.15.block.1.0.weight": (960, 1, 5, 5),
    "features.16.0.weight": (960, 160, 1, 1),
    "head.hidden.weight": (1280, 960),  # torchvision: classifier.0.weight
    "head.fc.weight": (1000, 1280),  # torchvision: classifier.3.weight
}
V3_SMALL_KEYS = {
    "features.1.block.1.conv_expand.weight": (16, 8, 1, 1),  # Small's first block has SE, 16 // 4 -> 8
    "features.11.block.3.0.weight": (96, 576, 1, 1),
    "features.12.0.weight": (576, 96, 1, 1),
    "head.hidden.weight": (1024, 576),
}


@pytest.mark.parametrize(
    "name,keys",
    [("mobilenet_v2_x1_0", V2_KEYS), ("mobilenet_v3_large_x1_0", V3_LARGE_KEYS), ("mobilenet_v3_small_x1_0", V3_SMALL_KEYS)],
)
def test_torchvision_layout(name: str, keys: dict) -> None:
    state = _meta(name).state_dict()
    for key, shape in keys.items():
        assert key in state, f"{name}: no {key}"
        assert tuple(state[key].shape) == shape, f"{name}: {key} is {tuple(state[key].shape)}, expected {shape}"


def test_v2_blocks_follow_paper_table_2() -> None:
    model = _meta("mobilenet_v2_x1_0")
    blocks = [m for m in model.modules() if isinstance(m, mobilenet_v2.InvertedResidual)]
    assert len(blocks) == 17  # 1 + 2 + 3 + 4 + 3 + 3 + 1
    # A shortcut on every repeat after the first of a sequence (stride 1, same width): 0+1+2+3+2+2+0.
    assert sum(b.use_residual for b in blocks) == 10
    for b in blocks:
        # Linear bottleneck: the block ends in BN with no activation after the projection.
        assert isinstance(b.conv[-1], nn.BatchNorm2d) and isinstance(b.conv[-2], nn.Conv2d)
        assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in list(b.conv)[-2:])
    strides = [b.conv[-3][0].stride[0] for b in blocks]  # the depthwise conv's stride
    assert strides == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]


@pytest.mark.parametrize(
    "name,stem,last", [("mobilenet_v2_x0_35", 16, 1280), ("mobilenet_v2_x0_75", 24, 1280), ("mobilenet_v2_x1_4", 48, 1792)]
)
def test_v2_width_keeps_last_conv_at_1280_below_one(name: str, stem: int, last: int) -> None:
    model = _meta(name)
    assert model.features[0][0].out_channels == stem
    assert model.features[-1][0].out_channels == last == model.num_features


def test_inverted_residual_is_residual_only_when_shapes_match() -> None:
    torch.manual_seed(0)
    block = mobilenet_v2.InvertedResidual(8, 8, 1, 6).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.conv(x))
    assert not mobilenet_v2.InvertedResidual(8, 16, 1, 6).use_residual
    assert not mobilenet_v2.InvertedResidual(8, 8, 2, 6).use_residual
    with pytest.raises(ValueError, match="stride"):
        mobilenet_v2.InvertedResidual(8, 8, 3, 6)


@pytest.mark.parametrize(
    "name,table,n_se,n_hswish_blocks",
    [("mobilenet_v3_large_x1_0", mobilenet_v3._LARGE, 8, 9), ("mobilenet_v3_small_x1_0", mobilenet_v3._SMALL, 9, 8)],
)
def test_v3_blocks_follow_paper_tables(name: str, table: list, n_se: int, n_hswish_blocks: int) -> None:
    model = _meta(name)
    blocks = [m for m in model.modules() if isinstance(m, mobilenet_v3.InvertedResidual)]
    assert len(blocks) == len(table)
    assert sum(any(isinstance(m, SqueezeExcite) for m in b.modules()) for b in blocks) == n_se
    assert sum(any(isinstance(m, nn.Hardswish) for m in b.modules()) for b in blocks) == n_hswish_blocks
    for b, (_, kernel, exp_chs, out_chs, _, _, stride) in zip(blocks, table):
        dw = [m for m in b.modules() if isinstance(m, nn.Conv2d) and m.groups > 1][0]
        assert (dw.kernel_size[0], dw.out_channels, dw.stride[0]) == (kernel, exp_chs, stride)
        assert isinstance(b.block[-1][-1], nn.BatchNorm2d)  # linear projection, no activation
    # The SE gate is the hard sigmoid; BN uses the TF reference's eps and momentum.
    se = next(m for m in model.modules() if isinstance(m, SqueezeExcite))
    assert isinstance(se.gate, nn.Hardsigmoid) and isinstance(se.act, nn.ReLU)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)
    assert isinstance(model.features[0][2], nn.Hardswish)  # the 16-filter stem uses h-swish (paper Sec. 5.3)


def test_v3_head_pre_logits_and_reset() -> None:
    model = litezoo.create_model("mobilenet_v3_small_x0_75_cifar", num_classes=5).eval()
    assert model.num_features == 768  # make_divisible(1024 * 0.75, 8)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 432, 2, 2)  # 6 * make_divisible(96 * 0.75, 8), stride-1 stem: 32 / 16
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, 768) and (pre >= -0.375).all()  # h-swish's minimum is -3/8
        model.reset_classifier(0)
        assert torch.allclose(model(x), pre)


@pytest.mark.parametrize("name", ["mobilenet_v3_small_x1_0", "efficientnet_b0"])
def test_cifar_form_running_stats_follow_a_short_training(name: str) -> None:
    """ImageNet forms keep the TF reference's BN momentum 0.01; the CIFAR forms, trained from scratch in short
    runs, use 0.1 — with 0.01 a 3-epoch CIFAR run of either family evaluated at chance (constant predictions).

    8 train-mode batches from a shifted input distribution: the stem BN's running mean must have moved >= 50% of
    the way to the batch mean (0.1: 1 - 0.9^8 = 57%; 0.01 would give 8%).
    """
    torch.manual_seed(0)
    model = litezoo.create_model(f"{name}_cifar", num_classes=10).train()
    stem_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    stem_bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    x = torch.randn(2, 3, 32, 32) + 3.0
    with torch.no_grad():
        target = stem_conv(x).mean(dim=(0, 2, 3))  # what the stem BN sees, per channel
        for _ in range(8):
            model(x)
    moved = stem_bn.running_mean / target
    assert moved.min() > 0.5, f"running mean moved only {moved.min():.2f} of the way"
    assert {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
    with torch.device("meta"):
        imagenet_form = litezoo.create_model(name)
    assert {m.momentum for m in imagenet_form.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}
