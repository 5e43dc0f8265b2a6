"""ShuffleNet V1 (Zhang, Zhou, Lin, Sun: "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
Mobile Devices", CVPR 2018, arXiv:1707.01083).

The unit is a ResNet bottleneck made cheap:

* both 1x1 convolutions are *pointwise group convolutions* (one ``nn.Conv2d`` with ``groups=g``), which cuts
  their cost by g; the 3x3 in the middle is depthwise;
* a *channel shuffle* after the first 1x1 GConv lets the second GConv see channels from every group
  (without it, g stacked GConvs are g independent thin networks);
* the stride-2 unit halves the map, and its shortcut is a 3x3 average pool (stride 2) whose output is
  *concatenated* with the branch (so the branch only has to produce ``out - in`` channels).

Channel widths follow paper Table 1 (1.0x) and scale with the width multiplier. The stem at 0.5x/1.5x/2.0x
follows the official megvii-model/ShuffleNet-Series code (see ``_STEM_CHANNELS``).

``shuffle_order``: the paper's shuffle (reshape to (g, C/g), transpose, flatten -- ``channel_shuffle``) or the
official megvii release's, which reshapes to (C/g, g) instead and so applies the *inverse* permutation. Both mix
every group into every group and train equally well, but weights trained with one do not fit the other: inside
the grouped 1x1 conv that follows, no re-ordering of weights turns one permutation into the other. Build with
``shuffle_order="megvii"`` to run megvii's released ImageNet weights (``litezoo.weights.megvii``); the
parameters are the same tensors either way.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from litezoo.layers import ClassifierHead, ConvBNAct, ZooModel, channel_shuffle, init_weights
from litezoo.registry import register_model

SHUFFLE_ORDERS = ("paper", "megvii")


class ShuffleV1Unit(nn.Module):
    """One ShuffleNet unit (paper Fig. 2b for stride 1, Fig. 2c for stride 2).

    1x1 GConv + BN + ReLU -> channel shuffle -> 3x3 DWConv (stride s) + BN -> 1x1 GConv + BN, then
    stride 1: ReLU(x + branch);  stride 2: ReLU(concat(avgpool3x3s2(x), branch)).
    """

    def __init__(
        self, in_chs: int, out_chs: int, *, groups: int, stride: int, first_pw_groups: int, shuffle_order: str = "paper"
    ):
        super().__init__()
        if shuffle_order not in SHUFFLE_ORDERS:
            raise ValueError(f"ShuffleV1Unit: shuffle_order must be one of {SHUFFLE_ORDERS}, got {shuffle_order!r}")
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV1Unit: stride must be 1 or 2, got {stride}")
        if stride == 1 and in_chs != out_chs:
            raise ValueError(
                f"ShuffleV1Unit: a stride-1 unit adds its input back, so in_chs ({in_chs}) must equal "
                f"out_chs ({out_chs})"
            )
        if stride == 2 and out_chs <= in_chs:
            raise ValueError(
                f"ShuffleV1Unit: a stride-2 unit concatenates its input, so out_chs ({out_chs}) must exceed "
                f"in_chs ({in_chs})"
            )
        self.stride = stride
        mid_chs = out_chs // 4  # bottleneck = 1/4 of the unit's output channels (paper Sec. 3.3)
        # The stride-2 unit concatenates the pooled input, so its branch only makes the missing channels.
        branch_chs = out_chs - in_chs if stride == 2 else out_chs

        self.pw1 = ConvBNAct(in_chs, mid_chs, 1, groups=first_pw_groups)
        # Shuffling after a dense 1x1 conv only relabels its (learned) output channels -- the same function
        # family -- so the shuffle is needed only when this conv is grouped (not in stage 2's first unit).
        self.shuffle_groups = first_pw_groups
        self.shuffle_order = shuffle_order
        self.dw = ConvBNAct(mid_chs, mid_chs, 3, stride=stride, groups=mid_chs, act=None)  # BN, no ReLU (paper)
        self.pw2 = ConvBNAct(mid_chs, branch_chs, 1, groups=groups, act=None)  # BN, ReLU only after the merge
        self.shortcut = nn.AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in, H, W) -> (N, out, H/s, W/s)
        y = self.pw1(x)  # (N, mid, H, W)
        if self.shuffle_groups > 1:
            # paper: view (g, mid/g) -> transpose; megvii: view (mid/g, g) -> transpose, the inverse permutation,
            # which is the paper's shuffle with mid/g groups.
            g = self.shuffle_groups if self.shuffle_order == "paper" else y.shape[1] // self.shuffle_groups
            y = channel_shuffle(y, g)
        y = self.pw2(self.dw(y))  # (N, branch, H/s, W/s)
        if self.stride == 1:
            out = x + y
        else:
            # 3x3/s2/pad-1 pooling and the 3x3/s2/pad-1 depthwise conv both give ceil(H/2), so any size concatenates.
            out = torch.cat([self.shortcut(x), y], dim=1)  # (N, in + branch = out, H/2, W/2)
        return self.act(out)


class ShuffleNetV1(ZooModel):
    """Stem (3x3 conv s2 + 3x3 max-pool s2) -> stages 2-4 of ShuffleNet units -> global pool -> FC.

    ``small_input=True`` (CIFAR, 32 px): stride-1 stem and no max-pool, so stages 2/3/4 run at 16/8/4 px.
    ``shuffle_order``: "paper" (default) or "megvii" (the official release's inverse shuffle; module docstring).
    """

    def __init__(
        self,
        stage_repeats: list[int],
        stage_channels: list[int],
        stem_channels: int,
        groups: int,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.0,
        shuffle_order: str = "paper",
    ):
        super().__init__()
        if shuffle_order not in SHUFFLE_ORDERS:
            raise ValueError(f"ShuffleNetV1: shuffle_order must be one of {SHUFFLE_ORDERS}, got {shuffle_order!r}")
        if len(stage_repeats) != len(stage_channels):
            raise ValueError(f"ShuffleNetV1: {len(stage_repeats)} stage repeats but {len(stage_channels)} stage widths")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.groups = groups
        self.shuffle_order = shuffle_order  # read by litezoo.weights.megvii to check a release fits

        self.stem = ConvBNAct(in_chans, stem_channels, 3, stride=1 if small_input else 2)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stages: list[nn.Module] = []
        in_chs = stem_channels
        for stage_idx, (repeats, out_chs) in enumerate(zip(stage_repeats, stage_channels)):
            units = []
            for unit_idx in range(repeats):
                # Stage 2's first unit reads the thin stem output (24 ch at 1.0x): a grouped 1x1 there would
                # starve each group of inputs, so the paper keeps that one conv dense.
                first_pw_groups = 1 if (stage_idx == 0 and unit_idx == 0) else groups
                stride = 2 if unit_idx == 0 else 1
                units.append(
                    ShuffleV1Unit(
                        in_chs,
                        out_chs,
                        groups=groups,
                        stride=stride,
                        first_pw_groups=first_pw_groups,
                        shuffle_order=shuffle_order,
                    )
                )
                in_chs = out_chs
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)

        self.num_features = in_chs  # V1 has no final 1x1 conv: the last stage feeds the classifier
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, num_features, H/32, W/32)
        x = self.maxpool(self.stem(x))  # (N, stem, H/4, W/4); CIFAR form: (N, stem, H, W)
        return self.stages(x)


# Paper Table 1: output channels of stages 2, 3, 4 of ShuffleNet 1x for each group count g.
_STAGE_CHANNELS = {
    1: [144, 288, 576],
    2: [200, 400, 800],
    3: [240, 480, 960],
    4: [272, 544, 1088],
    8: [384, 768, 1536],
}
_STAGE_REPEATS = [4, 8, 4]  # the first unit of each stage has stride 2
# Stem width per width multiplier, as in megvii's official ShuffleNetV1 (g=3: 12/24/24/48). It is then rounded
# up to a multiple of g because a stride-2 branch makes out - stem channels with a g-group conv: that is how
# the official g=8, 0.5x model gets its 16-channel stem (192 - 12 = 180 would not split into 8 groups).
_STEM_CHANNELS = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}


def _shufflenet_v1(groups: int, width: float, **kwargs) -> ShuffleNetV1:
    """ShuffleNet ``width``x with ``groups`` groups; ValueError for combos that are undefined or don't divide."""
    if groups not in _STAGE_CHANNELS:
        raise ValueError(
            f"ShuffleNet V1 is defined for groups in {sorted(_STAGE_CHANNELS)} (paper Table 1), got groups={groups}"
        )
    if width not in _STEM_CHANNELS:
        raise ValueError(
            f"ShuffleNet V1 is defined for width in {sorted(_STEM_CHANNELS)}, got width={width} (groups={groups})"
        )
    stem = -(-_STEM_CHANNELS[width] // groups) * groups  # round up to a multiple of groups
    stage_channels = []
    for stage, base in enumerate(_STAGE_CHANNELS[groups], start=2):
        out_chs = int(base * width)  # every Table 1 width times 0.5/1.5/2 is a whole multiple of 4
        # Every 1x1 GConv must split its input and output channels evenly into g groups. The bottleneck
        # (out/4) dividing by g implies the stage output does too, and then so does a stride-2 branch's
        # out - in (in is the previous stage's output, or the stem, which is rounded to a multiple of g).
        if (out_chs // 4) % groups:
            raise ValueError(
                f"ShuffleNet V1 groups={groups}, width={width} is not well defined: the stage {stage} bottleneck "
                f"has {out_chs // 4} channels (out {out_chs} / 4), not divisible by groups={groups}"
            )
        stage_channels.append(out_chs)
    return ShuffleNetV1(_STAGE_REPEATS, stage_channels, stem, groups, **kwargs)


# Registered: every (g, width) of the paper's g in {1, 2, 3, 4, 8} x {0.5, 1.0, 1.5, 2.0} whose channels divide.
# Left out because the bottleneck does not split into g groups: g=2 at 0.5x (25 ch) and 1.5x (75 ch),
# g=4 at 0.5x (34 ch) and 1.5x (102 ch).


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g1_x0_5(**kwargs):
    return _shufflenet_v1(1, 0.5, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g1_x1_0(**kwargs):
    return _shufflenet_v1(1, 1.0, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g1_x1_5(**kwargs):
    return _shufflenet_v1(1, 1.5, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g1_x2_0(**kwargs):
    return _shufflenet_v1(1, 2.0, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g2_x1_0(**kwargs):
    return _shufflenet_v1(2, 1.0, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g2_x2_0(**kwargs):
    return _shufflenet_v1(2, 2.0, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g3_x0_5(**kwargs):
    return _shufflenet_v1(3, 0.5, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g3_x1_0(**kwargs):
    return _shufflenet_v1(3, 1.0, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g3_x1_5(**kwargs):
    return _shufflenet_v1(3, 1.5, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g3_x2_0(**kwargs):
    return _shufflenet_v1(3, 2.0, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g4_x1_0(**kwargs):
    return _shufflenet_v1(4, 1.0, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g4_x2_0(**kwargs):
    return _shufflenet_v1(4, 2.0, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g8_x0_5(**kwargs):
    return _shufflenet_v1(8, 0.5, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g8_x1_0(**kwargs):
    return _shufflenet_v1(8, 1.0, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g8_x1_5(**kwargs):
    return _shufflenet_v1(8, 1.5, **kwargs)


@register_model(family="shufflenet_v1", builder=ShuffleNetV1)
def shufflenet_v1_g8_x2_0(**kwargs):
    return _shufflenet_v1(8, 2.0, **kwargs)
