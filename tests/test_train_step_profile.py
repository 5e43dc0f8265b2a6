"""benchmarks/train_step_profile.py: a real profile of a training step is grouped by what each operator computes
(depthwise and dense convs told apart by the weight's shape, forward and backward)."""

from __future__ import annotations

import pytest
import torch
from conftest import load_script
from torch.profiler import ProfilerActivity, profile

import litezoo
from litezoo.precision import choose_precision


@pytest.fixture(scope="module")
def tsp():
    return load_script("benchmarks/train_step_profile.py")


def test_depthwise_weights_are_told_from_dense_ones(tsp):
    assert tsp.is_depthwise_weight([48, 1, 3, 3])  # depthwise 3x3 over 48 channels
    assert not tsp.is_depthwise_weight([96, 48, 1, 1])  # pointwise
    assert not tsp.is_depthwise_weight([24, 3, 3, 3])  # the stem
    assert not tsp.is_depthwise_weight([8, 48, 32, 32])  # an activation
    assert tsp.category("aten::convolution_backward", [[8, 48, 16, 16], [8, 48, 16, 16], [48, 1, 3, 3]]) == \
        "depthwise conv bwd"  # fmt: skip
    assert tsp.category("aten::mkldnn_convolution", [[8, 48, 16, 16], [96, 48, 1, 1], []]) == "dense conv fwd"
    assert tsp.category("aten::native_batch_norm_backward", []) == "batchnorm bwd"
    assert tsp.category("aten::threshold_backward", []) == "activation bwd"
    assert tsp.category("aten::add_", []) == "other"


def test_a_real_step_profile_has_every_kind_of_work(tsp):
    torch.manual_seed(0)
    model = litezoo.create_model("mobilenet_v1_x0_25_cifar", num_classes=10)
    model = model.to(memory_format=torch.channels_last).train()
    cpu = torch.device("cpu")
    step = tsp.make_step(model, 4, 16, choose_precision("off", cpu), cpu)
    step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    ops = tsp.operator_times(prof.events())
    kinds = {"dense conv fwd", "dense conv bwd", "depthwise conv fwd", "depthwise conv bwd", "batchnorm fwd",
             "batchnorm bwd", "activation fwd", "activation bwd", "other"}  # fmt: skip
    assert kinds <= set(ops), sorted(ops)
    # 13 depthwise layers, each with its weight's shape (C, 1, 3, 3); the stem and 13 pointwise convs are dense
    depthwise = sum(1 for e in prof.events() if e.name.startswith("aten::") and "conv" in e.name and
                    tsp.category(e.name, e.input_shapes or []) == "depthwise conv bwd" and
                    e.name == "aten::convolution_backward")  # fmt: skip
    assert depthwise == 13
