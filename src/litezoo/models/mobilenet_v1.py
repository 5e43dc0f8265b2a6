"""MobileNet V1 (Howard et al.: "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", arXiv:1704.04861, 2017).

A plain stack (no shortcuts) of *depthwise-separable* convolutions: a 3x3 depthwise conv filters each channel
on its own, then a 1x1 pointwise conv mixes channels. For a K x K kernel, M inputs and N outputs that costs
K*K*M + M*N instead of K*K*M*N multiply-adds per pixel -- 8 to 9 times less for 3x3 (paper Sec. 3.1).

The width multiplier ``alpha`` thins every layer uniformly (stem, all 13 separable layers and so the
classifier input), cutting cost and parameters by about alpha^2 (paper Sec. 3.3). Activation is ReLU as in the
paper (the seed tutorial's ReLU6 is a quantization-friendly variant, not the paper's network).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from litezoo.layers import ClassifierHead, ConvBNAct, ZooModel, init_weights, make_divisible
from litezoo.registry import register_model


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv (stride s) + BN + ReLU -> 1x1 pointwise conv + BN + ReLU (paper Fig. 3, right)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__(
            ConvBNAct(in_chs, in_chs, 3, stride=stride, groups=in_chs),  # (N, in, H/s, W/s)
            ConvBNAct(in_chs, out_chs, 1),  # (N, out, H/s, W/s)
        )


class MobileNetV1(ZooModel):
    """Stem 3x3 conv (stride 2) -> 13 depthwise-separable layers -> global average pool -> FC.

    ``layers`` lists (out_channels, stride) of the separable layers, already scaled by the width multiplier.
    ``small_input=True`` (CIFAR, 32 px): stride-1 stem, so the 4 stride-2 layers leave a 2x2 map.
    """

    def __init__(
        self,
        stem_channels: int,
        layers: list[tuple[int, int]],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.0,
    ):
        super().__init__(num_classes, in_chans)
        self.stem = ConvBNAct(in_chans, stem_channels, 3, stride=1 if small_input else 2)
        blocks = []
        in_chs = stem_channels
        for out_chs, stride in layers:
            blocks.append(DepthwiseSeparable(in_chs, out_chs, stride))
            in_chs = out_chs
        self.blocks = nn.Sequential(*blocks)
        self.num_features = in_chs
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, num_features, H/32, W/32)
        return self.blocks(self.stem(x))


# Paper Table 1 at alpha = 1: the stem conv and the (out_channels, stride) of the 13 separable layers.
_STEM_CHANNELS = 32
_LAYERS = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),  # the paper's table prints stride 2 here, but the map stays 7x7: a known typo, stride is 1
]


def _mobilenet_v1(alpha: float, **kwargs) -> MobileNetV1:
    """MobileNet with width multiplier ``alpha`` (channels alpha*C rounded to a multiple of 8, as the TF reference
    does; exact for the paper's 0.25, 0.5, 0.75, 1.0)."""
    layers = [(make_divisible(chs * alpha, 8), stride) for chs, stride in _LAYERS]
    return MobileNetV1(make_divisible(_STEM_CHANNELS * alpha, 8), layers, **kwargs)


@register_model(family="mobilenet_v1", builder=MobileNetV1)
def mobilenet_v1_x0_25(**kwargs):
    return _mobilenet_v1(0.25, **kwargs)


@register_model(family="mobilenet_v1", builder=MobileNetV1)
def mobilenet_v1_x0_5(**kwargs):
    return _mobilenet_v1(0.5, **kwargs)


@register_model(family="mobilenet_v1", builder=MobileNetV1)
def mobilenet_v1_x0_75(**kwargs):
    return _mobilenet_v1(0.75, **kwargs)


@register_model(family="mobilenet_v1", builder=MobileNetV1)
def mobilenet_v1_x1_0(**kwargs):
    return _mobilenet_v1(1.0, **kwargs)
