"""What a person watching training sees: a tqdm bar per epoch and one summary line per epoch.

``fit`` reports through a ``Progress``; programs that want the numbers instead pass epoch callbacks
(``EpochCallback``): each gets the metrics row written to metrics.jsonl and may return True to stop training
after that epoch (e.g. a time-to-accuracy benchmark that reached its target).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, TextIO

EpochCallback = Callable[[dict[str, Any]], "bool | None"]


class Progress:
    """A per-epoch bar (loss, lr, images/s, ETA) on a terminal, plus summary lines.

    bar: True/False to force, None for "only when ``stream`` is a terminal".
    quiet: print nothing at all (bar, summaries, notes).
    """

    def __init__(self, stream: TextIO | None = None, *, bar: bool | None = None, quiet: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.show_bar = not quiet and (is_tty if bar is None else bar)
        self._bar = None

    def note(self, text: str) -> None:
        """A one-off line (chosen precision, device, resume point)."""
        if not self.quiet:
            self._write(text)

    def start_epoch(self, epoch: int, epochs: int, total_images: int, done_images: int = 0) -> None:
        """``epoch`` is 1-based; ``done_images`` > 0 when resuming mid-epoch."""
        if not self.show_bar:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=total_images,
            initial=done_images,
            desc=f"epoch {epoch}/{epochs}",
            unit="img",  # so tqdm's rate is images/s and its ETA is the epoch's remaining time
            unit_scale=True,
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
        )

    def step(self, images: int, loss: float, lr: float) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {loss:.4f} lr {lr:.3g}", refresh=False)
            self._bar.update(images)

    def end_epoch(self, row: dict[str, Any], epochs: int) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
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
    """``epoch 3/30  train loss 1.234 top-1 55.2%  test loss 1.101 top-1 60.1% top-5 95.0%  lr 0.0876  1234 img/s  12.3s``"""
    parts = [f"epoch {row['epoch']}/{epochs}", f"train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.2f}%"]
    if row.get("test_top1") is not None:
        parts.append(f"test loss {row['test_loss']:.4f} top-1 {row['test_top1']:.2f}% top-5 {row['test_top5']:.2f}%")
    parts.append(f"lr {row['lr']:.4g}")
    parts.append(f"{row['images_per_s']:.0f} img/s")
    parts.append(f"{row['epoch_time_s']:.1f}s")
    if row.get("skipped_steps"):
        parts.append(f"{row['skipped_steps']} non-finite step(s) skipped")
    return "  ".join(parts)
