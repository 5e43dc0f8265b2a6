"""A fast VGG-style net for CIFAR-10 on CPUs, after the CIFAR-10 speed records (Keller Jordan's airbench, 2024;
Page's ResNet-9 "How to train your ResNet", 2018).

Why VGG-style for the speed benchmark: per FLOP, plain dense 3x3 convolutions are ~10x more efficient on a CPU
than depthwise / grouped convs, shuffles and concatenations (ShuffleNet V2's guidelines G1-G4, measured by
`litezoo guidelines`), and they are what AMX/bf16 accelerates. The tricks that make it train in a few epochs:

- a frozen **whitening stem**: a 2x2 conv (no padding) whose filters are the eigenvectors of the 2x2x3 patch
  covariance scaled by 1/sqrt(eigenvalue), and their negatives; set from the first training batch the model
  sees (inside ``forward``, so any trainer works) and stored as buffers, so checkpoints restore it;
- three **conv groups** ``conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU`` (pooling before BN
  halves its cost), convs identity-initialised on their first ``in`` filters (``dirac_``: an implicit residual);
- **BN with a frozen unit scale and a bias stored divided by 8**, which gives plain SGD a 64x larger step on
  the BN biases (airbench's ``bias_scaler``) without a second parameter group;
- a **global max-pool** head, linear without bias, logits scaled by 1/9.

On an AMX CPU (Sapphire Rapids) bf16 autocast trains it 2.8x faster than fp32 (1072 vs 385 img/s at batch 256,
2 threads, channels_last: ``python benchmarks/time_to_accuracy.py throughput``).

CIFAR form (``vgg_fast_cifar``, 32 px): 32 -> 31 (stem) -> 15 -> 7 -> 3 px. The 224 px form adds a 4x4
max-pool after the stem (223 -> 56 px; ceil-mode pools) so photos are not processed at full resolution.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from litezoo.layers import ZooModel, linear_classifier, maybe_dropout
from litezoo.registry import register_model


class WhiteningStem(nn.Module):
    """2x2 conv (``in_chans`` -> 2 * 4 * in_chans, no padding) whose filters whiten 2x2 patches.

    Weights are buffers, not parameters: they are set once from data (first training batch), never trained.
    Before that they hold a random orthogonal basis, so an untrained model still computes something sensible.
    """

    def __init__(self, in_chans: int, kernel_size: int = 2, eps: float = 5e-4):
        super().__init__()
        dim = in_chans * kernel_size * kernel_size
        self.kernel_size = kernel_size
        self.eps = eps
        self.out_chs = 2 * dim
        basis = torch.linalg.qr(torch.randn(dim, dim))[0].reshape(dim, in_chans, kernel_size, kernel_size)
        self.register_buffer("weight", torch.cat([basis, -basis]))  # (2D, C, k, k)
        self.bias = nn.Parameter(torch.zeros(self.out_chs))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """Set the filters from a batch ``x`` (N, C, H, W) of normalised training images."""
        c, k = x.shape[1], self.kernel_size
        with torch.autocast(x.device.type, enabled=False):
            patches = x.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
            patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)  # (N*H'*W', C*k*k)
            cov = patches.T @ patches / patches.shape[0]  # (D, D)
            evals, evecs = torch.linalg.eigh(cov)  # ascending
            evals, evecs = evals.flip(0), evecs.T.flip(0)  # rows = eigenvectors, largest eigenvalue first
            w = (evecs / torch.sqrt(evals.clamp_min(0) + self.eps).view(-1, 1)).view(-1, c, k, k)
        self.weight.copy_(torch.cat([w, -w]))  # both signs, so GELU keeps the information of each direction
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (meta tensors carry no data: shape-only passes, e.g. counting MACs, skip the data-dependent init)
        if self.training and x.device.type != "meta" and not bool(self.initialized):
            self.init_from(x)
        return F.gelu(F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype)))


class ScaledBiasBatchNorm(nn.BatchNorm2d):
    """BatchNorm with its scale frozen at 1 and its bias stored as ``bias / bias_scale``.

    Storing p = b / s makes SGD move b = s * p with an s^2 larger learning rate (and the same relative decay).
    """

    def __init__(self, chs: int, bias_scale: float = 8.0, momentum: float = 0.4, eps: float = 1e-12):
        super().__init__(chs, eps=eps, momentum=momentum)
        self.bias_scale = bias_scale
        self.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias * self.bias_scale,
            self.training, self.momentum, self.eps,
        )


class ConvGroup(nn.Module):
    """conv3x3 -> maxpool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU: (N, C_in, H, W) -> (N, C_out, H/2, W/2)."""

    def __init__(self, in_chs: int, out_chs: int, ceil_mode: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, ceil_mode=ceil_mode)
        self.norm1 = ScaledBiasBatchNorm(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.norm2 = ScaledBiasBatchNorm(out_chs)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))  # BN and GELU on a quarter of the pixels
        return self.act(self.norm2(self.conv2(x)))


class MaxPoolHead(nn.Module):
    """Global max-pool -> dropout -> linear (no bias) -> x ``scale``. ``pre_logits`` returns the pooled (N, C)."""

    def __init__(self, in_features: int, num_classes: int, scale: float, drop_rate: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.scale = scale
        self.drop = maybe_dropout(drop_rate)
        self.fc = linear_classifier(in_features, num_classes, bias=False)

    def reset(self, num_classes: int) -> None:
        self.fc = linear_classifier(self.in_features, num_classes, bias=False)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.amax(x, dim=(2, 3))  # (N, C)
        if pre_logits:
            return x
        return self.fc(self.drop(x)) * self.scale


class VGGFast(ZooModel):
    def __init__(
        self,
        widths: list[int],
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        small_input: bool = True,
        drop_rate: float = 0.0,
        head_scale: float = 1 / 9,
    ):
        super().__init__(num_classes, in_chans)
        self.stem = WhiteningStem(in_chans)
        # 224 px photos: shrink 4x after the (cheap) stem so the groups see 55 px maps, not 223.
        # Ceil-mode pools there, so small inputs (down to 32 px) still leave a 1x1 map.
        self.stem_pool = nn.Identity() if small_input else nn.MaxPool2d(4, ceil_mode=True)
        groups, c = [], self.stem.out_chs
        for w in widths:
            groups.append(ConvGroup(c, w, ceil_mode=not small_input))
            c = w
        self.groups = nn.Sequential(*groups)
        self.num_features = c
        self.head = MaxPoolHead(c, num_classes, head_scale, drop_rate)
        for m in self.groups.modules():
            if isinstance(m, nn.Conv2d):
                # Identity on the first in_chs filters: an implicit residual that lets the plain stack train fast.
                nn.init.dirac_(m.weight.data[: m.weight.shape[1]])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(self.stem(x))  # (N, 24, 31, 31) at 32 px
        return self.groups(x)  # (N, widths[-1], 3, 3) at 32 px


def _vgg_fast(widths: list[int], **kwargs) -> VGGFast:
    if not widths or any(w <= 0 for w in widths):
        raise ValueError(f"vgg_fast widths must be positive, got {widths}")
    return VGGFast(widths, **kwargs)


@register_model(family="vgg_fast", builder=VGGFast)
def vgg_fast(**kwargs):
    """airbench94-sized: widths 64/256/256, 1.97M params, 118M MACs per 32 px image."""
    return _vgg_fast([64, 256, 256], **kwargs)


@register_model(family="vgg_fast", builder=VGGFast)
def vgg_fast_wide(**kwargs):
    """airbench95's widths 128/384/384: more accuracy per epoch for 2.55x the MACs (configs/fast_cifar10_long.yaml)."""
    return _vgg_fast([128, 384, 384], **kwargs)
