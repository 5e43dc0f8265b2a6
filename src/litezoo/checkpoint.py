"""Checkpoints that survive crashes, and weights exported as safetensors.

A run folder looks like::

    run/
      config.yaml            the resolved config
      metrics.jsonl, .csv    one row per epoch
      model.safetensors      the final weights (the ones evaluated: EMA when EMA is on)
      checkpoints/
        last.pt              the newest state (epoch end, or every N steps if asked)
        best.pt              the epoch with the best test top-1
        epoch_0001.pt …      the last K epoch ends (checkpoint.keep)

Every file is written atomically: serialised in memory, written to a hidden temp name in the same folder
(``.last.pt.tmp-<pid>`` — it never ends in ``.pt``, so nothing can take it for a checkpoint), flushed, fsynced,
then renamed over the target and the folder fsynced. A crash or a full disk at any moment leaves the previous
file byte-identical.

What a checkpoint holds is written in one place, the :class:`Checkpoint` dataclass (format version 2): the
model's description (:class:`ModelMeta`), the config as run, the state of every stateful piece of the run
(``litezoo.run.Run.state_dict``), its counters (``litezoo.run.RunState.state_dict``) and each process's RNG
state. Version-1 files (one flat dict, litezoo before the run object) are read into the same dataclass, so old
runs still resume and evaluate.

On disk a checkpoint holds only plain containers, numbers, strings and tensors, so it loads with
``torch.load(weights_only=True)``, which never runs code; RNG states are stored as tensors for that reason.
A full disk while writing is a :class:`WorkError` naming the file and the bytes it needed; the previous file
is left as it was.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save as safetensors_bytes

from litezoo.errors import InputError, WorkError
from litezoo.fsutil import atomic_write_bytes
from litezoo.safeload import first_line, safe_torch_load

FORMAT = "litezoo-checkpoint"
VERSION = 2  # 1: one flat dict (read by Checkpoint.from_dict); 2: the Checkpoint dataclass below
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
SAFETENSORS = "model.safetensors"
_EPOCH_RE = re.compile(r"^epoch_(\d{4,})\.pt$")
_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")


# ---------------------------------------------------------------------------------------------------------------
# Atomic writes


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files left by writers that were killed mid-write (their process is gone)."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP_RE.match(p.name)
        if m and not _pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------------------------
# The schema


@dataclass(frozen=True)
class ModelMeta:
    """What rebuilding and feeding the model needs (the safetensors export carries the same fields)."""

    model_name: str
    num_classes: int
    in_chans: int
    image_size: int  # side of the (square) evaluation images
    classes: list[str]
    mean: list[float]  # per-channel normalisation of the training data
    std: list[float]
    # The class folders behind ``classes`` (same order; a names file may have renamed them): evaluation matches
    # a dataset by its folders, so it needs no names file. None in files written before this field existed.
    class_folders: list[str] | None = None
    # Build options of the model besides num_classes/in_chans that change what it computes (e.g. EfficientNet's
    # ``bn_eps``, ShuffleNet V1's ``shuffle_order``): every rebuild passes them to ``create_model``. None: the
    # builder's defaults (and in files written before this field existed).
    options: dict[str, Any] | None = None

    def build_options(self) -> dict[str, Any]:
        """``options`` as keyword arguments for ``create_model`` ({} when none)."""
        return dict(self.options or {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | os.PathLike) -> "ModelMeta":
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in d and f.default is dataclasses.MISSING]
        if missing:
            raise InputError(f"{where} lacks the model description field(s) {', '.join(missing)}")
        options = d.get("options")
        if options is not None and not (isinstance(options, dict) and all(isinstance(k, str) for k in options)):
            raise InputError(f"{where}: the model description's options must be a mapping, got {options!r:.80}")
        return cls(**{f.name: d[f.name] for f in fields if f.name in d})


@dataclass
class Checkpoint:
    """Everything a checkpoint file holds (format version 2).

    The training pieces are the ``state_dict()`` of each (``litezoo.run.Run.state_dict`` lists them); ``state``
    is ``litezoo.run.RunState.state_dict()``: epoch, step, batch_index, epoch_stats, best_top1, best_epoch,
    train_time_s, time_s, history.
    """

    meta: ModelMeta
    config: dict[str, dict[str, Any]]  # litezoo.config.to_dict of the config as run
    model: dict[str, torch.Tensor]  # the trained (raw) weights
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None  # fp16 only
    ema: dict[str, Any] | None  # ema.ModelEma.state_dict(): the averaged weights are ema["module"]
    lookahead: dict[str, Any] | None
    loader: dict[str, Any]  # the training loader's position (epoch, batch_index, seed, ...)
    state: dict[str, Any]
    rng: list[dict[str, Any]]  # each process's RNG state (rng_state()), in rank order
    world_size: int  # processes that wrote it

    @property
    def step(self) -> int:
        """Optimizer steps done."""
        return int(self.state["step"])

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return int(self.state["epoch"])

    @property
    def evaluates_ema(self) -> bool:
        """Whether the run evaluated (and exported) its EMA weights rather than the trained ones."""
        return self.ema is not None and bool(self.config.get("train", {}).get("ema_eval", True))

    def to_dict(self) -> dict[str, Any]:
        """The file's contents: plain containers, numbers, strings and tensors (loads with weights_only=True)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"format": FORMAT, "version": VERSION, **fields, "meta": self.meta.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | os.PathLike = "checkpoint") -> "Checkpoint":
        """Read a loaded file (version 1 or 2); InputError naming ``where`` if it is not a complete checkpoint."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InputError(f"{where} is not a litezoo checkpoint (no '{FORMAT}' marker)")
        version = d.get("version", 1)
        if not isinstance(version, int) or version > VERSION:
            raise InputError(f"checkpoint {where} has format version {version}; this litezoo reads up to {VERSION}")
        if version < 2:
            d = _from_version_1(d)
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise InputError(f"checkpoint {where} is incomplete: no {', '.join(missing)}")
        return cls(**{**{n: d[n] for n in names}, "meta": ModelMeta.from_dict(d["meta"], where)})


# The counters that version 1 kept at the top level and version 2 keeps in Checkpoint.state.
_STATE_KEYS = ("epoch", "step", "batch_index", "epoch_stats", "best_top1", "best_epoch", "train_time_s", "time_s",
               "history")  # fmt: skip


def _from_version_1(d: dict[str, Any]) -> dict[str, Any]:
    """A version-1 file (one flat dict) in version 2's layout."""
    meta_keys = [f.name for f in dataclasses.fields(ModelMeta)]
    out = {k: v for k, v in d.items() if k not in meta_keys and k not in _STATE_KEYS}
    out["meta"] = {k: d[k] for k in meta_keys if k in d}
    out["state"] = {k: d[k] for k in _STATE_KEYS if k in d}
    out.setdefault("lookahead", None)  # early version-1 files predate lookahead
    out.setdefault("world_size", 1)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Reading and writing


