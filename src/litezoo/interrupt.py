"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM (a scheduler's pre-emption, ``docker stop``).

:class:`StopSignals` installs handlers for the life of ``fit`` (only in the main thread, where Python delivers
signals; the previous handlers are put back afterwards). The first signal only sets a flag. The training loop
reads it after each optimizer step -- one attribute read, nothing that slows the step -- writes
``checkpoints/last.pt`` at that point and raises :class:`Interrupted`; ``litezoo train`` prints how to resume
and exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM). A second signal stops at once:
KeyboardInterrupt for SIGINT, :class:`Interrupted` without a new checkpoint for SIGTERM (the files written
until then are whole: every write is atomic).
"""

from __future__ import annotations

import signal
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


class StopSignals:
    """``with StopSignals() as stop:`` ... ``if stop.requested: ...`` -- see the module docstring."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal received
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signal.signal works only there
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum  # the loop stops after the current step
            return
        self._restore()  # a second signal: stop now (a third one gets the previous handlers)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(signum, message=f"stopped at once by a second {signal.Signals(signum).name}")
