"""MobileNet V2 (Sandler, Howard, Zhu, Zhmoginov, Chen: "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018, arXiv:1801.04381).

The building block (paper Sec. 3.3, Table 1) is the *inverted residual*: a thin bottleneck is expanded t times
by a 1x1 conv (+ ReLU6), filtered by a 3x3 depthwise conv (+ ReLU6), and projected back to a thin bottleneck by
a 1x1 conv with **no activation** -- the *linear bottleneck*: a ReLU in the narrow space would destroy
information (paper Sec. 3.2). The shortcut joins the thin bottlenecks (the opposite of ResNet's wide-to-wide
shortcut) when the block keeps stride 1 and width.

The width multiplier scales every layer but the last 1x1 conv, which stays at 1280 below 1.0x (paper Sec. 5.1:
"for multipliers less than one, we apply width multiplier to all layers except the very last convolutional
layer"). Layer for layer (and key for key in ``features``) the same as torchvision's ``mobilenet_v2``; only the
classifier lives in ``head.fc`` (torchvision: ``classifier.1``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from litezoo.layers import ClassifierHead, ConvBNAct, ZooModel, init_weights, make_divisible
from litezoo.registry import register_model


class InvertedResidual(nn.Module):
    """1x1 expand (+BN+ReLU6; left out when t = 1) -> 3x3 depthwise stride s (+BN+ReLU6) -> 1x1 project (+BN).

    ``conv`` keeps torchvision's indices: ``conv.0`` expand, ``conv.1`` depthwise, ``conv.2``/``conv.3`` the
    projection conv and its BN (one index lower each when t = 1).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        mid_chs = round(in_chs * expand_ratio)
        self.use_residual = stride == 1 and in_chs == out_chs
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_chs, mid_chs, 1, act=nn.ReLU6))  # (N, t*in, H, W)
        layers += [
            ConvBNAct(mid_chs, mid_chs, 3, stride=stride, groups=mid_chs, act=nn.ReLU6),  # (N, t*in, H/s, W/s)
            nn.Conv2d(mid_chs, out_chs, 1, bias=False),  # linear bottleneck: no activation after the projection
            nn.BatchNorm2d(out_chs),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in, H, W) -> (N, out, H/s, W/s)
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(ZooModel):
    """Stem 3x3 conv s2 -> 17 inverted residuals -> 1x1 conv to ``last_chs`` -> global pool -> dropout -> FC.

    ``blocks`` rows are the paper's Table 2 [t, c, n, s] with c already scaled: expansion t, output channels c,
    n repeats, stride s on the first repeat. ``small_input=True`` (CIFAR, 32 px): stride-1 stem, so the output
    stride is 16 and a 32 px image ends as a 2x2 map.
    """

    def __init__(
        self,
        stem_chs: int,
        blocks: list[list[int]],
        last_chs: int,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.2,
    ):
        super().__init__(num_classes, in_chans)
        features: list[nn.Module] = [ConvBNAct(in_chans, stem_chs, 3, stride=1 if small_input else 2, act=nn.ReLU6)]
        in_chs = stem_chs
        for expand_ratio, out_chs, repeats, stride in blocks:
            for i in range(repeats):
                features.append(InvertedResidual(in_chs, out_chs, stride if i == 0 else 1, expand_ratio))
                in_chs = out_chs
        features.append(ConvBNAct(in_chs, last_chs, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*features)  # torchvision's indices: features.0 ... features.18
        self.num_features = last_chs
        self.head = ClassifierHead(last_chs, num_classes, drop_rate)
        init_weights(self)  # torchvision's: kaiming-normal (fan-out) convs, unit BN, N(0, 0.01) linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, last_chs, H/32, W/32)
        return self.features(x)


# Paper Table 2 at width 1.0: stem 32, then [t, c, n, s] per bottleneck sequence, then the 1x1 conv to 1280.
_STEM_CHS = 32
_BLOCKS = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]
_LAST_CHS = 1280


def _mobilenet_v2(width: float, **kwargs) -> MobileNetV2:
    """Width multiplier ``width``: channels rounded to a multiple of 8 (the reference's rule); the last conv
    is widened above 1.0x but never thinned below it."""
    blocks = [[t, make_divisible(c * width, 8), n, s] for t, c, n, s in _BLOCKS]
    last_chs = make_divisible(_LAST_CHS * max(1.0, width), 8)
    return MobileNetV2(make_divisible(_STEM_CHS * width, 8), blocks, last_chs, **kwargs)


@register_model(family="mobilenet_v2", builder=MobileNetV2)
def mobilenet_v2_x0_35(**kwargs):
    return _mobilenet_v2(0.35, **kwargs)


@register_model(family="mobilenet_v2", builder=MobileNetV2)
def mobilenet_v2_x0_5(**kwargs):
    return _mobilenet_v2(0.5, **kwargs)


@register_model(family="mobilenet_v2", builder=MobileNetV2)
def mobilenet_v2_x0_75(**kwargs):
    return _mobilenet_v2(0.75, **kwargs)


@register_model(family="mobilenet_v2", builder=MobileNetV2)
def mobilenet_v2_x1_0(**kwargs):
    return _mobilenet_v2(1.0, **kwargs)


@register_model(family="mobilenet_v2", builder=MobileNetV2)
def mobilenet_v2_x1_4(**kwargs):
    return _mobilenet_v2(1.4, **kwargs)
