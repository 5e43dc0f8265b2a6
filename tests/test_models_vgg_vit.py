"""VGG (sizes, heads, transfer-learning reset, CIFAR form) and ViT (attention, position embedding, sizes)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import litezoo
from litezoo.layers import ClassifierHead
from litezoo.models.vgg import VGG, make_layers
from litezoo.models.vit import Attention, Block



def _params(name: str, **kwargs) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in litezoo.create_model(name, **kwargs).parameters())


# ---------------------------------------------------------------------------------------------------- VGG


@pytest.mark.parametrize(
    "name,params",
    [("vgg11", 132_863_336), ("vgg16", 138_357_544), ("vgg16_bn", 138_365_992), ("vgg19", 143_667_240)],
)
def test_vgg_parameter_counts(name: str, params: int) -> None:
    assert _params(name) == params  # torchvision's counts


@pytest.mark.parametrize("name,convs", [("vgg11", 8), ("vgg13", 10), ("vgg16", 13), ("vgg19", 16)])
def test_vgg_weight_layers(name: str, convs: int) -> None:
    with torch.device("meta"):
        model = litezoo.create_model(name)
        bn = litezoo.create_model(name + "_bn")
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == convs
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 3  # convs + 3 FC = the name's depth
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in model.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == convs
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_vgg_imagenet_head_shapes() -> None:
    with torch.device("meta"):
        model = litezoo.create_model("vgg16", num_classes=7)
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512 * 7 * 7, 4096), (4096, 4096), (4096, 7)]
    assert [m.p for m in model.head.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_vgg_reset_classifier_for_transfer_learning() -> None:
    """seeds/002: freeze a trained VGG, swap the 1000-class last layer for a 2-class one, train only that layer."""
    torch.manual_seed(0)
    model = VGG([8, "M", 16, "M"], num_classes=1000)  # tiny conv stack, the real 7x7 -> 4096 -> 4096 head
    for p in model.parameters():
        p.requires_grad = False
    mlp_before = [p.clone() for p in model.head.mlp.parameters()]
    model.reset_classifier(2)
    assert model.num_classes == 2
    assert (model.head.fc.in_features, model.head.fc.out_features) == (4096, 2)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.fc.weight", "head.fc.bias"]  # the MLP kept its (frozen) weights
    for before, after in zip(mlp_before, model.head.mlp.parameters()):
        assert torch.equal(before, after)

    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    fc_before = model.head.fc.weight.clone()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert not torch.equal(model.head.fc.weight, fc_before)
    assert torch.equal(next(model.head.mlp.parameters()), mlp_before[0])

    # The registered model swaps the same layer.
    with torch.device("meta"):
        vgg16 = litezoo.create_model("vgg16")
        vgg16.reset_classifier(2)
    assert (vgg16.head.fc.in_features, vgg16.head.fc.out_features) == (4096, 2)
    assert vgg16.head.mlp[0].in_features == 25088


def test_vgg_pre_logits_and_feature_output() -> None:
    torch.manual_seed(0)
    model = VGG([8, "M", 16, "M"], num_classes=10).eval()
    x = torch.randn(2, 3, 36, 20)  # any size: the head pools adaptively to 7x7
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 16, 9, 5) and model.num_features == 16
        torch.testing.assert_close(model.forward_head(feats, pre_logits=True), feats.mean((2, 3)))
        assert model(x).shape == (2, 10)
        model.reset_classifier(0)
        assert model(x).shape == (2, 4096)  # no classifier: the penultimate 4096-wide layer


def test_vgg_cifar_form() -> None:
    model = litezoo.create_model("vgg16_bn_cifar", num_classes=10)
    assert isinstance(model.head, ClassifierHead) and model.head.fc.in_features == 512
    assert not any(isinstance(m, nn.Linear) and m.out_features == 4096 for m in model.modules())
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4  # last pool dropped: 2x2 at the end
    # Parameters: the vgg16_bn conv stack + linear(512, 10).
    head = 512 * 7 * 7 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    assert _params("vgg16_bn_cifar", num_classes=10) == _params("vgg16_bn") - head + 512 * 10 + 10
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 2, 2)


def test_vgg_cfg_is_extensible_and_validated() -> None:
    # A new variant is a cfg list: widths and pools are free, the heads size themselves from the last width.
    small = VGG([32, "M", 64, 64, "M", 128], num_classes=10, small_input=True)
    assert small.num_features == 128 and small.head.fc.in_features == 128
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="'X'"):
        make_layers([64, "X"], 3, batch_norm=False)
    with pytest.raises(ValueError, match="no convolution"):
        VGG(["M"])


# ---------------------------------------------------------------------------------------------------- ViT


def _reference_attention(x: torch.Tensor, attn: Attention) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V per head, written out with loops: the definition, independent of the module."""
    n, length, dim = x.shape
    heads, d = attn.num_heads, dim // attn.num_heads
    wq, wk, wv = attn.qkv.weight.split(dim, dim=0)  # each (D, D); output rows are [Q | K | V]
    bq, bk, bv = attn.qkv.bias.split(dim)
    out = torch.zeros(n, length, dim)
    for b in range(n):
        q, k, v = x[b] @ wq.T + bq, x[b] @ wk.T + bk, x[b] @ wv.T + bv  # (L, D)
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)  # head h owns d consecutive features
            scores = torch.einsum("id,jd->ij", q[:, cols], k[:, cols]) / math.sqrt(d)  # (L, L)
            weights = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
            weights = weights / weights.sum(dim=1, keepdim=True)  # softmax over keys
            out[b, :, cols] = weights @ v[:, cols]
    return out @ attn.proj.weight.T + attn.proj.bias


