"""``litezoo report``: one self-contained HTML page comparing training runs.

Everything is inside the file: CSS, a few lines of script (sorting the leaderboard), charts as inline SVG
(litezoo.report.svg), PNGs from the run folders as data URIs. A Content-Security-Policy forbids every network
request, so the page opens offline and leaks nothing. Folders that are not runs, or runs without a complete
epoch, are named at the top and left out; the other runs are still reported.
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Callable

import yaml

from litezoo.errors import InputError
from litezoo.fsutil import atomic_write_bytes
from litezoo.report.leaderboard import Entry, build_entries, format_count, format_duration
from litezoo.report.runs import load_run, number
from litezoo.report.svg import PALETTE, Bubble, Series, bubble_chart, line_chart


@dataclass
class ReportResult:
    path: Path
    reported: list[str]  # run folders in the report
    skipped: list[tuple[str, str]]  # (folder, why) left out
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (run, problem) shown but not fatal
    in_progress: list[str] = field(default_factory=list)


# (metric key, chart title, y label): the curves drawn for every run on shared axes; train dashed, test solid.
CURVE_CHARTS = [
    (("train_loss", "test_loss"), "Loss", "cross-entropy"),
    (("train_top1", "test_top1"), "Top-1 accuracy", "%"),
    (("lr",), "Learning rate (end of epoch)", "lr"),
    (("images_per_s",), "Training throughput", "images/s"),
]



@dataclass(frozen=True)
class Column:
    """A leaderboard column: ``cell(entry)`` gives (html, number to sort by or None, tooltip)."""

    name: str
    tip: str
    numeric: bool
    cell: Callable[[Entry], tuple[str, float | None, str]]
    optional: bool = False  # left out when no run has a value (e.g. latency without bench/profile results)
    wrap: bool = False  # long text: may take several lines


def _top1_cell(e: Entry) -> tuple[str, float | None, str]:
    if e.best_top1 is None:
        return "", None, ""
    return f'<span>{e.best_top1:.2f} <small class="src">{escape(e.best_source)}</small></span>', e.best_top1, ""


COLUMNS = [
    Column("model", "registry name, input size", False,
           lambda e: (f'<span>{escape(e.model)}' + (f' <small class="src">{e.image_size}px input</small>'
                                                     if e.image_size else "") + "</span>", None, "")),
    Column("params", "parameters", True, lambda e: (format_count(e.params), e.params, "")),
    Column("MACs", "multiply-accumulates per image (conv + linear + matmul), batch 1, at the run's input size", True,
           lambda e: (format_count(e.macs), e.macs, "")),
    Column("latency ms", "batch-1 latency from a bench/profile result saved in the run folder", True,
           lambda e: ("" if e.latency_ms is None else f"{e.latency_ms:.2f}", e.latency_ms, e.latency_source),
           optional=True),
    Column("best top-1 %", "best test top-1 over the logged epochs (or a saved eval result, if higher), and where",
           True, _top1_cell, wrap=True),
    Column("epochs", "logged / planned", True,
           lambda e: (f"{e.epochs_done}" + (f" / {e.epochs_planned}" if e.epochs_planned else ""), e.epochs_done, "")),
    Column("time to train", "wall-clock incl. evaluation at the last logged epoch (steps only in the tooltip)", True,
           lambda e: (format_duration(e.time_s), e.time_s,
                      "" if e.train_time_s is None else f"training steps only: {format_duration(e.train_time_s)}")),
    Column("precision", "recorded precision, or the config's train.amp", False,
           lambda e: (escape(e.precision), None, e.precision_note)),
    Column("CPU", "machine the run trained on (from the run folder)", False,
           lambda e: (escape(e.cpu) or '<span class="note">not recorded</span>', None, ""), wrap=True),
]  # fmt: skip

CSS = """
:root{--bg:#fff;--fg:#1d2430;--muted:#5b6472;--line:#d8dde5;--card:#f6f8fb;--ax:#8a93a0;--accent:#0072B2;
--warn-bg:#fff6e0;--warn:#8a5a00}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--fg:#e4e8ee;--muted:#9aa3af;--line:#2e3540;
--card:#1b2028;--ax:#6b7481;--accent:#56B4E9;--warn-bg:#3a2f12;--warn:#f0c060}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1240px;margin:0 auto;padding:16px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.4em 0 .5em;border-bottom:1px solid var(--line);
padding-bottom:.2em}
.sub,.note{color:var(--muted);font-size:.9em}
.warn{background:var(--warn-bg);color:var(--warn);border-radius:6px;padding:8px 12px;margin:8px 0}
.warn ul{margin:.3em 0;padding-left:1.2em}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap;vertical-align:top}
td.num,th.num{text-align:right}
small.src{display:block;color:var(--muted);font-size:.8em}
td.wrap{white-space:normal;min-width:9em}
td.wrap small.src{max-width:14em;margin-left:auto}
pre.config{column-width:22em;column-rule:1px solid var(--line)}
thead th{background:var(--card);position:sticky;top:0}
th button{all:unset;cursor:pointer;font-weight:600}
th button:focus-visible{outline:2px solid var(--accent)}
th[aria-sort=ascending] button::after{content:" \\25B2";font-size:.75em}
th[aria-sort=descending] button::after{content:" \\25BC";font-size:.75em}
tbody tr:hover{background:var(--card)}
.sw{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;vertical-align:-.05em}
.badge{display:inline-block;font-size:.75em;padding:0 .5em;border-radius:9px;margin-left:.4em;
border:1px solid currentColor}
.badge.progress{color:#D55E00}.badge.early{color:var(--muted)}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,430px),1fr));gap:12px}
.charts figure,.wide{margin:0;background:var(--card);border-radius:8px;padding:6px}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:var(--line);stroke-width:1}svg .ax{stroke:var(--ax);stroke-width:1}
svg text{fill:var(--muted);font-size:12px;font-family:inherit}svg .ttl{fill:var(--fg);font-size:14px;font-weight:600}
svg .blbl{fill:var(--fg);font-size:12px}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:6px 0 10px;padding:0;list-style:none}
.legend .key{color:var(--muted)}
.pics{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));gap:12px}
.pics figure{margin:0}.pics img{width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
figcaption{color:var(--muted);font-size:.85em;margin-top:4px}
details{border:1px solid var(--line);border-radius:6px;margin:8px 0;padding:0 12px}
details[open]{padding-bottom:10px}
summary{cursor:pointer;padding:8px 0;font-weight:600}
details h3{font-size:1em;margin:.9em 0 .3em}
pre{background:var(--card);padding:8px;border-radius:6px;overflow-x:auto;font-size:.85em;margin:0}
.kv td:first-child{color:var(--muted)}
.bubble-wrap{max-width:900px}
/* Phones: the leaderboard becomes one card per run, its headers a row of sort buttons; chart text grows in
   user units so it stays legible after the SVG is scaled down to the screen. */
@media (max-width:700px){body{font-size:14px}main{padding:10px}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block}
table.cards thead tr{display:flex;flex-wrap:wrap;gap:4px;padding:6px}
table.cards thead th{position:static;border:1px solid var(--line);border-radius:12px;padding:2px 8px;font-size:.85em}
table.cards tbody tr{border-bottom:2px solid var(--line);padding:6px 0}
table.cards td{display:flex;justify-content:space-between;gap:12px;border:0;padding:2px 10px;white-space:normal;
text-align:right;min-width:0}
table.cards td::before{content:attr(data-label);color:var(--muted);text-align:left;white-space:nowrap}
table.cards td:first-child{font-weight:600;justify-content:flex-start}table.cards td:first-child::before{content:none}
table.cards td:empty{display:none}
svg text{font-size:17px}svg .ttl{font-size:19px}.bubble-chart text{font-size:21px}}
"""

# Sort the leaderboard by a clicked column: numbers by data-v (missing last either way), text by data-s or the text.
SCRIPT = """
(function(){
  function key(cell){
    if(cell.hasAttribute('data-s')){return cell.getAttribute('data-s');}
    var v=cell.getAttribute('data-v');return v===null?cell.textContent.trim():(v===''?null:+v);
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads,function(th,col){
      var button=th.querySelector('button');
      button.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')!=='ascending';
        Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(a,b){
          var x=key(a.cells[col]),y=key(b.cells[col]);
          if(x===null||y===null){return x===null?(y===null?0:1):-1;}
          var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));
          return asc?c:-c;
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
})();
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _status_badge(e: Entry) -> str:
    if e.status == "in progress":
        return '<span class="badge progress">in progress</span>'
    if e.status == "stopped early":
        return '<span class="badge early">stopped early</span>'
    return ""


def _leaderboard(entries: list[Entry], colors: dict[str, str]) -> tuple[str, list[str]]:
    """The sortable table (best top-1 first) and the names of optional columns left out for lack of values."""
    order = sorted(entries, key=lambda e: (e.best_top1 is None, -(e.best_top1 or 0.0)))
    columns = [c for c in COLUMNS if not c.optional or any(c.cell(e)[1] is not None for e in entries)]
    dropped = [c.name for c in COLUMNS if c not in columns]

    def th(name: str, tip: str, numeric: bool) -> str:
        sort = " aria-sort=descending" if name.startswith("best") else ""
        return (f'<th scope="col"{" class=num" if numeric else ""} title="{escape(tip)}"{sort}>'
                f'<button type="button">{escape(name)}</button></th>')  # fmt: skip

    head = th("run", "run folder and status", False) + "".join(th(c.name, c.tip, c.numeric) for c in columns)
    body = []
    for e in order:
        # data-label names the column in the phone layout (one card per run); data-v is what sorting compares.
        cells = [f'<td data-label="run" data-s="{escape(e.run)}"><span class="sw" style="background:'
                 f'{colors[e.run]}"></span>{escape(e.run)}{_status_badge(e)}</td>']  # fmt: skip
        for c in columns:
            text, value, title = c.cell(e)
            attrs = f' data-label="{escape(c.name)}"'
            css = " ".join(name for name, on in (("num", c.numeric), ("wrap", c.wrap)) if on)
            attrs += f' class="{css}"' if css else ""
            if c.numeric:
                attrs += f' data-v="{"" if value is None else repr(float(value))}"'
            attrs += f' title="{escape(title)}"' if title else ""
            cells.append(f"<td{attrs}>{text}</td>")
        body.append(f'<tr data-run="{escape(e.run)}">' + "".join(cells) + "</tr>")
    table = (f'<div class="scroll"><table id="leaderboard" class="sortable cards"><thead><tr>{head}</tr></thead>'
             f'<tbody>{"".join(body)}</tbody></table></div>')  # fmt: skip
    return table, dropped


def _curves(entries: list[Entry], colors: dict[str, str]) -> str:
    figures = []
    for keys, title, unit in CURVE_CHARTS:
        series = []
        for e in entries:
            for key in keys:
                pts = [(r["epoch"], v) for r in e.record.rows if (v := number(r.get(key))) is not None]
                train = key.startswith("train_")
                note = "train" if train else ("test" if key.startswith("test_") else "")
                series.append(Series(e.run, colors[e.run], pts, dashed=train and len(keys) > 1, note=note))
        figures.append(f"<figure>{line_chart(series, title=title, x_label='epoch', y_label=unit)}</figure>")
    legend = "".join(
        f'<li><span class="sw" style="background:{colors[e.run]}"></span>{escape(e.run)}'
        + (f" ({e.epochs_done} of {e.epochs_planned} epochs so far)" if e.status == "in progress" and e.epochs_planned
           else "") + _status_badge(e) + "</li>"
        for e in entries
    )  # fmt: skip
    key = '<li class="key">solid line: test · dashed with hollow markers: train</li>'
    return f'<ul class="legend">{legend}{key}</ul><div class="charts">{"".join(figures)}</div>'


def _bubbles(entries: list[Entry], colors: dict[str, str]) -> str:
    plotted = [e for e in entries if e.best_top1 is not None and e.macs and e.params]
    missing = [e.run for e in entries if e not in plotted]
    if not plotted:
        return '<p class="note">No run has both a test accuracy and a MAC count to plot.</p>'
    bubbles = [Bubble(e.run, colors[e.run], float(e.macs), e.best_top1, float(e.params),
                      f"{e.run}: {e.model}, {format_count(e.macs)} MACs, {format_count(e.params)} params, "
                      f"top-1 {e.best_top1:.2f}% ({e.best_source})") for e in plotted]  # fmt: skip
    chart = bubble_chart(bubbles, title="Accuracy vs MACs", x_label="MACs per image (batch 1)",
                         y_label="best test top-1 (%)")  # fmt: skip
    note = f'<p class="note">Not plotted (no accuracy or MAC count): {escape(", ".join(missing))}.</p>' \
        if missing else ""  # fmt: skip
    return f'<div class="wide bubble-wrap">{chart}</div>{note}'


def _pictures(entries: list[Entry]) -> str:
    """Confusion matrix and prediction grid of the most accurate run that has each."""
    ranked = sorted((e for e in entries if e.best_top1 is not None), key=lambda e: -e.best_top1)
    best = ranked[0].run if ranked else None
    figures = []
    for attr, what, how in (("confusion_pngs", "Confusion matrix", "litezoo eval RUN_DIR --data DATA"),
                            ("grid_pngs", "Predictions (blue: right, red: wrong)",
                             "litezoo predict RUN_DIR FOLDER --grid RUN_DIR/predictions.png")):  # fmt: skip
        owner = next((e for e in ranked if getattr(e.record, attr)), None)
        if owner is None:
            figures.append(f'<figure><figcaption>{what}: none in the run folders (make one with '
                           f"<code>{escape(how)}</code>).</figcaption></figure>")  # fmt: skip
            continue
        path = getattr(owner.record, attr)[0]
        whose = "the best run" if owner.run == best else "the best run that has one"
        figures.append(f'<figure><img src="{_data_uri(path)}" alt="{escape(what)} of {escape(owner.run)}">'
                       f"<figcaption>{escape(what)} of {escape(owner.run)} ({whose}; "
                       f"{escape(str(path.relative_to(owner.record.path)))})</figcaption></figure>")  # fmt: skip
    return f'<div class="pics">{"".join(figures)}</div>'


def _kv_table(items: dict) -> str:
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in items.items())
    return f'<div class="scroll"><table class="kv">{rows}</table></div>'


