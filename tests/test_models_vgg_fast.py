"""The fast CIFAR net (models/vgg_fast.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import litezoo
from litezoo.models.vgg_fast import ScaledBiasBatchNorm, WhiteningStem


def test_whitening_stem_whitens_patches() -> None:
    torch.manual_seed(0)
    stem = WhiteningStem(3)
    # Correlated "images": a smooth random field, so neighbouring pixels and channels are far from white.
    x = F.avg_pool2d(torch.randn(64, 1, 36, 36), 5, 1).expand(64, 3, 32, 32) + 0.1 * torch.randn(64, 3, 32, 32)
    stem.init_from(x)
    assert bool(stem.initialized)
    z = F.conv2d(x, stem.weight[:12])  # (N, 12, 31, 31): the whitened coordinates, before GELU
    z = z.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = z.T @ z / z.shape[0]
    # Unit variance along directions whose eigenvalue >> eps; the tiny ones are damped by eps (5e-4).
    big = torch.linalg.eigvalsh((x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)).T.cov())
    n_big = int((big > 0.05).sum())
    assert n_big >= 1
    diag = torch.diagonal(cov)[:n_big]
    assert torch.allclose(diag, torch.ones_like(diag), atol=0.05), diag
    off = cov[:n_big, :n_big] - torch.diag(torch.diagonal(cov)[:n_big])
    assert off.abs().max() < 0.05
    assert torch.equal(stem.weight[12:], -stem.weight[:12])  # both signs


def test_stem_initialises_once_from_training_data_and_checkpoints_keep_it() -> None:
    torch.manual_seed(0)
    model = litezoo.create_model("vgg_fast_cifar", num_classes=10).train()
    before = model.stem.weight.clone()
    model(torch.randn(8, 3, 32, 32))
    after = model.stem.weight.clone()
    assert not torch.equal(before, after)
    model(torch.randn(8, 3, 32, 32))
    assert torch.equal(model.stem.weight, after)  # never again
    fresh = litezoo.create_model("vgg_fast_cifar", num_classes=10)
    fresh.load_state_dict(model.state_dict())
    fresh.train()(torch.randn(8, 3, 32, 32))
    assert torch.equal(fresh.stem.weight, after)


def test_scaled_bias_batchnorm() -> None:
    bn = ScaledBiasBatchNorm(4, bias_scale=8.0).eval()
    bn.bias.data.fill_(0.5)
    x = torch.randn(2, 4, 3, 3)
    assert torch.allclose(bn(x), x / torch.sqrt(torch.tensor(1.0 + 1e-12)) + 4.0)
    assert not bn.weight.requires_grad


def test_sizes_and_shapes() -> None:
    model = litezoo.create_model("vgg_fast_cifar", num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 1_972_504
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 256, 3, 3)
    big = litezoo.create_model("vgg_fast", num_classes=5)
    assert big.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 256, 7, 7)
    with pytest.raises(ValueError, match="widths"):
        from litezoo.models.vgg_fast import _vgg_fast

        _vgg_fast([64, 0], num_classes=10, in_chans=3, small_input=True, drop_rate=0.0)
