"""Blocks shared by the model families, and the interface every zoo model exposes.

Nothing here knows about data, training, files or the CLI: these are plain ``nn.Module`` pieces.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round a channel count to a multiple of ``divisor`` without dropping more than 10% (MobileNet/EfficientNet rule)."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: channel ``g*k + i`` moves to ``i*groups + g``.

    Reshape, transpose, flatten: a view trick, no gather, so it costs one memory copy.
    """
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels are not divisible by groups={groups}")
    x = x.view(n, groups, c // groups, h, w)  # (N, g, C/g, H, W)
    x = x.transpose(1, 2).contiguous()  # (N, C/g, g, H, W)
    return x.view(n, c, h, w)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation. ``act=None`` leaves the activation out."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
        padding: int | None = None,
    ):
        if in_chs % groups or out_chs % groups:
            raise ValueError(f"ConvBNAct: channels {in_chs}->{out_chs} are not divisible by groups={groups}")
        padding = (kernel_size - 1) // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_chs),
        ]
        if act is not None:
            layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish) else act())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool -> reduce -> act -> expand -> gate on the channels.

    ``gate``: ``nn.Sigmoid`` (SENet, EfficientNet) or ``nn.Hardsigmoid`` (MobileNet V3, GhostNet: relu6(x + 3) / 6,
    cheaper and quantisation-friendly).
    """

    def __init__(
        self, chs: int, rd_chs: int, act: type[nn.Module] = nn.SiLU, gate: type[nn.Module] = nn.Sigmoid
    ):
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.act = act(inplace=True)
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1, bias=True)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        s = self.conv_expand(self.act(self.conv_reduce(s)))
        return x * self.gate(s)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples during training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def maybe_dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or ``nn.Identity()`` for p = 0: no no-op layer in the graph (exports, profiles)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def linear_classifier(in_features: int, num_classes: int, *, bias: bool = True) -> nn.Module:
    """A head's last layer: Linear to ``num_classes`` outputs, or ``nn.Identity()`` for 0, so that
    ``reset_classifier(0)`` turns the model into a feature extractor (as timm does)."""
    return nn.Linear(in_features, num_classes, bias=bias) if num_classes > 0 else nn.Identity()


class ClassifierHead(nn.Module):
    """Adaptive global average pool -> flatten -> dropout -> linear. Any spatial size works."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.drop_rate = drop_rate
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = maybe_dropout(drop_rate)
        self.fc = linear_classifier(in_features, num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = linear_classifier(self.in_features, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (N, C)
        if pre_logits:
            return x
        return self.fc(self.drop(x))


class ZooModel(nn.Module):
    """The interface shared by every zoo model (after timm): trainer, profiler and exporter need no special cases.

    Subclasses pass ``num_classes`` and ``in_chans`` to ``__init__``, set ``num_features`` and ``head`` (a
    ``ClassifierHead`` unless they override ``forward_head`` and ``reset_classifier``), and implement
    ``forward_features``.
    """

    num_classes: int
    in_chans: int
    num_features: int
    head: nn.Module

    def __init__(self, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        self.num_classes = num_classes  # classifier outputs (0: none, the model returns pooled features)
        self.in_chans = in_chans  # channels of the input images

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, in_chans, H, W) -> (N, num_features, h, w)
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier for ``num_classes`` outputs (0 removes it: the model returns pooled features)."""
        self.num_classes = num_classes
        self.head.reset(num_classes)


def set_batch_norm(module: nn.Module, *, eps: float, momentum: float) -> None:
    """Give every BatchNorm2d under ``module`` a reference's eps and momentum (``ConvBNAct`` uses torch defaults).

    TF-trained references (EfficientNet, MobileNet V3) use eps 1e-3 and decay 0.99, i.e. PyTorch momentum 0.01.
    """
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = eps
            m.momentum = momentum


# TF-trained references (EfficientNet, MobileNet V3): BN decay 0.99 = PyTorch momentum 0.01.
TF_BN_MOMENTUM = 0.01


def reference_bn_momentum(small_input: bool) -> float:
    """BN momentum of a TF-reference family: 0.01 for the ImageNet form, PyTorch's 0.1 for the CIFAR (32 px) form.

    The CIFAR forms are trained from scratch in short runs, where 0.01's running statistics (an average over the
    last ~100 steps) lag the fast-moving weights: a 3-epoch CIFAR run of MobileNet V3-Large evaluated at chance
    with constant predictions (train top-1 44%, test 10.3%; 45.1% once the statistics were recomputed).
    """
    return 0.1 if small_input else TF_BN_MOMENTUM


def init_weights(module: nn.Module, *, fan_out_per_group: bool = False) -> None:
    """Kaiming-normal conv weights, unit BN, small-normal linear: the usual ImageNet-paper initialisation.

    ``fan_out_per_group``: count a grouped conv's fan-out per group, k*k*out/groups, as the TF reference of
    EfficientNet does (a depthwise kxk kernel's fan-out is k*k). torch's ``kaiming_normal_`` counts k*k*out, which
    for a depthwise conv of C channels gives weights sqrt(C) times smaller; behind BatchNorm that multiplies their
    effective learning rate by ~C (the gradient of a scale-invariant weight grows as 1/|w|).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if fan_out_per_group:
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))  # kaiming-normal, ReLU gain
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


__all__ = [
    "make_divisible",
    "channel_shuffle",
    "ConvBNAct",
    "SqueezeExcite",
    "DropPath",
    "ClassifierHead",
    "linear_classifier",
    "maybe_dropout",
    "ZooModel",
    "init_weights",
    "reference_bn_momentum",
    "set_batch_norm",
]
