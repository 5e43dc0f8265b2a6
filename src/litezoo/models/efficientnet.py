"""EfficientNet B0-B7 (Tan, Le: "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019, arXiv:1905.11946).

B0 is a stack of MBConv blocks (MobileNetV2's inverted residual plus squeeze-and-excitation) found by
architecture search (paper Table 1, ``_B0_STAGES``). B1-B7 scale B0 *compoundly*: depth by alpha^phi, width by
beta^phi and resolution by gamma^phi together (alpha=1.2, beta=1.1, gamma=1.15 for alpha*beta^2*gamma^2 ~ 2),
rounded as in the authors' code to the per-variant coefficients used below:

* channels: ``make_divisible(c * width, 8)`` (never more than 10% below ``c * width``), stem and head too;
* repeats: ``ceil(r * depth)`` per stage;
* resolution: the registered ``default_size``; dropout before the classifier grows 0.2 -> 0.5.

Details follow the reference implementation (tensorflow/tpu ``efficientnet_model.py``; torchvision's port):
SiLU (swish) everywhere; BatchNorm eps 1e-3 and momentum 0.01 (TF's decay 0.99; the CIFAR form keeps PyTorch's
0.1, see ``layers.reference_bn_momentum``); depthwise kernels initialised with the reference's fan-out per group
(the classifier at N(0, 0.01), see the constructor); SE squeezes to 1/4 of the
block's *input* channels; stochastic depth rises linearly over the blocks to ``drop_path_rate`` (0.2);
"same"-style symmetric padding ``(k - 1) // 2``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from litezoo.layers import (
    ClassifierHead,
    ConvBNAct,
    DropPath,
    SqueezeExcite,
    ZooModel,
    init_weights,
    make_divisible,
    reference_bn_momentum,
    set_batch_norm,
)
from litezoo.registry import register_model

# The reference's BatchNorm settings. ``ConvBNAct`` builds PyTorch-default BatchNorm2d (eps 1e-5, momentum 0.1),
# so the model sets these on every BN after construction (``set_batch_norm``).
BN_EPS = 1e-3


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation.

    expand 1x1 (+BN+SiLU; skipped when expand_ratio is 1) -> depthwise kxk stride s (+BN+SiLU) -> SE
    -> project 1x1 (+BN, linear: no activation) -> + input (through stochastic depth) when s = 1 and in == out.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        *,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        se_ratio: float = 0.25,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MBConv: stride must be 1 or 2, got {stride}")
        mid_chs = in_chs * expand_ratio
        self.has_residual = stride == 1 and in_chs == out_chs
        self.expand = ConvBNAct(in_chs, mid_chs, 1, act=nn.SiLU) if expand_ratio != 1 else nn.Identity()
        self.dw = ConvBNAct(mid_chs, mid_chs, kernel_size, stride=stride, groups=mid_chs, act=nn.SiLU)
        # The SE bottleneck is sized from the block's input width, not the expanded width (reference code).
        self.se = SqueezeExcite(mid_chs, max(1, int(in_chs * se_ratio)), act=nn.SiLU)
        self.project = ConvBNAct(mid_chs, out_chs, 1, act=None)
        self.drop_path = DropPath(drop_path_rate) if self.has_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in, H, W) -> (N, out, H/s, W/s)
        y = self.expand(x)  # (N, mid, H, W)
        y = self.se(self.dw(y))  # (N, mid, H/s, W/s)
        y = self.project(y)  # (N, out, H/s, W/s)
        if self.has_residual:
            y = x + self.drop_path(y)
        return y


class EfficientNet(ZooModel):
    """stem 3x3/2 conv -> stages of MBConv blocks -> 1x1 head conv -> global pool -> dropout -> FC.

    ``stages`` rows are already scaled: [expand_ratio, kernel, stride, out_chs, repeats]; only a stage's first
    block has the stage's stride. ``small_input=True`` (CIFAR, 32 px): stride-1 stem, so the output stride is
    16 and a 32 px image ends as a 2x2 map instead of 1x1. ``bn_eps``: every BatchNorm's eps (the reference's
    1e-3; torchvision's weights were trained with PyTorch's 1e-5, so ``litezoo.weights`` builds with that).
    """

    def __init__(
        self,
        stages: list[list[int]],
        stem_chs: int,
        head_chs: int,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.2,
        bn_eps: float = BN_EPS,
    ):
        super().__init__(num_classes, in_chans)
        if not bn_eps > 0:
            raise ValueError(f"EfficientNet: bn_eps must be > 0, got {bn_eps}")
        self.bn_eps = bn_eps
        self.stem = ConvBNAct(in_chans, stem_chs, 3, stride=1 if small_input else 2, act=nn.SiLU)

        total_blocks = sum(row[4] for row in stages)
        block_idx = 0
        in_chs = stem_chs
        stage_modules = []
        for expand_ratio, kernel_size, stride, out_chs, repeats in stages:
            blocks = []
            for i in range(repeats):
                blocks.append(
                    MBConv(
                        in_chs,
                        out_chs,
                        kernel_size=kernel_size,
                        stride=stride if i == 0 else 1,
                        expand_ratio=expand_ratio,
                        # Deeper blocks are dropped more often: 0 for the first, approaching drop_path_rate.
                        drop_path_rate=drop_path_rate * block_idx / total_blocks,
                    )
                )
                in_chs = out_chs
                block_idx += 1
            stage_modules.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stage_modules)
        self.conv_head = ConvBNAct(in_chs, head_chs, 1, act=nn.SiLU)
        self.num_features = head_chs
        self.head = ClassifierHead(head_chs, num_classes, drop_rate)

        set_batch_norm(self, eps=bn_eps, momentum=reference_bn_momentum(small_input))  # CIFAR form: 0.1
        # Convs as the TF reference initialises them: a depthwise kxk kernel's fan-out is k*k, not k*k*C (torch's
        # and torchvision's count), so its weights are sqrt(C) times larger. The classifier is N(0, 0.01) as in every
        # litezoo family, not the reference's uniform(+-1/sqrt(classes)): that bound is 0.03 for 1000 classes but
        # 0.32 for 10, whose random logits (std ~3, first loss 3.9 instead of ln 10 = 2.3) derailed training.
        # Measured, CIFAR form, 3 epochs on 10k images, lr 0.1 with a 0.6-epoch warm-up: test top-1 17.2% with the
        # reference's head and torch's fan-out, 37.7% with both changes; either one alone stayed at 10-22% after
        # one or two epochs.
        init_weights(self, fan_out_per_group=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, head_chs, H/32, W/32)
        x = self.stem(x)  # (N, stem, H/2, W/2); CIFAR form: (N, stem, H, W)
        x = self.stages(x)  # (N, last stage chs, H/32, W/32)
        return self.conv_head(x)


# EfficientNet-B0 (paper Table 1), stages 2-8 (stage 1 is the stem, stage 9 the head):
# [expand_ratio, kernel, stride, out_channels, repeats]
_B0_STAGES = [
    [1, 3, 1, 16, 1],
    [6, 3, 2, 24, 2],
    [6, 5, 2, 40, 2],
    [6, 3, 2, 80, 3],
    [6, 5, 1, 112, 3],
    [6, 5, 2, 192, 4],
    [6, 3, 1, 320, 1],
]
_B0_STEM = 32
_B0_HEAD = 1280


def scaled_stages(width: float, depth: float) -> tuple[int, list[list[int]], int]:
    """(stem channels, scaled ``_B0_STAGES`` rows, head channels) for width/depth coefficients."""
    stages = [
        [expand_ratio, kernel, stride, make_divisible(chs * width, 8), math.ceil(repeats * depth)]
        for expand_ratio, kernel, stride, chs, repeats in _B0_STAGES
    ]
    return make_divisible(_B0_STEM * width, 8), stages, make_divisible(_B0_HEAD * width, 8)


def _efficientnet(width: float, depth: float, drop_rate: float, /, **kwargs) -> EfficientNet:
    """EfficientNet scaled by ``width``/``depth``; ``drop_rate`` is the variant's default classifier dropout."""
    stem_chs, stages, head_chs = scaled_stages(width, depth)
    kwargs.setdefault("drop_rate", drop_rate)  # a caller's drop_rate wins over the variant's
    return EfficientNet(stages, stem_chs, head_chs, **kwargs)


