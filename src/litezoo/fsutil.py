"""Small file-system helpers shared by the modules that write files atomically (checkpoints, configs)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(Path(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_CHUNK = 1 << 20  # bytes per write() call (tests break a write half-way through via _write_chunk)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one.

    Temp file in the same folder (a hidden name that no reader mistakes for the real file), fsync, rename,
    fsync of the folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            view = memoryview(data)
            for start in range(0, len(view), _CHUNK):
                _write_chunk(f, view[start : start + _CHUNK])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows (same filesystem)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)  # make the rename itself durable
    return path


def _write_chunk(f, chunk: memoryview) -> None:
    # One function per chunk so tests can slow down or break a write half-way through.
    f.write(chunk)
