"""ShuffleNet V2 (Ma, Zhang, Zheng, Sun: "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV 2018, arXiv:1807.11164).

The unit follows the paper's four guidelines (G1 equal in/out widths, G2 no group convs, G3 one path per
unit, G4 few element-wise ops):

* stride 1 (Fig. 3c): *channel split* -- half the channels pass through untouched, the other half go through
  1x1 conv -> 3x3 depthwise -> 1x1 conv with equal widths; the halves are concatenated (no add, no ReLU on the
  merge) and a *channel shuffle* with 2 groups mixes them for the next unit;
* stride 2 (Fig. 3d): no split -- both branches read the whole input (the left one is 3x3 dw s2 -> 1x1), so
  the concatenation doubles the channels while the map halves.

A final 1x1 conv (conv5) widens to 1024 (2048 at 2.0x) before global pooling. Layer-for-layer the same as
torchvision's ``shufflenet_v2_x*`` (identical parameter counts).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from litezoo.layers import ClassifierHead, ConvBNAct, ZooModel, channel_shuffle, init_weights
from litezoo.registry import register_model


class ShuffleV2Unit(nn.Module):
    """One ShuffleNet V2 unit: stride 1 keeps (N, C, H, W); stride 2 maps (N, in, H, W) -> (N, out, H/2, W/2)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV2Unit: stride must be 1 or 2, got {stride}")
        if out_chs % 2:
            raise ValueError(f"ShuffleV2Unit: out_chs must be even (two branches of out/2), got {out_chs}")
        if stride == 1 and in_chs != out_chs:
            raise ValueError(
                f"ShuffleV2Unit: a stride-1 unit passes half its input through, so in_chs ({in_chs}) must equal "
                f"out_chs ({out_chs})"
            )
        self.stride = stride
        branch_chs = out_chs // 2
        if stride == 2:
            # Left branch of the downsampling unit: 3x3 dw s2 + BN -> 1x1 + BN + ReLU.
            self.branch_proj = nn.Sequential(
                ConvBNAct(in_chs, in_chs, 3, stride=2, groups=in_chs, act=None),
                ConvBNAct(in_chs, branch_chs, 1),
            )
        else:
            self.branch_proj = nn.Identity()  # the untouched half of the split
        main_in = in_chs if stride == 2 else branch_chs
        self.branch_main = nn.Sequential(
            ConvBNAct(main_in, branch_chs, 1),
            ConvBNAct(branch_chs, branch_chs, 3, stride=stride, groups=branch_chs, act=None),  # BN, no ReLU
            ConvBNAct(branch_chs, branch_chs, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x_pass, x_main = x.chunk(2, dim=1)  # channel split: 2 x (N, C/2, H, W)
            out = torch.cat([self.branch_proj(x_pass), self.branch_main(x_main)], dim=1)  # (N, C, H, W)
        else:
            out = torch.cat([self.branch_proj(x), self.branch_main(x)], dim=1)  # (N, out, H/2, W/2)
        return channel_shuffle(out, 2)  # interleave the two halves so the next split mixes both branches


class ShuffleNetV2(ZooModel):
    """Stem (3x3 conv s2 + 3x3 max-pool s2) -> stages 2-4 -> conv5 (1x1) -> global pool -> FC.

    ``stage_channels`` is the paper's Table 5 row: [stem, stage 2, stage 3, stage 4, conv5].
    ``small_input=True`` (CIFAR, 32 px): stride-1 stem and no max-pool, so stages 2/3/4 run at 16/8/4 px.
    """

    def __init__(
        self,
        stage_repeats: list[int],
        stage_channels: list[int],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.0,
    ):
        super().__init__(num_classes, in_chans)
        if len(stage_channels) != len(stage_repeats) + 2:
            raise ValueError(
                f"ShuffleNetV2: stage_channels needs stem + {len(stage_repeats)} stages + conv5 = "
                f"{len(stage_repeats) + 2} entries, got {len(stage_channels)}"
            )
        stem_chs, *body_chs, last_chs = stage_channels

        self.stem = ConvBNAct(in_chans, stem_chs, 3, stride=1 if small_input else 2)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stages: list[nn.Module] = []
        in_chs = stem_chs
        for repeats, out_chs in zip(stage_repeats, body_chs):
            units = [ShuffleV2Unit(in_chs, out_chs, stride=2)]
            units += [ShuffleV2Unit(out_chs, out_chs, stride=1) for _ in range(repeats - 1)]
            stages.append(nn.Sequential(*units))
            in_chs = out_chs
        self.stages = nn.Sequential(*stages)
        self.conv5 = ConvBNAct(in_chs, last_chs, 1)

        self.num_features = last_chs
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, num_features, H/32, W/32)
        x = self.maxpool(self.stem(x))  # (N, 24, H/4, W/4); CIFAR form: (N, 24, H, W)
        x = self.stages(x)
        return self.conv5(x)


# Paper Table 5: stage repeats [4, 8, 4] (the first unit of each stage has stride 2);
# channels [stem, stage 2, stage 3, stage 4, conv5] per width.


@register_model(family="shufflenet_v2", builder=ShuffleNetV2)
def shufflenet_v2_x0_5(**kwargs):
    return ShuffleNetV2([4, 8, 4], [24, 48, 96, 192, 1024], **kwargs)


@register_model(family="shufflenet_v2", builder=ShuffleNetV2)
def shufflenet_v2_x1_0(**kwargs):
    return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], **kwargs)


@register_model(family="shufflenet_v2", builder=ShuffleNetV2)
def shufflenet_v2_x1_5(**kwargs):
    return ShuffleNetV2([4, 8, 4], [24, 176, 352, 704, 1024], **kwargs)


@register_model(family="shufflenet_v2", builder=ShuffleNetV2)
def shufflenet_v2_x2_0(**kwargs):
    return ShuffleNetV2([4, 8, 4], [24, 244, 488, 976, 2048], **kwargs)
