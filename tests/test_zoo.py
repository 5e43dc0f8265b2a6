"""Zoo-wide checks: every registered model builds, runs, and backpropagates; known sizes are pinned.

Tiny inputs keep the whole file well under a minute on 2 cores.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import pytest
import torch
from torch import nn

import litezoo
from litezoo.analysis import count_macs, count_params
from litezoo.analysis.counting import CostTrace
from litezoo.model_sizes import SIZES, format_row, measure
from litezoo.registry import model_info

ALL_MODELS = litezoo.list_models()
NUM_CLASSES = 7  # odd on purpose: nothing may assume 10 or 1000


TINY = 32  # every form accepts 32 px: the 224 forms pool down to 1x1 (ViT: 2x2 patches of 16)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = litezoo.create_model(name, num_classes=NUM_CLASSES, in_chans=3)
    x = torch.randn(2, 3, TINY, TINY)
    out = model(x)
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()
    # A loss that depends on every logit, so every parameter is on the gradient path.
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([1, NUM_CLASSES - 1]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradient in {bad[:5]}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_shared_interface(name: str) -> None:
    model = litezoo.create_model(name, num_classes=NUM_CLASSES, in_chans=1).eval()
    assert model.num_classes == NUM_CLASSES and model.in_chans == 1
    assert isinstance(model.num_features, int) and model.num_features > 0
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model.forward_head(feats)
        assert pooled.shape == (1, model.num_features)
        assert torch.allclose(logits, model(x))
        model.reset_classifier(3)
        assert model(x).shape == (1, 3) and model.num_classes == 3


def test_cifar_forms_do_not_collapse_32px() -> None:
    """The *_cifar forms keep a spatial map larger than 1x1 at 32 px (the 224 forms shrink it to 1x1)."""
    for name in litezoo.list_models("*_cifar"):
        if model_info(name).family == "vit":
            continue  # tokens, not a feature map
        assert model_info(name).default_size == 32, name  # so the shared count below ran at 32 px
        shape = _counted(name).features_shape  # forward_features' output in the counting pass at 32 px
        assert shape[-1] >= 2, f"{name}: features {shape} at 32 px"


# Parameters at 1000 classes (papers / torchvision's reference counts) and multiply-accumulates of conv+linear
# layers at the default resolution (papers' convention; torchvision lists the same numbers as "GFLOPS").
# (name, params, MACs low, MACs high)
KNOWN_SIZES = [
    ("shufflenet_v1_g3_x1_0", 1_870_000, 137e6, 140e6),  # paper Table 1: 137 MFLOPs (g=3); 1.87M params
    ("shufflenet_v1_g3_x2_0", 5_450_776, 520e6, 528e6),  # official megvii table: 5.4M, 524M
    ("shufflenet_v1_g8_x1_0", 2_434_768, 135e6, 140e6),  # official: 2.4M; paper Table 2: 137M
    ("shufflenet_v2_x0_5", 1_366_792, 40e6, 43e6),  # torchvision
    ("shufflenet_v2_x1_0", 2_278_604, 144e6, 147e6),  # paper 146M, torchvision 0.14
    ("shufflenet_v2_x2_0", 7_393_996, 580e6, 595e6),  # paper 591M (counts beyond conv+fc), torchvision 0.58
    ("mobilenet_v1_x1_0", 4_231_976, 565e6, 573e6),  # paper 4.2M, 569M
    ("mobilenet_v1_x0_5", 1_331_592, 147e6, 151e6),  # paper Table 6: 1.3M, 149M
    ("squeezenet1_0", 1_248_424, 810e6, 830e6),  # torchvision 0.82 G
    ("squeezenet1_1", 1_235_496, 345e6, 355e6),  # torchvision 0.35 G
    ("efficientnet_b0", 5_288_548, 385e6, 395e6),  # paper 0.39B FLOPs, torchvision 0.39
    ("efficientnet_b1", 7_794_184, 680e6, 710e6),  # torchvision 0.69 at 240 px
    ("efficientnet_b7", 66_347_960, 37.0e9, 38.5e9),  # torchvision 37.75 at 600 px
    ("vgg11", 132_863_336, 7.55e9, 7.65e9),  # torchvision 7.61
    ("vgg16", 138_357_544, 15.4e9, 15.55e9),  # torchvision 15.47
    ("vgg16_bn", 138_365_992, 15.4e9, 15.55e9),
    ("vgg19", 143_667_240, 19.55e9, 19.7e9),  # torchvision 19.63
    ("mobilenet_v2_x1_0", 3_504_872, 299e6, 302e6),  # paper Table 3: 3.4M, 300M; torchvision 0.30
    ("mobilenet_v2_x0_35", 1_680_000, 58e6, 60e6),  # paper: 1.7M, 59M; timm mobilenetv2_035: 1.68M
    ("mobilenet_v2_x0_5", 1_970_000, 96e6, 98e6),  # paper: 97M; timm mobilenetv2_050: 1.97M
    ("mobilenet_v3_large_x1_0", 5_483_032, 215e6, 219e6),  # paper Table 3: 5.4M, 217M; torchvision 0.22
    ("mobilenet_v3_small_x1_0", 2_542_856, 55e6, 58e6),  # paper Table 3: 2.5M, 56M; torchvision 0.06
    ("ghostnet_x1_0", 5_200_000, 139e6, 143e6),  # paper Table 7: 5.2M, 141M
    ("ghostnet_x1_3", 7_360_000, 222e6, 230e6),  # paper Table 7: 7.3M, 226M; timm ghostnet_130: 7.36M
]

# torchvision's exact parameter counts (its model docs / builders), for the layouts built key for key like it.
EXACT_PARAMS = {
    "mobilenet_v2_x1_0": 3_504_872,
    "mobilenet_v3_large_x1_0": 5_483_032,
    "mobilenet_v3_small_x1_0": 2_542_856,
    "shufflenet_v2_x1_0": 2_278_604,
    "squeezenet1_1": 1_235_496,
}


class _Counts(NamedTuple):
    params: int  # count_params at 1000 classes
    macs: int  # count_macs at 1000 classes, default input size
    features_shape: tuple[int, ...]  # forward_features' output in that pass (batch 1)
    head_macs: int  # forward_head alone on such features, at 1000 classes


class _Head(nn.Module):
    """``model.forward_head`` as a module, so CostTrace can count the classifier on its own."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(feats)


