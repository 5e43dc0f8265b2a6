"""Weights from elsewhere into litezoo models, and litezoo weights out in torchvision's layout.

``load_weights(model, source)`` reads

* litezoo's own files: a run folder, a ``.pt`` run checkpoint, a ``.safetensors`` export (through
  ``litezoo.checkpoint``);
* plain state dicts: ``.pth`` / ``.pt`` / ``.bin`` (loaded with ``torch.load(weights_only=True)``, which never
  runs code), ``.safetensors`` without litezoo's metadata, or an in-memory ``dict``; wrapped in a ``state_dict``
  or ``model`` key or not, with DataParallel's ``module.`` prefix or not;

detects their layout (litezoo's own names, torchvision's, or megvii's official ShuffleNet V1/V2 releases) by
matching the model's expected keys, and maps them onto the model. Shapes that do not fit are named layer by
layer. The classifier is the exception: a head for another class count (1000 ImageNet classes into a 2-class
model) is left at its fresh initialisation and reported -- that is transfer learning's usual first step.

``to_torchvision(model)`` is the way back: the model's state dict under torchvision's names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from litezoo import checkpoint as ckpt_io
from litezoo.errors import InputError
from litezoo.registry import create_model, model_info
from litezoo.safeload import safe_torch_load
from litezoo.weights import megvii
from litezoo.weights import torchvision as tv

LAYOUTS = ("litezoo", "torchvision", "megvii")
_WRAPPERS = ("state_dict", "model", "model_state_dict", "module")


@dataclass
class LoadReport:
    """What ``load_weights`` did: the layout it found, and what it left alone."""

    layout: str
    source: str
    loaded: int  # tensors copied into the model
    head_reset: list[str] = field(default_factory=list)  # classifier tensors kept fresh (other class count)
    skipped: list[str] = field(default_factory=list)  # with strict=False: tensors that did not fit, and why
    source_num_classes: int | None = None
    notes: list[str] = field(default_factory=list)  # e.g. a BatchNorm eps changed to the source's
    # Build options the weights were trained with that the model lacked and load_weights applied in place
    # (``bn_eps``); record them with the model (``ModelMeta.options``) so a rebuilt model matches.
    options: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{self.loaded} tensors from {self.source} ({self.layout} layout)"]
        if self.head_reset:
            parts.append(f"classifier kept fresh ({self.source_num_classes} classes in the file)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} tensors skipped")
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Reading a file


def read_state_dict(source: str | os.PathLike | dict) -> tuple[dict[str, torch.Tensor], str, dict[str, Any] | None]:
    """(flat state dict, a name for messages, litezoo metadata or None) from a file, run folder or dict."""
    if isinstance(source, dict):
        return _unwrap(source, "the given state dict"), "the given state dict", None
    path = Path(source)
    if not path.exists():
        raise InputError(f"weights file {path} does not exist")
    if path.is_dir():
        tensors, meta = ckpt_io.load_weights(path)  # a litezoo run folder
        return dict(tensors), str(path), meta
    if path.suffix == ".safetensors":
        tensors, meta = ckpt_io.read_safetensors(path)  # meta: None unless litezoo wrote the file
        return dict(tensors), str(path), meta
    state = safe_torch_load(path, "weights file")
    if isinstance(state, dict) and state.get("format") == ckpt_io.FORMAT:
        tensors, meta = ckpt_io.load_weights(path)  # a litezoo run checkpoint: the evaluated weights
        return dict(tensors), str(path), meta
    return _unwrap(state, str(path)), str(path), None


def _unwrap(state: Any, where: str) -> dict[str, torch.Tensor]:
    """The flat {name: tensor} dict inside common wrappers, without DataParallel's ``module.`` prefix."""
    for _ in range(3):  # e.g. {"state_dict": {"module.x": ...}} or {"model": {...}}
        if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
            inner = next((state[k] for k in _WRAPPERS if isinstance(state.get(k), dict)), None)
            if inner is None:
                break
            state = inner
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{where} is not a state dict (a dict of named tensors, possibly under 'state_dict')")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


# ---------------------------------------------------------------------------------------------------------------
# Layouts


def classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys that ``reset_classifier`` replaces (e.g. ``head.fc.*``; SqueezeNet's ``head.conv.*``).

    Found on a copy built on the meta device (no memory, no RNG draws).
    """
    name = getattr(model, "model_name", None)
    if name is None:
        raise InputError("load_weights needs a model built by litezoo.create_model (it names the architecture)")
    with torch.device("meta"):
        probe = create_model(name, num_classes=max(model.num_classes, 1), in_chans=model.in_chans)
        before = dict(probe.named_parameters())
        probe.reset_classifier(max(model.num_classes, 1))
        return {n for n, p in probe.named_parameters() if before.get(n) is not p}


def to_litezoo_names(state: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict under the model's own names, and the layout it was found in."""
    own = model.state_dict()
    family = model_info(model.model_name).family
    head = classifier_keys(model)
    body = [k for k in own if k not in head and not k.endswith("num_batches_tracked")]
    keys = set(state)

    def covers(names) -> bool:  # every body tensor of the model is in the file
        return all(n in keys for n in names)

    tv_map = None
    if family in tv.FAMILIES:
        try:
            tv_map = tv.key_map(model, family)
        except InputError:
            tv_map = None
    own_body, tv_body = covers(body), tv_map is not None and covers(tv_map[k] for k in body)
    # MobileNet V2's body has the same names in both layouts: there the classifier's names decide (torchvision's
    # classifier.1 vs litezoo's head.fc); a file with neither is read as litezoo's.
    if tv_body and (not own_body or (head and not any(k in keys for k in head) and all(tv_map[k] in keys for k in head))):
        return {ours: state[theirs] for ours, theirs in tv_map.items() if theirs in state}, "torchvision"
    if own_body:
        return state, "litezoo"
    found = megvii.signature(keys)
    if found is not None:
        if family == found == "shufflenet_v1":  # needs a model built with shuffle_order="megvii" (or says so)
            return megvii.shufflenet_v1_to_litezoo(state, model), "megvii"
        if family != "shufflenet_v2" or found != "shufflenet_v2":
            raise InputError(f"the weights are megvii's {found} release; they do not fit {model.model_name}")
        return megvii.shufflenet_v2_to_litezoo(state, model), "megvii"
    theirs = tv.signature(keys)
    if theirs is not None and theirs != family:
        raise InputError(
            f"the weights are torchvision's {theirs} layout; they do not fit {model.model_name} (a {family} model)"
        )
    if theirs is not None:
        raise InputError(
            f"the weights are torchvision's {theirs} layout but their layers do not line up with "
            f"{model.model_name}'s: another version or depth of {family}?"
        )
    missing = [k for k in body if k not in keys]
    raise InputError(
        f"the weights' names match none of litezoo's, torchvision's or megvii's layouts for {model.model_name} "
        f"({len(missing)} of {len(body)} tensors not found, e.g. {', '.join(missing[:3])})"
    )


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | dict,
    *,
    strict: bool = True,
    keep_head: bool = True,
    match_bn_eps: bool = True,
) -> LoadReport:
    """Load weights of any supported file or layout into ``model`` (in place); see the module docstring.

    ``strict``: every tensor of the model but the classifier must be in the file with its shape; otherwise the
    ones that do not fit are skipped and listed in the report. ``keep_head=False`` leaves the classifier fresh
    even when it fits. ``match_bn_eps``: give the model the BatchNorm eps the weights were trained with
    (torchvision's EfficientNet: 1e-5) and list it in ``report.options``; False keeps the model's and only notes
    the difference (a caller that built the model with the right ``bn_eps`` already, as training does).
    Raises ``InputError`` naming the layers whose shapes differ.
    """
    state, where, _ = read_state_dict(source)
    mapped, layout = to_litezoo_names(state, model)
    own = model.state_dict()
    head = classifier_keys(model)
    report = LoadReport(layout=layout, source=where, loaded=0)
    weight_keys = sorted(k for k in head if k.endswith("weight"))
    if weight_keys and weight_keys[-1] in mapped:
        report.source_num_classes = int(mapped[weight_keys[-1]].shape[0])

    head_fits = all(k in mapped and mapped[k].shape == own[k].shape for k in head)
    to_load, wrong = {}, []
    for key, target in own.items():
        if key in head:
            if head_fits and keep_head:
                to_load[key] = mapped[key]
            else:
                report.head_reset.append(key)
            continue
        if key not in mapped:
            if key.endswith("num_batches_tracked"):
                continue  # old files lack the counter; it does not affect the output
            wrong.append(f"{key} missing")
        elif mapped[key].shape != target.shape:
            wrong.append(f"{key} {tuple(mapped[key].shape)} in the file vs {tuple(target.shape)} in the model")
        else:
            to_load[key] = mapped[key]
    if wrong:
        if strict:
            more = f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""
            raise InputError(
                f"the weights in {where} ({layout} layout) do not fit {model.model_name}: "
                f"{'; '.join(wrong[:4])}{more} -- another architecture or width?"
            )
        report.skipped = wrong
    with torch.no_grad():
        for key, value in to_load.items():
            own[key].copy_(value.to(dtype=own[key].dtype) if own[key].is_floating_point() else value)
    report.loaded = len(to_load)
    eps = tv.BN_EPS.get(model_info(model.model_name).family) if layout == "torchvision" else None
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if eps is not None and not match_bn_eps and any(m.eps != eps for m in bns):
        report.notes.append(f"BatchNorm eps kept at {sorted({m.eps for m in bns})}; torchvision's weights were "
                            f"trained with {eps:g}")  # fmt: skip
    elif eps is not None and any(m.eps != eps for m in bns):
        # The same model as create_model(name, bn_eps=eps) builds; report.options says so, for the run's files.
        for m in bns:
            m.eps = eps
        if hasattr(model, "bn_eps"):
            model.bn_eps = eps
        report.options["bn_eps"] = eps
        report.notes.append(f"BatchNorm eps set to {eps:g}, the value torchvision's weights were trained with "
                            f"(build option bn_eps={eps:g})")  # fmt: skip
    return report


