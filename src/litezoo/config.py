"""Typed run configuration: dataclass defaults <- YAML recipe <- command-line flags.

The resolved config is saved as ``config.yaml`` in the run folder and inside every checkpoint.

A recipe (a YAML file; the shipped ones are package data in ``litezoo/configs/``) has one top-level key per section below (``model``, ``data``, ``optim``,
``schedule``, ``train``, ``checkpoint``); each section lists only the fields it changes. Overrides name a field
either dotted (``optim.lr``) or by its leaf name when that is unique (``lr``, ``batch_size``); dashes count as
underscores (``--label-smoothing``). Four aliases name a section's main field: ``model`` -> ``model.name``,
``data`` -> ``data.path``, ``optimizer`` -> ``optim.name``, ``schedule`` -> ``schedule.name``.

Strings are parsed to the field's type: ``int``, ``float`` (``4e-5``), ``bool`` (yes/no/true/false/on/off/1/0),
``none``/``null`` for optional fields, tuples as ``0.3,0.6,0.8``. Unknown keys are errors that suggest the
closest valid key; ``validate`` then checks ranges and choices. All of these raise :class:`InputError`.

A model that does not train with the generic optimiser defaults (SqueezeNet: no BatchNorm) has its own lr and
warm-up in :data:`MODEL_LR_DEFAULTS`; :func:`resolve` uses them, with a warning, only when neither the recipe nor
an override sets ``optim.lr`` (the warm-up only when none is set either).

Fields added beyond the original schema: ``model.init_from`` and ``model.freeze_features`` (the transfer set-up
of the dogs-vs-cats recipe), ``schedule.base_momentum`` and ``schedule.max_momentum`` (the one-cycle momentum
range, torch's defaults), ``model.bn_eps`` and ``model.shuffle_order`` (build options recorded in the run's
files, so that evaluation and export rebuild the model that trained).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
import os
import re
import reprlib
import warnings
import types
import typing
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Mapping

import yaml

from litezoo.errors import InputError
from litezoo.fsutil import atomic_write_bytes


@dataclass
class ModelConfig:
    name: str = "shufflenet_v2_x1_0_cifar"  # a registry name (see `litezoo models`)
    num_classes: int | None = None  # None: taken from the dataset's class count
    in_chans: int = 3
    drop_rate: float | None = None  # None: the builder's default
    # Build options of some families (None: the builder's default, or what model.init_from's weights need):
    # EfficientNet's BatchNorm eps (1e-3; torchvision's weights were trained with 1e-5) and ShuffleNet V1's
    # channel-shuffle order (paper | megvii, for megvii's released weights). The run files record them.
    bn_eps: float | None = None
    shuffle_order: str | None = None
    # Transfer learning: start from these weights (a litezoo checkpoint or .safetensors file); the classifier
    # is re-initialised when its shape differs (e.g. 1000 ImageNet classes -> 2). None: random initialisation.
    init_from: str | None = None
    freeze_features: bool = False  # train only the classifier head (needs init_from); same as freeze: backbone
    freeze: str = "none"  # none | backbone | until:<module> (litezoo.weights.finetune; needs init_from)


@dataclass
class DataConfig:
    path: str = "cifar10"  # a folder/archive path, or a known dataset name ('cifar10')
    image_size: int | None = None  # None: the model's default resolution (32 for *_cifar)
    cache_dir: str | None = None  # None: $LITEZOO_CACHE or ~/.cache/litezoo
    batch_size: int = 128
    eval_batch_size: int = 500
    crop_padding: int = 4  # random crop with this zero padding (32 px datasets)
    random_resized_crop: bool | None = None  # None: on for image folders above 64 px, off for 32 px data
    # Horizontal flip: true (each image mirrored with probability 1/2, every epoch afresh), false, or alternate
    # (airbench's derandomised flip: a fixed random half mirrored in even epochs, the other half in odd ones).
    flip: bool | str = True
    cutout: int = 0  # side of the square cut out (0: off)
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    limit_train: int | None = None  # use only the first N training images (quick runs and tests)
    limit_eval: int | None = None
    # Normalisation: None = the training split's own mean/std; a pretrained network wants its source's
    # (ImageNet's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) for torchvision's weights).
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    class_names: str | None = None  # display names for class folders (None: <root>/classes.txt, ImageNet ids)
    # Progressive resizing (fast.ai's DAWNBench recipe): the first epochs train on augmented batches scaled down
    # to this side, growing linearly to image_size over progressive_epochs (a fraction of train.epochs); a
    # step costs ~(side / image_size)^2 of the full one. None: off. Evaluation is always at image_size.
    progressive_start_size: int | None = None
    progressive_epochs: float = 0.5


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.1  # peak learning rate (for batch_size above; not rescaled automatically)
    momentum: float = 0.9  # SGD momentum (the one-cycle schedule with cycle_momentum replaces it)
    nesterov: bool = False
    weight_decay: float = 5e-4
    no_decay_bn_bias: bool = True  # no weight decay on BN parameters and biases
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = None  # max global grad norm; None: off
    backbone_lr_scale: float = 1.0  # lr of every parameter outside the classifier = lr * this (fine-tuning)


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | onecycle | steps | poly | linear | constant
    warmup_epochs: float = 0.0  # linear warm-up from warmup_start_factor * lr (not for onecycle: see pct_start)
    warmup_start_factor: float = 0.1
    min_lr: float = 0.0  # floor for cosine / poly / linear
    # one-cycle (torch's OneCycleLR conventions): lr/div_factor -> lr over pct_start of training, then
    # -> lr/div_factor/final_div_factor; momentum (SGD) or beta1 (AdamW) moves the opposite way between
    # max_momentum and base_momentum when cycle_momentum is on.
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    # steps: multiply by gamma at these fractions of training
    milestones: tuple[float, ...] = (0.3, 0.6, 0.8)
    gamma: float = 0.1
    # poly: lr * (1 - t) ** power
    power: float = 2.0


@dataclass
class TrainConfig:
    epochs: int = 30
    seed: int = 0
    label_smoothing: float = 0.0
    amp: str = "auto"  # auto | bf16 | fp16 | off
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    channels_last: bool | str = "auto"  # auto: on where measured faster (CUDA); True/False to force
    ema_decay: float | None = None  # e.g. 0.999; None: no EMA
    ema_eval: bool = True  # evaluate (and pick best by) the EMA weights when EMA is on
    tta_flip: bool = False  # average logits with the horizontally flipped image at evaluation
    tta_translate: int = 0  # also average views shifted by +-N px (reflect padding; airbench: 1); 0: off
    lookahead_every: int = 0  # pull the weights back to a slow average every N steps (airbench: 5); 0: off
    lookahead_decay: float = 0.95  # per-step decay of that average (ema.Lookahead: decay**N * progress**3)
    distill_from: str | None = None  # a trained run (folder or weights file) to distil from (litezoo.distill)
    distill_alpha: float = 0.5  # target = (1 - alpha) * label + alpha * teacher probabilities
    distill_temperature: float = 1.0  # softens the teacher's probabilities (> 0)
    distill_cache: bool = False  # the teacher judges each image once per flip and size before training (not live)
    distill_cache_grid: int = 1  # crop positions per axis in that table (1: the uncropped image; 3: every view
    # within 1 px of an entry for a 4 px padding; 2 * crop_padding + 1: all of them, the live teacher's answers)
    distill_table: str | None = None  # where the table is kept (a .safetensors file shared by runs of the same
    # teacher, data, sizes and grid; its build time counts only in the run that built it); null: the run folder
    eval_every: int = 1  # epochs between evaluations
    on_nan: str = "stop"  # stop | skip
    compile: bool = False  # torch.compile the model
    cache_features: bool = False  # frozen backbone: compute features once, train the head on them (no augmentation)
    threads: int | None = None  # torch.set_num_threads; None: leave torch's default
    keep_heap: bool = True  # CPU + glibc: keep freed memory for reuse, no page faults per step (litezoo.heap)
    log_every: int = 50  # steps between progress updates
    tensorboard: bool = False  # also write TensorBoard event files to <run>/tensorboard (litezoo.tblog; optional extra)
    checkpoint_every_minutes: float | None = None  # also save last.pt when this much time passed (None: off)


@dataclass
class CheckpointConfig:
    keep: int = 5  # keep the last K epoch checkpoints (the source tutorial's keep_checkpoint_max=5)
    every_steps: int | None = None  # also save every N steps (None: only at epoch ends)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


# ---------------------------------------------------------------------------------------------------------------
# Choices and the field table

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle", "steps", "poly", "linear", "constant")
AMP_MODES = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N
NAN_POLICIES = ("stop", "skip")
SHUFFLE_ORDERS = ("paper", "megvii")  # litezoo.models.shufflenet_v1 (not imported here: it imports torch)

ALIASES = {"model": "model.name", "data": "data.path", "optimizer": "optim.name", "schedule": "schedule.name"}

# The shipped recipes: package data (litezoo/configs/*.yaml), found through importlib.resources so that a wheel
# install finds them as well as an editable checkout (where <repo>/configs is a symlink to the same folder).
RECIPE_DIR = importlib.resources.files("litezoo") / "configs"


def _field_table() -> dict[str, Any]:
    """``{"optim.lr": float, ...}`` with the annotations resolved to real types (they are strings here)."""
    table: dict[str, Any] = {}
    for section in dataclasses.fields(RunConfig):
        cls = section.default_factory()  # type: ignore[misc]
        hints = typing.get_type_hints(type(cls))
        for f in dataclasses.fields(cls):
            table[f"{section.name}.{f.name}"] = hints[f.name]
    return table


def _leaf_table(fields: dict[str, Any]) -> dict[str, list[str]]:
    """``{"lr": ["optim.lr"], "name": ["model.name", "optim.name", "schedule.name"], ...}``."""
    leaves: dict[str, list[str]] = {}
    for key in fields:
        leaves.setdefault(key.split(".", 1)[1], []).append(key)
    return leaves


FIELDS: dict[str, Any] = _field_table()
SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunConfig))
_LEAVES: dict[str, list[str]] = _leaf_table(FIELDS)


# ---------------------------------------------------------------------------------------------------------------
# Keys


def _normalise_key(key: str) -> str:
    return key.strip().lstrip("-").replace("-", "_")


def _unknown_key(key: str, where: str = "") -> InputError:
    """An error for an unknown key that suggests the closest valid one(s)."""
    norm = _normalise_key(key)
    close: list[str] = []
    if "." in norm:  # right leaf, wrong section: 'train.lr' -> optim.lr
        close += _LEAVES.get(norm.split(".", 1)[1], [])
    if not close:
        candidates = list(FIELDS) + [leaf for leaf, keys in _LEAVES.items() if len(keys) == 1] + list(ALIASES)
        close = difflib.get_close_matches(norm, candidates, n=1, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; sections are {', '.join(SECTIONS)}"
    return InputError(f"unknown config key {key!r}{where}{hint}")


def resolve_key(key: str) -> str:
    """The dotted field a key names: ``"lr"`` -> ``"optim.lr"``, ``"label-smoothing"`` -> ``"train.label_smoothing"``.

    Raises InputError for an unknown key (suggesting the closest one), an ambiguous leaf or a bare section name.
    """
    norm = _normalise_key(key)
    if norm in FIELDS:
        return norm
    if norm in ALIASES:
        return ALIASES[norm]
    if "." not in norm and norm in _LEAVES:
        keys = _LEAVES[norm]
        if len(keys) == 1:
            return keys[0]
        raise InputError(f"config key {key!r} is ambiguous: use one of {', '.join(keys)}")
    if norm in SECTIONS:
        raise InputError(f"config key {key!r} is a section: name a field, e.g. {norm}.{_first_field(norm)}")
    raise _unknown_key(key)


def _first_field(section: str) -> str:
    return next(k for k in FIELDS if k.startswith(section + ".")).split(".", 1)[1]


# ---------------------------------------------------------------------------------------------------------------
# Values: parse strings (and YAML scalars) to the field's type

# Values quoted in error messages are cut to a readable size: a YAML document's shared aliases can describe a
# structure of millions of items in a few lines, which a plain repr() would spell out in full.
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 120
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxdict = _SHOW.maxset = 8
_SHOW.maxlevel = 3


def _show(value: Any) -> str:
    """``repr(value)``, bounded in length and depth, on one line."""
    return _SHOW.repr(value)

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}
_NONE = {"none", "null", "~", ""}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        return "a comma-separated list of numbers" if args[-1] is Ellipsis else f"{len(args)} comma-separated numbers"
    names = {type(None): "none", bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` (a YAML scalar/list or a command-line string) as type ``tp``; InputError naming ``key`` if not."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
            return None
        for arg in args:  # declared order: 'bool | str' tries bool first, so 'true' is True and 'auto' stays a str
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except InputError:
                pass
        raise InputError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")
    if value is None:
        raise InputError(f"{key} cannot be null (expected {_type_name(tp)})")
    if origin is tuple:
        return _coerce_tuple(value, tp, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    elif tp is int:
        if isinstance(value, str):
            value = _parse_number(value, key, tp)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str):
            value = _parse_number(value, key, tp)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise InputError(f"{key} must be a finite number, got {_show(value)}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML 1.1 reads a bare off/no/false as a boolean
            if key == "train.amp" and value is False:
                return "off"
            raise InputError(
                f"{key}: expected a string, got {_show(value)} (YAML reads bare yes/no/on/off as booleans: quote it)"
            )
    else:  # pragma: no cover - the schema uses only the types above
        raise TypeError(f"{key}: unsupported field type {tp!r}")
    raise InputError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")


def _parse_number(text: str, key: str, tp: type) -> int | float:
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)  # also '4e-5' and '1e4', which PyYAML leaves as strings
    except ValueError:
        raise InputError(f"{key}: expected {_type_name(tp)}, got {_show(text)}") from None


def _coerce_tuple(value: Any, tp: Any, key: str) -> tuple:
    args = typing.get_args(tp)
    if isinstance(value, str):
        s = value.strip().strip("[]()").strip()
        items: list[Any] = [part.strip() for part in s.split(",")] if s else []
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InputError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")
    if args[-1] is Ellipsis:
        elem_types = [args[0]] * len(items)
    else:
        if len(items) != len(args):
            raise InputError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")
        elem_types = list(args)
    return tuple(coerce(item, et, key) for item, et in zip(items, elem_types))


# ---------------------------------------------------------------------------------------------------------------
# Building a RunConfig from mappings


def _set(cfg: RunConfig, dotted: str, value: Any) -> None:
    section, name = dotted.split(".", 1)
    setattr(getattr(cfg, section), name, coerce(value, FIELDS[dotted], dotted))


def _apply_sections(cfg: RunConfig, data: Any, source: str) -> None:
    """Apply ``{section: {field: value}}`` (a recipe, a saved config) strictly: unknown keys are errors."""
    where = f" in {source}" if source else ""
    if data is None:
        return
    if not isinstance(data, Mapping):
        raise InputError(f"expected a mapping of sections{where}, got {type(data).__name__}")
    for section, body in data.items():
        sec = _normalise_key(str(section))
        if sec not in SECTIONS:
            close = difflib.get_close_matches(sec, SECTIONS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; sections are {', '.join(SECTIONS)}"
            raise InputError(f"unknown config section {section!r}{where}{hint}")
        if body is None:  # an empty 'train:' block
            continue
        if not isinstance(body, Mapping):
            raise InputError(f"config section {sec!r}{where} must be a mapping of fields, got {_show(body)}")
        for name, value in body.items():
            dotted = f"{sec}.{_normalise_key(str(name))}"
            if dotted not in FIELDS:
                raise _unknown_key(f"{sec}.{name}", where)
            _set(cfg, dotted, value)


def apply_overrides(cfg: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Set fields from ``{"optim.lr": "0.05", "epochs": 3, "model": "x"}`` (in order: the last one wins).

    A section name with a mapping value sets several fields: ``{"optim": {"lr": 0.05}}``.
    """
    for key, value in overrides.items():
        norm = _normalise_key(str(key))
        if norm in SECTIONS and isinstance(value, Mapping):
            _apply_sections(cfg, {norm: value}, "overrides")
            continue
        _set(cfg, resolve_key(str(key)), value)
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# Validation