def _epoch_table(e: Entry) -> str:
    cols = [("epoch", "epoch", "{:d}"), ("lr", "lr", "{:.4g}"), ("train_loss", "train loss", "{:.4f}"),
            ("train_top1", "train top-1", "{:.2f}"), ("test_loss", "test loss", "{:.4f}"),
            ("test_top1", "test top-1", "{:.2f}"), ("images_per_s", "images/s", "{:.0f}"),
            ("time_s", "time", None)]  # fmt: skip
    head = "".join(f'<th class="num">{escape(name)}</th>' for _, name, _ in cols)
    body = []
    for r in e.record.rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            text = format_duration(number(v)) if fmt is None else (fmt.format(v) if number(v) is not None else "")
            cells.append(f'<td class="num">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _run_details(e: Entry, colors: dict[str, str]) -> str:
    rec = e.record
    parts = [f"<details data-run=\"{escape(e.run)}\"><summary><span class=\"sw\" style=\"background:{colors[e.run]}\">"
             f"</span>{escape(e.run)} — {escape(e.model)}, {e.epochs_done} epoch(s){_status_badge(e)}</summary>",
             f'<p class="note">{escape(str(rec.path))}</p>']  # fmt: skip
    problems = rec.problems + e.notes
    if problems:
        parts.append('<div class="warn"><ul>' + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul></div>")
    parts.append("<h3>Metrics per epoch</h3>" + _epoch_table(e))
    parts.append('<h3>Config</h3><pre class="config">' + escape(yaml.safe_dump(rec.config, sort_keys=False)) + "</pre>")
    setup = {k: v for k, v in rec.run_info.items() if k != "machine"} | rec.machine
    parts.append("<h3>Machine and set-up</h3>" + (_kv_table(setup) if setup else
                                                 '<p class="note">not recorded in the run folder</p>'))  # fmt: skip
    extra = [str(p.relative_to(rec.path)) for p in rec.confusion_pngs + rec.grid_pngs] + \
        [d["file"] for d in rec.evals + rec.timings]  # fmt: skip
    if extra:
        parts.append("<h3>Results found in the folder</h3><p>" + escape(", ".join(extra)) + "</p>")
    return "".join(parts) + "</details>"


def render_html(entries: list[Entry], skipped: list[tuple[str, str]], generated: str) -> str:
    """The whole page as one string."""
    colors = {e.run: PALETTE[i % len(PALETTE)] for i, e in enumerate(entries)}
    n_progress = sum(e.status == "in progress" for e in entries)
    sub = f"{len(entries)} run(s)" + (f", {n_progress} still in progress (shown so far)" if n_progress else "") + \
        f" · generated {escape(generated)} by litezoo report"  # fmt: skip
    board, dropped = _leaderboard(entries, colors)
    no_latency = (" No latency column: no run folder holds a bench or profile result (e.g. <code>litezoo profile "
                  "MODEL --json &gt; RUN_DIR/profile.json</code>).") if "latency ms" in dropped else ""  # fmt: skip
    warn = ""
    problems = [(e.run, p) for e in entries for p in e.record.problems]
    if skipped or problems:
        items = [f"<li>left out: {escape(why)}</li>" for _, why in skipped]
        items += [f"<li>{escape(run)}: {escape(p)}</li>" for run, p in problems]
        warn = f'<div class="warn" id="problems"><ul>{"".join(items)}</ul></div>'
    sections = [
        f"<header><h1>Training report</h1><p class=\"sub\">{sub}</p></header>{warn}",
        f'<section id="board"><h2>Leaderboard</h2>{board}<p class="note">Click a column header to sort; hover '
        f"a header for what it means.{no_latency}</p></section>",
        f'<section id="curves"><h2>Training curves</h2>{_curves(entries, colors)}</section>',
        '<section id="bubbles"><h2>Accuracy vs MACs</h2><p class="note">Bianco et al. (IEEE Access 2018) style: '
        f"bubble area proportional to the parameter count.</p>{_bubbles(entries, colors)}</section>",
        f'<section id="pictures"><h2>Where the best run goes wrong</h2>{_pictures(entries)}</section>',
        '<section id="runs"><h2>Runs: config and machine</h2>'
        + "".join(_run_details(e, colors) for e in entries) + "</section>",
    ]  # fmt: skip
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<link rel="icon" href="data:,">'
        f"<title>litezoo report: {len(entries)} run(s)</title><style>{CSS}</style></head>\n"
        f"<body><main>{''.join(sections)}</main><script>{SCRIPT}</script></body></html>\n"
    )


def write_report(run_dirs: list[str | os.PathLike], out: str | os.PathLike = "report.html") -> ReportResult:
    """Read every run folder, write the page to ``out`` atomically. InputError if not one run could be read."""
    if not run_dirs:
        raise InputError("no run folders given")
    records, skipped = [], []
    for folder in dict.fromkeys(str(d) for d in run_dirs):  # the same folder twice: once
        try:
            records.append(load_run(folder))
        except InputError as exc:
            skipped.append((folder, str(exc)))
    if not records:
        raise InputError("no run to report: " + "; ".join(why for _, why in skipped))
    entries = build_entries(records)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    path = atomic_write_bytes(render_html(entries, skipped, generated).encode("utf-8"), out)
    return ReportResult(
        path=path, reported=[str(e.record.path) for e in entries], skipped=skipped,
        warnings=[(e.run, p) for e in entries for p in e.record.problems + e.notes],
        in_progress=[str(e.record.path) for e in entries if e.status == "in progress"],
    )  # fmt: skip


__all__ = ["ReportResult", "render_html", "write_report", "CURVE_CHARTS", "COLUMNS"]