# Per variant: width, depth, classifier dropout (paper / reference implementation); resolution is default_size.


@register_model(family="efficientnet", builder=EfficientNet, default_size=224)
def efficientnet_b0(**kwargs):
    return _efficientnet(1.0, 1.0, 0.2, **kwargs)


@register_model(family="efficientnet", builder=EfficientNet, default_size=240)
def efficientnet_b1(**kwargs):
    return _efficientnet(1.0, 1.1, 0.2, **kwargs)


@register_model(family="efficientnet", builder=EfficientNet, default_size=260)
def efficientnet_b2(**kwargs):
    return _efficientnet(1.1, 1.2, 0.3, **kwargs)


@register_model(family="efficientnet", builder=EfficientNet, default_size=300)
def efficientnet_b3(**kwargs):
    return _efficientnet(1.2, 1.4, 0.3, **kwargs)


@register_model(family="efficientnet", builder=EfficientNet, default_size=380)
def efficientnet_b4(**kwargs):
    return _efficientnet(1.4, 1.8, 0.4, **kwargs)


@register_model(family="efficientnet", builder=EfficientNet, default_size=456)
def efficientnet_b5(**kwargs):
    return _efficientnet(1.6, 2.2, 0.4, **kwargs)


@register_model(family="efficientnet", builder=EfficientNet, default_size=528)
def efficientnet_b6(**kwargs):
    return _efficientnet(1.8, 2.6, 0.5, **kwargs)


@register_model(family="efficientnet", builder=EfficientNet, default_size=600)
def efficientnet_b7(**kwargs):
    return _efficientnet(2.0, 3.1, 0.5, **kwargs)
