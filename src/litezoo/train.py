"""Training, end to end: ``fit(cfg, run_dir)`` does everything ``litezoo train`` does.

    check the config, the run folder and the checkpoint to resume -> join the process group (torchrun)
    -> build_run (litezoo.run: data, model, precision, EMA, loaders, optimiser, schedule) -> restore
    -> lock the run folder -> for each epoch: train_one_epoch (a checkpoint every N steps / minutes if asked)
    -> evaluate -> metrics row -> checkpoint (epoch file, last, best) -> progress line and callbacks
    -> export model.safetensors.

``train_one_epoch`` and ``evaluate`` (litezoo.evaluate) are usable on their own, e.g. by benchmarks.

Exactness: every source of randomness is either a pure function of (seed, epoch, batch index, rank) (data
order and augmentation, in litezoo.data) or the global RNGs, whose states are saved in each checkpoint. With
the optimizer, scheduler, scaler and EMA states and the loader position saved too, a run resumed from any
checkpoint on CPU continues bit-identically (tests/test_train_resume.py kills a real process to check).

Interruptions: Ctrl-C or SIGTERM lets the current step finish, writes checkpoints/last.pt and raises
:class:`litezoo.interrupt.Interrupted` (a second signal stops at once). A second process cannot train into a
folder a live run holds (litezoo.runlock).

Batch sizes in the config are global: under torchrun each of the N processes takes batch_size / N, so a
recipe trains the same way (same lr per global batch) whatever the number of processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn

from litezoo import checkpoint as ckpt_io
from litezoo import distributed
from litezoo.config import RunConfig, save_yaml, validate
from litezoo.device import resolve_device
from litezoo.data import augment
from litezoo.data.loader import rank_block
from litezoo.distill import TeacherTable, distilled_batches, table_distilled_batches, teacher_table_key
from litezoo.errors import InputError, WorkError
from litezoo.evaluate import EvalResult, evaluate
from litezoo.fsutil import atomic_write_bytes
from litezoo.heap import heap_kept
from litezoo.interrupt import Interrupted, StopSignals
from litezoo.machine import machine_info
from litezoo.metrics import MetricsLog
from litezoo.progress import EpochCallback, Progress
from litezoo.registry import model_info
from litezoo.report.curves import CURVES, save_curves
from litezoo.run import EpochStats, Run, RunState, build_run
from litezoo.runlock import LOCK_FILE, RunLock, check_not_locked
from litezoo.tblog import require_tensorboard

# ---------------------------------------------------------------------------------------------------------------
# Checks done before any work


def check_resume_compatible(cfg: RunConfig, ckpt: ckpt_io.Checkpoint, path: Path) -> None:
    """The model to build must be the one in the checkpoint: same name, class count and input channels."""
    meta = ckpt.meta
    if cfg.model.name != meta.model_name:
        raise InputError(
            f"cannot resume: {path} holds model {meta.model_name!r}, but model {cfg.model.name!r} was asked for"
        )
    if cfg.model.num_classes is not None and cfg.model.num_classes != meta.num_classes:
        raise InputError(
            f"cannot resume: {path} has {meta.num_classes} classes, but model.num_classes={cfg.model.num_classes}"
        )
    if cfg.model.in_chans != meta.in_chans:
        raise InputError(
            f"cannot resume: {path} has {meta.in_chans} input channels, but model.in_chans={cfg.model.in_chans}"
        )


# What litezoo itself writes into a run folder: a non-empty folder holding none of these is not a run.
RUN_INFO = "run.json"  # machine, device and precision of the run's latest start (for litezoo report)
TEACHER_TABLE = "teacher_table.safetensors"  # train.distill_cache: the teacher's answers (litezoo.distill)
RUN_FOLDER_NAMES = {"config.yaml", "metrics.jsonl", "metrics.csv", ckpt_io.CHECKPOINT_DIR, ckpt_io.SAFETENSORS,
                    "tensorboard", CURVES, RUN_INFO, LOCK_FILE, TEACHER_TABLE}  # fmt: skip


def check_run_folder(run_dir: Path) -> None:
    """A new run's folder: absent, empty, or a litezoo run folder without checkpoints."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir} is a file, not a folder: choose a folder for the run")
    if ckpt_io.epoch_checkpoints(run_dir) or (ckpt_io.checkpoint_dir(run_dir) / ckpt_io.LAST).exists():
        raise InputError(f"{run_dir} already holds checkpoints: resume it (--resume {run_dir}) or choose another --out")
    names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    if names and not names & RUN_FOLDER_NAMES:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise InputError(
            f"--out {run_dir} is a folder that is not a litezoo run and is not empty ({shown}); "
            "choose a new or empty folder so that the run's files are not mixed into it"
        )


