"""A training run, built: ``build_run(cfg, device, dist_info) -> Run``, and its counters, ``RunState``.

``litezoo.train.fit`` is build_run + (restore a checkpoint) + the loop. What a run is made of is written here
once, in the order it is built:

    data (the main process first) -> the config as run (class count, image size) -> model (+ initial weights,
    freezing) -> precision, channels_last -> EMA -> loaders -> lookahead -> optimiser, scheduler, scaler,
    criterion -> per-process RNG -> DDP / torch.compile wrappers

:meth:`Run.state_dict` covers every stateful piece (weights, optimiser, scheduler, scaler, EMA, lookahead,
loader position) and :class:`RunState` the counters (epoch, step, best top-1, history); :meth:`Run.checkpoint`
puts them, the RNG states and the model's description into one :class:`litezoo.checkpoint.Checkpoint`, and
:meth:`Run.restore` reads one back.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import numpy as np
import torch
import torch.nn as nn

from litezoo import checkpoint as ckpt_io
from litezoo import distributed
from litezoo.autotune import choose_for_run
from litezoo.config import RunConfig, to_dict
from litezoo.data import BatchLoader, ImageDataset, open_dataset
from litezoo.distill import Teacher
from litezoo.distill import describe as describe_distillation
from litezoo.ema import Lookahead, ModelEma
from litezoo.errors import InputError, WorkError
from litezoo.precision import Precision, autocast, make_scaler
from litezoo.registry import create_model, model_info
from litezoo.schedules import build_optimizer, build_scheduler

# ---------------------------------------------------------------------------------------------------------------
# Counters


@dataclass
class EpochStats:
    """Sums over the samples this process has seen in the current epoch (reduced across processes at its end)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    skipped_steps: int = 0
    train_time_s: float = 0.0  # wall-clock in training steps (no evaluation, no checkpoint writing)

    def reduced(self) -> "EpochStats":
        """Sums over all processes (skipped steps are decided jointly, so every process has the same count)."""
        t = distributed.all_reduce_sum(torch.tensor([self.loss_sum, self.correct, self.seen], dtype=torch.float64))
        return EpochStats(float(t[0]), int(t[1]), int(t[2]), self.skipped_steps, self.train_time_s)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunState:
    """Where training is: what a checkpoint needs besides the state of the model, optimiser and friends."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    batch_index: int = 0  # batches of the current epoch already done
    best_top1: float | None = None
    best_epoch: int | None = None
    train_time_s: float = 0.0  # cumulative, evaluation excluded
    time_s: float = 0.0  # cumulative wall-clock, evaluation included
    history: list[dict[str, Any]] = field(default_factory=list)  # the metrics rows so far
    epoch_stats: EpochStats = field(default_factory=EpochStats)  # partial stats of the epoch in progress

    def state_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "history": [dict(r) for r in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in dataclasses.fields(self):
            if f.name not in state:
                raise InputError(f"not a run state: no {f.name!r}")
        self.epoch, self.step, self.batch_index = int(state["epoch"]), int(state["step"]), int(state["batch_index"])
        self.best_top1, self.best_epoch = state["best_top1"], state["best_epoch"]
        self.train_time_s, self.time_s = float(state["train_time_s"]), float(state["time_s"])
        self.history = [dict(r) for r in state["history"]]
        self.epoch_stats = EpochStats(**state["epoch_stats"])


# ---------------------------------------------------------------------------------------------------------------
# Building blocks


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def main_process_first(fn: Callable[[], Any], dist_info: distributed.DistInfo) -> Any:
    """Run ``fn`` on the main process, then on the others (it may fill a cache they then read).

    If it fails on the main process, every process raises (instead of the others waiting forever).
    """
    result, error = None, None
    if dist_info.is_main:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 — re-raised below, after telling the other processes
            error = exc
    failure = distributed.broadcast_object(None if error is None else (isinstance(error, InputError), str(error)))
    if error is not None:
        raise error
    if failure is not None:
        bad_input, message = failure
        raise (InputError if bad_input else WorkError)(f"on the main process: {message}")
    return result if dist_info.is_main else fn()


def make_criterion(cfg: RunConfig) -> nn.Module:
    # Accepts class indices (B,) or soft targets (B, K) from mixup/cutmix.
    return nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)


# Config fields (model.<name>) that are build options of some families and change what the model computes:
# they are recorded in the run's files (ModelMeta.options) and passed to every rebuild of the model.
BUILD_OPTIONS = ("bn_eps", "shuffle_order")


def model_options(cfg: RunConfig) -> dict[str, Any]:
    """The build options ``cfg`` sets (model.bn_eps, model.shuffle_order; None fields left out)."""
    return {k: getattr(cfg.model, k) for k in BUILD_OPTIONS if getattr(cfg.model, k) is not None}


def resolve_model_options(cfg: RunConfig, resume_from: ckpt_io.Checkpoint | None = None) -> None:
    """Fill in, on the config as run, the build options a set field leaves open: those of the checkpoint to
    resume, else those ``model.init_from``'s weights were trained with (``litezoo.weights.source_options``:
    torchvision's EfficientNet BN eps, megvii's ShuffleNet V1 shuffle order, a litezoo file's own). A field the
    config sets wins, except against the checkpoint to resume (InputError: that would be another model)."""
    found: dict[str, Any] = {}
    if resume_from is not None:
        found, where = resume_from.meta.build_options(), "the checkpoint to resume"
    # A checkpoint without options that started from init_from: one written before options were recorded (a new
    # one would record what init_from needs), so the weights file says what the model was built with.
    if not found and cfg.model.init_from is not None:
        from litezoo.weights import source_options

        found, where = source_options(cfg.model.name, cfg.model.init_from), cfg.model.init_from
    if not found and resume_from is None:
        return
    for key, value in found.items():
        if key not in BUILD_OPTIONS:
            raise InputError(f"{where} records the build option {key}={value!r}, which the config cannot set")
        ours = getattr(cfg.model, key)
        if ours is None:
            setattr(cfg.model, key, value)
        elif resume_from is not None and ours != value:
            raise InputError(f"cannot resume: the checkpoint's model was built with {key}={value!r}, "
                             f"but model.{key}={ours!r} was asked for")  # fmt: skip
    if resume_from is not None:  # a checkpoint without an option was built with the builder's default
        extra = {k: v for k, v in model_options(cfg).items() if k not in found}
        if extra:
            key, value = next(iter(extra.items()))
            raise InputError(f"cannot resume: the checkpoint's model was built without {key} (the builder's "
                             f"default), but model.{key}={value!r} was asked for")  # fmt: skip


def build_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    """The bare architecture, randomly initialised from the global RNG."""
    options = {} if cfg.model.drop_rate is None else {"drop_rate": cfg.model.drop_rate}
    return create_model(cfg.model.name, num_classes=num_classes, in_chans=cfg.model.in_chans, **options,
                        **model_options(cfg))  # fmt: skip


def classifier_parameters(cfg: RunConfig, num_classes: int) -> set[str]:
    """Names of the parameters ``reset_classifier`` replaces: what the zoo calls the classifier.

    Found on a copy built on the meta device (no memory, no RNG draws): e.g. ``head.fc.*`` for most models,
    only the last of VGG's three classifier layers, SqueezeNet's final 1x1 conv.
    """
    with torch.device("meta"):
        probe = build_model(cfg, num_classes)
        before = dict(probe.named_parameters())  # references, so that no replaced tensor's id can be reused
        probe.reset_classifier(num_classes)
        return {name for name, p in probe.named_parameters() if before.get(name) is not p}


def model_for_training(cfg: RunConfig, num_classes: int, note: Callable[[str], None]) -> nn.Module:
    """The model as training starts: architecture, initial weights (random or ``model.init_from``), frozen parts.

    ``model.init_from`` takes any file ``litezoo.weights.load_weights`` reads (litezoo's own, torchvision's or
    megvii's layout); a classifier for another class count stays fresh. ``model.freeze`` (or the older
    ``model.freeze_features``) chooses what trains (``litezoo.weights.finetune``).

    Every way of starting a model goes here, so a new one (another init, another freezing mode) is one edit.
    """
    from litezoo.weights import load_weights
    from litezoo.weights.finetune import freeze

    model = build_model(cfg, num_classes)
    classifier = classifier_parameters(cfg, num_classes)
    if cfg.model.init_from is not None:
        # The build options the weights need are in cfg already (resolve_model_options): a model.bn_eps the
        # config sets stays as set (and recorded), rather than being changed behind the run files' back.
        report = load_weights(model, cfg.model.init_from, match_bn_eps=False)
        for text in report.notes:
            note(f"{cfg.model.init_from}: {text}")
        new_head = f" (new classifier: {', '.join(report.head_reset)})" if report.head_reset else ""
        note(f"initialised from {cfg.model.init_from}, {report.layout} layout{new_head}")
    spec = "backbone" if cfg.model.freeze_features else cfg.model.freeze
    if spec != "none":
        frozen = freeze(model, spec, classifier)
        note(f"frozen ({spec}): {len(frozen)} of {sum(1 for _ in model.parameters())} parameter tensors")
    return model


def use_channels_last(setting: bool | str, device: torch.device) -> bool:
    """channels_last (NHWC) activations and weights: "auto" turns them on where they were measured faster.

    CUDA: NHWC is what the tensor-core convolution kernels want. CPU with AVX-512 (measured on a Sapphire
    Rapids Xeon, training steps of 7 zoo models, docs/training.md): faster in bf16 for every conv net (+4% to
    +93%) and in fp32 for 5 of 7 (+13% to +84%; VGG -12..-17%, ViT neutral). Other CPUs and MPS were not
    measured, so "auto" leaves them NCHW.
    """
    if isinstance(setting, bool):
        return setting
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def progressive_size(epoch: int, epochs: int, full: int, start: int | None, fraction: float) -> int:
    """Training image side in (0-based) ``epoch`` under progressive resizing: ``start`` at epoch 0, growing
    linearly to ``full`` at ``fraction * epochs``, in steps of 4 px (rounded down); ``full`` without ``start``."""
    ramp = fraction * epochs
    if start is None or start >= full or epoch >= ramp:
        return full
    side = start + (full - start) * epoch / ramp
    return min(full, max(start, int(side) // 4 * 4))


def check_data_classes(train: ImageDataset, test: ImageDataset, cfg: RunConfig,
                       resume_from: ckpt_io.Checkpoint | None) -> None:  # fmt: skip
    """The splits agree on the classes, and the class count fits the config and the checkpoint to resume."""
    where = cfg.data.path
    if list(test.classes) != list(train.classes):
        raise InputError(f"train and test splits of {where} have different classes: {train.classes} vs {test.classes}")
    n = len(train.classes)
    if n < 2:
        raise InputError(f"the training split of {where} has one class ({train.classes[0]}): a classifier needs two or more")
    if resume_from is not None and n != resume_from.meta.num_classes:
        raise InputError(
            f"cannot resume: the checkpoint's model has {resume_from.meta.num_classes} classes but the data at "
            f"{where} has {n}"
        )
    if cfg.model.num_classes is not None and cfg.model.num_classes != n:
        raise InputError(f"model.num_classes={cfg.model.num_classes} but the data at {where} has {n} classes")


# ---------------------------------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    """Everything a training loop needs, built and on its device. ``model`` is the plain module (what
    checkpoints save); ``train_model`` wraps it for the training step (DDP, torch.compile), ``eval_model`` is
    what is evaluated and exported (the EMA copy when train.ema_eval is on)."""

    cfg: RunConfig  # the config as run: model.num_classes and data.image_size filled in
    meta: ckpt_io.ModelMeta
    device: torch.device
    dist: distributed.DistInfo
    model: nn.Module
    train_model: nn.Module
    ema: ModelEma | None
    lookahead: Lookahead | None
    precision: Precision
    channels_last: bool
    train_loader: BatchLoader
    test_loader: BatchLoader
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LRScheduler (litezoo.schedules)
    scaler: torch.amp.GradScaler | None  # fp16 only
    criterion: nn.Module
    sides: list[int]  # training image side per epoch (progressive resizing; else all image_size)
    teacher: Teacher | None = None  # train.distill_from: the trained model whose probabilities are distilled

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if (self.ema is not None and self.cfg.train.ema_eval) else self.model

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def autocast(self) -> ContextManager[Any]:
        """The mixed-precision context of the forward passes (a no-op in fp32)."""
        return autocast(self.precision, self.device)

    def state_dict(self) -> dict[str, Any]:
        """The state of every stateful piece, by the names :class:`litezoo.checkpoint.Checkpoint` uses."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "lookahead": self.lookahead.state_dict() if self.lookahead is not None else None,
            "loader": self.train_loader.state_dict(),
        }

    def load_state_dict(self, states: dict[str, Any]) -> None:
        """The inverse of :meth:`state_dict`; InputError where the saved state does not fit this run."""
        try:
            self.model.load_state_dict(states["model"])
        except RuntimeError as exc:
            raise InputError(f"the checkpoint's weights do not fit {self.meta.model_name}: "
                             f"{str(exc).splitlines()[0]}") from None  # fmt: skip
        self.optimizer.load_state_dict(states["optimizer"])
        self.scheduler.load_state_dict(states["scheduler"])
        if self.scaler is not None and states["scaler"] is not None:
            self.scaler.load_state_dict(states["scaler"])
        if self.ema is not None and states["ema"] is not None:
            self.ema.load_state_dict(states["ema"])
        if self.lookahead is not None:
            if states["lookahead"] is None:
                raise InputError("the checkpoint was written without train.lookahead_every; resume with the same setting")
            self.lookahead.load_state_dict(states["lookahead"])
        try:
            self.train_loader.load_state_dict(states["loader"])
        except ValueError as exc:  # e.g. a mid-epoch checkpoint resumed with another process count
            raise InputError(f"{exc}; resume from an epoch-end checkpoint (checkpoints/epoch_*.pt) instead") from None

    def checkpoint(self, state: RunState) -> ckpt_io.Checkpoint | None:
        """The checkpoint of this moment. Collective: every process calls it (each one's RNG state is gathered,
        the partial epoch sums reduced); the main process gets the Checkpoint, the others None."""
        rng = distributed.all_gather_object(ckpt_io.rng_state())
        partial = state.epoch_stats.reduced() if state.batch_index else EpochStats()
        if not self.dist.is_main:
            return None
        counters = {**state.state_dict(), "epoch_stats": partial.to_dict()}
        states = self.state_dict()
        states["loader"] = {**states["loader"], "epoch": state.epoch, "batch_index": state.batch_index}
        return ckpt_io.Checkpoint(meta=self.meta, config=to_dict(self.cfg), **states, state=counters, rng=rng,
                                  world_size=self.dist.world_size)  # fmt: skip

    def restore(self, ckpt: ckpt_io.Checkpoint) -> RunState:
        """Put every piece of training state back as it was when ``ckpt`` was written; returns the counters."""
        self.load_state_dict(vars(ckpt))
        # Each process gets back its own RNG state; with another process count, rank 0's (not bit-exact then).
        rng = ckpt.rng
        ckpt_io.set_rng_state(rng[self.dist.rank] if len(rng) == self.dist.world_size else rng[0])
        state = RunState()
        state.load_state_dict(ckpt.state)
        if not self.dist.is_main:  # the saved partial sums are totals over all processes: count them once
            state.epoch_stats.loss_sum, state.epoch_stats.correct, state.epoch_stats.seen = 0.0, 0, 0
        return state