def _head_macs(model: nn.Module, features_shape: tuple[int, ...]) -> int:
    trace = CostTrace(_Head(model))
    trace.run(torch.empty(features_shape, device="meta"))
    return trace.total("macs")


@functools.cache
def _counted(name: str) -> _Counts:
    """One meta-device build and count_macs pass per model at 1000 classes, shared by the size tests of this file.

    Counting every model of the zoo at its default size is the slow part of this file (each count runs the whole
    network through the cost tracer, where every meta-device BatchNorm is a Python decomposition), so it is
    done once.
    """
    info = model_info(name)
    with torch.device("meta"):
        model = litezoo.create_model(name, num_classes=1000)
    seen: list[tuple[int, ...]] = []
    forward_features = model.forward_features

    def recording(x: torch.Tensor) -> torch.Tensor:
        out = forward_features(x)
        seen.append(tuple(out.shape))
        return out

    model.forward_features = recording  # instance attribute: model.forward -> forward_head(forward_features(x))
    try:
        macs = count_macs(model, info.default_size)
    finally:
        del model.forward_features
    assert len(seen) == 1, f"{name}: forward did not call forward_features once"
    return _Counts(count_params(model), macs, seen[0], _head_macs(model, seen[0]))


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_exact_torchvision_param_counts(name: str) -> None:
    assert _counted(name).params == EXACT_PARAMS[name]


@pytest.mark.parametrize("name,params,macs_lo,macs_hi", KNOWN_SIZES, ids=[k[0] for k in KNOWN_SIZES])
def test_known_params_and_macs(name: str, params: int, macs_lo: float, macs_hi: float) -> None:
    n, macs = _counted(name)[:2]
    assert math.isclose(n, params, rel_tol=0.005), f"{name}: {n:,} params, expected {params:,} (±0.5%)"
    assert macs_lo <= macs <= macs_hi, f"{name}: {macs / 1e6:.1f}M MACs, expected {macs_lo / 1e6:.0f}–{macs_hi / 1e6:.0f}M"


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ValueError, match="shufflenet_v2_x1_0"):
        litezoo.create_model("shufflenet_v2_x1_O")
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        litezoo.create_model("resnet50")


