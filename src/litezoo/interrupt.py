"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM (a scheduler's pre-emption, ``docker stop``).

:class:`StopSignals` installs handlers for the life of ``fit`` (only in the main thread, where Python delivers
signals; the previous handlers are put back afterwards). The first signal only sets a flag. The training loop
reads it after each optimizer step -- one attribute read, nothing that slows the step -- writes
``checkpoints/last.pt`` at that point and raises :class:`Interrupted`; ``litezoo train`` prints how to resume
and exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM). A second signal stops at once:
KeyboardInterrupt for SIGINT, :class:`Interrupted` without a new checkpoint for SIGTERM (the files written
until then are whole: every write is atomic).

Under a launcher (torchrun), repeated signals are normal and come from the launcher, not from a person: when
torchrun is signalled it sends the signal on to every worker (which a scheduler such as SLURM has often
signalled already), and as soon as one worker exits it sends SIGTERM to all the others -- while they may still
be writing the checkpoint the job agreed on. There (``repeat_stops_at_once=False``) a repeated signal only
confirms the stop; the launcher's own SIGKILL after its grace period (30 s for torchrun) is the hard stop. The
workers are in sessions of their own, so a Ctrl-C typed at the terminal reaches only torchrun, never them.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from litezoo.errors import LitezooError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(LitezooError):
    """Training stopped on a signal; ``checkpoint`` is the file written at the stopping point (None if none)."""

    def __init__(self, signum: int, checkpoint: Path | None = None, message: str | None = None):
        self.signum = int(signum)
        self.checkpoint = checkpoint
        self.exit_code = 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        super().__init__(message or f"stopped by {signal.Signals(self.signum).name}")


class _StackT(ctypes.Structure):  # struct stack_t of <signal.h> (Linux)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_SS_DISABLE = 2
_own_signal_stack: ctypes.Array | None = None  # kept alive for the life of the process once installed


def _is_mapped(start: int, size: int) -> bool:
    """Whether [start, start + size) lies in one mapping of this process (/proc/self/maps)."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(v, 16) for v in line.split(None, 1)[0].split("-"))
            if lo <= start and start + size <= hi:
                return True
    return False


def repair_signal_stack() -> bool:
    """Give the calling thread a valid alternate signal stack if the one it has was freed; True if repaired.

    Why: Python installs its signal handlers with SA_ONSTACK, so the kernel builds the handler's frame on the
    thread's alternate signal stack when one is set. OpenVINO's CPU plugin sets one on the thread that compiles a
    model and later frees that memory; the next signal (Ctrl-C, SIGTERM) then cannot be delivered and the kernel
    kills the process with SIGSEGV. A valid stack (the usual case, e.g. faulthandler's) is left alone.
    """
    global _own_signal_stack
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        current = _StackT()
        if libc.sigaltstack(None, ctypes.byref(current)) != 0:
            return False
        if current.ss_flags & _SS_DISABLE or not current.ss_sp or _is_mapped(current.ss_sp, current.ss_size):
            return False
        size = max(int(current.ss_size), 64 * 1024)
        _own_signal_stack = ctypes.create_string_buffer(size)
        fresh = _StackT(ctypes.cast(_own_signal_stack, ctypes.c_void_p), 0, size)
        return libc.sigaltstack(ctypes.byref(fresh), None) == 0
    except (OSError, AttributeError, ValueError):
        return False


class StopSignals:
    """``with StopSignals() as stop:`` ... ``if stop.requested: ...`` -- see the module docstring.

    ``install()`` / ``restore()`` do the same as entering / leaving, for a caller that wants the handlers put
    back at another point than where they were installed (``fit`` restores them last, after the process group
    is closed). ``repeat_stops_at_once=False`` (under torchrun): later signals only count in ``repeats``.
    """

    def __init__(self, *, repeat_stops_at_once: bool = True) -> None:
        self.signum: int | None = None  # the first signal received
        self.repeats = 0  # signals after the first that did not stop at once (repeat_stops_at_once=False)
        self.repeat_stops_at_once = repeat_stops_at_once
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread() and not self._previous:  # only there works
            repair_signal_stack()  # handlers run on this thread's alternate stack: it must exist
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        """Put the previous handlers back (again: nothing)."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def __enter__(self) -> "StopSignals":
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum  # the loop stops after the current step
            return
        if not self.repeat_stops_at_once:
            self.repeats += 1  # the launcher passing the stop on: the checkpoint being written must be finished
            return
        self.restore()  # a second signal: stop now (a third one gets the previous handlers)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(signum, message=f"stopped at once by a second {signal.Signals(signum).name}")
