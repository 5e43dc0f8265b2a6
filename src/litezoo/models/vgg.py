"""VGG (Simonyan, Zisserman: "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015,
arXiv:1409.1556).

Stacks of 3x3 convolutions (padding 1, stride 1, ReLU) separated by 2x2/2 max-pools, then three fully connected
layers. The configurations A, B, D, E of paper Table 1 are VGG11, VGG13, VGG16 and VGG19 (``_CFGS``, written
the torchvision way: a number is a 3x3 conv with that many filters, ``"M"`` a max-pool). ``*_bn`` variants add
BatchNorm after every conv (not in the paper; torchvision's ``vgg*_bn``, whose convs keep their bias).

ImageNet form (as torchvision): conv stack -> adaptive average pool to 7x7 (a no-op at 224 px, so any input
size works) -> FC 25088->4096 -> ReLU -> dropout -> FC 4096->4096 -> ReLU -> dropout -> FC 4096->classes.

CIFAR form (``small_input=True``, 32 px): the common CIFAR VGG (e.g. Liu et al. 2017, "Network Slimming"):
the same conv stack without its last max-pool, so the final convs run at 2x2 instead of 1x1, then a global
average pool -> dropout -> FC 512->classes; no 7x7 pool and no 4096-wide MLP (which would be 90% of the
parameters for a 10-class problem).

Adding a variant: write its cfg list into ``_CFGS`` and a registered function calling ``_vgg``; the builder
takes any cfg (any widths, any number of pools), and the heads size themselves from the cfg's last width.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from litezoo.layers import ClassifierHead, ZooModel, init_weights, linear_classifier
from litezoo.registry import register_model


def make_layers(cfg: list[int | str], in_chans: int, *, batch_norm: bool) -> nn.Sequential:
    """cfg -> conv stack: an int is conv3x3 (pad 1) [+ BN] + ReLU with that many filters; ``"M"`` is maxpool 2x2/2."""
    layers: list[nn.Module] = []
    in_chs = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif isinstance(v, int) and not isinstance(v, bool) and v > 0:
            layers.append(nn.Conv2d(in_chs, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_chs = v
        else:
            raise ValueError(f"VGG cfg entries must be positive ints (conv widths) or 'M' (max-pool), got {v!r}")
    return nn.Sequential(*layers)


class VGGMlpHead(nn.Module):
    """ImageNet head: adaptive avg pool to ``pool_size`` -> FC -> ReLU -> dropout -> FC -> ReLU -> dropout -> FC.

    Same interface as ``ClassifierHead``. ``reset(num_classes)`` replaces only the last FC (``fc``) and keeps
    the two trained 4096-wide layers (``mlp``): the transfer-learning recipe of freezing the network and training
    a new last layer (e.g. 1000 -> 2 classes for dogs-vs-cats). ``num_classes=0`` leaves the ``hidden`` (4096)
    MLP output as the model's output. ``forward(x, pre_logits=True)`` returns the globally pooled conv features
    ``(N, in_features)``, as every zoo model does (the MLP is part of the classifier here).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: int = 4096,
        pool_size: int = 7,
        drop_rate: float = 0.5,
    ):
        super().__init__()
        self.in_features = in_features
        self.hidden = hidden
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.mlp = nn.Sequential(
            nn.Linear(in_features * pool_size * pool_size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
        )
        self.fc = linear_classifier(hidden, num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = linear_classifier(self.hidden, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # (N, C, h, w) -> (N, classes)
        if pre_logits:
            return self.global_pool(x).flatten(1)  # (N, C)
        x = self.pool(x).flatten(1)  # (N, C * 7 * 7)
        return self.fc(self.mlp(x))  # (N, hidden) -> (N, classes)


class VGG(ZooModel):
    """Conv stack from a cfg list -> ``VGGMlpHead`` (ImageNet) or ``ClassifierHead`` (CIFAR form, see module doc)."""

    def __init__(
        self,
        cfg: list[int | str],
        batch_norm: bool = False,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.5,
    ):
        super().__init__(num_classes, in_chans)
        widths = [v for v in cfg if v != "M"]
        if not widths:
            raise ValueError(f"VGG cfg has no convolution: {cfg!r}")
        if small_input and cfg[-1] == "M":
            cfg = cfg[:-1]  # CIFAR form: keep the last convs' 2x2 map at 32 px instead of pooling to 1x1
        self.features = make_layers(cfg, in_chans, batch_norm=batch_norm)
        self.num_features = widths[-1]
        if small_input:
            self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        else:
            self.head = VGGMlpHead(self.num_features, num_classes, drop_rate=drop_rate)
        # Kaiming-normal (fan-out) convs, N(0, 0.01) linears, zero biases: torchvision's VGG initialisation.
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, num_features, H/32, W/32)
        return self.features(x)  # five pools for VGG11-19; CIFAR form: four, (N, 512, H/16, W/16)


# Paper Table 1, configurations A (11 weight layers), B (13), D (16), E (19).
_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


@register_model(family="vgg", builder=VGG)
def vgg11(**kwargs):
    return VGG(_CFGS["vgg11"], False, **kwargs)


@register_model(family="vgg", builder=VGG)
def vgg11_bn(**kwargs):
    return VGG(_CFGS["vgg11"], True, **kwargs)


@register_model(family="vgg", builder=VGG)
def vgg13(**kwargs):
    return VGG(_CFGS["vgg13"], False, **kwargs)


@register_model(family="vgg", builder=VGG)
def vgg13_bn(**kwargs):
    return VGG(_CFGS["vgg13"], True, **kwargs)


@register_model(family="vgg", builder=VGG)
def vgg16(**kwargs):
    return VGG(_CFGS["vgg16"], False, **kwargs)


@register_model(family="vgg", builder=VGG)
def vgg16_bn(**kwargs):
    return VGG(_CFGS["vgg16"], True, **kwargs)


@register_model(family="vgg", builder=VGG)
def vgg19(**kwargs):
    return VGG(_CFGS["vgg19"], False, **kwargs)


@register_model(family="vgg", builder=VGG)
def vgg19_bn(**kwargs):
    return VGG(_CFGS["vgg19"], True, **kwargs)
