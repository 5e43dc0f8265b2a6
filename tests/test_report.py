"""The report's pieces without a browser: tick tables, reading run folders (cut-off metrics, not-a-run folders),
the leaderboard's figures and where they come from, the page being self-contained, and the CLI's exit codes."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys

import pytest

from litezoo.errors import InputError
from litezoo.report.leaderboard import build_entries, format_count, format_duration
from litezoo.report.page import write_report
from litezoo.report.runs import load_run, read_metrics
from litezoo.report.svg import Bubble, Series, bubble_chart, fmt_number, line_chart, log_ticks, nice_ticks

MODEL = "shufflenet_v2_x0_5_cifar"


def write_run(folder, rows, *, model=MODEL, epochs=3, tail="", exported_epoch=None, extra_config=""):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        f"model: {{name: {model}, num_classes: 10, in_chans: 3}}\ndata: {{path: ../data/cifar10, image_size: 32}}\n"
        f"train: {{epochs: {epochs}, amp: bf16}}\n{extra_config}"
    )
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    if exported_epoch is not None:
        header = json.dumps({"__metadata__": {"litezoo": json.dumps({"epoch": exported_epoch})}}).encode()
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return folder


def rows(*top1s, time_per_epoch=10.0):
    return [{"epoch": e, "lr": 0.1, "train_loss": 1.0, "test_top1": t, "time_s": time_per_epoch * e,
             "train_time_s": 0.8 * time_per_epoch * e} for e, t in enumerate(top1s, 1)]  # fmt: skip


# --- axes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi, target, integer, expected", [
    (0.8, 2.0, 5, False, [0.75, 1.0, 1.25, 1.5, 1.75, 2.0]),
    (30, 75, 5, False, [30, 40, 50, 60, 70, 80]),
    (0, 0.1, 5, False, [0, 0.02, 0.04, 0.06, 0.08, 0.1]),
    (1, 30, 6, True, [0, 5, 10, 15, 20, 25, 30]),
    (1, 3, 6, True, [1, 2, 3]),  # never a fractional epoch
    (5, 5, 5, False, [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]),  # one value: a small range around it
    (2e-4, 9e-4, 4, False, [0.0002, 0.0004, 0.0006, 0.0008, 0.001]),
])  # fmt: skip
def test_nice_ticks_table(lo, hi, target, integer, expected):
    assert nice_ticks(lo, hi, target, integer) == pytest.approx(expected)


def test_log_ticks_and_labels():
    assert log_ticks(10, 600) == [10, 20, 50, 100, 200, 500, 1000]  # under two decades: 1-2-5
    assert log_ticks(1.2e6, 5e9) == [1e6, 1e7, 1e8, 1e9, 1e10]
    with pytest.raises(ValueError):
        log_ticks(0, 10)
    assert [fmt_number(v, 0.25) for v in (0, 0.25, 1.5)] == ["0", "0.25", "1.50"]
    assert [fmt_number(v) for v in (1e-4, 12500, 2.5e6, 37.75e9, 250)] == ["1e-4", "12.5k", "2.5M", "37.8G", "250"]
    assert format_count(1_330_000) == "1.33M" and format_count(149_500_000) == "149.5M" and format_count(None) == ""
    assert [format_duration(s) for s in (3.25, 59.6, 95.2, 3725)] == ["3.2s", "1m 00s", "1m 35s", "1h 02m"]


def test_line_chart_maps_points_into_the_plot_area():
    svg = line_chart([Series("a", "#000", [(1, 0.0), (3, 1.0)]), Series("b", "#111", [(2, 0.5)], dashed=True)],
                     title="t", x_label="epoch", y_label="y", width=400, height=300)  # fmt: skip
    pts = re.findall(r'<polyline points="([^"]+)"', svg)
    (x1, y1), (x2, y2) = [tuple(map(float, p.split(","))) for p in pts[0].split()]
    assert x1 == 70 and x2 == 400 - 24  # left and right edges of the plot area (epochs 1..3 fill the x axis)
    assert y1 == 300 - 42 and y2 == 30  # y 0 at the bottom, 1 at the top (ticks 0..1)
    assert 'stroke-dasharray' in svg.split('data-run="b"')[1]
    assert "empty" in line_chart([Series("a", "#000", [])], title="t", x_label="x", y_label="y")


def test_bubble_area_is_proportional_to_parameters_and_log_axis_when_wide():
    svg = bubble_chart([Bubble("small", "#000", 1e6, 50.0, 1e6), Bubble("big", "#111", 5e8, 70.0, 4e6)],
                       title="t", x_label="MACs", y_label="%", max_radius=30)  # fmt: skip
    radii = dict(re.findall(r'data-run="(\w+)"><title>[^<]*</title><circle [^>]*r="([\d.]+)"', svg))
    assert float(radii["big"]) == 30.0 and float(radii["small"]) == 15.0  # 4x the parameters: 2x the radius
    assert "(log scale)" in svg  # 500x the MACs


def test_bubble_labels_do_not_overlap():
    """Two runs of near-identical cost and accuracy: their labels are moved apart, not drawn on each other."""
    svg = bubble_chart([Bubble("seed0", "#000", 1e7, 50.0, 1e6), Bubble("seed1", "#111", 1.01e7, 50.2, 1e6)],
                       title="t", x_label="MACs", y_label="%")  # fmt: skip
    ys = [float(y) for y in re.findall(r'<text class="blbl" x="[\d.]+" y="([\d.]+)"', svg)]
    assert len(ys) == 2 and abs(ys[0] - ys[1]) >= 15


# --- run folders ----------------------------------------------------------------------------------------------

def test_read_metrics_drops_and_names_cut_off_and_bad_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "test_top1": 10.0}\nnot json\n[1, 2]\n'
                    '{"epoch": 2, "test_top1": 20.0}\n{"epoch": 3, "te')
    good, problems = read_metrics(path)
    assert [r["epoch"] for r in good] == [1, 2]
    assert problems == [
        "metrics.jsonl:2: not valid JSON, dropped",
        "metrics.jsonl:3: not a metrics row (no integer epoch), dropped",
        "metrics.jsonl: last line cut off (16 bytes; killed while writing?), dropped",
    ]


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), r"not a run folder \(no config.yaml\)"),
    (lambda d: (d.mkdir(), (d / "config.yaml").write_text("data: {path: x}\n")), "names no model"),
    (lambda d: (d.mkdir(), (d / "config.yaml").write_text("model: [\n")), "config.yaml is not valid YAML"),
    (lambda d: write_run(d, []), r"holds no complete epoch \(empty\)"),
    (lambda d: write_run(d, [], tail='{"epoch": 1, "lr'), "holds no complete epoch .*last line cut off"),
])  # fmt: skip
def test_not_a_run_is_an_input_error_naming_the_folder(tmp_path, make, message):
    folder = tmp_path / "candidate"
    make(folder)
    with pytest.raises(InputError, match=message) as info:
        load_run(folder)
    assert str(folder) in str(info.value)


def test_a_folder_of_runs_is_named_with_a_hint(tmp_path):
    write_run(tmp_path / "runs" / "a", rows(10.0))
    write_run(tmp_path / "runs" / "b", rows(10.0))
    with pytest.raises(InputError, match=r"not a run folder \(no config.yaml\); it holds 2 run folder\(s\) \(a, b\): "
                                         r"pass them, e.g. .*runs/\*"):  # fmt: skip
        load_run(tmp_path / "runs")


def test_status_from_the_exported_weights(tmp_path):
    finished = load_run(write_run(tmp_path / "a", rows(10, 20, 30), exported_epoch=3))
    running = load_run(write_run(tmp_path / "b", rows(10, 20), epochs=5))  # no weights yet
    resumed = load_run(write_run(tmp_path / "c", rows(10, 20, 30, 40), epochs=6, exported_epoch=3))  # longer now
    early = load_run(write_run(tmp_path / "d", rows(10, 20), epochs=5, exported_epoch=2))  # a callback stopped it
    statuses = [e.status for e in build_entries([finished, running, resumed, early])]
    assert statuses == ["finished", "in progress", "in progress", "stopped early"]


def test_leaderboard_figures_and_their_sources(tmp_path):
    a = write_run(tmp_path / "x" / "seed0", rows(40.0, 61.5, 60.0, time_per_epoch=30), exported_epoch=3)
    b = write_run(tmp_path / "y" / "seed0", rows(50.0), model="mobilenet_v1_x0_5_cifar", epochs=1,
                  exported_epoch=1, extra_config="")  # fmt: skip
    (a / "profile.json").write_text(json.dumps({"latency": {"median_ms": 1.75, "runs": 30, "batch": 1, "device": "cpu",
                                                            "threads": 2}}))  # fmt: skip
    (b / "tta").mkdir()  # litezoo eval --tta --out RUN/tta: higher than any epoch
    (b / "tta" / "eval_test.json").write_text(json.dumps({"top1": 52.25, "split": "test", "data": "../data/cifar10",
                                                          "tta_flip": True, "tta_translate": 0}))  # fmt: skip
    (b / "run.json").write_text(json.dumps({"machine": {"cpu_model": "Some CPU", "cpu_count": 8, "cpus_usable": 4},
                                            "precision": "fp32", "precision_reason": "fp32 measured fastest"}))
    ea, eb = build_entries([load_run(a), load_run(b)])
    assert (ea.run, eb.run) == ("x/seed0", "y/seed0")  # same folder names: made unique by their parents
    assert (ea.best_top1, ea.best_source) == (61.5, "cifar10 test, epoch 2")
    assert (eb.best_top1, eb.best_source) == (52.25, "cifar10 test split, flip TTA (tta/eval_test.json)")
    assert ea.latency_ms == 1.75 and ea.latency_source == "profile.json: median of 30, batch 1, cpu, 2 threads"
    assert eb.latency_ms is None
    (b / "bench.json").write_text(json.dumps({"rows": [  # litezoo bench --json: the fastest batch-1 row counts
        {"runtime": "torch", "precision": "fp32", "batch": 1, "threads": 2, "median_ms": 2.5, "calls": 40},
        {"runtime": "ort", "precision": "fp32", "batch": 1, "threads": 2, "median_ms": 1.25, "calls": 80},
        {"runtime": "ort", "precision": "fp32", "batch": 32, "threads": 2, "median_ms": 0.5, "calls": 10}]}))
    (eb,) = build_entries([load_run(b)])
    assert (eb.latency_ms, eb.latency_source) == (1.25, "bench.json: fastest batch-1 row, ort, fp32, 2 threads, "
                                                        "median of 80 calls")
    assert (ea.time_s, ea.train_time_s, ea.precision) == (90.0, 72.0, "amp bf16")  # not recorded: the config's
    assert (eb.precision, eb.precision_note) == ("fp32", "fp32 measured fastest")  # recorded by the trainer
    assert (ea.cpu, eb.cpu) == ("", "Some CPU, 4 CPUs")  # the CPUs the run could use
    # params and MACs of the rebuilt models at 32 px, 10 classes: the figures `litezoo models` prints
    from litezoo.analysis.counting import trace_costs
    from litezoo.registry import create_model

    for entry, name in ((ea, MODEL), (eb, "mobilenet_v1_x0_5_cifar")):
        model = create_model(name, num_classes=10)
        assert entry.params == sum(p.numel() for p in model.parameters())
        assert entry.macs == trace_costs(model, 32).total("macs") > 1e6


def test_unknown_model_still_reported_without_costs(tmp_path):
    run = load_run(write_run(tmp_path / "r", rows(30.0), model="a_model_from_the_future", exported_epoch=1))
    (entry,) = build_entries([run])
    assert entry.params is None and entry.macs is None and "not counted" in entry.notes[0]


# --- the page -------------------------------------------------------------------------------------------------

def test_page_is_self_contained_and_names_what_it_left_out(tmp_path):
    write_run(tmp_path / "good", rows(10.0, 20.0), exported_epoch=2)
    (tmp_path / "not_a_run").mkdir()
    result = write_report([tmp_path / "good", tmp_path / "not_a_run"], tmp_path / "out" / "r.html")
    html = result.path.read_text()
    assert result.reported == [str(tmp_path / "good")] and result.skipped[0][0] == str(tmp_path / "not_a_run")
    assert "default-src 'none'" in html  # the browser itself refuses any request
    assert not re.search(r'(src|href)="(?!data:|#)', html)  # every src/href is inline data
    assert "not a run folder (no config.yaml)" in html
    assert html.count("<svg") == 5
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.html"]  # written atomically: no temp file left


def test_names_and_values_are_escaped(tmp_path):
    run = write_run(tmp_path / '<img src=x onerror="alert(1)">', rows(10.0), exported_epoch=1,
                    extra_config="optim: {name: '</pre><script>alert(2)</script>'}\n")  # fmt: skip
    html = write_report([run], tmp_path / "r.html").path.read_text()
    assert "<img src=x" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html and "&lt;script&gt;alert(2)" in html


def test_no_run_at_all_is_an_input_error(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(InputError, match=r"no run to report: .*a: not a run folder"):
        write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_cli_exit_codes_and_json(tmp_path):
    write_run(tmp_path / "good", rows(10.0), exported_epoch=1)
    (tmp_path / "bad").mkdir()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "litezoo", "report", *map(str, args)], capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    ok = cli(tmp_path / "good", tmp_path / "bad", "--out", tmp_path / "r.html", "--json")
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["reported"] == [str(tmp_path / "good")] and out["skipped"][0]["run_dir"] == str(tmp_path / "bad")
    assert f"left out {tmp_path / 'bad'}: not a run folder" in ok.stderr
    none = cli(tmp_path / "bad", "--out", tmp_path / "none.html")
    assert none.returncode == 2 and none.stderr.count("\n") == 1  # one line naming every folder and why
    assert "no run to report" in none.stderr and "Traceback" not in none.stderr
