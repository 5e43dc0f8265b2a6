"""Reading PyTorch files without running code, with one wording for every way a file can be unusable.

Checkpoints and weight files given to litezoo may come from strangers, and unpickling arbitrary objects runs
code, so every ``.pt`` / ``.pth`` / ``.bin`` file the library reads goes through :func:`safe_torch_load`:
``torch.load(weights_only=True)``, plain containers, numbers, strings and tensors only. Every failure --
missing file, folder, unreadable file, pickled objects refused, truncated or damaged file, a file that is not
PyTorch's -- becomes one :class:`InputError` line naming the path, what the file was meant to be, and the cause.

A module of its own (not :mod:`litezoo.fsutil`) because it needs torch, and the torch-free deployment path
(:mod:`litezoo.runtime`) imports ``fsutil``.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import torch

from litezoo.errors import InputError

# torch wraps every UnpicklingError of a weights_only load in "Weights only load failed ...". A refusal (the file
# needs a Python global, i.e. code or a class) names the GLOBAL or says what it "Can only" build; anything else
# (e.g. "Unsupported operand 0") is damaged bytes, reported with the line after "WeightsUnpickler error:".
_REFUSED = re.compile(r"GLOBAL \S+|Can only [^\n]+")
_UNPICKLER_CAUSE = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


def safe_torch_load(
    path: str | os.PathLike,
    what: str,
    map_location: Any = "cpu",
    *,
    damaged_hint: Callable[[Path], str] | None = None,
) -> Any:
    """``torch.load(path, map_location, weights_only=True)``, or :class:`InputError` if the file cannot be used:
    ``"<what> <path> <problem> (<cause>)"`` on one line.

    ``what`` names the file for the user ("checkpoint", "weights file"). ``damaged_hint(path)`` is asked only
    for a truncated or damaged file and its text is appended to that message (e.g. the newest good checkpoint
    beside it); it may be slow, since the success path never calls it.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, not a file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        refused = _REFUSED.search(text) if "Weights only load failed" in text else None
        if refused:
            raise InputError(
                f"{what} {path} holds pickled Python objects, not a plain state dict: refused, since loading it "
                "could run code (litezoo loads only tensors, numbers, strings and plain containers, as "
                f"torch.save(model.state_dict(), ...) writes them; torch stopped at {refused.group(0)})"
            ) from None
        inner = _UNPICKLER_CAUSE.search(text)
        cause = inner.group(1).strip()[:160] if inner else first_line(exc)
    except PermissionError as exc:
        raise InputError(f"{what} {path} cannot be read ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 — torch reports damage as RuntimeError, EOFError, ValueError, ...
        cause = first_line(exc)
    hint = damaged_hint(path) if damaged_hint is not None else ""
    raise InputError(f"{what} {path} is truncated or corrupt, or not a PyTorch file ({cause}){hint}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 160 characters), or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__