def source_options(model_name: str, source: str | os.PathLike | dict) -> dict[str, Any]:
    """The build options ``model_name`` needs to run the weights in ``source`` as they were trained.

    A litezoo file: the options it records (``ModelMeta.options``). torchvision's EfficientNet layout:
    ``bn_eps`` 1e-5. megvii's ShuffleNet V1 release: ``shuffle_order="megvii"``. Otherwise none. Only the
    options ``model_name``'s builder takes are returned (a litezoo file of another family may record others).
    """
    state, _, meta = read_state_dict(source)
    info = model_info(model_name)
    if meta is not None:
        found = dict(meta.get("options") or {})
    else:
        keys = set(state)
        found = {}
        if info.family == "shufflenet_v1" and megvii.signature(keys) == "shufflenet_v1":
            found["shuffle_order"] = "megvii"
        if info.family in tv.BN_EPS and tv.signature(keys) == info.family:
            found["bn_eps"] = tv.BN_EPS[info.family]
    return {k: v for k, v in found.items() if k in info.options}


def to_torchvision(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under torchvision's names (plain, contiguous CPU tensors)."""
    info = model_info(model.model_name)
    if info.small_input:
        raise InputError(f"{model.model_name} is a CIFAR form (stride-1 stem); torchvision has no such network")
    mapping = tv.key_map(model, info.family)
    return {mapping[k]: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def export_weights(
    source: str | os.PathLike, out: str | os.PathLike | None = None, *, layout: str = "torchvision", weights: str = "auto"
) -> dict[str, Any]:
    """Write a run's weights (run folder, .pt checkpoint or litezoo .safetensors) in torchvision's layout.

    ``out`` ending in ``.safetensors`` gives a safetensors file, otherwise ``torch.save`` of a plain dict of
    tensors (``.pth``), which ``torchvision.models.<name>(num_classes=...).load_state_dict(torch.load(out))``
    takes. Default: ``<source folder>/<model>-torchvision.pth``. Returns what was written.
    """
    import io

    from litezoo.fsutil import atomic_write_bytes

    if layout != "torchvision":
        raise InputError(f"export layout must be 'torchvision', got {layout!r}")
    tensors, meta = ckpt_io.load_weights(source, weights)
    model = create_model(meta["model_name"], num_classes=meta["num_classes"], in_chans=meta["in_chans"],
                         **(meta.get("options") or {}))  # fmt: skip
    model.load_state_dict(tensors)
    state = to_torchvision(model)
    src = Path(source)
    out = Path(out) if out is not None else (src if src.is_dir() else src.parent) / f"{meta['model_name']}-torchvision.pth"
    if out.suffix == ".safetensors":
        from safetensors.torch import save

        data = save(state, metadata={"format": "pt"})
    elif out.suffix in (".pth", ".pt"):
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
    else:
        raise InputError(f"--out must end in .pth, .pt or .safetensors, got {out}")
    atomic_write_bytes(data, out)
    notes = []
    eps = tv.BN_EPS.get(model_info(model.model_name).family)
    bn_eps = {m.eps for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    if eps is not None and bn_eps != {eps}:
        notes.append(f"torchvision builds this family with BatchNorm eps {eps:g}; this model used {sorted(bn_eps)}")
    return {"out": str(out), "layout": layout, "model": meta["model_name"], "num_classes": meta["num_classes"],
            "tensors": len(state), "classes": meta.get("classes"), "notes": notes}  # fmt: skip


__all__ = ["LAYOUTS", "LoadReport", "classifier_keys", "export_weights", "load_weights", "read_state_dict",
           "source_options", "to_litezoo_names", "to_torchvision"]  # fmt: skip