def build_run(
    cfg: RunConfig,
    device: torch.device,
    dist_info: distributed.DistInfo = distributed.DistInfo(),
    *,
    resume_from: ckpt_io.Checkpoint | None = None,
    download: bool = True,
    note: Callable[[str], None] = lambda text: None,
) -> Run:
    """Open the data and build everything training ``cfg`` needs on ``device`` (this process's share of it
    under torchrun). ``resume_from``: the checkpoint that will be restored (its class count is checked against
    the data). ``note`` receives one-line remarks for the person watching (device, precision, resizing)."""
    world = dist_info.world_size
    for what, size in (("data.batch_size", cfg.data.batch_size), ("data.eval_batch_size", cfg.data.eval_batch_size)):
        if size % world:
            raise InputError(f"{what}={size} is the global batch; it must be divisible by the {world} processes")

    # --- data (the main process first: it may decode and cache; the others then read that cache) ---------------
    image_size = cfg.data.image_size or model_info(cfg.model.name).default_size

    def open_splits() -> tuple[ImageDataset, ImageDataset]:
        common = dict(image_size=image_size, cache_dir=cfg.data.cache_dir, download=download,
                      class_names=cfg.data.class_names)
        return (open_dataset(cfg.data.path, "train", limit=cfg.data.limit_train, **common),
                open_dataset(cfg.data.path, "test", limit=cfg.data.limit_eval, **common))  # fmt: skip

    train_ds, test_ds = main_process_first(open_splits, dist_info)
    check_data_classes(train_ds, test_ds, cfg, resume_from)
    classes = list(train_ds.classes)
    num_classes = len(classes)
    if cfg.train.tta_translate >= image_size:
        raise InputError(f"train.tta_translate={cfg.train.tta_translate} px does not fit {image_size}px images")

    # The config as run: class count and image size filled in.
    cfg = copy.deepcopy(cfg)
    cfg.model.num_classes = num_classes
    cfg.data.image_size = image_size
    resolve_model_options(cfg, resume_from)  # the options init_from's weights need (or the resumed run's)
    # Normalisation: the data's own, unless the config names the pretrained weights' (data.mean/std).
    mean = tuple(train_ds.mean if cfg.data.mean is None else cfg.data.mean)
    std = tuple(train_ds.std if cfg.data.std is None else cfg.data.std)
    meta = ckpt_io.ModelMeta(
        model_name=cfg.model.name, num_classes=num_classes, in_chans=cfg.model.in_chans, image_size=image_size,
        classes=classes, mean=[float(v) for v in mean], std=[float(v) for v in std],
        class_folders=list(train_ds.class_folders), options=model_options(cfg) or None,
    )  # fmt: skip

    # --- model, precision, EMA -----------------------------------------------------------------------------------
    seed_everything(cfg.train.seed)  # same initial weights on every process
    model = model_for_training(cfg, num_classes, note)
    # amp=auto: timed training steps of a copy of the model, per precision and memory format (litezoo.autotune)
    precision, channels_last, measured = choose_for_run(
        cfg, model, device, (cfg.data.batch_size // world, cfg.model.in_chans, image_size, image_size),
        static_channels_last=use_channels_last(cfg.train.channels_last, device), dist_info=dist_info,
    )  # fmt: skip
    if measured is not None:  # the config as run records the choice: a resume continues in it, measuring nothing
        cfg.train.amp = "off" if precision.mode == "fp32" else precision.mode
        cfg.train.channels_last = channels_last
    model.to(device=device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    ema = ModelEma(model, cfg.train.ema_decay) if cfg.train.ema_decay else None
    note(
        f"{cfg.model.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, {num_classes} classes, "
        f"{image_size}px | device {device}" + (f" x{world} ({dist_info.backend})" if world > 1 else "")
        + f" | channels_last {'on' if channels_last else 'off'} | {precision.reason}"
    )
    teacher = None
    if cfg.train.distill_from:  # knowledge distillation: the teacher's probabilities join the targets
        teacher = Teacher.from_run(cfg.train.distill_from, device, classes=classes, image_size=image_size, mean=mean,
                                   std=std, temperature=cfg.train.distill_temperature, channels_last=channels_last)  # fmt: skip
        note(describe_distillation(teacher, cfg.train.distill_alpha))
    sides = [progressive_size(e, cfg.train.epochs, image_size, cfg.data.progressive_start_size,
                              cfg.data.progressive_epochs) for e in range(cfg.train.epochs)]  # fmt: skip
    if sides[0] != image_size:
        note(f"progressive resizing: training batches grow from {sides[0]} to {image_size}px over the "
             f"first {cfg.data.progressive_epochs * cfg.train.epochs:g} epochs (evaluation at {image_size}px)")  # fmt: skip

    # --- loaders: the global batch split over the processes, each reading its shard -----------------------------
    train_loader = BatchLoader(
        train_ds, cfg.data.batch_size // world, train=True, device=device, seed=cfg.train.seed,
        rank=dist_info.rank, world_size=world, crop_padding=cfg.data.crop_padding,
        random_resized_crop=cfg.data.random_resized_crop, flip=cfg.data.flip, cutout=cfg.data.cutout,
        mixup_alpha=cfg.data.mixup_alpha, cutmix_alpha=cfg.data.cutmix_alpha, channels_last=channels_last,
        num_classes=num_classes, mean=mean, std=std,
    )  # fmt: skip
    test_loader = BatchLoader(
        test_ds, cfg.data.eval_batch_size // world, train=False, device=device, seed=cfg.train.seed,
        rank=dist_info.rank, world_size=world, channels_last=channels_last, num_classes=num_classes,
        mean=mean, std=std,
    )  # fmt: skip
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise InputError(
            f"{len(train_ds)} training images make no batch of {cfg.data.batch_size}; lower the batch size"
        )
    if len(set(distributed.all_gather_object(steps_per_epoch))) > 1:
        raise WorkError("processes disagree on the number of steps per epoch (uneven data shards)")
    total_steps = cfg.train.epochs * steps_per_epoch
    lookahead = Lookahead(model, cfg.train.lookahead_every, cfg.train.lookahead_decay, total_steps) \
        if cfg.train.lookahead_every else None  # fmt: skip

    # --- optimisation ----------------------------------------------------------------------------------------------
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, total_steps, steps_per_epoch)
    scaler = make_scaler(precision, device)  # None unless fp16
    criterion = make_criterion(cfg)

    torch.manual_seed(cfg.train.seed + dist_info.rank)  # dropout etc. differ per process
    train_model = distributed.wrap_ddp(model, dist_info, device)
    if cfg.train.compile:
        train_model = torch.compile(train_model)
    return Run(cfg=cfg, meta=meta, device=device, dist=dist_info, model=model, train_model=train_model, ema=ema,
               lookahead=lookahead, precision=precision, channels_last=channels_last, train_loader=train_loader,
               test_loader=test_loader, optimizer=optimizer, scheduler=scheduler, scaler=scaler, criterion=criterion,
               sides=sides, teacher=teacher)  # fmt: skip


__all__ = ["BUILD_OPTIONS", "EpochStats", "Run", "RunState", "build_run", "model_for_training", "model_options",
           "resolve_model_options", "seed_everything"]
