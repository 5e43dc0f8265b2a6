"""MobileNet V1: the paper's layer table, width multiplier, sizes, CIFAR form and the zoo interface."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import litezoo
from litezoo.models.mobilenet_v1 import DepthwiseSeparable

# Paper Table 1 (alpha = 1): (in, out, stride) of the 13 depthwise-separable layers after the 32-ch stem.
PAPER_LAYERS = [
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 2),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 1024, 2),
    (1024, 1024, 1),
]



def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,alpha", [("mobilenet_v1_x1_0", 1.0), ("mobilenet_v1_x0_25", 0.25)])
def test_layers_follow_paper_table_scaled_by_alpha(name, alpha):
    model = litezoo.create_model(name)
    stem = model.stem[0]
    assert (stem.out_channels, stem.kernel_size, stem.stride) == (int(32 * alpha), (3, 3), (2, 2))
    blocks = [m for m in model.modules() if isinstance(m, DepthwiseSeparable)]
    assert len(blocks) == 13
    for block, (cin, cout, stride) in zip(blocks, PAPER_LAYERS):
        dw, pw = (m for m in block.modules() if isinstance(m, nn.Conv2d))
        assert dw.kernel_size == (3, 3) and dw.groups == dw.in_channels == dw.out_channels == int(cin * alpha)
        assert dw.stride == (stride, stride)
        assert pw.kernel_size == (1, 1) and pw.groups == 1 and pw.out_channels == int(cout * alpha)
    assert model.num_features == int(1024 * alpha) == model.head.fc.in_features


def test_uses_relu_after_every_bn_like_the_paper():
    model = litezoo.create_model("mobilenet_v1_x0_25")
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 1 + 2 * 13 and len(acts) == len(bns)
    assert all(type(a) is nn.ReLU for a in acts)


# Parameters at 1000 classes. Paper Table 6: 4.2M / 2.6M / 1.3M / 0.5M; the exact counts (BN included,
# bias-free convs, FC with bias) are pinned: 4,231,976 is the well-known count of the 1.0 model.
PARAM_TABLE = [
    ("mobilenet_v1_x1_0", 4.23e6),  # required: 4.23M
    ("mobilenet_v1_x1_0", 4_231_976),
    ("mobilenet_v1_x0_75", 2_585_560),  # computed
    ("mobilenet_v1_x0_5", 1_331_592),  # computed
    ("mobilenet_v1_x0_25", 470_072),  # computed
]


@pytest.mark.parametrize("name,expected", PARAM_TABLE)
def test_parameter_counts(name, expected):
    assert _params(litezoo.create_model(name)) == pytest.approx(expected, rel=0.005)


def test_registered_names_and_cifar_forms():
    names = litezoo.list_models("mobilenet_v1_*", include_cifar=False)
    assert names == ["mobilenet_v1_x0_25", "mobilenet_v1_x0_5", "mobilenet_v1_x0_75", "mobilenet_v1_x1_0"]
    for name in names:
        assert litezoo.model_info(name).default_size == 224
        assert litezoo.model_info(name + "_cifar").small_input


@pytest.mark.parametrize("name", ["mobilenet_v1_x0_25", "mobilenet_v1_x1_0"])
def test_cifar_form_has_stride1_stem_and_2x2_maps_at_32px(name):
    model = litezoo.create_model(name + "_cifar", num_classes=10).eval()
    assert model.stem[0].stride == (1, 1)
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 32, 32))
        assert feats.shape == (2, model.num_features, 2, 2)  # 4 stride-2 layers: 32 -> 2
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("size,expected_hw", [(224, 7), (100, 4), (32, 1)])
def test_imagenet_form_downsamples_by_32_any_size(size, expected_hw):
    model = litezoo.create_model("mobilenet_v1_x0_25", num_classes=4).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, size, size))
        assert feats.shape == (1, 256, expected_hw, expected_hw)
        assert model.forward_head(feats).shape == (1, 4)


def test_reset_classifier_single_channel_and_dropout():
    model = litezoo.create_model("mobilenet_v1_x0_5_cifar", num_classes=10, in_chans=1, drop_rate=0.1).eval()
    assert model.in_chans == 1 and model.stem[0].in_channels == 1
    assert isinstance(model.head.drop, nn.Dropout) and model.head.drop.p == 0.1
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        model.reset_classifier(7)
        assert model.num_classes == 7 and model(x).shape == (2, 7)
        model.reset_classifier(0)
        assert model(x).shape == (2, 512)


def test_unknown_width_gets_suggestions():
    with pytest.raises(ValueError, match="unknown model 'mobilenet_v1_x0_3'.*did you mean"):
        litezoo.create_model("mobilenet_v1_x0_3")
