"""One registry for the model zoo.

A family file registers each variant's builder with ``@register_model``::

    @register_model(family="shufflenet_v2", default_size=224)
    def shufflenet_v2_x1_0(*, num_classes=1000, in_chans=3, small_input=False):
        return _shufflenet_v2([4, 8, 4], [24, 116, 232, 464, 1024], ...)

Every builder takes ``small_input``: the CIFAR (32 px) form of the network (a stride-1 stem without the
early max-pool, so 32 px images are not shrunk to 1x1). The registry exposes that form under its own name,
``<name>_cifar``, so it is selectable from the CLI like any other model.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

CIFAR_SUFFIX = "_cifar"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    default_size: int  # the input resolution the variant was designed for (px, square)
    builder: Callable[..., nn.Module]
    small_input: bool  # True for the registered CIFAR form


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(*, family: str, default_size: int = 224, cifar_size: int = 32):
    """Register a builder under its function name, and its CIFAR form under ``<name>_cifar``."""

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        params = inspect.signature(fn).parameters
        for required in ("num_classes", "in_chans", "small_input"):
            if required not in params:
                raise TypeError(f"model builder {fn.__name__} must take a '{required}' argument")
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelInfo(name, family, default_size, fn, small_input=False)
        _REGISTRY[name + CIFAR_SUFFIX] = ModelInfo(name + CIFAR_SUFFIX, family, cifar_size, fn, small_input=True)
        return fn

    return decorate


def _ensure_loaded() -> None:
    # Importing the models package runs every family file's @register_model decorators.
    import litezoo.models  # noqa: F401


def list_models(pattern: str = "*", *, include_cifar: bool = True) -> list[str]:
    """Sorted names matching a shell-style ``pattern`` (e.g. ``"shufflenet_v1_g3*"``)."""
    _ensure_loaded()
    names = [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)]
    if not include_cifar:
        names = [n for n in names if not _REGISTRY[n].small_input]
    return sorted(names)


def model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `litezoo models` for the list"
        raise ValueError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, **options) -> nn.Module:
    """Build a registered model. ``options`` are the builder's own keyword arguments (e.g. ``drop_rate``)."""
    info = model_info(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive integer, got {in_chans!r}")
    allowed = set(inspect.signature(info.builder).parameters) - {"num_classes", "in_chans", "small_input"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; it takes: {', '.join(sorted(allowed)) or 'none'}"
        )
    model = info.builder(num_classes=num_classes, in_chans=in_chans, small_input=info.small_input, **options)
    # Recorded on the instance so checkpoints, profiler and exporter can name what they hold.
    model.model_name = name
    model.default_size = info.default_size
    return model
