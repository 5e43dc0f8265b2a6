"""benchmarks/elementwise.py: the profiler rows are grouped by what they compute, and the ablation's variants
are what they claim (BN folding keeps the function; the other steps take away exactly one kind of operator)."""

from __future__ import annotations


import pytest
import torch
import torch.nn as nn

from conftest import load_script

import litezoo
from litezoo.layers import SqueezeExcite



@pytest.fixture(scope="module")
def elementwise():
    return load_script("benchmarks/elementwise.py")


def _with_real_bn_stats(model: nn.Module) -> nn.Module:
    # Fresh BatchNorms are the identity; non-trivial statistics make the folding test mean something.
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", ["mobilenet_v2_x0_35_cifar", "mobilenet_v3_small_x0_75_cifar"])
def test_folding_batchnorm_keeps_the_function(elementwise, name):
    model = _with_real_bn_stats(litezoo.create_model(name, num_classes=10))
    folded = elementwise.fold_batchnorm(model)
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert left == 0 and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0  # original untouched
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_profile_rows_are_grouped_by_what_they_compute(elementwise):
    model = litezoo.create_model("mobilenet_v3_small_x0_75_cifar", num_classes=10)
    modules = dict(model.named_modules())
    groups = {name: elementwise.group_of(model, name) for name in modules if name}
    depthwise = [n for n, m in modules.items() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert depthwise and all(groups[n] == "depthwise conv" for n in depthwise)
    se = [n for n, m in modules.items() if isinstance(m, SqueezeExcite)]
    assert se and all(groups[n] == "SE" and groups[n + ".conv_reduce"] == "SE" for n in se)
    assert all(groups[n] == "BatchNorm" for n, m in modules.items() if isinstance(m, nn.BatchNorm2d))
    assert all(groups[n] == "activation" for n, m in modules.items()
               if isinstance(m, nn.Hardswish) and not n.startswith("head") and not any(n.startswith(s) for s in se))
    residual = [n for n, m in modules.items() if getattr(m, "use_residual", False)]
    assert residual and all(groups[n] == "residual add" for n in residual)


def test_each_ablation_step_removes_one_kind(elementwise):
    steps = dict(elementwise.variants("mobilenet_v2_x0_35_cifar"))
    labels = list(steps)
    no_act, no_short = steps[labels[2]], steps[labels[3]]
    assert not any(isinstance(m, nn.ReLU6) for m in no_act.modules())
    assert any(getattr(m, "use_residual", False) for m in no_act.modules())
    assert not any(getattr(m, "use_residual", False) for m in no_short.modules())
    v3 = dict(elementwise.variants("mobilenet_v3_small_x0_75_cifar"))
    relu, no_se = list(v3.values())[2:]
    assert not any(isinstance(m, nn.Hardswish) for m in relu.modules())
    assert any(isinstance(m, SqueezeExcite) for m in relu.modules())
    assert not any(isinstance(m, SqueezeExcite) for m in no_se.modules())
