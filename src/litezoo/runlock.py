"""One run per folder: an OS file lock on ``<run>/.litezoo.lock`` held for the life of a training process.

The lock is ``fcntl.flock`` on an open file, so the kernel releases it whenever the process ends -- normally,
on an exception, or killed by SIGKILL. A lock file left behind by a dead process therefore blocks nothing: the
next run takes the lock on the same file. The file holds the holder's process id, for the error message.
On systems without ``fcntl`` (Windows) runs are not locked.
"""

from __future__ import annotations

import os
from pathlib import Path

from litezoo.errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".litezoo.lock"


def _in_use(run_dir: Path, fd: int) -> InputError:
    try:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
    except OSError:
        holder = "unknown"
    return InputError(
        f"{run_dir} is in use by another litezoo run (pid {holder}); wait for it to end or stop it "
        "(Ctrl-C or kill -TERM writes a checkpoint), or choose another --out"
    )


def check_not_locked(run_dir: str | os.PathLike) -> None:
    """InputError if a live process holds ``run_dir``'s lock. Creates nothing (a probe before any work)."""
    path = Path(run_dir) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(Path(run_dir), fd) from None
    finally:
        os.close(fd)  # closing also releases a lock this probe took


class RunLock:
    """``with RunLock(run_dir):`` -- the exclusive lock of a run folder (created if needed); InputError when a
    live process holds it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        if fcntl is None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _in_use(self.run_dir, fd)
            os.close(fd)
            raise error from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays (it blocks nothing once unlocked)
            self._fd = None
