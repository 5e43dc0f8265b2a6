"""``litezoo report`` opened in a real headless browser (Debian's chromium driven by Playwright).

The runs: one real training run (fit on a tiny generated image folder, then evaluated for its confusion matrix),
two hand-written ones (a finished run with a saved profile result and a prediction grid; a run still in progress
whose metrics.jsonl was cut off mid-line), and two folders that must be named and left out. Checked in the page
as the browser renders it: every chart drawn with a non-empty box, the leaderboard's numbers, sorting by a
clicked header, no console errors, no network request but the file itself, a usable phone-width layout;
screenshots at desktop and phone width are saved next to the report.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from litezoo.config import resolve
from litezoo.evaluate import evaluate_saved, save_confusion_png
from litezoo.machine import cpu_model_and_flags, usable_cpus
from litezoo.progress import Progress
from litezoo.registry import create_model
from litezoo.report.page import write_report
from litezoo.train import fit

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
pytestmark = [
    pytest.mark.slow,  # a browser process and a training run: end to end
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(`apt-get install chromium`; .ci/run installs it)"),
]  # fmt: skip
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[test]')")

REAL_MODEL = "shufflenet_v2_x0_5_cifar"
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]
# Hand-written runs: (folder, model, planned epochs, epochs logged, best test top-1 on the last epoch)
HAND = [("mbv1_half", "mobilenet_v1_x0_5_cifar", 4, 4, 71.25),
        ("snv1_live", "shufflenet_v1_g3_x0_5_cifar", 10, 3, 48.5)]
PROFILE_MS = 3.21  # the median latency written into mbv1_half/profile.json


def make_image_folder(root: Path, per_class: tuple[int, int] = (12, 6), size: int = 32) -> Path:
    """root/{train,test}/class_<c>/*.png: noisy images whose mean colour is the class (learnable in a few steps)."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class):
        for c, colour in enumerate(COLOURS):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(colour, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def hand_run(folder: Path, model: str, planned: int, done: int, best: float, *, finished: bool, cut: bool = False):
    """A run folder as the trainer leaves it: config.yaml, metrics.jsonl, and (finished) model.safetensors."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml_text(model, planned))
    rows = [{"epoch": e, "step": 10 * e, "lr": 0.1 * math.cos(e / planned), "train_loss": 2.0 / e,
             "train_top1": best * e / done - 5, "test_loss": 2.2 / e, "test_top1": best * e / done,
             "images_per_s": 400.0 + e, "time_s": 30.0 * e, "train_time_s": 25.0 * e}
            for e in range(1, done + 1)]  # fmt: skip
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "metrics.jsonl").write_text(text + ('{"epoch": %d, "lr": 0.0' % (done + 1) if cut else ""))
    if finished:  # only the safetensors header matters to the report: its metadata names the exported epoch
        header = json.dumps({"__metadata__": {"litezoo": json.dumps({"epoch": done})}}).encode()
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return rows


def yaml_text(model: str, epochs: int) -> str:
    return (f"model: {{name: {model}, num_classes: 4, in_chans: 3}}\ndata: {{path: tiny, image_size: 32}}\n"
            f"train: {{epochs: {epochs}, amp: bf16}}\n")


def prediction_grid(path: Path) -> None:
    """A stand-in picture for `litezoo predict --grid` (blue frames right, red wrong): the report embeds it."""
    img = np.full((60, 120, 3), 255, np.uint8)
    img[5:55, 5:55] = (0, 0, 255)
    img[5:55, 65:115] = (255, 0, 0)
    Image.fromarray(img).save(path)


def params_of(model: str) -> int:
    return sum(p.numel() for p in create_model(model, num_classes=4).parameters())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report")
    data = make_image_folder(root / "data")
    real = root / "runs" / "snv2_real"
    threads = torch.get_num_threads()
    cfg = resolve(None, {"model.name": REAL_MODEL, "data.path": str(data), "data.cache_dir": str(root / "cache"),
                         "train.epochs": 2, "data.batch_size": 8, "data.eval_batch_size": 24, "train.amp": "off",
                         "train.device": "cpu", "optim.lr": 0.02, "train.threads": 1})  # fmt: skip
    try:
        fit(cfg, real, progress=Progress(quiet=True))
    finally:
        torch.set_num_threads(threads)
    result, _ = evaluate_saved(real, data, device="cpu", cache_dir=root / "cache")
    save_confusion_png(result, real / "confusion_test.png", title="confusion")
    real_rows = [json.loads(line) for line in (real / "metrics.jsonl").read_text().splitlines()]

    hand = {}
    for (name, model, planned, done, best), finished in zip(HAND, (True, False)):
        hand[name] = hand_run(root / "runs" / name, model, planned, done, best, finished=finished, cut=not finished)
    (root / "runs" / "mbv1_half" / "profile.json").write_text(json.dumps(
        {"model": HAND[0][1], "latency": {"median_ms": PROFILE_MS, "runs": 30, "batch": 1, "device": "cpu"}}))
    prediction_grid(root / "runs" / "mbv1_half" / "predictions.png")
    (root / "runs" / "not_a_run").mkdir()
    empty = root / "runs" / "killed_at_start"
    empty.mkdir()
    (empty / "config.yaml").write_text(yaml_text(REAL_MODEL, 5))
    (empty / "metrics.jsonl").write_text('{"epoch": 1, "st')  # killed while writing its first row

    folders = [real] + [root / "runs" / n for n, *_ in HAND] + [root / "runs" / "not_a_run", empty]
    report = write_report(folders, root / "report.html")
    return {"root": root, "report": report, "real_rows": real_rows, "hand": hand}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, path: Path, width: int, height: int):
    """The report in a fresh page; every request is routed: the file itself loads, anything else is refused."""
    page = browser.new_page(viewport={"width": width, "height": height})
    requests, errors = [], []
    url = path.resolve().as_uri()

    def route(r):
        requests.append(r.request.url)
        r.continue_() if r.request.url == url else r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type in ("error", "warning") and errors.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, requests, errors


def column(page, name: str) -> list[str]:
    """Texts of the leaderboard column headed ``name``, in the displayed row order."""
    return page.eval_on_selector(
        "#leaderboard",
        """(t, name) => { const heads = [...t.tHead.rows[0].cells].map(h => h.textContent.trim());
               const i = heads.indexOf(name); if (i < 0) throw new Error('no column ' + name);
               return [...t.tBodies[0].rows].map(r => r.cells[i].textContent.trim()); }""",
        name,
    )


def run_order(page) -> list[str]:
    return page.eval_on_selector("#leaderboard", "t => [...t.tBodies[0].rows].map(r => r.dataset.run)")


def test_report_result_names_what_was_left_out(runs):
    report = runs["report"]
    assert [Path(p).name for p in report.reported] == ["snv2_real", "mbv1_half", "snv1_live"]
    assert [Path(p).name for p in report.in_progress] == ["snv1_live"]
    reasons = dict((Path(d).name, why) for d, why in report.skipped)
    assert "not a run folder (no config.yaml)" in reasons["not_a_run"]
    assert "no complete epoch" in reasons["killed_at_start"] and "cut off" in reasons["killed_at_start"]
    assert ("snv1_live", next(p for n, p in report.warnings if n == "snv1_live")) in report.warnings
    assert any("last line cut off" in p for n, p in report.warnings if n == "snv1_live")


def test_desktop_charts_table_sorting_and_no_network(runs, browser):
    path = runs["report"].path
    page, requests, errors = open_page(browser, path, 1280, 900)
    try:
        # --- every chart rendered: 4 curve charts + the bubble chart, each with a non-empty box and its marks
        charts = page.query_selector_all("svg.chart")
        assert len(charts) == 5
        for chart in charts:
            box = chart.bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100, chart.get_attribute("aria-label")
        line_charts = page.query_selector_all("svg.line-chart")
        assert [c.get_attribute("aria-label") for c in line_charts] == \
            ["Loss", "Top-1 accuracy", "Learning rate (end of epoch)", "Training throughput"]  # fmt: skip
        epochs = {"snv2_real": 2, "mbv1_half": 4, "snv1_live": 3}
        for chart, lines_per_run in zip(line_charts, (2, 2, 1, 1)):
            for run, n in epochs.items():
                groups = chart.query_selector_all(f'g.series[data-run="{run}"]')
                assert len(groups) == lines_per_run
                for g in groups:
                    assert len(g.query_selector_all("circle")) == n  # one marker per logged epoch
                    line = g.query_selector("polyline").bounding_box()
                    assert line["width"] > 10  # drawn across the epochs, not collapsed to a point
        bubbles = page.query_selector_all("svg.bubble-chart g.bubble")
        assert sorted(b.get_attribute("data-run") for b in bubbles) == ["mbv1_half", "snv1_live", "snv2_real"]
        assert all(b.query_selector("circle").bounding_box()["width"] > 4 for b in bubbles)
        # the bubble of the run with the most parameters is the biggest (area ∝ parameters)
        radius = {b.get_attribute("data-run"): float(b.query_selector("circle").get_attribute("r")) for b in bubbles}
        params = {"snv2_real": params_of(REAL_MODEL), "mbv1_half": params_of(HAND[0][1]),
                  "snv1_live": params_of(HAND[1][1])}
        assert max(radius, key=radius.get) == max(params, key=params.get)

        # --- the table holds the runs' numbers, best top-1 first
        real_best = max(r["test_top1"] for r in runs["real_rows"])
        best_by_run = {"snv2_real": real_best, "mbv1_half": HAND[0][4], "snv1_live": HAND[1][4]}
        expected_order = sorted(best_by_run, key=lambda r: -best_by_run[r])
        assert run_order(page) == expected_order
        tops = [t.split()[0] for t in column(page, "best top-1 %")]  # the number, then where it was measured
        assert tops == [f"{best_by_run[r]:.2f}" for r in expected_order]
        assert column(page, "epochs") == [{"snv2_real": "2 / 2", "mbv1_half": "4 / 4", "snv1_live": "3 / 10"}[r]
                                          for r in expected_order]  # fmt: skip
        assert column(page, "latency ms") == [{"mbv1_half": f"{PROFILE_MS:.2f}"}.get(r, "") for r in expected_order]
        # precision and CPU: recorded by the trainer in the real run's run.json; the config's amp otherwise
        precision, cpu = column(page, "precision"), column(page, "CPU")
        real, hand = expected_order.index("snv2_real"), expected_order.index("mbv1_half")
        assert (precision[real], precision[hand]) == ("fp32", "amp bf16")
        assert (cpu[real], cpu[hand]) == (f"{cpu_model_and_flags()[0]}, {usable_cpus()} CPUs", "not recorded")
        real_row = page.query_selector('#leaderboard tr[data-run="snv2_real"]').inner_text()
        assert f"{params_of(REAL_MODEL) / 1e6:.2f}M" in real_row or f"{params_of(REAL_MODEL) / 1e3:.1f}k" in real_row
        live_row = page.query_selector('#leaderboard tr[data-run="snv1_live"]').inner_text()
        assert "in progress" in live_row

        # --- sorting: click a header, read the order; again for the other direction; text columns too
        page.click("#leaderboard th:has-text('params') button")
        assert run_order(page) == sorted(params, key=params.get)
        page.click("#leaderboard th:has-text('params') button")
        assert run_order(page) == sorted(params, key=params.get, reverse=True)
        page.click("#leaderboard th:has-text('run') button")
        assert run_order(page) == sorted(params)
        page.click("#leaderboard th:has-text('latency ms') button")  # the run without a latency stays last
        assert run_order(page)[0] == "mbv1_half"

        # --- what was left out is named; the best run's confusion matrix and the grid are embedded and decode
        problems = page.inner_text("#problems")
        assert "not_a_run" in problems and "killed_at_start" in problems and "last line cut off" in problems
        images = page.query_selector_all("#pictures img")
        assert len(images) == 2
        assert all(img.evaluate("i => i.complete && i.naturalWidth > 0") for img in images)
        assert images[0].get_attribute("src").startswith("data:image/png;base64,")
        captions = page.inner_text("#pictures")
        grid_owner = "the best run" if expected_order[0] == "mbv1_half" else "the best run that has one"
        assert f"Predictions (blue: right, red: wrong) of mbv1_half ({grid_owner}" in captions

        # --- config and machine collapsible: closed at first, open on a click
        details = page.query_selector('details[data-run="snv2_real"]')
        assert not details.query_selector("pre").is_visible()
        details.query_selector("summary").click()
        assert details.query_selector("pre").is_visible()
        assert f"name: {REAL_MODEL}" in details.query_selector("pre").inner_text()

        page.screenshot(path=str(path.with_name("report_desktop.png")), full_page=True)
    finally:
        page.close()
    assert errors == []
    assert requests == [path.resolve().as_uri()]


def test_phone_width_layout(runs, browser):
    path = runs["report"].path
    page, requests, errors = open_page(browser, path, 390, 844)
    try:
        # nothing wider than the screen: no sideways scrolling of the page
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for chart in page.query_selector_all("svg.chart"):
            box = chart.bounding_box()
            assert 250 < box["width"] <= 390 and box["height"] > 100
        # the leaderboard becomes one card per run; every cell names its column
        first = page.query_selector("#leaderboard tbody tr")
        assert first.bounding_box()["width"] <= 390
        label = first.query_selector("td[data-label='params']")
        assert label.evaluate("td => getComputedStyle(td, '::before').content") == '"params"'
        # chart text is still legible once the SVG is scaled down: at least 9 CSS px on screen
        tick = page.query_selector("svg.line-chart text.lbl")
        assert tick.bounding_box()["height"] >= 9
        page.click("#leaderboard th:has-text('epochs') button")  # sorting still works from the chip row
        assert run_order(page) == ["snv2_real", "snv1_live", "mbv1_half"]
        page.screenshot(path=str(path.with_name("report_phone.png")), full_page=True)
    finally:
        page.close()
    assert errors == []
    assert requests == [path.resolve().as_uri()]
