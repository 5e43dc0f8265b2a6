"""SqueezeNet (Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer: "SqueezeNet: AlexNet-level accuracy with 50x
fewer parameters and <0.5MB model size", arXiv:1602.07360, 2016).

Three design strategies (paper Sec. 3.1) shape the network:

1. use 1x1 filters instead of 3x3 where possible (9x fewer parameters each);
2. feed the remaining 3x3 filters few input channels -- the *squeeze* 1x1 layer of every Fire module;
3. downsample late, so most convolutions see large activation maps.

The *Fire module* is squeeze (s1x1 filters) -> expand (e1x1 filters of 1x1 and e3x3 of 3x3, concatenated),
with s1x1 < e1x1 + e3x3. Fire modules are numbered fire2..fire9 as in the paper (conv1 is the stem, conv10 the
classifier). The original network has no BatchNorm; ``batch_norm=True`` adds it (an option, not the paper).

Bypass variants (paper Sec. 6, Fig. 2):

* simple bypass: identity shortcuts around fire3, fire5, fire7, fire9 -- the modules whose input and output
  widths match;
* complex bypass: additionally a 1x1 conv shortcut around fire2, fire4, fire6, fire8.

The shortcut is added to the Fire module's (ReLU'd) output, before any following max-pool.

Versions: ``squeezenet1_0`` is the paper's network (conv1 96 x 7x7/2; max-pools after conv1, fire4, fire8).
``squeezenet1_1`` is the official v1.1 from the authors' repository (conv1 64 x 3x3/2; max-pools after conv1,
fire3, fire5): the same accuracy at 2.4x less computation.

Training from scratch: the network has no BatchNorm, and SGD at lr 0.1 (batch 128, the generic default recipe)
blows it up in the first steps whatever the initialisation; the authors train at 0.04 with batch 512 (lr 0.01
at batch 128 scales like that), and users of their release report needing 10x lower rates. So ``litezoo train``
gives every SqueezeNet lr 0.01 with a warm-up when no lr is set (``litezoo.config.MODEL_LR_DEFAULTS``, with a
warning that says so; dogs-vs-cats at 64 px: 64.85% valid top-1 after 10 epochs, docs/transfer.md); an lr set
by a recipe or a flag is used as it is. The initialisation is torchvision's
(He-uniform convs, conv10 N(0, 0.01)). Independently of the lr, a zero conv10 bias lets the final ReLU die (see
``SqueezeNetHead.reset``), which is why the head starts with a common positive bias.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from litezoo.layers import ZooModel
from litezoo.registry import register_model

BYPASS_MODES = ("none", "simple", "complex")
CONV10_BIAS_INIT = 1.0  # see SqueezeNetHead.reset: keeps the final ReLU alive when training from scratch


def _conv_relu(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, padding: int = 0, *, batch_norm: bool):
    """Conv (+ BN) + ReLU. Without BN the conv keeps its bias, as in the paper's Caffe model."""
    if batch_norm:
        return nn.Sequential(
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
        )
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding), nn.ReLU(inplace=True))


def _conv_bn(in_chs: int, out_chs: int, kernel_size: int, padding: int, *, batch_norm: bool) -> nn.Module:
    """Conv (+ BN), no activation: the expand branches are activated after the concat."""
    if batch_norm:
        return nn.Sequential(
            nn.Conv2d(in_chs, out_chs, kernel_size, padding=padding, bias=False),
            nn.BatchNorm2d(out_chs),
        )
    return nn.Conv2d(in_chs, out_chs, kernel_size, padding=padding)


