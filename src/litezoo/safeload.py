"""Reading PyTorch files without running code, with one wording for every way a file can be unusable.

Checkpoints and weight files given to litezoo may come from strangers, and unpickling arbitrary objects runs
code, so every ``.pt`` / ``.pth`` / ``.bin`` file is read here, with ``torch.load(weights_only=True)``: plain
containers, numbers, strings and tensors only. Every failure -- missing file, folder, unreadable file, pickled
objects refused, truncated or damaged file, a file that is not PyTorch's -- becomes one :class:`InputError`
line naming the path, what the file was meant to be, and the cause.

Kept apart from :mod:`litezoo.fsutil`, which the torch-free deployment path imports: torch loads only here.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

from litezoo.errors import InputError


def safe_torch_load(
    path: str | os.PathLike,
    what: str,
    map_location: Any = "cpu",
    *,
    damaged_hint: Callable[[Path], str] | None = None,
) -> Any:
    """``torch.load(path, weights_only=True)``; :class:`InputError` ``"<what> <path> <problem> (<cause>)"`` if
    the file cannot be used.

    ``what`` names the file for the user ("checkpoint", "weights file"). ``damaged_hint(path)``, called only
    for a truncated or damaged file, returns text appended to that message (e.g. the newest good checkpoint
    beside it); it is not called on the success path, so it may be slow.
    """
    import torch  # here, not at the top: see the module docstring

    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, not a file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's refusal of anything but plain data is an UnpicklingError with this text; other
        # UnpicklingErrors are damaged bytes and fall through to the message below.
        if "Weights only load failed" in str(exc):
            raise InputError(
                f"{what} {path} holds pickled Python objects, not a plain state dict: refused, since loading "
                "it could run code (litezoo loads only tensors, numbers, strings and plain containers, such as what "
                "torch.save(model.state_dict(), ...) writes)"
            ) from None
        cause = exc
    except PermissionError as exc:
        raise InputError(f"{what} {path} cannot be read ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 — torch reports damage as RuntimeError, EOFError, ValueError, ...
        cause = exc
    hint = damaged_hint(path) if damaged_hint is not None else ""
    raise InputError(f"{what} {path} is truncated or corrupt, or not a PyTorch file ({first_line(cause)}){hint}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 160 characters), or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__
