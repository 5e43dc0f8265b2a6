"""One registry for the model zoo.

A family file registers each variant as a one-line function that forwards its keyword arguments to the
family's class (or private builder), as torchvision does::

    @register_model(family="shufflenet_v2", builder=ShuffleNetV2)
    def shufflenet_v2_x1_0(**kwargs):
        return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], **kwargs)

The variant fixes the architecture (positional arguments); the ``builder``'s keyword-only parameters are the
options a user may set (``num_classes``, ``in_chans``, ``small_input`` and the family's own, e.g.
``drop_rate``). The registry reads them from ``builder``'s signature to reject unknown options with one line.

Every builder takes ``small_input``: the CIFAR (32 px) form of the network (a stride-1 stem without the
early max-pool, so 32 px images are not shrunk to 1x1). The registry exposes that form under its own name,
``<name>_cifar``, so it is selectable from the CLI like any other model.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from litezoo.errors import InputError

if TYPE_CHECKING:  # the registry itself never needs torch; the family files do
    import torch.nn as nn

CIFAR_SUFFIX = "_cifar"
_REQUIRED_OPTIONS = ("num_classes", "in_chans", "small_input")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    default_size: int  # the input resolution the variant was designed for (px, square)
    builder: Callable[..., nn.Module]  # the registered variant function
    small_input: bool  # True for the registered CIFAR form
    options: tuple[str, ...]  # keyword options a caller may pass besides num_classes / in_chans


_REGISTRY: dict[str, ModelInfo] = {}


def _keyword_options(fn: Callable) -> tuple[str, ...]:
    """``fn``'s keyword-only parameters: the options (positional parameters are the architecture)."""
    return tuple(p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY)


def register_model(
    *, family: str, builder: Callable[..., nn.Module] | None = None, default_size: int = 224, cifar_size: int = 32
):
    """Register a variant under its function name, and its CIFAR form under ``<name>_cifar``.

    ``builder``: the class or private builder the variant passes ``**kwargs`` to; its keyword parameters are the
    variant's options. Leave it out when the variant spells its options itself.
    """

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        accepted = _keyword_options(builder if builder is not None else fn)
        for required in _REQUIRED_OPTIONS:
            if required not in accepted:
                raise TypeError(f"model builder {(builder or fn).__name__} must take a '{required}' argument")
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        options = tuple(o for o in accepted if o not in _REQUIRED_OPTIONS)
        _REGISTRY[name] = ModelInfo(name, family, default_size, fn, False, options)
        _REGISTRY[name + CIFAR_SUFFIX] = ModelInfo(name + CIFAR_SUFFIX, family, cifar_size, fn, True, options)
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
        raise InputError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, **options) -> nn.Module:
    """Build a registered model. ``options`` are the builder's own keyword arguments (e.g. ``drop_rate``)."""
    info = model_info(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise InputError(f"in_chans must be a positive integer, got {in_chans!r}")
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise InputError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; it takes: {', '.join(info.options) or 'none'}"
        )
    model = info.builder(num_classes=num_classes, in_chans=in_chans, small_input=info.small_input, **options)
    # Recorded on the instance so checkpoints, profiler and exporter can name what they hold.
    model.model_name = name
    model.default_size = info.default_size
    return model