class Fire(nn.Module):
    """squeeze 1x1 -> ReLU -> [expand 1x1 | expand 3x3] concatenated -> ReLU (+ optional bypass).

    Output channels = ``expand1x1_chs + expand3x3_chs``. ``shortcut``: ``None`` (plain Fire), ``"identity"``
    (simple bypass; needs in == out channels) or ``"conv"`` (complex bypass: a 1x1 conv maps in -> out).
    """

    def __init__(
        self,
        in_chs: int,
        squeeze_chs: int,
        expand1x1_chs: int,
        expand3x3_chs: int,
        *,
        shortcut: str | None = None,
        batch_norm: bool = False,
    ):
        super().__init__()
        out_chs = expand1x1_chs + expand3x3_chs
        if squeeze_chs >= out_chs:
            # Strategy 2: the squeeze layer exists to starve the 3x3 filters of input channels.
            raise ValueError(f"Fire: squeeze_chs ({squeeze_chs}) must be below expand1x1 + expand3x3 ({out_chs})")
        self.in_chs = in_chs
        self.out_chs = out_chs
        self.squeeze = _conv_relu(in_chs, squeeze_chs, 1, batch_norm=batch_norm)
        self.expand1x1 = _conv_bn(squeeze_chs, expand1x1_chs, 1, padding=0, batch_norm=batch_norm)
        self.expand3x3 = _conv_bn(squeeze_chs, expand3x3_chs, 3, padding=1, batch_norm=batch_norm)
        self.act = nn.ReLU(inplace=True)  # ReLU(concat(a, b)) == concat(ReLU(a), ReLU(b)): one call for both
        if shortcut is None:
            self.shortcut = None
        elif shortcut == "identity":
            if in_chs != out_chs:
                raise ValueError(f"Fire: an identity bypass needs in == out channels, got {in_chs} -> {out_chs}")
            self.shortcut = nn.Identity()
        elif shortcut == "conv":
            self.shortcut = _conv_bn(in_chs, out_chs, 1, padding=0, batch_norm=batch_norm)
        else:
            raise ValueError(f"Fire: shortcut must be None, 'identity' or 'conv', got {shortcut!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in, H, W) -> (N, e1x1 + e3x3, H, W)
        s = self.squeeze(x)  # (N, s1x1, H, W)
        out = self.act(torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1))  # (N, e1x1 + e3x3, H, W)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return out


