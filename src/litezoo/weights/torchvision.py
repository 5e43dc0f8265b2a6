"""torchvision's key layout for the families both have, both ways (import and export).

litezoo's models are layer-for-layer the same networks as torchvision's ``shufflenet_v2_*``, ``squeezenet1_0/1_1``,
``efficientnet_b0..b7``, ``vgg*`` (+ ``_bn``), ``mobilenet_v2`` and ``mobilenet_v3_large/small`` (torchvision's
``width_mult`` = litezoo's ``_x0_75`` etc.); only the module names differ. ``module_map(model)`` walks the
litezoo model and names, for every module holding tensors, the torchvision module that holds the same tensors,
e.g. for SqueezeNet 1.1::

    features.conv1.0          <-> features.0                  (conv1, then ReLU at index 1, max-pool at 2)
    features.fire2.squeeze.0  <-> features.3.squeeze
    head.conv                 <-> classifier.1                (dropout at index 0)

Tensor names below a module (``weight``, ``bias``, ``running_mean`` …) are the same in both. Models with no
torchvision counterpart (SqueezeNet with BN or bypass, CIFAR forms' different heads) still map, and the shapes
that differ are reported by name when loading.
"""

from __future__ import annotations

import torch.nn as nn

from litezoo.errors import InputError

FAMILIES = ("shufflenet_v2", "squeezenet", "efficientnet", "vgg", "mobilenet_v2", "mobilenet_v3")


def _squeezenet(model: nn.Module) -> dict[str, str]:
    out: dict[str, str] = {}
    idx = 0  # index in torchvision's features Sequential, where every ReLU and max-pool takes a slot too
    for name, child in model.features.named_children():
        if name == "conv1":
            if len(child) != 2:
                raise InputError("torchvision's SqueezeNet has no BatchNorm; this model was built with batch_norm")
            out["features.conv1.0"] = "features.0"
            idx += 2  # conv, ReLU
        elif name.startswith("maxpool"):
            idx += 1
        else:
            if child.shortcut is not None or not isinstance(child.expand1x1, nn.Conv2d):
                raise InputError("torchvision's SqueezeNet has no bypass and no BatchNorm; this model has")
            out[f"features.{name}.squeeze.0"] = f"features.{idx}.squeeze"
            out[f"features.{name}.expand1x1"] = f"features.{idx}.expand1x1"
            out[f"features.{name}.expand3x3"] = f"features.{idx}.expand3x3"
            idx += 1
    out["head.conv"] = "classifier.1"  # classifier = [Dropout, Conv2d, ReLU, AdaptiveAvgPool2d]
    return out


def _shufflenet_v2(model: nn.Module) -> dict[str, str]:
    out = {"stem.0": "conv1.0", "stem.1": "conv1.1", "conv5.0": "conv5.0", "conv5.1": "conv5.1", "head.fc": "fc"}
    # torchvision's branch1 = [dw conv, BN, 1x1 conv, BN, ReLU]; branch2 = [1x1, BN, ReLU, dw, BN, 1x1, BN, ReLU]
    proj = {"0.0": "0", "0.1": "1", "1.0": "2", "1.1": "3"}
    main = {"0.0": "0", "0.1": "1", "1.0": "3", "1.1": "4", "2.0": "5", "2.1": "6"}
    for s, stage in enumerate(model.stages):
        for u, unit in enumerate(stage):
            ours, theirs = f"stages.{s}.{u}", f"stage{s + 2}.{u}"
            if unit.stride == 2:
                out.update({f"{ours}.branch_proj.{a}": f"{theirs}.branch1.{b}" for a, b in proj.items()})
            out.update({f"{ours}.branch_main.{a}": f"{theirs}.branch2.{b}" for a, b in main.items()})
    return out


def _efficientnet(model: nn.Module) -> dict[str, str]:
    out = {"stem.0": "features.0.0", "stem.1": "features.0.1"}
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            ours, theirs = f"stages.{s}.{b}", f"features.{s + 1}.{b}.block"
            i = 0  # torchvision's MBConv.block = [expand (when ratio > 1), dw, SE, project]
            if not isinstance(block.expand, nn.Identity):
                out.update({f"{ours}.expand.0": f"{theirs}.0.0", f"{ours}.expand.1": f"{theirs}.0.1"})
                i = 1
            out.update({f"{ours}.dw.0": f"{theirs}.{i}.0", f"{ours}.dw.1": f"{theirs}.{i}.1"})
            out.update({f"{ours}.se.conv_reduce": f"{theirs}.{i + 1}.fc1", f"{ours}.se.conv_expand": f"{theirs}.{i + 1}.fc2"})
            out.update({f"{ours}.project.0": f"{theirs}.{i + 2}.0", f"{ours}.project.1": f"{theirs}.{i + 2}.1"})
    last = len(model.stages) + 1
    out.update({"conv_head.0": f"features.{last}.0", "conv_head.1": f"features.{last}.1"})
    out["head.fc"] = "classifier.1"  # classifier = [Dropout, Linear]
    return out


