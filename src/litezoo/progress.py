"""What a person watching training sees: a bar per epoch and one summary line per epoch.

``fit`` reports through a ``Progress``; programs that want the numbers instead pass epoch callbacks
(``EpochCallback``): each gets the metrics row written to metrics.jsonl and may return True to stop training
after that epoch (e.g. a time-to-accuracy benchmark that reached its target).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

EpochCallback = Callable[[dict[str, Any]], "bool | None"]


class Progress:
    """On a terminal, a tqdm bar per epoch (running loss, lr, images/s, ETA); elsewhere (logs, pipes) a plain
    line every ``log_every`` steps; in both cases one summary line per epoch.

    bar: True/False to force, None for "only when ``stream`` is a terminal".
    quiet: print nothing at all.
    """

    def __init__(self, stream: TextIO | None = None, *, bar: bool | None = None, quiet: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.show_bar = not quiet and (is_tty if bar is None else bar)
        self._bar = None

    def note(self, text: str) -> None:
        """A one-off line (device and precision chosen, resume point)."""
        if not self.quiet:
            self._write(text)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done_steps: int = 0, log_every: int = 50) -> None:
        """``epoch`` is 1-based; ``done_steps`` > 0 when resuming mid-epoch."""
        self._desc = f"epoch {epoch}/{epochs}"
        self._steps, self._done, self._log_every = steps, done_steps, log_every
        self._loss_sum, self._loss_n, self._images = 0.0, 0, 0
        self._start = time.perf_counter()
        if self.show_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=steps, initial=done_steps, desc=self._desc, unit="step", file=self.stream,
                             leave=False, dynamic_ncols=True)  # fmt: skip

    def step(self, images: int, loss: float, lr: float) -> None:
        """One optimizer step of ``images`` images (all processes) with this batch loss and lr."""
        if self.quiet:
            return
        self._done += 1
        self._loss_sum += loss
        self._loss_n += 1
        self._images += images
        elapsed = time.perf_counter() - self._start
        rate = self._images / elapsed if elapsed > 0 else 0.0
        running = self._loss_sum / self._loss_n  # mean over this epoch's steps so far: steadier than one batch
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {running:.4f} lr {lr:.3g} {rate:.0f} img/s", refresh=False)
            self._bar.update(1)  # tqdm's own ETA is the epoch's remaining time
        elif self._done % self._log_every == 0:
            eta = (self._steps - self._done) * elapsed / max(1, self._loss_n)
            self._write(f"  {self._desc} step {self._done}/{self._steps}  loss {running:.4f}  lr {lr:.3g}  "
                        f"{rate:.0f} img/s  ETA {eta:.0f}s")  # fmt: skip

    def end_epoch(self, row: dict[str, Any], epochs: int) -> None:
        self.close()
        if not self.quiet:
            self._write(format_summary(row, epochs))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)


def format_summary(row: dict[str, Any], epochs: int) -> str:
    """One line per epoch, e.g. ``epoch 3/30  train loss 1.2340 top-1 55.20%  test loss 1.1010 top-1 60.10%
    top-5 95.00%  lr 0.0876  1234 img/s  12.3s`` (on one line)."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.2f}%"]
    if row.get("test_top1") is not None:
        parts.append(f"test loss {row['test_loss']:.4f} top-1 {row['test_top1']:.2f}% top-5 {row['test_top5']:.2f}%")
    parts.append(f"lr {row['lr']:.4g}")
    parts.append(f"{row['images_per_s']:.0f} img/s")
    parts.append(f"{row['epoch_time_s']:.1f}s")
    if row.get("skipped_steps"):
        parts.append(f"{row['skipped_steps']} non-finite step(s) skipped")
    return "  ".join(parts)