def check_before_work(
    cfg: RunConfig, run_dir: Path, resume: bool | str | os.PathLike
) -> tuple[ckpt_io.Checkpoint | None, Path | None]:
    """Config, model name, run folder and the checkpoint to resume; returns (checkpoint, its path) or (None, None)."""
    validate(cfg)
    model_info(cfg.model.name)  # unknown model -> InputError with the close names
    if cfg.model.init_from is not None and not Path(cfg.model.init_from).is_file():
        raise InputError(f"model.init_from: {cfg.model.init_from} does not exist")
    if cfg.train.distill_from is not None and not Path(cfg.train.distill_from).exists():
        raise InputError(f"train.distill_from: {cfg.train.distill_from} does not exist (a trained run folder or "
                         "weights file)")  # fmt: skip
    if cfg.train.tensorboard:
        require_tensorboard()  # an optional extra: say so now, not after the data is decoded
    if not resume:
        check_not_locked(run_dir)  # first: a live run's folder is "in use", whatever it holds
        check_run_folder(run_dir)
        return None, None
    ckpt_path, _ = ckpt_io.resolve_resume_path(run_dir if resume is True else resume)
    check_not_locked(run_dir)
    ckpt = ckpt_io.load_checkpoint(ckpt_path)
    check_resume_compatible(cfg, ckpt, ckpt_path)
    return ckpt, ckpt_path


# ---------------------------------------------------------------------------------------------------------------
# Building blocks


def set_train_mode(model: nn.Module) -> None:
    """``model.train()``, except BatchNorm layers whose parameters are all frozen (``freeze_features``): their
    running statistics stay fixed too. A BN that freezes only its scale (vgg_fast's) still trains normally."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def resized_batches(loader: Iterable[tuple[torch.Tensor, torch.Tensor]], side: int):
    """The loader's (already augmented, normalised) batches scaled to ``side`` x ``side`` (antialiased)."""
    for x, y in loader:
        yield augment.resize_batch(x, side), y  # (B, C, side, side)


def build_teacher_table(run: Run) -> TeacherTable:
    """The run's teacher over every training image at each crop position of ``train.distill_cache_grid``, as is
    and mirrored, at each size of ``run.sides`` (the views the training loader makes). Under torchrun each process
    judges its block of the images and the blocks are summed: every process ends with the whole table, as each
    epoch's shard is another subset of the images."""
    loader, dist = run.train_loader, run.dist
    n = len(loader.ds)
    mine = rank_block(n, dist.rank, dist.world_size)  # the block this process judges
    size = run.cfg.data.eval_batch_size
    blocks = (mine[i : i + size] for i in range(0, len(mine), size))
    return TeacherTable.build(run.teacher, loader.crop_views, blocks, n, run.sides, loader.crop_span,
                              run.cfg.train.distill_cache_grid,
                              reduce=distributed.all_reduce_sum if dist.world_size > 1 else None)  # fmt: skip


