"""EfficientNet: compound-scaling tables of B0-B7, MBConv details, sizes, CIFAR form."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import litezoo
from litezoo.layers import DropPath
from litezoo.models.efficientnet import MBConv, scaled_stages
from litezoo.registry import model_info


# (width, depth) per variant, and the reference network's widths and repeats (tensorflow/tpu efficientnet_builder
# round_filters / round_repeats; the same as torchvision's models): stem, 7 stage widths, head, 7 stage repeats.
REFERENCE = {
    "b0": ((1.0, 1.0), 32, [16, 24, 40, 80, 112, 192, 320], 1280, [1, 2, 2, 3, 3, 4, 1]),
    "b1": ((1.0, 1.1), 32, [16, 24, 40, 80, 112, 192, 320], 1280, [2, 3, 3, 4, 4, 5, 2]),
    "b2": ((1.1, 1.2), 32, [16, 24, 48, 88, 120, 208, 352], 1408, [2, 3, 3, 4, 4, 5, 2]),
    "b3": ((1.2, 1.4), 40, [24, 32, 48, 96, 136, 232, 384], 1536, [2, 3, 3, 5, 5, 6, 2]),
    "b4": ((1.4, 1.8), 48, [24, 32, 56, 112, 160, 272, 448], 1792, [2, 4, 4, 6, 6, 8, 2]),
    "b5": ((1.6, 2.2), 48, [24, 40, 64, 128, 176, 304, 512], 2048, [3, 5, 5, 7, 7, 9, 3]),
    "b6": ((1.8, 2.6), 56, [32, 40, 72, 144, 200, 344, 576], 2304, [3, 6, 6, 8, 8, 11, 3]),
    "b7": ((2.0, 3.1), 64, [32, 48, 80, 160, 224, 384, 640], 2560, [4, 7, 7, 10, 10, 13, 4]),
}
RESOLUTION_DROPOUT = {
    "b0": (224, 0.2), "b1": (240, 0.2), "b2": (260, 0.3), "b3": (300, 0.3),
    "b4": (380, 0.4), "b5": (456, 0.4), "b6": (528, 0.5), "b7": (600, 0.5),
}  # fmt: skip


@pytest.mark.parametrize("variant", list(REFERENCE))
def test_scaled_tables_match_reference(variant: str) -> None:
    (width, depth), stem, widths, head, repeats = REFERENCE[variant]
    got_stem, stages, got_head = scaled_stages(width, depth)
    assert (got_stem, [s[3] for s in stages], got_head, [s[4] for s in stages]) == (stem, widths, head, repeats)
    # Expand ratio, kernel and stride are B0's in every variant.
    assert [s[:3] for s in stages] == [[1, 3, 1], [6, 3, 2], [6, 5, 2], [6, 3, 2], [6, 5, 1], [6, 5, 2], [6, 3, 1]]


@pytest.mark.parametrize("variant", list(REFERENCE))
def test_registered_variant_is_built_from_its_table(variant: str) -> None:
    _, stem, widths, head, repeats = REFERENCE[variant]
    resolution, dropout = RESOLUTION_DROPOUT[variant]
    info = model_info(f"efficientnet_{variant}")
    assert info.default_size == resolution and info.family == "efficientnet"
    with torch.device("meta"):
        model = litezoo.create_model(f"efficientnet_{variant}")
    assert model.stem[0].out_channels == stem
    assert [len(stage) for stage in model.stages] == repeats
    assert [stage[-1].project[0].out_channels for stage in model.stages] == widths
    assert model.num_features == head and model.conv_head[0].out_channels == head
    assert model.head.drop.p == dropout


def test_parameter_counts_pinned() -> None:
    with torch.device("meta"):
        b0 = litezoo.create_model("efficientnet_b0")
        b7 = litezoo.create_model("efficientnet_b7")
    assert sum(p.numel() for p in b0.parameters()) == 5_288_548  # torchvision efficientnet_b0
    assert sum(p.numel() for p in b7.parameters()) == 66_347_960  # torchvision efficientnet_b7


def test_mbconv_structure_and_se_width() -> None:
    with torch.device("meta"):
        model = litezoo.create_model("efficientnet_b0")
    first = model.stages[0][0]  # expand ratio 1: no expansion conv; SE squeezes the 32-ch input to 8
    assert isinstance(first.expand, nn.Identity)
    assert (first.se.conv_reduce.in_channels, first.se.conv_reduce.out_channels) == (32, 8)
    block = model.stages[1][0]  # 16 -> 24, expand 6: SE on 96 channels, squeezed to 16 / 4 = 4 (block input)
    assert block.expand[0].out_channels == 96
    assert (block.se.conv_reduce.in_channels, block.se.conv_reduce.out_channels) == (96, 4)
    assert (model.stages[1][1].se.conv_reduce.in_channels, model.stages[1][1].se.conv_reduce.out_channels) == (144, 6)
    dw = model.stages[2][0].dw[0]
    assert dw.kernel_size == (5, 5) and dw.groups == dw.in_channels == 144  # depthwise on 24 * 6 channels
    assert isinstance(model.stages[1][0].se.act, nn.SiLU)
    # Projection: conv + BN, no activation.
    assert [type(m) for m in block.project] == [nn.Conv2d, nn.BatchNorm2d]
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in model.modules())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)


def test_residual_only_for_stride1_same_width() -> None:
    with torch.device("meta"):
        model = litezoo.create_model("efficientnet_b0")
    blocks = [b for stage in model.stages for b in stage]
    residual = [b.has_residual for b in blocks]
    # First block of each stage changes width (or stride): no shortcut; the repeats have one.
    assert residual == [False, False, True, False, True, False, True, True, False, True, True,
                        False, True, True, True, False]  # fmt: skip

    torch.manual_seed(0)
    block = MBConv(24, 24, kernel_size=3, stride=1, expand_ratio=6, drop_path_rate=0.5).eval()
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        branch = block.project(block.se(block.dw(block.expand(x))))
        torch.testing.assert_close(block(x), x + branch)  # eval: stochastic depth is off
    # Training: stochastic depth drops the whole branch for some samples (output == input) and keeps it for others.
    block.train()
    torch.manual_seed(1)
    x = torch.randn(64, 24, 4, 4)
    with torch.no_grad():
        out = block(x)
    dropped = (out == x).flatten(1).all(1)
    assert 0 < int(dropped.sum()) < 64


def test_stochastic_depth_rises_linearly_to_0_2() -> None:
    with torch.device("meta"):
        model = litezoo.create_model("efficientnet_b0")
    blocks = [b for stage in model.stages for b in stage]
    rates = [0.2 * i / len(blocks) for i in range(len(blocks))]
    for block, rate in zip(blocks, rates):
        if block.has_residual:
            assert isinstance(block.drop_path, DropPath) and block.drop_path.drop_prob == pytest.approx(rate)
        else:
            assert isinstance(block.drop_path, nn.Identity)
    with torch.device("meta"):
        custom = litezoo.create_model("efficientnet_b0", drop_path_rate=0.0)
    assert all(b.drop_path.drop_prob == 0.0 for s in custom.stages for b in s if b.has_residual)


def test_forward_small_inputs_and_cifar_form() -> None:
    torch.manual_seed(0)
    model = litezoo.create_model("efficientnet_b0", num_classes=5).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 1280, 2, 2)  # output stride 32
        assert model(torch.randn(2, 3, 72, 40)).shape == (2, 5)  # any size: adaptive pooling
    cifar = litezoo.create_model("efficientnet_b0_cifar", num_classes=10)
    assert cifar.stem[0].stride == (1, 1)
    out = cifar(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert cifar.stem[0].weight.grad is not None
    with torch.no_grad():
        assert cifar.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 1280, 2, 2)  # output stride 16


def test_init_depthwise_fan_out_per_group_and_small_classifier() -> None:
    """Depthwise kxk kernels start at std sqrt(2 / (k*k)) (TF reference: fan-out per group), not sqrt(2 / (k*k*C));
    the classifier at N(0, 0.01), so a fresh 10-class model's logits are small (the reference's uniform(+-1/sqrt(10))
    gave logit std ~3 and a first loss of 3.9; its CIFAR form then did not learn in a short run)."""
    torch.manual_seed(0)
    model = litezoo.create_model("efficientnet_b0_cifar", num_classes=10).eval()
    dw = model.stages[5][0].dw[0]  # 5x5 depthwise on 112 * 6 = 672 channels
    assert dw.groups == dw.in_channels == 672
    assert abs(dw.weight.std().item() / (2.0 / 25) ** 0.5 - 1) < 0.05
    dense = model.stages[5][0].expand[0]  # 1x1, fan-out = its 672 outputs
    assert abs(dense.weight.std().item() / (2.0 / 672) ** 0.5 - 1) < 0.05
    assert abs(model.head.fc.weight.std().item() / 0.01 - 1) < 0.1
    with torch.no_grad():
        logits = model(torch.randn(8, 3, 32, 32))
    assert logits.std().item() < 0.5