# Spellings people use for a choice (hints only: the config keeps one spelling per choice).
_CHOICE_SYNONYMS = {
    "fp32": "off", "float32": "off", "none": "off", "false": "off", "no": "off",
    "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "amp": "auto",
    "adam": "adamw", "momentum": "sgd", "cos": "cosine", "one_cycle": "onecycle", "1cycle": "onecycle",
    "step": "steps", "multistep": "steps", "gpu": "cuda",
}


def validate(cfg: RunConfig) -> RunConfig:
    """Check types, ranges, choices and cross-field rules; raise one InputError listing every problem.

    Values are normalised in place on the way (``"3"`` -> 3 for an int field, lists -> tuples); returns ``cfg``.
    Model names are not looked up here (that imports every model family): the trainer checks them with
    ``litezoo.model_info``.
    """
    problems: list[str] = []
    for dotted, tp in FIELDS.items():  # types first (a RunConfig may have been built in code)
        section, name = dotted.split(".", 1)
        try:
            setattr(getattr(cfg, section), name, coerce(getattr(getattr(cfg, section), name), tp, dotted))
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        raise InputError("invalid config: " + "; ".join(problems))

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    def choice(key: str, value: str, options: tuple[str, ...]) -> None:
        if value not in options:
            close = [_CHOICE_SYNONYMS[value.lower()]] if value.lower() in _CHOICE_SYNONYMS else []
            close = close or difflib.get_close_matches(value, options, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close and close[0] in options else ""
            problems.append(f"{key} must be one of {', '.join(options)}, got {_show(value)}{hint}")

    m, d, o, s, t, c = cfg.model, cfg.data, cfg.optim, cfg.schedule, cfg.train, cfg.checkpoint
    # The length of training first: other checks (warm-up, milestones) are stated relative to it.
    need(t.epochs >= 1, f"train.epochs must be ≥ 1, got {t.epochs}")
    need(bool(m.name.strip()), "model.name must not be empty")
    need(m.num_classes is None or m.num_classes >= 1, f"model.num_classes must be >= 1, got {m.num_classes}")
    need(m.in_chans >= 1, f"model.in_chans must be >= 1, got {m.in_chans}")
    need(m.drop_rate is None or 0.0 <= m.drop_rate < 1.0, f"model.drop_rate must be in [0, 1), got {m.drop_rate}")
    need(m.bn_eps is None or m.bn_eps > 0, f"model.bn_eps must be > 0, got {m.bn_eps}")
    if m.shuffle_order is not None:
        choice("model.shuffle_order", m.shuffle_order, SHUFFLE_ORDERS)
    need(m.init_from is None or bool(m.init_from.strip()), "model.init_from must be a path or null")
    need(
        not m.freeze_features or m.init_from is not None,
        "model.freeze_features trains only the classifier on top of frozen features, so it needs "
        "model.init_from (a weights file to start from)",
    )
    need(
        m.freeze in ("none", "backbone") or (m.freeze.startswith("until:") and len(m.freeze) > 6),
        f"model.freeze must be none, backbone or until:<module>, got {m.freeze!r}",
    )
    need(m.freeze == "none" or m.init_from is not None, "model.freeze needs model.init_from (pretrained weights)")
    need(o.backbone_lr_scale >= 0, f"optim.backbone_lr_scale must be >= 0, got {o.backbone_lr_scale}")
    need(all(v > 0 for v in (d.std or ())), f"data.std must be positive, got {d.std}")

    need(bool(d.path.strip()), "data.path must not be empty")
    need(d.image_size is None or d.image_size >= 1, f"data.image_size must be >= 1, got {d.image_size}")
    need(d.batch_size > 0, f"data.batch_size must be > 0, got {d.batch_size}")
    need(d.eval_batch_size > 0, f"data.eval_batch_size must be > 0, got {d.eval_batch_size}")
    need(d.crop_padding >= 0, f"data.crop_padding must be >= 0, got {d.crop_padding}")
    need(isinstance(d.flip, bool) or d.flip == "alternate",
         f"data.flip must be true, false or alternate, got {d.flip!r}")  # fmt: skip
    need(d.cutout >= 0, f"data.cutout must be >= 0, got {d.cutout}")
    need(d.mixup_alpha >= 0, f"data.mixup_alpha must be >= 0, got {d.mixup_alpha}")
    need(d.cutmix_alpha >= 0, f"data.cutmix_alpha must be >= 0, got {d.cutmix_alpha}")
    need(d.limit_train is None or d.limit_train > 0, f"data.limit_train must be > 0, got {d.limit_train}")
    need(d.limit_eval is None or d.limit_eval > 0, f"data.limit_eval must be > 0, got {d.limit_eval}")
    need(
        d.limit_train is None or d.limit_train <= 0 or d.limit_train >= d.batch_size,
        f"data.limit_train ({d.limit_train}) is smaller than data.batch_size ({d.batch_size}), so every training "
        f"batch would be dropped: lower data.batch_size to {d.limit_train} or less",
    )
    need(d.progressive_start_size is None or d.progressive_start_size >= 8,
         f"data.progressive_start_size must be >= 8 px (or null: off), got {d.progressive_start_size}")  # fmt: skip
    need(0.0 < d.progressive_epochs <= 1.0, f"data.progressive_epochs must be in (0, 1], got {d.progressive_epochs}")

    choice("optim.name", o.name, OPTIMIZERS)
    need(o.lr > 0, f"optim.lr must be > 0, got {o.lr}")
    need(0.0 <= o.momentum < 1.0, f"optim.momentum must be in [0, 1), got {o.momentum}")
    if o.nesterov:
        need(o.name == "sgd", f"optim.nesterov applies to sgd only (optim.name is {o.name!r})")
        need(o.momentum > 0, "optim.nesterov needs optim.momentum > 0")
    need(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    need(all(0.0 <= b < 1.0 for b in o.betas), f"optim.betas must each be in [0, 1), got {o.betas}")
    need(o.eps > 0, f"optim.eps must be > 0, got {o.eps}")
    need(o.grad_clip is None or o.grad_clip > 0, f"optim.grad_clip must be > 0 or null, got {o.grad_clip}")

    choice("schedule.name", s.name, SCHEDULES)
    need(s.warmup_epochs >= 0, f"schedule.warmup_epochs must be >= 0, got {s.warmup_epochs}")
    need(
        s.warmup_epochs < t.epochs or t.epochs < 1,  # (a bad train.epochs is reported once, above)
        f"schedule.warmup_epochs ({s.warmup_epochs}) must be less than train.epochs ({t.epochs}): shorten the "
        f"warm-up with it, e.g. --warmup-epochs {round(0.23 * t.epochs, 2) or 0}",
    )
    need(
        0.0 <= s.warmup_start_factor <= 1.0,
        f"schedule.warmup_start_factor must be in [0, 1], got {s.warmup_start_factor}",
    )
    need(s.min_lr >= 0, f"schedule.min_lr must be >= 0, got {s.min_lr}")
    if s.name in ("cosine", "poly", "linear"):
        need(s.min_lr <= o.lr, f"schedule.min_lr ({s.min_lr}) must not exceed optim.lr ({o.lr})")
    if s.name == "onecycle":
        need(
            s.warmup_epochs == 0,
            "schedule.warmup_epochs must be 0 with the onecycle schedule: its warm-up is the first "
            f"schedule.pct_start ({s.pct_start}) of training",
        )
    need(0.0 < s.pct_start < 1.0, f"schedule.pct_start must be in (0, 1), got {s.pct_start}")
    need(s.div_factor >= 1, f"schedule.div_factor must be >= 1, got {s.div_factor}")
    need(s.final_div_factor >= 1, f"schedule.final_div_factor must be >= 1, got {s.final_div_factor}")
    need(
        0.0 <= s.base_momentum <= s.max_momentum < 1.0,
        f"schedule momenta must satisfy 0 <= base_momentum <= max_momentum < 1, got {s.base_momentum}, "
        f"{s.max_momentum}",
    )
    need(
        all(0.0 < x < 1.0 for x in s.milestones) and all(a < b for a, b in zip(s.milestones, s.milestones[1:])),
        f"schedule.milestones must be increasing fractions of training in (0, 1), got {list(s.milestones)}",
    )
    if s.name == "steps" and t.epochs > 0:
        need(
            all(x * t.epochs > s.warmup_epochs for x in s.milestones),
            f"schedule.milestones {list(s.milestones)} must fall after the warm-up "
            f"({s.warmup_epochs} of {t.epochs} epochs)",
        )
    need(s.gamma > 0, f"schedule.gamma must be > 0, got {s.gamma}")
    need(s.power > 0, f"schedule.power must be > 0, got {s.power}")

    need(t.seed >= 0, f"train.seed must be >= 0, got {t.seed}")
    need(0.0 <= t.label_smoothing < 1.0, f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    choice("train.amp", t.amp, AMP_MODES)
    if not re.fullmatch(r"cuda:\d+", t.device):
        choice("train.device", t.device, DEVICES)
    need(
        isinstance(t.channels_last, bool) or t.channels_last == "auto",
        f"train.channels_last must be auto, true or false, got {t.channels_last!r}",
    )
    need(
        t.ema_decay is None or 0.0 < t.ema_decay < 1.0, f"train.ema_decay must be in (0, 1) or null, got {t.ema_decay}"
    )
    need(t.tta_translate >= 0, f"train.tta_translate must be >= 0 pixels, got {t.tta_translate}")
    need(t.lookahead_every >= 0, f"train.lookahead_every must be >= 0 steps (0: off), got {t.lookahead_every}")
    need(0.0 < t.lookahead_decay <= 1.0, f"train.lookahead_decay must be in (0, 1], got {t.lookahead_decay}")
    need(0.0 <= t.distill_alpha <= 1.0, f"train.distill_alpha must be in [0, 1], got {t.distill_alpha}")
    need(t.distill_temperature > 0, f"train.distill_temperature must be > 0, got {t.distill_temperature}")
    need(
        not (t.distill_from and t.distill_cache and (d.random_resized_crop or d.mixup_alpha or d.cutmix_alpha)),
        "train.distill_cache keeps teacher answers per image, flip and crop position: it cannot follow "
        "random-resized-crop, mixup or cutmix views (set train.distill_cache false, or turn those off)",
    )
    need(t.distill_cache_grid >= 1,
         f"train.distill_cache_grid must be >= 1 crop positions per axis, got {t.distill_cache_grid}")  # fmt: skip
    need(t.eval_every >= 1, f"train.eval_every must be >= 1, got {t.eval_every}")
    choice("train.on_nan", t.on_nan, NAN_POLICIES)
    need(t.threads is None or t.threads >= 1, f"train.threads must be >= 1 or null, got {t.threads}")
    need(t.log_every >= 1, f"train.log_every must be >= 1, got {t.log_every}")
    need(
        t.checkpoint_every_minutes is None or t.checkpoint_every_minutes > 0,
        f"train.checkpoint_every_minutes must be > 0 or null, got {t.checkpoint_every_minutes}",
    )

    need(c.keep >= 1, f"checkpoint.keep must be >= 1, got {c.keep}")
    need(
        c.every_steps is None or c.every_steps >= 1,
        f"checkpoint.every_steps must be >= 1 or null, got {c.every_steps}",
    )

    if problems:
        raise InputError("invalid config: " + "; ".join(problems))
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# Public entry points


def recipe_path(recipe: str | os.PathLike) -> Path | Traversable:
    """A recipe file: an existing path, or the name of a shipped recipe (``"mobilenet_v1_cifar10"``).

    ``configs/NAME.yaml`` (the form the README and the recipes' usage lines show) also finds the shipped recipe
    when run outside the checkout, where no ``configs/`` folder exists.
    """
    path = Path(recipe)
    if path.is_file():
        return path
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    shipped = RECIPE_DIR / f"{name}.yaml"
    if path.parent in (Path("."), Path("configs")) and shipped.is_file():
        return shipped
    names = list_recipes()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else (f"; shipped recipes: {', '.join(names)}" if names else "")
    raise InputError(f"recipe not found: {os.fspath(recipe)!r}{hint}")


def list_recipes() -> list[str]:
    """Names of the shipped recipes (the package's ``configs/*.yaml``)."""
    if not RECIPE_DIR.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in RECIPE_DIR.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: str | os.PathLike | Traversable) -> Any:
    where = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    try:
        text = (path if hasattr(path, "read_text") else Path(path)).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"config file not found: {where}") from None
    except IsADirectoryError:
        raise InputError(f"config path is a folder, not a YAML file: {where}") from None
    except UnicodeDecodeError:
        raise InputError(f"config file is not UTF-8 text: {where}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{where} is not valid YAML: {' '.join(str(exc).split())}") from None
    except ValueError as exc:  # a value PyYAML's constructors reject, e.g. the date 2001-13-01
        raise InputError(f"{where} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise InputError(f"{where} is not valid YAML: nested too deeply") from None


def resolve(
    recipe: str | os.PathLike | None = None, overrides: Mapping[str, str | object] | None = None
) -> RunConfig:
    """Defaults <- YAML recipe <- overrides, then :func:`validate`. Any problem -> InputError.

    When neither the recipe nor an override sets ``optim.lr``, a model listed in :data:`MODEL_LR_DEFAULTS` gets
    its own lr (and warm-up, unless one is set) instead of the generic default, with a warning saying so.
    """
    cfg = RunConfig()
    cfg.optim.lr = _UNSET  # tells whether the recipe or an override sets the lr
    cfg.schedule.warmup_epochs = _UNSET  # ... and the warm-up
    if recipe is not None:
        path = recipe_path(recipe)
        _apply_sections(cfg, _read_yaml(path), str(path))
    warmup_set = cfg.schedule.warmup_epochs is not _UNSET
    if not warmup_set:
        cfg.schedule.warmup_epochs = ScheduleConfig.warmup_epochs
    if overrides:
        recipe_epochs, recipe_warmup = cfg.train.epochs, cfg.schedule.warmup_epochs
        cfg.schedule.warmup_epochs = _UNSET  # tells whether an override sets the warm-up
        apply_overrides(cfg, overrides)
        if cfg.schedule.warmup_epochs is _UNSET:
            cfg.schedule.warmup_epochs = recipe_warmup
            _shorten_recipe_warmup(cfg, recipe_epochs, recipe_warmup)
        else:
            warmup_set = True
    if cfg.optim.lr is _UNSET:
        cfg.optim.lr = OptimConfig.lr
        validate(cfg)  # a bad config is reported as it is, before any model default is applied
        _apply_model_lr_default(cfg, warmup_set)
    return validate(cfg)


_UNSET: Any = object()

# Model families that do not train with the generic optimiser defaults (SGD lr 0.1, no warm-up), and what
# `resolve` uses instead when neither a recipe nor a flag sets optim.lr: (model-name prefix, lr, warm-up epochs,
# why). Keyed by name, so resolving a config imports no model (no torch); the model files give the evidence.
MODEL_LR_DEFAULTS: tuple[tuple[str, float, float, str], ...] = (
    ("squeezenet", 0.01, 2.0, "it has no BatchNorm and SGD at the generic lr 0.1 makes it diverge "
                              "(litezoo.models.squeezenet)"),
)  # fmt: skip
MODEL_WARMUP_SHARE = 0.2  # a run shorter than 5x the model's warm-up warms up for this share of its epochs


def model_lr_default(model_name: str) -> tuple[float, float, str] | None:
    """``(lr, warm-up epochs, why)`` that ``model_name`` trains with when no lr is set; None: the generic ones."""
    for prefix, lr, warmup, why in MODEL_LR_DEFAULTS:
        if model_name.startswith(prefix):
            return lr, warmup, why
    return None


def _apply_model_lr_default(cfg: RunConfig, warmup_set: bool) -> None:
    """No lr was set: the model's own (see MODEL_LR_DEFAULTS), with its warm-up unless one was set; says so.

    Only for SGD, which the numbers were measured with; onecycle has its own warm-up (schedule.pct_start).
    """
    default = model_lr_default(cfg.model.name)
    if default is None or cfg.optim.name != "sgd":
        return
    lr, warmup, why = default
    cfg.optim.lr = lr
    said = f"optim.lr {lr:g}"
    if not warmup_set and cfg.schedule.name != "onecycle":
        cfg.schedule.warmup_epochs = round(min(warmup, MODEL_WARMUP_SHARE * cfg.train.epochs), 4)
        said += f" with a {cfg.schedule.warmup_epochs:g}-epoch warm-up"
    warnings.warn(f"{cfg.model.name}: no learning rate set, so training uses {said} instead of the generic "
                  f"optim.lr {OptimConfig.lr:g}: {why}; set --lr (and --warmup-epochs) to choose",
                  stacklevel=3)  # fmt: skip


def _shorten_recipe_warmup(cfg: RunConfig, recipe_epochs: int, recipe_warmup: float) -> None:
    """A run shortened with --epochs below the recipe's warm-up keeps the warm-up's share of the run.

    E.g. ``--config fast_cifar10 --epochs 1``: the recipe warms up for 3.7 of its 16 epochs, which cannot fit in 1;
    the warm-up becomes 3.7 * 1/16 = 0.23 epochs, with a warning. A warm-up the caller set, or one that still fits,
    is left as it is (``validate`` reports one that does not fit).
    """
    s, epochs = cfg.schedule, cfg.train.epochs  # (the warm-up is the recipe's: no override set it)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for v in (epochs, recipe_epochs, recipe_warmup, s.warmup_epochs))  # else validate() says what's wrong
    if (numbers and isinstance(epochs, int) and 1 <= epochs < recipe_epochs and s.warmup_epochs >= epochs):
        s.warmup_epochs = round(recipe_warmup * epochs / recipe_epochs, 4)
        warnings.warn(f"train.epochs={epochs} is shorter than the recipe's {recipe_warmup:g}-epoch warm-up: warm-up "
                      f"shortened to {s.warmup_epochs:g} epochs (its share of the recipe's {recipe_epochs} epochs)",
                      stacklevel=3)  # fmt: skip


def to_dict(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` with only YAML/JSON-safe values (tuples become lists)."""

    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, (tuple, list)) else value

    return {
        section: {name: plain(value) for name, value in dataclasses.asdict(getattr(cfg, section)).items()}
        for section in SECTIONS
    }


def from_dict(d: Mapping[str, Any]) -> RunConfig:
    """The inverse of :func:`to_dict`; missing fields take their defaults, unknown ones are errors. Validated."""
    cfg = RunConfig()
    _apply_sections(cfg, d, "")
    return validate(cfg)


def save_yaml(cfg: RunConfig, path: str | os.PathLike) -> Path:
    """Write ``cfg`` as YAML atomically (temp file in the same folder, fsync, rename over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# litezoo run config (resolved: defaults <- recipe <- overrides)\n" + yaml.safe_dump(
        to_dict(cfg), sort_keys=False, default_flow_style=None
    )
    return atomic_write_bytes(text.encode("utf-8"), path)


def load_yaml(path: str | os.PathLike) -> RunConfig:
    """Read a config written by :func:`save_yaml` (or any partial one) strictly, and validate it."""
    cfg = RunConfig()
    _apply_sections(cfg, _read_yaml(path), os.fspath(path))
    return validate(cfg)


def parse_cli_overrides(tokens: list[str]) -> dict[str, str]:
    """``["--optim.lr", "0.05", "--label-smoothing=0.1"]`` -> ``{"optim.lr": "0.05", "label_smoothing": "0.1"}``.

    Keys keep their spelling apart from dashes -> underscores (:func:`resolve` maps them to fields and rejects
    unknown ones). Every flag needs a value; a repeated flag keeps the last value, as argparse does.
    """
    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise InputError(f"expected an override like --optim.lr 0.05, got {token!r}")
        body = token[2:]
        if "=" in body:
            key, value = body.split("=", 1)
            i += 1
        else:
            key = body
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                shown = token if token.isprintable() else repr(token)  # user text: keep the message one line
                raise InputError(f"override {shown} has no value (write {shown} VALUE or {shown}=VALUE)")
            value = tokens[i + 1]
            i += 2
        key = key.replace("-", "_")
        if not key:
            raise InputError(f"override {token!r} has no name")
        out[key] = value
    return out


__all__ = [
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "CheckpointConfig",
    "RunConfig",
    "OPTIMIZERS",
    "SCHEDULES",
    "AMP_MODES",
    "DEVICES",
    "NAN_POLICIES",
    "ALIASES",
    "RECIPE_DIR",
    "FIELDS",
    "SECTIONS",
    "resolve_key",
    "coerce",
    "apply_overrides",
    "validate",
    "recipe_path",
    "list_recipes",
    "resolve",
    "MODEL_LR_DEFAULTS",
    "model_lr_default",
    "to_dict",
    "from_dict",
    "save_yaml",
    "load_yaml",
    "parse_cli_overrides",
]
