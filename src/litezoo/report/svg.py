"""Inline SVG charts written as text: line charts over epochs and a Bianco-style bubble chart.

No chart library and no script: the page that holds them opens offline and renders the same everywhere. The
charts scale with their container (``viewBox``, width 100% in the page's CSS); colours of axes and text come
from the page's CSS classes (``ax``, ``grid``, ``lbl``), so a dark page restyles them. Each data point carries a
``<title>``, which browsers show as a tooltip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

# Okabe-Ito's colour-blind-safe palette, then tab10's extra hues.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C564B", "#7F7F7F", "#BCBD22",
           "#17BECF"]  # fmt: skip


def nice_step(span: float, target: int) -> float:
    """A step of 1, 2, 2.5 or 5 times a power of ten giving about ``target`` intervals over ``span`` (> 0)."""
    raw = span / max(1, target)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    # raw < 10 * magnitude always, so the last candidate always fits.
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if raw <= m * magnitude * (1 + 1e-9))


def nice_ticks(lo: float, hi: float, target: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi]: the first <= lo, the last >= hi (so the data fit inside)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"ticks need finite bounds, got {lo}, {hi}")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:  # one value: a small range around it
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, target)
    if integer:
        step = max(1.0, round(step)) if step >= 1 else 1.0
    start, stop = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(start, stop + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis over [lo, hi] (both > 0): powers of ten, with 2x and 5x when under two decades."""
    if lo <= 0 or hi <= 0:
        raise ValueError(f"a log axis needs positive bounds, got {lo}, {hi}")
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if last - first <= 2 else (1,)
    ticks = [m * 10.0**e for e in range(first, last + 1) for m in mults]
    inside = [t for t in ticks if lo <= t <= hi]
    below = [t for t in ticks if t < lo]
    above = [t for t in ticks if t > hi]
    return ([below[-1]] if below else []) + inside + ([above[0]] if above else [])


def fmt_number(v: float, step: float | None = None) -> str:
    """A tick label: 0.05, 1e-4, 250, 12.5k, 3M — as few digits as the tick spacing needs."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a < 1e-3:
        return f"{v:.0e}".replace("e-0", "e-")
    if step is not None and step < 1:
        decimals = next(d for d in range(7) if abs(round(step, d) - step) <= 1e-9 * step or d == 6)
        return f"{v:.{decimals}f}"
    return f"{v:g}"


@dataclass
class Series:
    label: str  # the run's name (tooltips)
    color: str
    points: list[tuple[float, float]]  # (x, y), x ascending
    dashed: bool = False  # train curves dashed, test curves solid
    note: str = ""  # e.g. "train" or "test", added to tooltips


@dataclass
class Bubble:
    label: str
    color: str
    x: float  # MACs (> 0)
    y: float  # top-1 %
    size: float  # parameters (area is proportional to it)
    tooltip: str = ""


@dataclass
class _Frame:
    """Plot area inside a chart of ``width`` x ``height`` user units, with the axes' ranges."""

    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_x: bool = False
    left: int = 70  # room for tick labels and the rotated y label, also at the phone layout's larger font
    right: int = 24  # half of the last x tick label
    top: int = 30
    bottom: int = 42
    parts: list[str] = field(default_factory=list)

    def sx(self, x: float) -> float:
        lo, hi = self.x_range
        if self.log_x:
            x, lo, hi = math.log10(x), math.log10(lo), math.log10(hi)
        return self.left + (x - lo) / ((hi - lo) or 1.0) * (self.width - self.left - self.right)

    def sy(self, y: float) -> float:
        lo, hi = self.y_range
        return self.height - self.bottom - (y - lo) / ((hi - lo) or 1.0) * (self.height - self.top - self.bottom)


def _text(x: float, y: float, text: str, css: str = "lbl", anchor: str = "middle", extra: str = "") -> str:
    """An SVG text element; ``text`` is escaped here."""
    return f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def _axes(f: _Frame, xticks: list[float], yticks: list[float], title: str, x_label: str, y_label: str) -> None:
    x0, x1 = f.left, f.width - f.right
    y0, y1 = f.height - f.bottom, f.top
    ystep = (yticks[1] - yticks[0]) if len(yticks) > 1 else None
    xstep = (xticks[1] - xticks[0]) if len(xticks) > 1 and not f.log_x else None
    for t in yticks:
        y = f.sy(t)
        f.parts.append(f'<line class="grid" x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}"/>')
        f.parts.append(_text(x0 - 6, y + 4, fmt_number(t, ystep), anchor="end"))
    for t in xticks:
        x = f.sx(t)
        f.parts.append(f'<line class="grid" x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}"/>')
        f.parts.append(_text(x, y0 + 16, fmt_number(t, xstep)))
    f.parts.append(f'<rect class="ax" x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none"/>')
    f.parts.append(_text(f.width / 2, 18, title, css="ttl"))
    f.parts.append(_text((x0 + x1) / 2, f.height - 6, x_label))
    cy = (y0 + y1) / 2
    f.parts.append(_text(16, cy, y_label, extra=f' transform="rotate(-90 16 {cy:.1f})"'))


