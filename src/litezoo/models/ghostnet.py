"""GhostNet (Han, Wang, Tian, Guo, Xu, Xu: "GhostNet: More Features from Cheap Operations", CVPR 2020,
arXiv:1911.11907).

Feature maps of trained CNNs hold many near-duplicates ("ghosts" of each other, paper Fig. 1). The *Ghost
module* (paper Sec. 3.1, Fig. 2b) makes only ``ceil(out / s)`` *intrinsic* maps with an ordinary 1x1 conv and
derives the others from them by a cheap 3x3 depthwise conv, then concatenates both -- about s times fewer
MACs and parameters than the conv it replaces (s = 2 here).

The *Ghost bottleneck* (Sec. 3.2, Fig. 3) is MobileNet V2's inverted residual with Ghost modules: Ghost module
(expand, ReLU) -> [3x3 or 5x5 depthwise stride 2 + BN, only in downsampling blocks] -> [SE] -> Ghost module
(project, no ReLU: a linear bottleneck), plus a shortcut -- identity, or depthwise + 1x1 conv when the block
changes stride or width. The network (Table 1) follows MobileNet V3 Large's layout, with a 1x1 conv to 960,
global pooling, then a 1x1 conv to 1280 (+ ReLU) on the pooled 1x1 map, dropout and the classifier.

Layer for layer the same as the authors' release (huawei-noah ghostnet, timm's ``ghostnet_100``/``ghostnet_130``).
"""

from __future__ import annotations

import math

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
)
from litezoo.registry import register_model


class GhostModule(nn.Module):
    """1x1 conv to ``ceil(out / ratio)`` intrinsic maps -> 3x3 depthwise "cheap operation" for the ghosts -> concat.

    (N, in, H, W) -> (N, out, H, W). ``relu=False`` leaves both convs linear (the projecting module).
    """

    def __init__(self, in_chs: int, out_chs: int, *, relu: bool, ratio: int = 2, dw_size: int = 3):
        super().__init__()
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / ratio)
        act = nn.ReLU if relu else None
        self.primary_conv = ConvBNAct(in_chs, init_chs, 1, act=act)
        self.cheap_operation = ConvBNAct(init_chs, init_chs * (ratio - 1), dw_size, groups=init_chs, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)  # (N, ceil(out / ratio), H, W): intrinsic maps
        x2 = self.cheap_operation(x1)  # (N, ceil(out / ratio) * (ratio - 1), H, W): their ghosts
        return torch.cat([x1, x2], dim=1)[:, : self.out_chs]  # drop the extra map when out is odd