def teacher_table(run: Run, state: RunState, run_dir: Path, progress: Progress) -> TeacherTable:
    """The teacher table of ``run``: read from ``train.distill_table`` (default: the run folder) when it holds
    one made for this teacher, data, sizes and grid, else built and saved there. Its build time counts as training
    time once, in the run that built it: added to ``state`` when built, or when read by that run before it has
    trained (a table left by an attempt that stopped before its first checkpoint). A table another run built (a
    shared file) is like the teacher's own training: a one-off cost per teacher, logged, not counted here. A shared
    file made for another teacher, data, sizes or grid is an error, not replaced (the run folder's is replaced)."""
    ds, cfg = run.train_loader.ds, run.cfg.train
    path = Path(cfg.distill_table) if cfg.distill_table else run_dir / TEACHER_TABLE
    key = teacher_table_key(run.teacher, ds.images, ds.labels, run.sides, run.train_loader.crop_span,
                            cfg.distill_cache_grid)  # fmt: skip
    if cfg.distill_table and TeacherTable.stored_key(path) not in (None, key):  # a shared file is not replaced
        raise InputError(f"train.distill_table: {path} holds a teacher table made for another teacher, training "
                         "data, sizes or crop grid; name another file (or delete this one)")  # fmt: skip
    table = TeacherTable.load(path, key, run.teacher.temperature)
    if not all(distributed.all_gather_object(table is not None)):
        table = None  # the build below is collective: every process builds, or none does
    me = str(run_dir.resolve())
    if table is not None:
        ours = table.built_by == me
        if ours and state.step == 0:
            state.train_time_s += table.build_time_s
        other = table.built_by or "another run"
        whose = ("when this run started, counted as training time once" if ours else
                 f"by {other}: a one-off cost per teacher, not counted in this run")  # fmt: skip
        progress.note(f"teacher table: {table.views:,} views ({table.layout}) read from {path} "
                      f"(built in {table.build_time_s:.0f} s {whose})")  # fmt: skip
        return table
    tick = time.perf_counter()
    table = build_teacher_table(run)
    table.build_time_s = time.perf_counter() - tick
    table.built_by = me
    state.train_time_s += table.build_time_s
    if run.dist.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.save(path, key)
    distributed.barrier()  # the file is complete before any process moves on (and could be stopped and resumed)
    progress.note(f"teacher table: {table.views:,} views ({table.layout}) in {table.build_time_s:.0f} s, "
                  f"counted as training time; kept in {path}")  # fmt: skip
    return table