def test_attention_matches_hand_written_reference() -> None:
    torch.manual_seed(0)
    attn = Attention(12, 3).eval()
    for p in attn.parameters():  # non-trivial weights and biases
        nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 5, 12)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _reference_attention(x, attn), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="dim 10.*num_heads=3"):
        Attention(10, 3)


def test_block_is_pre_norm_residual() -> None:
    torch.manual_seed(0)
    block = Block(12, 3, 4.0).eval()
    x = torch.randn(2, 5, 12)
    with torch.no_grad():
        h = x + block.attn(block.norm1(x))
        expected = h + block.mlp.fc2(nn.functional.gelu(block.mlp.fc1(block.norm2(h))))
        torch.testing.assert_close(block(x), expected)
    assert block.mlp.fc1.out_features == 48  # mlp ratio 4


@pytest.mark.parametrize(
    "name,dim,heads,params", [("vit_tiny", 192, 3, 5_717_416), ("vit_small", 384, 6, 22_050_664)]
)
def test_vit_configuration_and_parameter_count(name: str, dim: int, heads: int, params: int) -> None:
    with torch.device("meta"):
        model = litezoo.create_model(name)
    assert _params(name) == params  # timm / DeiT: 5.7M and 22.1M
    assert model.patch_embed.proj.kernel_size == (16, 16) and model.patch_embed.proj.stride == (16, 16)
    assert model.pos_embed.shape == (1, 1 + 14 * 14, dim) and model.cls_token.shape == (1, 1, dim)
    assert len(model.blocks) == 12 and all(b.attn.num_heads == heads for b in model.blocks)
    assert model.num_features == dim


def test_vit_cifar_form_tokens_and_head_on_class_token() -> None:
    torch.manual_seed(0)
    model = litezoo.create_model("vit_tiny_cifar", num_classes=10).eval()
    assert model.patch_embed.patch_size == 4 and model.pos_embed.shape == (1, 65, 192)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(x)
        assert tokens.shape == (2, 1 + 64, 192)  # 8x8 patches + class token
        # Normalised by the final LayerNorm (unit weight, zero bias at init).
        torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 65), atol=1e-5, rtol=0)
        torch.testing.assert_close(tokens.std(-1, unbiased=False), torch.ones(2, 65), atol=1e-3, rtol=0)
        logits = model.forward_head(tokens)
        changed = tokens.clone()
        changed[:, 1:] = torch.randn_like(changed[:, 1:])  # the head reads only the class token
        torch.testing.assert_close(model.forward_head(changed), logits)
        torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), tokens[:, 0])
        torch.testing.assert_close(logits, model(x))


def test_vit_position_embedding_interpolates_to_other_grids() -> None:
    torch.manual_seed(0)
    model = litezoo.create_model("vit_tiny_cifar", num_classes=10).eval()  # learned for an 8x8 grid
    assert model.position_embedding((8, 8)) is model.pos_embed
    with torch.no_grad():
        resized = model.position_embedding((12, 6))
        assert resized.shape == (1, 1 + 12 * 6, 192)
        torch.testing.assert_close(resized[:, 0], model.pos_embed[:, 0])  # class token's position untouched
        # Bicubic resizing keeps a constant field constant.
        model.pos_embed[:, 1:] = torch.linspace(-1, 1, 192)
        constant = model.pos_embed[:, 1:2].expand(1, 16 * 16, 192)
        torch.testing.assert_close(model.position_embedding((16, 16))[:, 1:], constant)
        # Forward at 48x24 px (12x6 patches) and at the 224-px model's 32 px (2x2 patches).
        assert model.forward_features(torch.randn(2, 3, 48, 24)).shape == (2, 1 + 72, 192)
    big = litezoo.create_model("vit_tiny", num_classes=10)
    out = big(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert big.pos_embed.grad is not None and big.pos_embed.grad.abs().sum() > 0


def test_vit_rejects_sizes_not_divisible_by_patch() -> None:
    model = litezoo.create_model("vit_tiny", num_classes=10)
    with pytest.raises(ValueError, match=r"30x32.*patch size 16"):
        model(torch.randn(1, 3, 30, 32))
    cifar = litezoo.create_model("vit_tiny_cifar", num_classes=10)
    with pytest.raises(ValueError, match=r"32x34.*patch size 4"):
        cifar(torch.randn(1, 3, 32, 34))


def test_vit_stochastic_depth_and_dropout_options() -> None:
    with torch.device("meta"):
        model = litezoo.create_model("vit_tiny")
        dropped = litezoo.create_model("vit_tiny", drop_rate=0.1, drop_path_rate=0.0)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in model.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1) and rates == sorted(rates)  # DeiT: linear to 0.1
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())  # DeiT: no dropout
    assert all(isinstance(b.drop_path, nn.Identity) for b in dropped.blocks)
    # Dropout after the position embedding, attention projection and both MLP layers (not after qkv).
    assert sum(isinstance(m, nn.Dropout) for m in dropped.modules()) == 1 + 2 * 12