def _vgg(model: nn.Module) -> dict[str, str]:
    # Same features Sequential (conv [, BN], ReLU, max-pool at the same indices); classifier = [Linear, ReLU,
    # Dropout, Linear, ReLU, Dropout, Linear] is litezoo's head.mlp (first six) + head.fc.
    out = {f"features.{i}": f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))}
    if hasattr(model.head, "mlp"):
        out.update({"head.mlp.0": "classifier.0", "head.mlp.3": "classifier.3"})
    out["head.fc"] = "classifier.6"
    return out


def _mobilenet_v2(model: nn.Module) -> dict[str, str]:
    # features keeps torchvision's indices (features.<i>.conv.<j> inside an inverted residual); the classifier is
    # [Dropout, Linear] in torchvision, litezoo's head.fc.
    out = {name: name for name, m in model.features.named_modules(prefix="features") if _holds_tensors(m)}
    out["head.fc"] = "classifier.1"
    return out


def _mobilenet_v3(model: nn.Module) -> dict[str, str]:
    # features keeps torchvision's indices (features.<i>.block.<j>); only the SE convs are named differently
    # (torchvision's SqueezeExcitation: fc1, fc2). classifier = [Linear, Hardswish, Dropout, Linear].
    se = {"conv_reduce": "fc1", "conv_expand": "fc2"}
    out = {}
    for name, m in model.features.named_modules(prefix="features"):
        if _holds_tensors(m):
            parent, _, leaf = name.rpartition(".")
            out[name] = f"{parent}.{se[leaf]}" if leaf in se else name
    out.update({"head.hidden": "classifier.0", "head.fc": "classifier.3"})
    return out


def _holds_tensors(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))


# BatchNorm eps torchvision's networks were built (and trained) with, where litezoo's model differs: torchvision's
# EfficientNet B0-B7 use PyTorch's default 1e-5, litezoo's the TF reference's 1e-3 (a visible difference in the
# output, so loading torchvision's weights sets it).
BN_EPS = {"efficientnet": 1e-5}

_BUILDERS = {"shufflenet_v2": _shufflenet_v2, "squeezenet": _squeezenet, "efficientnet": _efficientnet, "vgg": _vgg,
             "mobilenet_v2": _mobilenet_v2, "mobilenet_v3": _mobilenet_v3}  # fmt: skip


def module_map(model: nn.Module, family: str) -> dict[str, str]:
    """litezoo module name -> torchvision module name, for every module of ``model`` that holds tensors."""
    if family not in _BUILDERS:
        raise InputError(
            f"torchvision's layout is known for the families {', '.join(FAMILIES)}; {family} is not one of them"
        )
    return _BUILDERS[family](model)


def key_map(model: nn.Module, family: str) -> dict[str, str]:
    """litezoo state-dict key -> torchvision key (every key of ``model.state_dict()``)."""
    modules = module_map(model, family)
    out = {}
    for key in model.state_dict():
        prefix, _, leaf = key.rpartition(".")
        if prefix not in modules:
            raise InputError(f"{getattr(model, 'model_name', type(model).__name__)}: {key} has no torchvision counterpart")
        out[key] = f"{modules[prefix]}.{leaf}"
    return out


def signature(keys: set[str]) -> str | None:
    """Which torchvision family a state dict's keys come from (for error messages), or None."""
    if "conv1.0.weight" in keys and any(k.startswith("stage2.0.branch1.") for k in keys):
        return "shufflenet_v2"
    if "features.0.0.weight" in keys and any(".block." in k for k in keys):
        # MobileNet V3 has block Sequentials too; its classifier starts with a Linear, EfficientNet's with Dropout
        return "mobilenet_v3" if "classifier.0.weight" in keys else "efficientnet"
    if "features.0.0.weight" in keys and any(k.startswith("features.1.conv.") for k in keys):
        return "mobilenet_v2"
    if any(k.endswith(".squeeze.weight") for k in keys) and "classifier.1.weight" in keys:
        return "squeezenet"
    if "classifier.6.weight" in keys and "features.0.weight" in keys:
        return "vgg"
    return None
