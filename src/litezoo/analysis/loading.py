"""Turn a MODEL argument into an ``nn.Module``: a registry name, or ``package.module:function`` for user models."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch.nn as nn

from litezoo.errors import InputError
from litezoo.registry import create_model, model_info


@dataclass
class LoadedModel:
    spec: str  # what the user wrote
    model: nn.Module
    default_size: int | None  # the resolution the model was designed for, if known


def load_model(spec: str, num_classes: int = 1000, in_chans: int | None = None) -> LoadedModel:
    """Build the model ``spec`` names.

    ``"shufflenet_v2_x1_0"``: a registered zoo model, built with ``num_classes`` and ``in_chans`` (default 3).
    ``"mypkg.nets:build"``: import ``mypkg.nets`` and call ``build()`` with no arguments; it must return an
    ``nn.Module``; ``num_classes``/``in_chans`` do not apply (the profiler reads ``model.in_chans`` if set).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"model must be a registry name or 'package.module:function', got {spec!r}")
    if ":" not in spec:
        info = model_info(spec)  # InputError for an unknown name, suggesting the closest
        model = create_model(spec, num_classes=num_classes, in_chans=3 if in_chans is None else in_chans)
        return LoadedModel(spec, model, info.default_size)

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"model {spec!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"model {spec!r}: cannot import {module_name!r} ({exc})") from exc
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise InputError(f"model {spec!r}: module {module_name!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise InputError(f"model {spec!r}: {attr!r} is not callable")
    model = factory()
    if not isinstance(model, nn.Module):
        raise InputError(f"model {spec!r}: {attr}() returned {type(model).__name__}, not an nn.Module")
    default_size = getattr(model, "default_size", None)
    return LoadedModel(spec, model, default_size if isinstance(default_size, int) else None)