class SqueezeNetHead(nn.Module):
    """conv10: dropout -> 1x1 conv to classes -> ReLU -> global average pool (no fully connected layer).

    Same interface as ``ClassifierHead``: ``forward(x, pre_logits)`` and ``reset(num_classes)``. ``pre_logits``
    returns the globally pooled features ``(N, in_features)``; ``num_classes=0`` drops conv10 and returns them.
    """

    def __init__(self, in_features: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.in_features = in_features
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        if num_classes > 0:
            self.conv = nn.Conv2d(self.in_features, num_classes, 1)
            # Paper / Caffe model / torchvision: conv10 weights start at N(0, 0.01), so the initial logits are
            # nearly equal. Their bias starts at CONV10_BIAS_INIT instead of 0. With a zero bias about half of
            # the score map sits below the ReLU, and before the features separate the classes, cross-entropy
            # pushes down every class map where it is active: the per-class gradient E[(p - y) * active] is
            # positive because a sample with more active positions has a larger logit and so a larger p. The
            # maps drift below zero everywhere, the logits become exactly 0 for every input, and no gradient
            # ever reaches the network again (loss ln(num_classes) for good). With 2 classes this happens within
            # tens of SGD steps at any learning rate (0.1 to 0.001 measured). A bias of the same value for every
            # class shifts all logits alike -- softmax and the initial predictions are unchanged -- but puts the
            # whole map in the ReLU's linear region, where that drift does not exist.
            nn.init.normal_(self.conv.weight, 0.0, 0.01)
            nn.init.constant_(self.conv.bias, CONV10_BIAS_INIT)
        else:
            self.conv = None

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # (N, C, h, w) -> (N, classes)
        if pre_logits or self.conv is None:
            return self.pool(x).flatten(1)  # (N, C)
        x = torch.relu(self.conv(self.drop(x)))  # (N, classes, h, w): a non-negative score map
        return self.pool(x).flatten(1)  # (N, classes)


class SqueezeNet(ZooModel):
    """conv1 -> max-pool -> fire2..fire9 with max-pools after the fires in ``pool_after`` -> conv10 head.

    ``small_input=True`` (CIFAR, 32 px): conv1 becomes 3x3 stride 1 (padding 1) and the max-pool after it is
    dropped, so the fires run at 32 -> 16 -> 8 px instead of collapsing a 32 px image to 1x1.
    """

    def __init__(
        self,
        stem_chs: int,
        stem_kernel: int,
        fires: list[list[int]],
        pool_after: list[int],
        bypass: str = "none",
        *,
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.5,
    ):
        super().__init__()
        if bypass not in BYPASS_MODES:
            raise ValueError(f"SqueezeNet: bypass must be one of {', '.join(BYPASS_MODES)}, got {bypass!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if small_input:
            layers["conv1"] = _conv_relu(in_chans, stem_chs, 3, 1, 1, batch_norm=batch_norm)
        else:
            # Unpadded, stride 2, then 3x3/2 max-pool with ceil rounding (Caffe's pooling): 224 -> 109 -> 54.
            layers["conv1"] = _conv_relu(in_chans, stem_chs, stem_kernel, 2, 0, batch_norm=batch_norm)
            layers["maxpool1"] = nn.MaxPool2d(3, 2, ceil_mode=True)
        in_chs = stem_chs
        for idx, (squeeze_chs, e1x1, e3x3) in enumerate(fires, start=2):  # paper numbering: fire2 ... fire9
            out_chs = e1x1 + e3x3
            shortcut = None
            if bypass != "none" and in_chs == out_chs:
                shortcut = "identity"
            elif bypass == "complex":
                shortcut = "conv"
            layers[f"fire{idx}"] = Fire(in_chs, squeeze_chs, e1x1, e3x3, shortcut=shortcut, batch_norm=batch_norm)
            if idx in pool_after:
                layers[f"maxpool{idx}"] = nn.MaxPool2d(3, 2, ceil_mode=True)
            in_chs = out_chs
        self.features = nn.Sequential(layers)
        self.num_features = in_chs
        self.head = SqueezeNetHead(in_chs, num_classes, drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        # No BN by default, so keep each conv's output variance at its input's: He (fan-in) init, as the
        # torchvision reference does; conv10 was initialised N(0, 0.01) by the head.
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 512, ~H/16, ~W/16)
        return self.features(x)  # CIFAR form: (N, 512, H/4, W/4)


# One row per Fire module fire2..fire9: [s1x1, e1x1, e3x3] (paper Table 1; v1.1 uses the same modules).
_FIRES = [
    [16, 64, 64],
    [16, 64, 64],
    [32, 128, 128],
    [32, 128, 128],
    [48, 192, 192],
    [48, 192, 192],
    [64, 256, 256],
    [64, 256, 256],
]


# Per version: (conv1 filters, conv1 kernel, the fires followed by a 3x3/2 max-pool).
_VERSIONS = {
    "1_0": (96, 7, [4, 8]),  # paper Table 1
    "1_1": (64, 3, [3, 5]),  # the authors' v1.1
}


def _squeezenet(version: str, bypass: str, **kwargs) -> SqueezeNet:
    stem_chs, stem_kernel, pool_after = _VERSIONS[version]
    return SqueezeNet(stem_chs, stem_kernel, _FIRES, pool_after, bypass, **kwargs)


@register_model(family="squeezenet", builder=SqueezeNet)
def squeezenet1_0(**kwargs):
    return _squeezenet("1_0", "none", **kwargs)


@register_model(family="squeezenet", builder=SqueezeNet)
def squeezenet1_1(**kwargs):
    return _squeezenet("1_1", "none", **kwargs)


@register_model(family="squeezenet", builder=SqueezeNet)
def squeezenet1_0_simple_bypass(**kwargs):
    return _squeezenet("1_0", "simple", **kwargs)


@register_model(family="squeezenet", builder=SqueezeNet)
def squeezenet1_0_complex_bypass(**kwargs):
    return _squeezenet("1_0", "complex", **kwargs)