class GhostBottleneck(nn.Module):
    """Ghost module (expand) -> [depthwise stride s + BN] -> [SE] -> Ghost module (project) + shortcut."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, kernel_size: int, stride: int, se_ratio: float):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"GhostBottleneck: stride must be 1 or 2, got {stride}")
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True)
        # Stride-2 blocks downsample with a depthwise conv between the Ghost modules (BN, no activation).
        self.conv_dw = (
            ConvBNAct(mid_chs, mid_chs, kernel_size, stride=stride, groups=mid_chs, act=None)
            if stride > 1
            else nn.Identity()
        )
        # SE sized from the expanded width, rounded to a multiple of 4 (the authors' code), hard-sigmoid gate.
        self.se = (
            SqueezeExcite(mid_chs, make_divisible(mid_chs * se_ratio, 4), act=nn.ReLU, gate=nn.Hardsigmoid)
            if se_ratio > 0
            else nn.Identity()
        )
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)
        if stride == 1 and in_chs == out_chs:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                ConvBNAct(in_chs, in_chs, kernel_size, stride=stride, groups=in_chs, act=None),
                ConvBNAct(in_chs, out_chs, 1, act=None),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in, H, W) -> (N, out, H/s, W/s)
        y = self.ghost1(x)  # (N, mid, H, W)
        y = self.se(self.conv_dw(y))  # (N, mid, H/s, W/s)
        return self.ghost2(y) + self.shortcut(x)


class GhostNetHead(nn.Module):
    """Global pool -> 1x1 conv (with bias) to ``hidden`` + ReLU -> dropout -> Linear (the authors' head).

    Same interface as ``ClassifierHead``; ``pre_logits`` returns the ``hidden`` features after the ReLU.
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.hidden_features = hidden
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(in_features, hidden, 1, bias=True)  # on a 1x1 map: a matrix product
        self.act = nn.ReLU(inplace=True)
        self.drop = maybe_dropout(drop_rate)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = linear_classifier(self.hidden_features, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # (N, C, h, w) -> (N, classes)
        x = self.act(self.conv_head(self.pool(x))).flatten(1)  # (N, hidden)
        if pre_logits:
            return x
        return self.fc(self.drop(x))


class GhostNet(ZooModel):
    """Stem 3x3 conv s2 (16) -> Ghost bottleneck stages -> 1x1 conv (+BN+ReLU) -> ``GhostNetHead``.

    ``stages`` rows are [kernel, expanded, out, SE ratio, stride] at width 1.0; ``width`` scales the channels
    (multiples of 4, as the authors round) but not ``hidden_chs``, the head's 1x1 conv after pooling. ``small_input=True`` (CIFAR, 32 px): stride-1 stem, so a 32 px
    image ends as a 2x2 map.
    """

    def __init__(
        self,
        stages: list[list[list[float]]],
        width: float,
        hidden_chs: int,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.2,
    ):
        super().__init__(num_classes, in_chans)
        stem_chs = make_divisible(16 * width, 4)
        self.stem = ConvBNAct(in_chans, stem_chs, 3, stride=1 if small_input else 2)
        in_chs = stem_chs
        blocks: list[nn.Module] = []
        for stage in stages:
            layers = []
            for kernel, exp_chs, out_chs, se_ratio, stride in stage:
                out_chs = make_divisible(out_chs * width, 4)
                mid_chs = make_divisible(exp_chs * width, 4)
                layers.append(GhostBottleneck(in_chs, mid_chs, out_chs, kernel, stride, se_ratio))
                in_chs = out_chs
            blocks.append(nn.Sequential(*layers))
        last_chs = make_divisible(exp_chs * width, 4)  # the last block's expanded width (960 at 1.0x)
        blocks.append(ConvBNAct(in_chs, last_chs, 1))
        self.blocks = nn.Sequential(*blocks)
        self.num_features = hidden_chs
        self.head = GhostNetHead(last_chs, hidden_chs, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 960 * width, H/32, W/32)
        return self.blocks(self.stem(x))


# Paper Table 1 (GhostNet 1.0x), grouped by stage as in the authors' code; one row per bottleneck:
# [kernel, expanded ("#exp"), out ("#out"), SE ratio (0: none), stride]
_STAGES = [
    [[3, 16, 16, 0, 1]],
    [[3, 48, 24, 0, 2]],
    [[3, 72, 24, 0, 1]],
    [[5, 72, 40, 0.25, 2]],
    [[5, 120, 40, 0.25, 1]],
    [[3, 240, 80, 0, 2]],
    [
        [3, 200, 80, 0, 1],
        [3, 184, 80, 0, 1],
        [3, 184, 80, 0, 1],
        [3, 480, 112, 0.25, 1],
        [3, 672, 112, 0.25, 1],
    ],
    [[5, 672, 160, 0.25, 2]],
    [
        [5, 960, 160, 0, 1],
        [5, 960, 160, 0.25, 1],
        [5, 960, 160, 0, 1],
        [5, 960, 160, 0.25, 1],
    ],
]
_HIDDEN = 1280  # the 1x1 conv after pooling; not scaled by the width


@register_model(family="ghostnet", builder=GhostNet)
def ghostnet_x1_0(**kwargs):
    return GhostNet(_STAGES, 1.0, _HIDDEN, **kwargs)


@register_model(family="ghostnet", builder=GhostNet)
def ghostnet_x1_3(**kwargs):
    return GhostNet(_STAGES, 1.3, _HIDDEN, **kwargs)