def test_bad_arguments_name_the_values() -> None:
    with pytest.raises(ValueError, match="num_classes.*0"):
        litezoo.create_model("mobilenet_v1_x0_25", num_classes=0)
    with pytest.raises(ValueError, match="no option.*colour"):
        litezoo.create_model("mobilenet_v1_x0_25", colour="red")


def test_list_models_pattern_and_cifar_forms() -> None:
    names = litezoo.list_models("shufflenet_v2*", include_cifar=False)
    assert names == ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]
    for n in names:
        assert n + "_cifar" in ALL_MODELS
        assert model_info(n + "_cifar").default_size == 32
    families = {model_info(n).family for n in ALL_MODELS}
    assert {
        "shufflenet_v1", "shufflenet_v2", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "ghostnet", "squeezenet",
        "efficientnet", "vgg", "vit",
    } <= families
    assert len(litezoo.list_models("efficientnet_b?", include_cifar=False)) == 8
    assert len(litezoo.list_models("vgg*", include_cifar=False)) >= 8


def test_options_come_from_the_family_builder() -> None:
    """Variants take ``**kwargs``; the registry reads the allowed options from the family's builder signature."""
    assert model_info("efficientnet_b0").options == ("drop_rate", "drop_path_rate", "bn_eps")
    assert model_info("squeezenet1_1_cifar").options == ("batch_norm", "drop_rate")
    # The variant fixes the architecture: a positional knob of the class is not an option.
    with pytest.raises(ValueError, match="no option.*bypass.*takes: batch_norm, drop_rate"):
        litezoo.create_model("squeezenet1_1", bypass="simple")
    with torch.device("meta"):
        # A variant's own default (B7's classifier dropout is 0.5, B0's 0.2) and a caller's override.
        assert litezoo.create_model("efficientnet_b7").head.drop_rate == 0.5
        assert litezoo.create_model("efficientnet_b0").head.drop_rate == 0.2
        assert litezoo.create_model("efficientnet_b7", drop_rate=0.1).head.drop_rate == 0.1
        bn = litezoo.create_model("squeezenet1_1", batch_norm=True)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())


def test_size_table_matches_real_counts() -> None:
    """``litezoo models`` reads litezoo.model_sizes instead of building models: every row must be exact.

    Checked at 1000 classes and at NUM_CLASSES, so the per-class slope is checked too. On a mismatch the
    message gives the rows to paste (``python -m litezoo.model_sizes`` prints them all).

    At 1000 classes both counts are the full ones (count_params, count_macs of the whole forward). At NUM_CLASSES
    the model is really built with that class count (its parameters counted in full), and its MACs are the
    1000-class body's (forward_features never sees the class count) plus its own head's, counted by tracing its
    forward_head on the features the body produced: a second full trace per model cost half of this test's time.
    """
    assert sorted(SIZES) == ALL_MODELS, "the size table and the registry list different models"
    wrong = []
    for name in ALL_MODELS:
        size = SIZES[name]
        info = model_info(name)
        ok = (size.family, size.input_size) == (info.family, info.default_size)
        counted = _counted(name)
        ok &= size.at(1000) == (counted.params, counted.macs)
        with torch.device("meta"):
            model = litezoo.create_model(name, num_classes=NUM_CLASSES)
        body_macs = counted.macs - counted.head_macs
        ok &= size.at(NUM_CLASSES) == (count_params(model), body_macs + _head_macs(model, counted.features_shape))
        if not ok:
            wrong.append(format_row(name, measure(name)))
    assert not wrong, "litezoo/model_sizes.py is out of date; new rows:\n" + "\n".join(wrong)


def test_size_table_scales_with_the_class_count() -> None:
    # SqueezeNet's classifier is conv10 on the 13x13 map of a 224 px input: 513 params, 512 * 169 MACs per class.
    size = SIZES["squeezenet1_1"]
    assert (size.params_per_class, size.macs_per_class) == (513, 512 * 13 * 13)
    assert size.at(10) == (1_235_496 - 990 * 513, size.macs - 990 * 512 * 169)
