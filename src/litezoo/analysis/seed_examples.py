"""The worked examples of the source material, as models the profiler can load (``module:function``).

Seed 001 (MobileNet V1) computes multiplies as ``K x K x M x N x F x F`` for an ``F x F x M`` input, ``N``
filters of ``K x K`` and an output kept at ``F x F``. Its numbers, 2x2x3x8x5x5 = 2400 for a standard conv and
2x2x3x5x5 + 3x8x5x5 = 900 depthwise-separable, use a **2x2** kernel on a 5x5x3 input with 8 filters.
A 2x2 kernel has no centre, so keeping 5x5 needs one extra row and column of zeros on one side (what
``padding='same'`` does for even kernels): ``ZeroPad2d((0, 1, 0, 1))``.

Seed 004 (ShuffleNet) counts weights of a 3x3 conv 12 -> 6: 3x3x12x6 = 648, and in 3 groups
3x3x(12/3)x(6/3)x3 = 216. Biases are left out, as there.

Seed 004 also compares the multiplies of one unit on a c x h x w input with bottleneck width m:
ResNet hw(2cm + 9m²), ResNeXt hw(2cm + 9m²/g), ShuffleNet hw(2cm/g + 9m). The three units below have the
seed's channel numbers (ResNet c=256, m=64; ResNeXt c=256 with 32 groups of 4 channels, m=128) and the
ShuffleNet paper's stage-2 unit for g=3 (c=240, m=60). BatchNorm is left out: it is not counted anyway.

Reproduce with ``litezoo profile litezoo.analysis.seed_examples:standard_conv --input-size 5``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from litezoo.layers import channel_shuffle


class _Example(nn.Sequential):
    """A ``Sequential`` that says how many input channels it expects (the profiler reads ``in_chans``)."""

    def __init__(self, in_chans: int, *layers: nn.Module):
        super().__init__(*layers)
        self.in_chans = in_chans


def standard_conv() -> nn.Module:
    """Seed 001: 2x2 conv, 3 -> 8 channels, 5x5 map kept 5x5 — 2400 multiplies."""
    return _Example(3, nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 8, 2, bias=False))


def depthwise_separable_conv() -> nn.Module:
    """Seed 001: 2x2 depthwise (one filter per channel) + 1x1 pointwise 3 -> 8 — 300 + 600 = 900 multiplies."""
    return _Example(
        3,
        nn.ZeroPad2d((0, 1, 0, 1)),
        nn.Conv2d(3, 3, 2, groups=3, bias=False),  # depthwise: 2*2*3*5*5 = 300
        nn.Conv2d(3, 8, 1, bias=False),  # pointwise: 3*8*5*5 = 600
    )


def standard_conv_12_6() -> nn.Module:
    """Seed 004: 3x3 conv 12 -> 6 — 648 weights."""
    return _Example(12, nn.Conv2d(12, 6, 3, padding=1, bias=False))


def group_conv_12_6() -> nn.Module:
    """Seed 004: 3x3 conv 12 -> 6 in 3 groups — 216 weights."""
    return _Example(12, nn.Conv2d(12, 6, 3, padding=1, groups=3, bias=False))


class _Unit(nn.Module):
    """1x1 (groups g1) c -> m, [shuffle], 3x3 (groups g3) m -> m, 1x1 (groups g1) m -> c, identity shortcut."""

    def __init__(self, c: int, m: int, pointwise_groups: int, spatial_groups: int, shuffle: bool):
        super().__init__()
        self.in_chans = c
        self.shuffle_groups = pointwise_groups if shuffle else 0
        self.reduce = nn.Conv2d(c, m, 1, groups=pointwise_groups, bias=False)
        self.spatial = nn.Conv2d(m, m, 3, padding=1, groups=spatial_groups, bias=False)
        self.expand = nn.Conv2d(m, c, 1, groups=pointwise_groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.reduce(x))  # (N, m, H, W)
        if self.shuffle_groups:
            y = channel_shuffle(y, self.shuffle_groups)  # let the next grouped conv see every group
        y = self.spatial(y)
        if not self.shuffle_groups:
            y = F.relu(y)  # ShuffleNet has no ReLU after its depthwise conv
        return F.relu(x + self.expand(y))


def resnet_bottleneck(c: int = 256, m: int = 64) -> nn.Module:
    """Seed 004: ResNet bottleneck, hw(2cm + 9m²) multiplies."""
    return _Unit(c, m, pointwise_groups=1, spatial_groups=1, shuffle=False)


def resnext_bottleneck(c: int = 256, m: int = 128, groups: int = 32) -> nn.Module:
    """Seed 004: ResNeXt bottleneck (cardinality 32, 4 channels per group), hw(2cm + 9m²/g) multiplies."""
    return _Unit(c, m, pointwise_groups=1, spatial_groups=groups, shuffle=False)


def shufflenet_unit(c: int = 240, m: int = 60, groups: int = 3) -> nn.Module:
    """Seed 004: ShuffleNet unit (1x1 group conv, shuffle, 3x3 depthwise), hw(2cm/g + 9m) multiplies."""
    return _Unit(c, m, pointwise_groups=groups, spatial_groups=m, shuffle=True)