def write_file(data: bytes, path: str | os.PathLike) -> Path:
    """:func:`litezoo.fsutil.atomic_write_bytes`, with a full disk reported as a WorkError that names the file
    and the space it needed (the file itself is left as it was)."""
    try:
        return atomic_write_bytes(data, path)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        folder = Path(path).parent
        free = shutil.disk_usage(folder).free if folder.is_dir() else 0
        kept = "the previous file is unchanged" if Path(path).exists() else "nothing was written"
        raise WorkError(
            f"no space left on the device to write {path}: it needs {_mb(len(data))}, {_mb(free)} free; {kept}"
        ) from None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} bytes"


def to_bytes(ckpt: Checkpoint) -> bytes:
    """The file's bytes."""
    buf = io.BytesIO()
    torch.save(ckpt.to_dict(), buf)
    return buf.getvalue()


def save_checkpoint(ckpt: Checkpoint, *paths: str | os.PathLike) -> list[Path]:
    """Serialise ``ckpt`` once and write it atomically to every path (e.g. epoch file, last.pt, best.pt)."""
    data = to_bytes(ckpt)
    return [write_file(data, p) for p in paths]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a litezoo checkpoint (format version 1 or 2) without executing code.

    Raises ``InputError`` for a missing file, a file holding pickled objects (refused), a truncated or
    corrupt file (naming the newest good checkpoint beside it), or a file that is not a litezoo checkpoint.
    """
    path = Path(path)
    return Checkpoint.from_dict(safe_torch_load(path, "checkpoint", map_location, damaged_hint=_last_good_hint), path)


def _last_good_hint(bad: Path) -> str:
    good = last_good_checkpoint(bad.parent, exclude=bad)
    if good is None:
        return "; no other good checkpoint was found beside it"
    return f"; the last good checkpoint is {good} (resume from it with --resume {good})"


def last_good_checkpoint(folder: str | os.PathLike, exclude: Path | None = None) -> Path | None:
    """The checkpoint in ``folder`` that loads and is furthest into training (highest step).

    Among equals an epoch file is named before last.pt and best.pt: it is the one that stays put.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    best: tuple[tuple[int, int], Path] | None = None
    for p in folder.iterdir():
        if p.suffix != ".pt" or not p.is_file() or (exclude is not None and p.resolve() == exclude.resolve()):
            continue
        try:
            step = Checkpoint.from_dict(safe_torch_load(p, "checkpoint"), p).step
        except Exception:  # noqa: BLE001 — any failure means "not good"
            continue
        key = (step, 2 if _EPOCH_RE.match(p.name) else int(p.name == LAST))
        if best is None or key > best[0]:
            best = (key, p)
    return best[1] if best else None


# ---------------------------------------------------------------------------------------------------------------
# Run-folder layout and keep-K


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def epoch_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """``epoch`` counts completed epochs (1-based), as in metrics.jsonl."""
    return checkpoint_dir(run_dir) / f"epoch_{epoch:04d}.pt"