def _svg(f: _Frame, css_class: str, title: str) -> str:
    body = "\n".join(f.parts)
    return (f'<svg class="chart {css_class}" viewBox="0 0 {f.width} {f.height}" role="img" '
            f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">\n{body}\n</svg>')  # fmt: skip


def line_chart(series: list[Series], *, title: str, x_label: str, y_label: str, width: int = 480,
               height: int = 300, empty_text: str = "no data yet") -> str:
    """Lines over an integer x axis (epochs); every point is a marker with a tooltip."""
    pts = [p for s in series for p in s.points]
    if not pts:
        f = _Frame(width, height, (0, 1), (0, 1))
        f.parts.append(_text(width / 2, 18, title, css="ttl"))
        f.parts.append(_text(width / 2, height / 2, empty_text))
        return _svg(f, "line-chart empty", title)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xticks = nice_ticks(min(xs), max(xs), 6, integer=True)
    yticks = nice_ticks(min(ys), max(ys), 5)
    f = _Frame(width, height, (xticks[0], xticks[-1]), (yticks[0], yticks[-1]))
    _axes(f, xticks, yticks, title, x_label, y_label)
    for s in series:
        if not s.points:
            continue
        coords = " ".join(f"{f.sx(x):.1f},{f.sy(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        label = escape(f"{s.label} {s.note}".strip())
        f.parts.append(f'<g class="series" data-run="{escape(s.label)}"><title>{label}</title><polyline '
                       f'points="{coords}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')  # fmt: skip
        r = 3 if len(s.points) <= 40 else 1.8
        fill = "var(--bg)" if s.dashed else s.color  # hollow markers on the dashed (train) curves
        for x, y in s.points:
            tip = f"{label}, {escape(x_label)} {x:g}: {y:.4g}"
            f.parts.append(f'<circle cx="{f.sx(x):.1f}" cy="{f.sy(y):.1f}" r="{r}" fill="{fill}" stroke="{s.color}" '
                           f'stroke-width="1.5"><title>{tip}</title></circle>')  # fmt: skip
        f.parts.append("</g>")
    return _svg(f, "line-chart", title)


def bubble_chart(bubbles: list[Bubble], *, title: str, x_label: str, y_label: str, width: int = 720,
                 height: int = 420, max_radius: float = 32.0) -> str:
    """Accuracy against operations, bubble area proportional to parameters (Bianco et al., IEEE Access 2018).

    The x axis turns logarithmic when the MACs span more than 20x, as ``litezoo compare`` draws it.
    """
    if not bubbles:
        raise ValueError("a bubble chart needs at least one bubble")
    xs, ys = [b.x for b in bubbles], [b.y for b in bubbles]
    log_x = min(xs) > 0 and max(xs) / min(xs) > 20
    if log_x:
        xticks = log_ticks(min(xs) / 1.3, max(xs) * 1.3)
    else:
        pad = (max(xs) - min(xs)) * 0.15 or max(xs) * 0.2 or 1.0
        xticks = nice_ticks(max(0.0, min(xs) - pad), max(xs) + pad, 5)
    ypad = (max(ys) - min(ys)) * 0.15 or 2.0
    yticks = nice_ticks(max(0.0, min(ys) - ypad), min(100.0, max(ys) + ypad), 5)
    f = _Frame(width, height, (xticks[0], xticks[-1]), (yticks[0], yticks[-1]), log_x=log_x, bottom=46)
    _axes(f, xticks, yticks, title, x_label + (" (log scale)" if log_x else ""), y_label)
    biggest = max(b.size for b in bubbles) or 1.0
    placed: list[tuple[float, float, float]] = []  # label boxes so far: (x, y of the baseline, width)

    def label_y(x: float, y: float, width: float) -> float:
        """The first of y, y+16, y-16, y+32, ... where the label overlaps no label placed before it."""
        for k in range(12):
            candidate = y + 16 * ((k + 1) // 2) * (1 if k % 2 else -1) if k else y
            if all(abs(candidate - py) >= 15 or x + width < px or px + pw < x for px, py, pw in placed):
                return candidate
        return y

    # Largest first, so small bubbles stay visible on top.
    for b in sorted(bubbles, key=lambda b: -b.size):
        r = max(3.0, max_radius * math.sqrt(max(b.size, 0.0) / biggest))  # area ∝ parameters
        cx, cy = f.sx(b.x), f.sy(b.y)
        lx, label_w = cx + r * 0.75 + 3, 7.0 * len(b.label)  # ~7 user units per character at 12 px
        ly = label_y(lx, cy - r * 0.75 - 3, label_w)
        placed.append((lx, ly, label_w))
        tip = escape(b.tooltip or b.label)
        f.parts.append(f'<g class="bubble" data-run="{escape(b.label)}"><title>{tip}</title>'
                       f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{b.color}" fill-opacity="0.45" '
                       f'stroke="{b.color}" stroke-width="1.5"/>'
                       + _text(lx, ly, b.label, css="blbl", anchor="start") + "</g>")
    smallest = min(b.size for b in bubbles)
    f.parts.append(_text(width - f.right - 4, height - f.bottom - 6,
                         f"bubble area ∝ parameters: {fmt_number(smallest)} to {fmt_number(biggest)}", anchor="end"))
    return _svg(f, "bubble-chart", title)


__all__ = ["PALETTE", "Series", "Bubble", "nice_step", "nice_ticks", "log_ticks", "fmt_number", "line_chart",
           "bubble_chart"]  # fmt: skip
