"""Training, end to end, in one readable file.

``fit(cfg, run_dir)`` does everything ``litezoo train`` does:

    check the config (and the checkpoint to resume) -> join the process group (torchrun) -> open the data
    -> build model, precision, EMA, optimizer, scheduler -> restore the checkpoint -> for each epoch:
    train_one_epoch (checkpoint every N steps if asked) -> evaluate -> metrics row -> checkpoint
    (epoch file, last, best) -> progress line and callbacks -> export model.safetensors.

``train_one_epoch`` and ``evaluate`` (litezoo.evaluate) are usable on their own, e.g. by benchmarks.

Exactness: every source of randomness is either a pure function of (seed, epoch, batch index, rank) (data
order and augmentation, in litezoo.data) or the global RNGs, whose states are saved in each checkpoint. With
the optimizer, scheduler, scaler and EMA states and the loader position saved too, a run resumed from any
checkpoint on CPU continues bit-identically (tests/test_train_resume.py kills a real process to check).

Batch sizes in the config are global: under torchrun each of the N processes takes batch_size / N, so a
recipe trains the same way (same lr per global batch) whatever the number of processes.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from litezoo import checkpoint as ckpt_io
from litezoo import distributed
from litezoo.config import RunConfig, save_yaml, to_dict, validate
from litezoo.errors import InputError, WorkError
from litezoo.evaluate import EvalResult, evaluate
from litezoo.heap import heap_kept
from litezoo.progress import EpochCallback, Progress
from litezoo.registry import create_model, model_info

METRIC_COLUMNS = [
    "epoch", "step", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5",
    "images_per_s", "epoch_time_s", "eval_time_s", "train_time_s", "time_s", "skipped_steps",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Checks done before any work


def check_resume_compatible(cfg: RunConfig, ckpt: dict[str, Any], path: Path) -> None:
    """The model to build must be the one in the checkpoint: same name, class count and input channels."""
    if cfg.model.name != ckpt["model_name"]:
        raise InputError(
            f"cannot resume: {path} holds model {ckpt['model_name']!r}, but model {cfg.model.name!r} was asked for"
        )
    if cfg.model.num_classes is not None and cfg.model.num_classes != ckpt["num_classes"]:
        raise InputError(
            f"cannot resume: {path} has {ckpt['num_classes']} classes, but model.num_classes={cfg.model.num_classes}"
        )
    if cfg.model.in_chans != ckpt["in_chans"]:
        raise InputError(
            f"cannot resume: {path} has {ckpt['in_chans']} input channels, but model.in_chans={cfg.model.in_chans}"
        )


def check_data_classes(classes: list[str], test_classes: list[str], cfg: RunConfig, ckpt: dict | None, where: str):
    if test_classes != classes:
        raise InputError(f"train and test splits of {where} have different classes: {classes} vs {test_classes}")
    if ckpt is not None and len(classes) != ckpt["num_classes"]:
        raise InputError(
            f"cannot resume: the checkpoint's model has {ckpt['num_classes']} classes but the data at {where} "
            f"has {len(classes)}"
        )
    if cfg.model.num_classes is not None and cfg.model.num_classes != len(classes):
        raise InputError(
            f"model.num_classes={cfg.model.num_classes} but the data at {where} has {len(classes)} classes"
        )


def check_before_work(
    cfg: RunConfig, run_dir: Path, resume: bool | str | os.PathLike
) -> tuple[dict[str, Any] | None, Path | None]:
    """Model name, run folder and the checkpoint to resume; returns (checkpoint, its path) or (None, None)."""
    validate(cfg)
    model_info(cfg.model.name)  # unknown model -> ValueError with the close names
    if cfg.model.init_from is not None and not Path(cfg.model.init_from).is_file():
        raise InputError(f"model.init_from: {cfg.model.init_from} does not exist")
    if not resume:
        if ckpt_io.epoch_checkpoints(run_dir) or (ckpt_io.checkpoint_dir(run_dir) / ckpt_io.LAST).exists():
            raise InputError(
                f"{run_dir} already holds checkpoints: resume it (--resume {run_dir}) or choose another --out"
            )
        return None, None
    ckpt_path, _ = ckpt_io.resolve_resume_path(run_dir if resume is True else resume)
    ckpt = ckpt_io.load_checkpoint(ckpt_path)
    check_resume_compatible(cfg, ckpt, ckpt_path)
    return ckpt, ckpt_path


# ---------------------------------------------------------------------------------------------------------------
# Building blocks


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_criterion(cfg: RunConfig) -> nn.Module:
    # Accepts class indices (B,) or soft targets (B, K) from mixup/cutmix.
    return nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)


def build_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    options = {} if cfg.model.drop_rate is None else {"drop_rate": cfg.model.drop_rate}
    return create_model(cfg.model.name, num_classes=num_classes, in_chans=cfg.model.in_chans, **options)


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


def load_initial_weights(model: nn.Module, path: str | os.PathLike, classifier: set[str]) -> list[str]:
    """Start from trained weights (transfer learning); returns the classifier tensors left at their new init.

    The classifier is kept only when its shape fits: a 1000-class source on a 2-class task gets a fresh one.
    Any other mismatch is an error.
    """
    weights, _ = ckpt_io.load_weights(path)
    own = model.state_dict()
    reset = [k for k, v in weights.items() if k in classifier and k in own and v.shape != own[k].shape]
    try:
        missing, unexpected = model.load_state_dict({k: v for k, v in weights.items() if k not in reset}, strict=False)
    except RuntimeError as exc:
        raise InputError(f"model.init_from: the weights in {path} do not fit {model.model_name}: "
                         f"{str(exc).splitlines()[0]}") from None  # fmt: skip
    missing = [k for k in missing if k not in reset]
    if missing or unexpected:
        raise InputError(
            f"model.init_from: the weights in {path} do not fit {model.model_name} "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
            f"{'...' if len(unexpected) > 3 else ''})"
        )
    return reset


def freeze_features(model: nn.Module, classifier: set[str]) -> None:
    """Train only the classifier: every other parameter stops receiving gradients."""
    for name, p in model.named_parameters():
        p.requires_grad_(name in classifier)


def set_train_mode(model: nn.Module) -> None:
    """``model.train()``, except BatchNorm layers whose parameters are all frozen (``freeze_features``): their
    running statistics stay fixed too. A BN that freezes only its scale (vgg_fast's) still trains normally."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


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


def resized_batches(loader: Iterable[tuple[torch.Tensor, torch.Tensor]], side: int):
    """The loader's (already augmented, normalised) batches scaled to ``side`` x ``side`` (antialiased)."""
    for x, y in loader:
        if x.shape[-1] != side or x.shape[-2] != side:
            channels_last = x.is_contiguous(memory_format=torch.channels_last)
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x  # (B, C, side, side)
        yield x, y


def lr_of(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


class NonFiniteLoss(Exception):
    """Raised by train_one_epoch with on_nan="stop"; fit turns it into a WorkError naming the checkpoint."""

    def __init__(self, step: int, lr: float, value: float):
        super().__init__(f"loss is {value} at step {step} (lr {lr:.6g})")
        self.step, self.lr, self.value = step, lr, value


# ---------------------------------------------------------------------------------------------------------------
# One epoch


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
        return {k: getattr(self, k) for k in ("loss_sum", "correct", "seen", "skipped_steps", "train_time_s")}


@dataclass
class StepInfo:
    step: int  # optimizer steps done in the whole run (global, 1-based after the first step)
    batch_index: int  # batches done in this epoch
    loss: float
    lr: float
    images: int  # images in this step, all processes


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    criterion: nn.Module,
    *,
    step: int = 0,
    start_batch: int = 0,
    stats: EpochStats | None = None,
    autocast: Callable[[], Any] | None = None,
    scaler: Any = None,
    ema: Any = None,
    lookahead: Any = None,
    grad_clip: float | None = None,
    on_nan: str = "stop",
    world_size: int = 1,
    after_step: Callable[[StepInfo, EpochStats], None] | None = None,
) -> tuple[int, EpochStats]:
    """Train over the loader's remaining batches. Returns (global step count, this process's epoch stats).

    ``step`` is the global step count so far and ``start_batch`` the batches of this epoch already done (when
    resuming mid-epoch, the loader was positioned there). ``scheduler`` is stepped once per optimizer step,
    including skipped non-finite steps, so the lr schedule stays aligned with the step count.
    """
    stats = stats if stats is not None else EpochStats()
    set_train_mode(model)
    batch_index = start_batch
    tick = time.perf_counter()
    for x, y in loader:
        # Forward in the chosen precision; the loss itself in float32.
        with autocast() if autocast else contextlib.nullcontext():
            logits = model(x)  # (B, K)
        loss = criterion(logits.float(), y)

        # A non-finite loss on any process is seen by all of them, so they take the same branch.
        bad = distributed.all_reduce_max((~torch.isfinite(loss.detach())).to(torch.int32))
        if bool(bad):
            if on_nan == "stop":
                raise NonFiniteLoss(step + 1, lr_of(optimizer), float(loss.detach()))
            stats.skipped_steps += 1

        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            # fp16: scale the loss so small gradients survive; unscale before clipping.
            scaler.scale(loss).backward()
            if not bad:
                if grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                scaler.step(optimizer)
                scaler.update()
        else:
            # Backward even on a skipped step: under DDP every process must join the gradient all-reduce.
            loss.backward()
            if not bad:
                if grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
        if bad:
            optimizer.zero_grad(set_to_none=True)  # drop the non-finite gradients
        lr = lr_of(optimizer)
        scheduler.step()
        if lookahead is not None:
            lookahead.after_step(distributed.unwrap(model), step + 1)  # may pull the weights back (ema.Lookahead)
        if ema is not None and not bad:
            ema.update(distributed.unwrap(model))
        step += 1
        batch_index += 1

        loss_value = float(loss.detach())
        n = x.shape[0]
        if not bad:
            hard = y if y.ndim == 1 else y.argmax(dim=1)  # soft (mixup) targets: the dominant class
            stats.loss_sum += loss_value * n
            stats.correct += int((logits.detach().argmax(dim=1) == hard).sum())
            stats.seen += n
        now = time.perf_counter()
        stats.train_time_s += now - tick
        if after_step is not None:
            after_step(StepInfo(step, batch_index, loss_value, lr, n * world_size), stats)
        tick = time.perf_counter()  # time spent in after_step (checkpoints, progress) is not training time
    return step, stats


# ---------------------------------------------------------------------------------------------------------------
# Run state, metrics files


@dataclass
class RunState:
    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    batch_index: int = 0  # batches of the current epoch already done
    best_top1: float | None = None
    best_epoch: int | None = None
    train_time_s: float = 0.0  # cumulative, evaluation excluded
    time_s: float = 0.0  # cumulative wall-clock, evaluation included
    history: list[dict[str, Any]] = field(default_factory=list)  # the metrics rows so far
    epoch_stats: EpochStats = field(default_factory=EpochStats)  # partial stats of the epoch in progress


class MetricsLog:
    """metrics.jsonl (one JSON object per epoch), metrics.csv and TensorBoard events (when installed)."""

    def __init__(self, run_dir: Path, history: list[dict[str, Any]]):
        self.jsonl = run_dir / "metrics.jsonl"
        self.csv = run_dir / "metrics.csv"
        self.rows = list(history)
        # Rewrite from the checkpoint's history: a run killed after its last checkpoint may have logged rows
        # for epochs that will now be trained again.
        ckpt_io.atomic_write_bytes("".join(json.dumps(r) + "\n" for r in self.rows).encode(), self.jsonl)
        self._write_csv()
        self.tb = _tensorboard_writer(run_dir)

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._write_csv()
        if self.tb is not None:
            for key in METRIC_COLUMNS[1:]:
                if row.get(key) is not None:
                    self.tb.add_scalar(key, row[key], row["epoch"])
            self.tb.flush()

    def _write_csv(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        ckpt_io.atomic_write_bytes(buf.getvalue().encode(), self.csv)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _tensorboard_writer(run_dir: Path):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


# ---------------------------------------------------------------------------------------------------------------
# fit


def fit(
    cfg: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool | str | os.PathLike = False,
    callbacks: Sequence[EpochCallback] = (),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir``; returns the last metrics row plus best top-1 and the files written.

    resume: False for a new run (``run_dir`` must hold no checkpoints), True to continue ``run_dir`` from
    its last.pt, or the path of a run folder / .pt checkpoint to continue from.
    callbacks: called on the main process with each epoch's metrics row; returning True stops training after
    that epoch (its checkpoint is written first).
    """
    from litezoo.device import resolve_device

    run_dir = Path(run_dir)
    progress = progress or Progress()
    ckpt, ckpt_path = check_before_work(cfg, run_dir, resume)
    device = resolve_device(cfg.train.device)
    owns_group = not distributed.is_initialized()
    dist_info, device = distributed.init_distributed(device)
    try:
        # Large activations are freed and reallocated every step; on a CPU, keep them in the heap (litezoo.heap).
        with heap_kept(cfg.train.keep_heap and device.type == "cpu"):
            return _fit(cfg, run_dir, ckpt, ckpt_path, device, dist_info, callbacks,
                        progress if dist_info.is_main else Progress(quiet=True))  # fmt: skip
    finally:
        if owns_group:
            distributed.shutdown()


def _fit(cfg, run_dir, ckpt, ckpt_path, device, dist_info, callbacks, progress) -> dict[str, Any]:
    from litezoo.data import BatchLoader, open_dataset
    from litezoo.ema import Lookahead, ModelEma
    from litezoo.precision import autocast as precision_autocast
    from litezoo.precision import choose_precision, make_scaler
    from litezoo.schedules import build_optimizer, build_scheduler

    world = dist_info.world_size
    for what, size in (("data.batch_size", cfg.data.batch_size), ("data.eval_batch_size", cfg.data.eval_batch_size)):
        if size % world:
            raise InputError(f"{what}={size} is the global batch; it must be divisible by the {world} processes")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)

    # --- data (the main process first: it may decode and cache; the others then read that cache) -------------
    image_size = cfg.data.image_size or model_info(cfg.model.name).default_size
    def open_splits():
        common = dict(image_size=image_size, cache_dir=cfg.data.cache_dir)
        return (open_dataset(cfg.data.path, "train", limit=cfg.data.limit_train, **common),
                open_dataset(cfg.data.path, "test", limit=cfg.data.limit_eval, **common))  # fmt: skip

    train_ds, test_ds = main_process_first(open_splits, dist_info)
    classes = list(train_ds.classes)
    check_data_classes(classes, list(test_ds.classes), cfg, ckpt, cfg.data.path)
    num_classes = len(classes)

    # The config as run: class count and image size filled in.
    cfg = copy.deepcopy(cfg)
    cfg.model.num_classes = num_classes
    cfg.data.image_size = image_size

    # --- model, precision, EMA ------------------------------------------------------------------------------------
    seed_everything(cfg.train.seed)  # same initial weights on every process
    model = build_model(cfg, num_classes)
    classifier = classifier_parameters(cfg, num_classes)
    if cfg.model.init_from is not None:
        reset = load_initial_weights(model, cfg.model.init_from, classifier)
        new_head = f" (new classifier: {', '.join(reset)})" if reset else ""
        progress.note(f"initialised from {cfg.model.init_from}{new_head}")
    if cfg.model.freeze_features:
        freeze_features(model, classifier)
    precision = choose_precision(cfg.train.amp, device)
    channels_last = use_channels_last(cfg.train.channels_last, device)
    model.to(device=device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    ema = ModelEma(model, cfg.train.ema_decay) if cfg.train.ema_decay else None
    progress.note(
        f"{cfg.model.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, {num_classes} classes, "
        f"{image_size}px | device {device}" + (f" x{world} ({dist_info.backend})" if world > 1 else "")
        + f" | channels_last {'on' if channels_last else 'off'} | {precision.reason}"
    )
    # Training image side per epoch (all image_size unless data.progressive_start_size is set).
    sides = [progressive_size(e, cfg.train.epochs, image_size, cfg.data.progressive_start_size,
                              cfg.data.progressive_epochs) for e in range(cfg.train.epochs)]  # fmt: skip
    if sides[0] != image_size:
        progress.note(f"progressive resizing: training batches grow from {sides[0]} to {image_size}px over the "
                      f"first {cfg.data.progressive_epochs * cfg.train.epochs:g} epochs (evaluation at {image_size}px)")  # fmt: skip

    # --- loaders: global batch split over the processes, each reading its shard ---------------------------------
    train_loader = BatchLoader(
        train_ds, cfg.data.batch_size // world, train=True, device=device, seed=cfg.train.seed,
        rank=dist_info.rank, world_size=world, crop_padding=cfg.data.crop_padding,
        random_resized_crop=cfg.data.random_resized_crop, flip=cfg.data.flip, cutout=cfg.data.cutout,
        mixup_alpha=cfg.data.mixup_alpha, cutmix_alpha=cfg.data.cutmix_alpha, channels_last=channels_last,
        num_classes=num_classes,
    )  # fmt: skip
    test_loader = BatchLoader(
        test_ds, cfg.data.eval_batch_size // world, train=False, device=device, seed=cfg.train.seed,
        rank=dist_info.rank, world_size=world, channels_last=channels_last, num_classes=num_classes,
    )  # fmt: skip
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise InputError(
            f"{len(train_ds)} training images make no batch of {cfg.data.batch_size}; lower the batch size"
        )
    if len(set(distributed.all_gather_object(steps_per_epoch))) > 1:
        raise WorkError("processes disagree on the number of steps per epoch (uneven data shards)")
    total_steps = cfg.train.epochs * steps_per_epoch
    if cfg.train.tta_translate >= image_size:
        raise InputError(f"train.tta_translate={cfg.train.tta_translate} px does not fit {image_size}px images")
    lookahead = Lookahead(model, cfg.train.lookahead_every, cfg.train.lookahead_decay, total_steps) \
        if cfg.train.lookahead_every else None  # fmt: skip

    # --- optimisation ---------------------------------------------------------------------------------------------
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, total_steps, steps_per_epoch)
    scaler = make_scaler(precision, device)  # None unless fp16
    criterion = make_criterion(cfg)

    # --- restore --------------------------------------------------------------------------------------------------
    state = RunState()
    torch.manual_seed(cfg.train.seed + dist_info.rank)  # dropout etc. differ per process
    if ckpt is not None:
        state = _restore(ckpt, model, optimizer, scheduler, scaler, ema, lookahead, train_loader, dist_info)
        progress.note(f"resumed from {ckpt_path} at epoch {state.epoch + 1}, step {state.step}")
        if ckpt.get("world_size", 1) != world:
            progress.note(f"note: the checkpoint was written by {ckpt.get('world_size', 1)} process(es), this run "
                          f"has {world}; training continues but is not bit-identical to an uninterrupted run")

    train_model = distributed.wrap_ddp(model, dist_info, device)
    if cfg.train.compile:
        train_model = torch.compile(train_model)
    eval_model = ema.module if (ema is not None and cfg.train.ema_eval) else model

    def autocast():
        return precision_autocast(precision, device)

    # --- run folder -----------------------------------------------------------------------------------------------
    ckpt_dir = ckpt_io.checkpoint_dir(run_dir)
    metrics = None
    if dist_info.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        ckpt_io.remove_stale_temp_files(ckpt_dir)
        ckpt_io.remove_stale_temp_files(run_dir)
        save_yaml(cfg, run_dir / "config.yaml")
        metrics = MetricsLog(run_dir, state.history)
    last_path = ckpt_dir / ckpt_io.LAST
    meta = {
        "model_name": cfg.model.name, "num_classes": num_classes, "in_chans": cfg.model.in_chans,
        "image_size": image_size, "classes": classes, "mean": [float(v) for v in train_ds.mean],
        "std": [float(v) for v in train_ds.std],
    }  # fmt: skip

    def save(paths: list[Path]) -> None:
        """Gather every process's RNG state, then the main process writes the files."""
        rng = distributed.all_gather_object(ckpt_io.rng_state())
        partial = state.epoch_stats.reduced() if state.batch_index else EpochStats()
        if not dist_info.is_main:
            return
        payload = {
            "format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, **meta, "config": to_dict(cfg),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema": ema.state_dict() if ema is not None else None,
            "lookahead": lookahead.state_dict() if lookahead is not None else None,
            "rng": rng, "world_size": world,
            "loader": {**train_loader.state_dict(), "epoch": state.epoch, "batch_index": state.batch_index},
            "epoch": state.epoch, "step": state.step, "batch_index": state.batch_index,
            "epoch_stats": partial.to_dict(), "best_top1": state.best_top1, "best_epoch": state.best_epoch,
            "train_time_s": state.train_time_s, "time_s": state.time_s, "history": state.history,
        }  # fmt: skip
        ckpt_io.save_checkpoint(payload, *paths)

    # --- the loop -------------------------------------------------------------------------------------------------
    every = cfg.checkpoint.every_steps
    epochs = cfg.train.epochs
    run_start = time.perf_counter() - state.time_s  # wall-clock continues from the checkpoint
    stop = False
    while state.epoch < epochs and not stop:
        epoch = state.epoch  # 0-based index of the epoch being trained
        if state.batch_index == 0:
            train_loader.set_epoch(epoch)
            state.epoch_stats = EpochStats()
        epoch_start = time.perf_counter()
        progress.start_epoch(epoch + 1, epochs, steps_per_epoch, state.batch_index, cfg.train.log_every)

        def after_step(info: StepInfo, stats: EpochStats) -> None:
            state.step, state.batch_index = info.step, info.batch_index
            state.time_s = time.perf_counter() - run_start
            progress.step(info.images, info.loss, info.lr)
            if every and info.step % every == 0 and info.batch_index < steps_per_epoch:
                save([last_path])

        try:
            batches = train_loader if sides[epoch] == image_size else resized_batches(train_loader, sides[epoch])
            state.step, stats = train_one_epoch(
                train_model, batches, optimizer, scheduler, criterion, step=state.step,
                start_batch=state.batch_index, stats=state.epoch_stats, autocast=autocast, scaler=scaler, ema=ema,
                lookahead=lookahead, grad_clip=cfg.optim.grad_clip, on_nan=cfg.train.on_nan, world_size=world,
                after_step=after_step,
            )  # fmt: skip
        except NonFiniteLoss as exc:
            progress.close()
            good = last_path if last_path.exists() else None
            raise WorkError(
                f"{exc} in epoch {epoch + 1}; training stopped. "
                + (f"The last good checkpoint is {good}" if good else "No checkpoint was written yet")
                + " (unchanged). Lower the learning rate, add optim.grad_clip, or pass --on-nan skip."
            ) from None
        totals = stats.reduced()
        state.train_time_s += stats.train_time_s
        state.epoch, state.batch_index = epoch + 1, 0

        # --- evaluate, log, checkpoint ------------------------------------------------------------------------------
        result: EvalResult | None = None
        eval_time = 0.0
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == epochs:
            tick = time.perf_counter()
            distributed.broadcast_buffers(eval_model)  # every process evaluates what rank 0 will save
            result = evaluate(eval_model, test_loader, num_classes=num_classes, classes=classes,
                              tta_flip=cfg.train.tta_flip, tta_translate=cfg.train.tta_translate,
                              autocast=autocast)  # fmt: skip
            eval_time = time.perf_counter() - tick
        state.time_s = time.perf_counter() - run_start
        row = {
            "epoch": epoch + 1,
            "step": state.step,
            "lr": lr_of(optimizer),
            "train_loss": totals.loss_sum / max(1, totals.seen),
            "train_top1": 100.0 * totals.correct / max(1, totals.seen),
            "test_loss": result.loss if result else None,
            "test_top1": result.top1 if result else None,
            "test_top5": result.top5 if result else None,
            "images_per_s": totals.seen / max(stats.train_time_s, 1e-9),
            "epoch_time_s": time.perf_counter() - epoch_start,
            "eval_time_s": eval_time,
            "train_time_s": state.train_time_s,
            "time_s": state.time_s,
            "skipped_steps": totals.skipped_steps,
        }
        improved = result is not None and (state.best_top1 is None or result.top1 > state.best_top1)
        if improved:
            state.best_top1, state.best_epoch = result.top1, epoch + 1
        state.history.append(row)
        save([ckpt_io.epoch_path(run_dir, epoch + 1), last_path] + ([ckpt_dir / ckpt_io.BEST] if improved else []))
        if dist_info.is_main:
            ckpt_io.prune_epoch_checkpoints(run_dir, cfg.checkpoint.keep)
            metrics.append(row)
            stop = any([bool(callback(row)) for callback in callbacks])  # every callback sees every row
        progress.end_epoch(row, epochs)
        stop = distributed.broadcast_object(stop)

    # --- export the weights that were evaluated ---------------------------------------------------------------------
    weights_path = run_dir / ckpt_io.SAFETENSORS
    if dist_info.is_main:
        last_row = state.history[-1] if state.history else {}
        ckpt_io.export_safetensors(
            eval_model.state_dict(), weights_path,
            {**meta, "epoch": state.epoch, "test_top1": last_row.get("test_top1"), "ema": eval_model is not model},
        )  # fmt: skip
        metrics.close()
    final = dict(state.history[-1]) if state.history else {}
    final.update(
        best_top1=state.best_top1, best_epoch=state.best_epoch, stopped_early=stop and state.epoch < epochs,
        run_dir=str(run_dir), checkpoint=str(last_path), weights=str(weights_path),
    )  # fmt: skip
    return final


def _restore(ckpt, model, optimizer, scheduler, scaler, ema, lookahead, loader, dist_info) -> RunState:
    """Put every piece of training state back as it was when ``ckpt`` was written."""
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0]
        raise InputError(f"the checkpoint's weights do not fit {ckpt['model_name']}: {first_line}") from None
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt["scaler"] is not None:
        scaler.load_state_dict(ckpt["scaler"])
    if ema is not None and ckpt["ema"] is not None:
        ema.load_state_dict(ckpt["ema"])
    if lookahead is not None:
        if ckpt.get("lookahead") is None:
            raise InputError("the checkpoint was written without train.lookahead_every; resume with the same setting")
        lookahead.load_state_dict(ckpt["lookahead"])
    # Each process gets back its own RNG state; with another process count, rank 0's (not bit-exact then).
    rng = ckpt["rng"]
    ckpt_io.set_rng_state(rng[dist_info.rank] if len(rng) == dist_info.world_size else rng[0])
    try:
        loader.load_state_dict(ckpt["loader"])
    except ValueError as exc:  # e.g. a mid-epoch checkpoint resumed with another process count
        raise InputError(f"{exc}; resume from an epoch-end checkpoint (checkpoints/epoch_*.pt) instead") from None
    stats = EpochStats(**ckpt["epoch_stats"])
    if not dist_info.is_main:  # the saved partial sums are totals over all processes: count them once
        stats.loss_sum, stats.correct, stats.seen = 0.0, 0, 0
    return RunState(
        epoch=ckpt["epoch"], step=ckpt["step"], batch_index=ckpt["batch_index"], best_top1=ckpt["best_top1"],
        best_epoch=ckpt["best_epoch"], train_time_s=ckpt["train_time_s"], time_s=ckpt["time_s"],
        history=list(ckpt["history"]), epoch_stats=stats,
    )  # fmt: skip