def epoch_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Epoch checkpoint files, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_epoch_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` epoch files (last.pt and best.pt are separate files and stay)."""
    files = epoch_checkpoints(run_dir)
    doomed = files[: max(0, len(files) - keep)]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def resolve_resume_path(target: str | os.PathLike) -> tuple[Path, Path]:
    """``--resume`` accepts a run folder (uses checkpoints/last.pt) or a .pt file inside one.

    Returns ``(checkpoint_file, run_dir)``.
    """
    target = Path(target)
    if target.is_dir():
        ckpt = checkpoint_dir(target) / LAST
        if not ckpt.is_file():
            good = last_good_checkpoint(checkpoint_dir(target))
            hint = f"; the newest one there is {good}" if good else ""
            raise InputError(f"nothing to resume: {ckpt} does not exist{hint}")
        return ckpt, target
    if target.is_file():
        if target.suffix != ".pt":
            raise InputError(f"--resume needs a run folder or a .pt checkpoint, got {target}")
        run_dir = target.parent.parent if target.parent.name == CHECKPOINT_DIR else target.parent
        return target, run_dir
    raise InputError(f"nothing to resume: {target} does not exist")


# ---------------------------------------------------------------------------------------------------------------
# RNG state as tensors (loadable with weights_only=True)


def rng_state() -> dict[str, Any]:
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python_version": py_version,
        "python": torch.tensor(py_state, dtype=torch.int64),  # 625 words of 32 bits
        "python_gauss": py_gauss,
        "numpy_name": np_name,
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),  # 624 words of 32 bits
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), state["python_gauss"]))
    np.random.set_state(
        (
            state["numpy_name"],
            state["numpy"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ---------------------------------------------------------------------------------------------------------------
# safetensors export


def export_safetensors(
    state_dict: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, Any]
) -> Path:
    """Write weights as safetensors; ``metadata`` values are JSON-encoded (safetensors metadata is str -> str)."""
    # safetensors wants contiguous tensors with no shared storage; channels_last weights are not contiguous.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    meta = {"format": "pt", "litezoo": json.dumps(metadata, sort_keys=True)}
    return write_file(safetensors_bytes(tensors, metadata=meta), path)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Weights and litezoo metadata (model name, classes, mean/std, …) from a safetensors file; the metadata is
    None for a file litezoo did not write."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("litezoo")
        tensors = load_safetensors_file(str(path))
    except Exception as exc:  # noqa: BLE001 — safetensors raises its own error types
        raise InputError(f"weights file {path} is truncated or corrupt ({first_line(exc)})") from None
    return tensors, None if raw is None else json.loads(raw)


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and litezoo metadata (model name, classes, mean/std, …) from a safetensors file litezoo wrote."""
    tensors, meta = read_safetensors(path)
    if meta is None:
        raise InputError(f"{path} has no litezoo metadata (model name, classes); was it written by litezoo?")
    return tensors, meta


# ---------------------------------------------------------------------------------------------------------------
# Trained weights, from whichever file holds them


def checkpoint_metadata(ckpt: Checkpoint) -> dict[str, Any]:
    """What is needed to rebuild and feed the model of a checkpoint (the safetensors metadata holds the same)."""
    return {**ckpt.meta.to_dict(), "epoch": ckpt.epoch}


WEIGHT_CHOICES = ("auto", "raw", "ema")


def load_weights(path: str | os.PathLike, weights: str = "auto") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The evaluated weights and their metadata from a run folder, a .pt checkpoint or a .safetensors file.

    A run folder gives its ``model.safetensors`` (or, for a run that has not finished, ``checkpoints/last.pt``).
    ``weights``: "auto" takes, from a checkpoint, the EMA weights when the run evaluated them (train.ema_eval),
    as training did; "raw" the trained weights and "ema" the averaged ones, whatever the run evaluated (a run
    folder then reads ``checkpoints/last.pt``, which holds both).
    """
    if weights not in WEIGHT_CHOICES:
        raise InputError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")
    path = Path(path)
    if path.is_dir():
        if weights == "auto" and (path / SAFETENSORS).is_file():
            path = path / SAFETENSORS
        elif (checkpoint_dir(path) / LAST).is_file():
            path = checkpoint_dir(path) / LAST
        else:
            raise InputError(f"{path} holds neither {SAFETENSORS} nor {CHECKPOINT_DIR}/{LAST}: is it a run folder?")
    if path.suffix == ".safetensors":
        tensors, meta = load_safetensors(path)
        if weights != "auto" and bool(meta.get("ema")) != (weights == "ema"):
            held = "EMA" if meta.get("ema") else "raw (trained)"
            raise InputError(f"{path} holds only the {held} weights; pass a .pt checkpoint for --weights {weights}")
        return tensors, meta
    if path.suffix != ".pt":
        raise InputError(f"expected a run folder, a .pt checkpoint or a .safetensors file, got {path}")
    ckpt = load_checkpoint(path)
    if weights == "ema" and ckpt.ema is None:
        raise InputError(f"{path} has no EMA weights (the run trained without train.ema_decay)")
    use_ema = weights == "ema" or (weights == "auto" and ckpt.evaluates_ema)
    chosen = ckpt.ema["module"] if use_ema else ckpt.model
    return chosen, {**checkpoint_metadata(ckpt), "ema": use_ema}
