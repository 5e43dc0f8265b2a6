"""MobileNet V3 (Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam: "Searching for
MobileNetV3", ICCV 2019, arXiv:1905.02244).

The blocks were found by platform-aware architecture search (MnasNet's search, then NetAdapt per layer) on top
of MobileNet V2's inverted residual, with three hand-made changes (paper Sec. 5):

* *h-swish*, x * relu6(x + 3) / 6: a piecewise-linear swish, cheap on mobile CPUs and exact in fixed point;
  used only in the deeper half, where maps are small and the cost of the non-linearity is low;
* *squeeze-and-excite* in some blocks, its gate a hard sigmoid relu6(x + 3) / 6, its bottleneck a quarter of
  the expanded width (rounded to 8);
* a cheaper *last stage*: global pooling comes before the 1x1 conv to 1280 (1024 for Small), so that conv is a
  matrix product on a 1x1 map (here a Linear, as in torchvision), and the 3x3 conv before it is gone.

The stem has 16 filters with h-swish (paper Sec. 5.3). Large and Small are the paper's Tables 1 and 2. Layer
for layer (and key for key in ``features``) the same as torchvision's ``mobilenet_v3_large/small``, except that
the SE convs are named ``conv_reduce``/``conv_expand`` (torchvision: ``fc1``/``fc2``) and the classifier lives in
``head.hidden``/``head.fc`` (torchvision: ``classifier.0``/``classifier.3``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from litezoo.layers import (
    ConvBNAct,
    SqueezeExcite,
    ZooModel,
    init_weights,
    linear_classifier,
    make_divisible,
    maybe_dropout,
    reference_bn_momentum,
    set_batch_norm,
)
from litezoo.registry import register_model

# TF reference BatchNorm (torchvision uses the same): eps 1e-3, decay 0.99 = PyTorch momentum 0.01
# (``layers.reference_bn_momentum``: 0.1 for the CIFAR form).
BN_EPS = 1e-3


class InvertedResidual(nn.Module):
    """1x1 expand (+BN+act; left out when exp == in) -> kxk depthwise stride s (+BN+act) -> [SE] -> 1x1 project (+BN).

    ``act`` is ReLU or Hardswish (the table's "RE"/"HS"). ``block`` keeps torchvision's indices.
    """

    def __init__(
        self, in_chs: int, kernel_size: int, exp_chs: int, out_chs: int, use_se: bool, act: type[nn.Module], stride: int
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        self.use_residual = stride == 1 and in_chs == out_chs
        layers: list[nn.Module] = []
        if exp_chs != in_chs:
            layers.append(ConvBNAct(in_chs, exp_chs, 1, act=act))  # (N, exp, H, W)
        layers.append(ConvBNAct(exp_chs, exp_chs, kernel_size, stride=stride, groups=exp_chs, act=act))
        if use_se:
            layers.append(SqueezeExcite(exp_chs, make_divisible(exp_chs // 4, 8), act=nn.ReLU, gate=nn.Hardsigmoid))
        layers.append(ConvBNAct(exp_chs, out_chs, 1, act=None))  # linear bottleneck, as in MobileNet V2
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in, H, W) -> (N, out, H/s, W/s)
        if self.use_residual:
            return x + self.block(x)
        return self.block(x)


class MobileNetV3Head(nn.Module):
    """Global pool -> Linear to ``hidden`` + h-swish -> dropout -> Linear to classes (paper Fig. 5, efficient last stage).

    Same interface as ``ClassifierHead``; ``pre_logits`` returns the ``hidden``-wide features after h-swish, and
    ``reset`` replaces only the last Linear.
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.hidden_features = hidden
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(in_features, hidden)
        self.act = nn.Hardswish(inplace=True)
        self.drop = maybe_dropout(drop_rate)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = linear_classifier(self.hidden_features, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # (N, C, h, w) -> (N, classes)
        x = self.act(self.hidden(self.pool(x).flatten(1)))  # (N, hidden)
        if pre_logits:
            return x
        return self.fc(self.drop(x))


class MobileNetV3(ZooModel):
    """Stem 3x3 conv s2 (16, h-swish) -> the table's blocks -> 1x1 conv to 6x the last width (h-swish) -> head.

    ``blocks`` rows are [in, kernel, expanded, out, SE, act ("RE"/"HS"), stride], already scaled by the width.
    ``small_input=True`` (CIFAR, 32 px): stride-1 stem, so a 32 px image ends as a 2x2 map instead of 1x1.
    """

    def __init__(
        self,
        blocks: list[list],
        hidden_chs: int,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.2,
    ):
        super().__init__(num_classes, in_chans)
        acts = {"RE": nn.ReLU, "HS": nn.Hardswish}
        stem_chs = blocks[0][0]
        features: list[nn.Module] = [
            ConvBNAct(in_chans, stem_chs, 3, stride=1 if small_input else 2, act=nn.Hardswish)
        ]
        for in_chs, kernel, exp_chs, out_chs, use_se, act, stride in blocks:
            features.append(InvertedResidual(in_chs, kernel, exp_chs, out_chs, use_se, acts[act], stride))
        last_in = blocks[-1][3]
        features.append(ConvBNAct(last_in, 6 * last_in, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*features)  # torchvision's indices: features.0 ... features.N
        self.num_features = hidden_chs
        self.head = MobileNetV3Head(6 * last_in, hidden_chs, num_classes, drop_rate)
        set_batch_norm(self, eps=BN_EPS, momentum=reference_bn_momentum(small_input))
        init_weights(self)  # torchvision's: kaiming-normal (fan-out) convs, unit BN, N(0, 0.01) linears

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 6 * last, H/32, W/32)
        return self.features(x)


# Paper Table 1 (Large) and Table 2 (Small) at width 1.0, one row per bneck:
# [in, kernel, expanded ("exp size"), out ("#out"), SE, act (RE = ReLU, HS = h-swish), stride]
_LARGE = [
    [16, 3, 16, 16, False, "RE", 1],
    [16, 3, 64, 24, False, "RE", 2],
    [24, 3, 72, 24, False, "RE", 1],
    [24, 5, 72, 40, True, "RE", 2],
    [40, 5, 120, 40, True, "RE", 1],
    [40, 5, 120, 40, True, "RE", 1],
    [40, 3, 240, 80, False, "HS", 2],
    [80, 3, 200, 80, False, "HS", 1],
    [80, 3, 184, 80, False, "HS", 1],
    [80, 3, 184, 80, False, "HS", 1],
    [80, 3, 480, 112, True, "HS", 1],
    [112, 3, 672, 112, True, "HS", 1],
    [112, 5, 672, 160, True, "HS", 2],
    [160, 5, 960, 160, True, "HS", 1],
    [160, 5, 960, 160, True, "HS", 1],
]
_LARGE_HIDDEN = 1280
_SMALL = [
    [16, 3, 16, 16, True, "RE", 2],
    [16, 3, 72, 24, False, "RE", 2],
    [24, 3, 88, 24, False, "RE", 1],
    [24, 5, 96, 40, True, "HS", 2],
    [40, 5, 240, 40, True, "HS", 1],
    [40, 5, 240, 40, True, "HS", 1],
    [40, 5, 120, 48, True, "HS", 1],
    [48, 5, 144, 48, True, "HS", 1],
    [48, 5, 288, 96, True, "HS", 2],
    [96, 5, 576, 96, True, "HS", 1],
    [96, 5, 576, 96, True, "HS", 1],
]
_SMALL_HIDDEN = 1024


def _mobilenet_v3(table: list[list], hidden: int, width: float, **kwargs) -> MobileNetV3:
    """Scale every width in ``table`` (and the hidden layer) by ``width``, rounding to a multiple of 8 (reference)."""
    blocks = [
        [make_divisible(i * width, 8), k, make_divisible(e * width, 8), make_divisible(o * width, 8), se, act, s]
        for i, k, e, o, se, act, s in table
    ]
    return MobileNetV3(blocks, make_divisible(hidden * width, 8), **kwargs)


@register_model(family="mobilenet_v3", builder=MobileNetV3)
def mobilenet_v3_large_x0_75(**kwargs):
    return _mobilenet_v3(_LARGE, _LARGE_HIDDEN, 0.75, **kwargs)


@register_model(family="mobilenet_v3", builder=MobileNetV3)
def mobilenet_v3_large_x1_0(**kwargs):
    return _mobilenet_v3(_LARGE, _LARGE_HIDDEN, 1.0, **kwargs)


@register_model(family="mobilenet_v3", builder=MobileNetV3)
def mobilenet_v3_small_x0_75(**kwargs):
    return _mobilenet_v3(_SMALL, _SMALL_HIDDEN, 0.75, **kwargs)


@register_model(family="mobilenet_v3", builder=MobileNetV3)
def mobilenet_v3_small_x1_0(**kwargs):
    return _mobilenet_v3(_SMALL, _SMALL_HIDDEN, 1.0, **kwargs)