def lr_of(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


class NonFiniteLoss(Exception):
    """Raised by train_one_epoch with on_nan="stop"; fit turns it into a WorkError naming the checkpoint."""

    def __init__(self, step: int, lr: float, value: float):
        super().__init__(f"loss is {value} at step {step} (lr {lr:.6g})")
        self.step, self.lr, self.value = step, lr, value


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` within the block (None: left alone), restored after."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------------------------
# One epoch


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
# The run folder


class RunFolder:
    """The files of a run folder: config.yaml, metrics (litezoo.metrics), checkpoints/, model.safetensors and
    curves.png (litezoo.report.curves).

    Only the main process writes; :meth:`save` is collective (every process contributes its RNG state).
    """

    def __init__(self, run_dir: Path, run: Run, state: RunState):
        self.run_dir = run_dir
        self.ckpt_dir = ckpt_io.checkpoint_dir(run_dir)
        self.last = self.ckpt_dir / ckpt_io.LAST
        self.best = self.ckpt_dir / ckpt_io.BEST
        self.weights = run_dir / ckpt_io.SAFETENSORS
        self.curves = run_dir / CURVES
        self.is_main = run.dist.is_main
        self.metrics: MetricsLog | None = None
        if self.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            ckpt_io.remove_stale_temp_files(self.ckpt_dir)
            ckpt_io.remove_stale_temp_files(run_dir)
            save_yaml(run.cfg, run_dir / "config.yaml")
            # What the run trains on and what was chosen at its (latest) start: for reports (litezoo report).
            info = {"machine": machine_info(run.device), "device": str(run.device), "world_size": run.dist.world_size,
                    "precision": run.precision.mode, "precision_reason": run.precision.reason,
                    "channels_last": run.channels_last}  # fmt: skip
            atomic_write_bytes(json.dumps(info, indent=1).encode(), run_dir / RUN_INFO)
            self.metrics = MetricsLog(run_dir, state.history, tensorboard=run.cfg.train.tensorboard)

    def save(self, run: Run, state: RunState, *paths: Path) -> None:
        ckpt = run.checkpoint(state)  # collective
        if ckpt is not None:
            ckpt_io.save_checkpoint(ckpt, *paths)

    def end_epoch(self, run: Run, state: RunState, row: dict[str, Any], improved: bool) -> None:
        """Checkpoints of the epoch just finished (epoch file, last, best), keep-K, the metrics row."""
        self.save(run, state, ckpt_io.epoch_path(self.run_dir, row["epoch"]), self.last,
                  *([self.best] if improved else []))  # fmt: skip
        if self.is_main:
            ckpt_io.prune_epoch_checkpoints(self.run_dir, run.cfg.checkpoint.keep)
            self.metrics.append(row)

    def log_step(self, step: int, loss: float, lr: float) -> None:
        if self.is_main:
            self.metrics.log_step(step, loss, lr)

    def export(self, run: Run, state: RunState) -> None:
        """model.safetensors: the weights that were evaluated, with what is needed to use them; curves.png."""
        if self.is_main:
            last_row = state.history[-1] if state.history else {}
            ckpt_io.export_safetensors(
                run.eval_model.state_dict(), self.weights,
                {**run.meta.to_dict(), "epoch": state.epoch, "test_top1": last_row.get("test_top1"),
                 "ema": run.eval_model is not run.model},
            )  # fmt: skip
            save_curves(self.run_dir, self.curves)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()


def metrics_row(epoch: int, state: RunState, totals: EpochStats, lr: float, result: EvalResult | None,
                epoch_time: float, eval_time: float) -> dict[str, Any]:  # fmt: skip
    """One metrics.jsonl row (the columns of litezoo.metrics.METRIC_COLUMNS); ``epoch`` is 1-based."""
    return {
        "epoch": epoch,
        "step": state.step,
        "lr": lr,
        "train_loss": totals.loss_sum / max(1, totals.seen),
        "train_top1": 100.0 * totals.correct / max(1, totals.seen),
        "test_loss": result.loss if result else None,
        "test_top1": result.top1 if result else None,
        "test_top5": result.top5 if result else None,
        "images_per_s": totals.seen / max(totals.train_time_s, 1e-9),
        "epoch_time_s": epoch_time,
        "eval_time_s": eval_time,
        "train_time_s": state.train_time_s,
        "time_s": state.time_s,
        "skipped_steps": totals.skipped_steps,
        "constant_predictions": result.constant_predictions if result else None,
    }


# ---------------------------------------------------------------------------------------------------------------
# fit


def fit(
    cfg: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool | str | os.PathLike = False,
    callbacks: Sequence[EpochCallback] = (),
    progress: Progress | None = None,
    download: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir``; returns the last metrics row plus best top-1 and the files written.

    resume: False for a new run (``run_dir`` must hold no checkpoints), True to continue ``run_dir`` from
    its last.pt, or the path of a run folder / .pt checkpoint to continue from.
    callbacks: called on the main process with each epoch's metrics row; returning True stops training after
    that epoch (its checkpoint is written first).
    download: whether a known dataset name (cifar10) may be downloaded when there is no local copy.
    Raises :class:`litezoo.interrupt.Interrupted` after SIGINT/SIGTERM (once checkpoints/last.pt is written).
    """
    run_dir = Path(run_dir)
    progress = progress or Progress()
    ckpt, ckpt_path = check_before_work(cfg, run_dir, resume)
    device = resolve_device(cfg.train.device)
    owns_group = not distributed.is_initialized()
    dist_info, device = distributed.init_distributed(device)
    if not dist_info.is_main:
        progress = Progress(quiet=True)
    with contextlib.ExitStack() as stack:
        # Installed once the run is built (below) but put back last, after the process group is closed: under
        # torchrun the launcher SIGTERMs the other workers as soon as one exits, and until fit returns that
        # repeat must find this handler (which only notes it), not the default one (which kills at once).
        stop = StopSignals(repeat_stops_at_once=not distributed.under_launcher())
        stack.callback(stop.restore)
        if owns_group:  # with a barrier first when the run ended normally (no exception on the way out)
            stack.push(lambda exc_type, exc, tb: distributed.shutdown(clean=exc_type is None))
        stack.enter_context(torch_threads(cfg.train.threads))
        # Large activations are freed and reallocated every step; on a CPU, keep them in the heap (litezoo.heap).
        stack.enter_context(heap_kept(cfg.train.keep_heap and device.type == "cpu"))
        run = build_run(cfg, device, dist_info, resume_from=ckpt, download=download, note=progress.note)
        state = RunState()
        if ckpt is not None:
            state = run.restore(ckpt)
            progress.note(f"resumed from {ckpt_path} at epoch {state.epoch + 1}, step {state.step}")
            if ckpt.world_size != dist_info.world_size:
                progress.note(f"note: the checkpoint was written by {ckpt.world_size} process(es), this run has "
                              f"{dist_info.world_size}; training continues but is not bit-identical to an "
                              "uninterrupted run")  # fmt: skip
        if dist_info.is_main:
            stack.enter_context(RunLock(run_dir))  # held until fit returns (released by the OS on any exit)
            if ckpt is None:
                check_run_folder(run_dir)  # no other run wrote checkpoints here since the check before work
        folder = RunFolder(run_dir, run, state)
        stack.callback(folder.close)
        stop.install()
        stack.callback(progress.close)  # first on the way out: no bar left on the line of a message
        return train_loop(run, state, folder, stop, callbacks, progress)


def train_loop(run: Run, state: RunState, folder: RunFolder, stop: StopSignals, callbacks: Sequence[EpochCallback],
               progress: Progress) -> dict[str, Any]:  # fmt: skip
    """Epochs from ``state`` to ``cfg.train.epochs``: train, evaluate, log, checkpoint; then export."""
    cfg, epochs, steps_per_epoch = run.cfg, run.cfg.train.epochs, run.steps_per_epoch
    every_steps = cfg.checkpoint.every_steps
    every_s = cfg.train.checkpoint_every_minutes * 60 if cfg.train.checkpoint_every_minutes else None
    clock = {"run_start": time.perf_counter() - state.time_s, "saved": time.perf_counter()}
    first_step = state.step
    if state.epoch >= epochs:
        progress.note(f"nothing left to train: the run has finished its {epochs} epochs "
                      f"(pass --epochs N with N > {epochs} to train longer)")  # fmt: skip

    def interrupted(signum: int) -> Interrupted:
        progress.close()
        where = folder.last if run.dist.is_main else None
        return Interrupted(signum, where, f"stopped by {signal.Signals(signum).name} at epoch {state.epoch + 1}, step "
                           f"{state.step}; saved {folder.last}; resume with: litezoo train --resume {folder.run_dir}")

    def after_step(info: StepInfo, stats: EpochStats) -> None:
        """After every optimizer step: counters, progress, and a checkpoint when one is due or asked for."""
        state.step, state.batch_index = info.step, info.batch_index
        now = time.perf_counter()
        state.time_s = now - clock["run_start"]
        progress.step(info.images, info.loss, info.lr)
        folder.log_step(info.step, info.loss, info.lr)
        if info.batch_index == steps_per_epoch:
            return  # the end of the epoch writes its own checkpoint (and handles a stop request)
        signum, time_due = stop.signum, every_s is not None and now - clock["saved"] >= every_s
        if run.dist.enabled:  # every process must take the same branch (the save is collective)
            flags = distributed.all_reduce_max(torch.tensor([signum or 0, int(time_due)]))
            signum, time_due = int(flags[0]) or None, bool(flags[1])
        if signum or time_due or (every_steps and info.step % every_steps == 0):
            folder.save(run, state, folder.last)
            clock["saved"] = time.perf_counter()
        if signum:
            distributed.barrier()  # no process leaves before rank 0 has written last.pt (the launcher would
            # SIGTERM the others as soon as one exits)
            raise interrupted(signum)

    table = None
    if run.teacher is not None and cfg.train.distill_cache and state.epoch < epochs:
        # The teacher's answers for every image, flip, crop cell and training size, before the first step: the time
        # counts as training time in the run that builds it (it replaces the teacher's share of every step).
        table = teacher_table(run, state, folder.run_dir, progress)

    stopped_early = False
    while state.epoch < epochs and not stopped_early:
        epoch = state.epoch  # 0-based index of the epoch being trained
        if state.batch_index == 0:
            run.train_loader.set_epoch(epoch)
            state.epoch_stats = EpochStats()
        epoch_start = time.perf_counter()
        progress.start_epoch(epoch + 1, epochs, steps_per_epoch, state.batch_index, cfg.train.log_every)
        side = run.sides[epoch]
        if table is not None:  # targets from the table, for each row's image and flip at this epoch's size
            batches = table_distilled_batches(run.train_loader.with_views(), table, side, cfg.train.distill_alpha)
        else:
            batches = run.train_loader
        batches = batches if side == run.meta.image_size else resized_batches(batches, side)
        if run.teacher is not None and table is None:  # the live teacher: targets mixed with its probabilities
            # for the same augmented view, at the student's size: a teacher judging the full-size view instead
            # (sharper targets: it agrees with
            # the labels of augmented 32 px training images 97% of the time, of 24 px ones 89%) cost 206 s more in
            # a 60-minute run and gained nothing measurable (docs/fast_cifar.md)
            batches = distilled_batches(batches, run.teacher, cfg.train.distill_alpha)
        try:
            state.step, stats = train_one_epoch(
                run.train_model, batches, run.optimizer, run.scheduler, run.criterion, step=state.step,
                start_batch=state.batch_index, stats=state.epoch_stats, autocast=run.autocast, scaler=run.scaler,
                ema=run.ema, lookahead=run.lookahead, grad_clip=cfg.optim.grad_clip, on_nan=cfg.train.on_nan,
                world_size=run.dist.world_size, after_step=after_step,
            )  # fmt: skip
        except NonFiniteLoss as exc:
            progress.close()
            good = folder.last if folder.last.exists() else None
            raise WorkError(
                f"{exc} in epoch {epoch + 1}; training stopped. "
                + (f"The last good checkpoint is {good}" if good else "No checkpoint was written yet")
                + " (unchanged). Lower the learning rate, add optim.grad_clip, or pass --on-nan skip."
            ) from None
        totals = stats.reduced()
        state.train_time_s += stats.train_time_s
        state.epoch, state.batch_index = epoch + 1, 0

        # --- evaluate, log, checkpoint ----------------------------------------------------------------------------
        result: EvalResult | None = None
        eval_time = 0.0
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == epochs:
            tick = time.perf_counter()
            distributed.broadcast_buffers(run.eval_model)  # every process evaluates what rank 0 will save
            result = evaluate(run.eval_model, run.test_loader, num_classes=run.meta.num_classes,
                              classes=run.meta.classes, tta_flip=cfg.train.tta_flip,
                              tta_translate=cfg.train.tta_translate, autocast=run.autocast)  # fmt: skip
            eval_time = time.perf_counter() - tick
            if result.constant_predictions:
                progress.note(f"warning: epoch {epoch + 1}: {result.constant_predictions_text()}")
        state.time_s = time.perf_counter() - clock["run_start"]
        row = metrics_row(epoch + 1, state, totals, lr_of(run.optimizer), result,
                          time.perf_counter() - epoch_start, eval_time)  # fmt: skip
        improved = result is not None and (state.best_top1 is None or result.top1 > state.best_top1)
        if improved:
            state.best_top1, state.best_epoch = result.top1, epoch + 1
        state.history.append(row)
        folder.end_epoch(run, state, row, improved)
        clock["saved"] = time.perf_counter()
        stop_asked = run.dist.is_main and any([bool(callback(row)) for callback in callbacks])  # all see every row
        progress.end_epoch(row, epochs)
        stopped_early = distributed.broadcast_object(stop_asked)
        signum = int(distributed.all_reduce_max(torch.tensor(stop.signum or 0))) if run.dist.enabled else stop.signum
        if signum and state.epoch < epochs:
            raise interrupted(signum)

    folder.export(run, state)
    final = dict(state.history[-1]) if state.history else {}
    final.update(
        best_top1=state.best_top1, best_epoch=state.best_epoch, stopped_early=stopped_early and state.epoch < epochs,
        run_dir=str(folder.run_dir), checkpoint=str(folder.last), weights=str(folder.weights),
        curves=str(folder.curves), steps_this_run=state.step - first_step,
    )  # fmt: skip
    return final


__all__ = ["NonFiniteLoss", "RunFolder", "StepInfo", "check_before_work", "fit", "lr_of", "resized_batches",
           "torch_threads", "train_loop", "train_one_epoch"]  # fmt: skip
