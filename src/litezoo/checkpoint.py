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

Checkpoints hold only plain containers, numbers, strings and tensors, so they load with
``torch.load(weights_only=True)``, which never runs code; RNG states are stored as tensors for that reason.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from litezoo.fsutil import atomic_write_bytes
from litezoo.errors import InputError

FORMAT = "litezoo-checkpoint"
VERSION = 1
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
# Serialisation


def to_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save_checkpoint(state: dict[str, Any], *paths: str | os.PathLike) -> list[Path]:
    """Serialise ``state`` once and write it atomically to every path (e.g. epoch file, last.pt, best.pt)."""
    data = to_bytes(state)
    return [atomic_write_bytes(data, p) for p in paths]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a litezoo checkpoint without executing code.

    Raises ``InputError`` for a missing file, a file holding pickled objects (refused), a truncated or
    corrupt file (naming the newest good checkpoint beside it), or a file that is not a litezoo checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise InputError(
                f"checkpoint {path} contains pickled Python objects and will not be loaded "
                "(litezoo only loads plain tensors and containers, so that loading never runs code)"
            ) from None
        raise InputError(f"checkpoint {path} is corrupt ({_first_line(exc)}){_last_good_hint(path)}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        why = _first_line(exc) or type(exc).__name__
        raise InputError(f"checkpoint {path} is truncated or corrupt ({why}){_last_good_hint(path)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path} is not a litezoo checkpoint (no '{FORMAT}' marker)")
    if state.get("version", 0) > VERSION:
        raise InputError(f"checkpoint {path} has format version {state['version']}; this litezoo reads up to {VERSION}")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else ""


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
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 — any failure means "not good"
            continue
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            continue
        key = (int(state.get("step", -1)), 2 if _EPOCH_RE.match(p.name) else int(p.name == LAST))
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
    from safetensors.torch import save

    # safetensors wants contiguous tensors with no shared storage; channels_last weights are not contiguous.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    meta = {"format": "pt", "litezoo": json.dumps(metadata, sort_keys=True)}
    return atomic_write_bytes(save(tensors, metadata=meta), path)


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and litezoo metadata (model name, classes, mean/std, …) from a safetensors file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("litezoo")
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 — safetensors raises its own error types
        raise InputError(f"weights file {path} is truncated or corrupt ({_first_line(exc)})") from None
    if raw is None:
        raise InputError(f"{path} has no litezoo metadata (model name, classes); was it written by litezoo?")
    return tensors, json.loads(raw)


# ---------------------------------------------------------------------------------------------------------------
# Trained weights, from whichever file holds them


def checkpoint_metadata(state: dict[str, Any]) -> dict[str, Any]:
    """What is needed to rebuild and feed the model of a checkpoint (the safetensors metadata holds the same)."""
    keys = ("model_name", "num_classes", "in_chans", "image_size", "classes", "mean", "std", "epoch")
    return {k: state[k] for k in keys}


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
    state = load_checkpoint(path)
    has_ema = state.get("ema") is not None
    if weights == "ema" and not has_ema:
        raise InputError(f"{path} has no EMA weights (the run trained without train.ema_decay)")
    use_ema = has_ema and (weights == "ema" or (weights == "auto" and state["config"]["train"].get("ema_eval", True)))
    chosen = state["ema"]["module"] if use_ema else state["model"]
    return chosen, {**checkpoint_metadata(state), "ema": use_ema}
