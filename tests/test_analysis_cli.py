"""litezoo profile / compare / guidelines: output formats, model loading, charts, and the four tables."""

from __future__ import annotations

import csv
import io
import json
import textwrap

import pytest
import torch.nn as nn

import litezoo
from litezoo.analysis import count_macs
from litezoo.analysis.compare import read_run
from litezoo.analysis.profiler import profile_model
from litezoo.cli.main import main
from litezoo.errors import InputError

SEED = "litezoo.analysis.seed_examples"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- profile ---------------------------------------------------------------------------------------------


def test_profile_json_names_conventions_and_reproduces_seed(capsys):
    code, out, _ = run_cli(capsys, "profile", f"{SEED}:standard_conv", "--input-size", "5", "--json", "--no-time")
    assert code == 0
    result = json.loads(out)
    assert result["totals"]["macs_paper"] == 2400
    assert result["totals"]["flops_all"] == 4800  # 2 FLOPs per MAC, no bias, padding moves data only
    assert result["totals"]["params"] == 2 * 2 * 3 * 8
    assert set(result["conventions"]) >= {"macs_paper", "flops_all", "mac_bytes", "act_bytes", "params"}
    assert result["uncounted_ops"] == {}
    assert [layer["type"] for layer in result["layers"]] == ["ZeroPad2d", "Conv2d"]
    assert result["layers"][1]["output_shape"] == [1, 8, 5, 5]


def test_profile_csv_parses_and_totals_add_up(capsys):
    code, out, _ = run_cli(
        capsys, "profile", f"{SEED}:depthwise_separable_conv", "--input-size", "5", "--format", "csv", "--no-time"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    total = rows[-1]
    assert total["name"] == "TOTAL" and int(total["macs_paper"]) == 900
    assert [int(r["macs_paper"]) for r in rows[:-1]] == [0, 300, 600]
    assert sum(int(r["mac_bytes"]) for r in rows[:-1]) == int(total["mac_bytes"])


def test_profile_table_lists_uncounted_ops():
    class Scan(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x).cumsum(dim=3)

    profile = profile_model(Scan(), 8, time_it=False)
    assert profile.uncounted_ops == {"aten.cumsum": 1}
    assert "aten.cumsum x1" in profile.to_table()
    root = next(r for r in profile.rows if r.name == "")
    assert root.uncounted_ops == {"aten.cumsum": 1}  # charged to the module whose forward called it


def test_profile_time_shares_cover_the_forward():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    profile = profile_model(model, 16, runs=3, warmup=1, threads=1)
    shares = [r.time_share for r in profile.rows]
    assert all(s is not None and s >= 0 for s in shares)
    assert sum(shares) + profile.totals["time_share_containers"] == pytest.approx(1.0, abs=1e-6)
    lat = profile.latency
    assert lat["runs"] == 3 and lat["threads"] == 1 and lat["torch_version"] and "load_average" in lat
    assert lat["p10_ms"] <= lat["median_ms"] <= lat["p90_ms"]


@pytest.mark.parametrize("name", ["mobilenet_v1_x0_25_cifar", "shufflenet_v2_x0_5_cifar", "vit_tiny_cifar"])
def test_profile_zoo_models_agree_with_count_macs_and_count_everything(name, capsys):
    code, out, _ = run_cli(capsys, "profile", name, "--json", "--no-time", "--num-classes", "10")
    assert code == 0
    result = json.loads(out)
    assert result["input_shape"] == [1, 3, 32, 32]  # the CIFAR form's own resolution
    assert result["uncounted_ops"] == {}
    assert sum(layer["params"] for layer in result["layers"]) == result["totals"]["params"]
    if name.startswith("mobilenet"):  # the CLI and the library entry point agree (one model is enough)
        model = litezoo.create_model(name, num_classes=10)
        assert result["totals"]["macs_paper"] == count_macs(model, 32)
        assert result["totals"]["params"] == sum(p.numel() for p in model.parameters())
    if name.startswith("vit"):  # attention's QK^T and AV products are MACs too, beyond the Linear layers
        layer_macs = sum(x["macs_paper"] for x in result["layers"] if x["type"] in ("Linear", "Conv2d"))
        assert result["totals"]["macs_paper"] > layer_macs
        assert any("scaled_dot_product" in op for op in result["op_counts"])


# --- module:function loading -----------------------------------------------------------------------------


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_user_nets.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        def tiny():
            net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
            net.in_chans = 1
            return net

        def not_a_model():
            return 42

        def warns():
            import warnings
            warnings.warn("this net is only a test")
            return tiny()

        def raises_key_error():
            return {}["a programming bug"]

        def raises_value_error():
            raise ValueError("a bug, not bad input")

        def opens_missing_file():
            return open("/no/such/weights.bin", "rb")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_user_nets"


def test_profile_user_model_from_module_function(capsys, user_module):
    code, out, _ = run_cli(capsys, "profile", f"{user_module}:tiny", "--input-size", "6", "--json", "--no-time")
    assert code == 0
    result = json.loads(out)
    assert result["input_shape"] == [1, 1, 6, 6]
    assert result["totals"]["macs_paper"] == 9 * 1 * 4 * 36 + 144 * 2


@pytest.mark.parametrize(
    "spec,message",
    [("no_such_pkg_xyz.nets:build", "cannot import"), ("{mod}:missing", "has no attribute"),
     ("{mod}:not_a_model", "not an nn.Module"), ("no_such_model_xyz", "unknown model"), (":build", "expected")],
)
def test_profile_bad_model_specs_exit_2(capsys, user_module, spec, message):
    code, out, err = run_cli(capsys, "profile", spec.format(mod=user_module), "--no-time")
    assert code == 2
    assert message in err and out == ""


def test_profile_warnings_are_one_line_litezoo_messages(capsys, user_module):
    import warnings

    before = warnings.showwarning
    code, out, err = run_cli(capsys, "profile", f"{user_module}:warns", "--input-size", "6", "--no-time", "--json")
    assert code == 0 and json.loads(out)
    assert "litezoo profile: warning: this net is only a test" in err
    assert ".py:" not in err and "warnings.warn" not in err  # no source path, line number or code line
    assert warnings.showwarning is before  # restored after the command


@pytest.mark.parametrize(
    "factory, code, message",
    [
        ("raises_key_error", 1, "failed: KeyError"),  # a bug is a failure (1), not the user's bad input (2)
        ("raises_value_error", 1, "failed: ValueError: a bug, not bad input"),
        ("opens_missing_file", 2, "error: no such file or folder: /no/such/weights.bin"),
    ],
)
def test_only_input_errors_exit_2(capsys, user_module, factory, code, message):
    got, out, err = run_cli(capsys, "profile", f"{user_module}:{factory}", "--no-time")
    assert got == code and message in err and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_profile_vocabulary_repeats_json_and_device_auto(capsys, user_module):
    from litezoo.cli.main import build_parser

    parser = build_parser()
    for command in ("profile", "compare", "guidelines"):
        args, _ = parser.parse_known_args([command, "m"] if command != "guidelines" else [command])
        assert args.device == "auto" and args.threads is None, command  # the same defaults everywhere
        assert hasattr(args, "repeats"), command
    for old in (["--format", "json"], ["--runs", "3"]):  # replaced by --json and --repeats
        with pytest.raises(SystemExit) as exit_info:
            main(["profile", f"{user_module}:tiny", *old])
        assert exit_info.value.code == 2
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "profile", f"{user_module}:tiny", "--input-size", "6", "--repeats", "2",
                           "--warmup", "1", "--threads", "1", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["latency"]["runs"] == 2


# --- compare ---------------------------------------------------------------------------------------------


def _fake_run(path, model="mobilenet_v1_x0_25_cifar", top1s=(31.5, 55.25, 54.0)):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        f"model:\n  name: {model}\n  num_classes: 10\n  in_chans: 3\ndata:\n  image_size: 32\n"
    )
    lines = [json.dumps({"epoch": i + 1, "test_top1": t, "test_top5": 90.0 + i}) for i, t in enumerate(top1s)]
    lines.insert(1, json.dumps({"epoch": 1.5, "train_loss": 1.0}))  # a record without test metrics
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_read_run_takes_best_top1(tmp_path):
    run = read_run(_fake_run(tmp_path / "run1"))
    assert run["model"] == "mobilenet_v1_x0_25_cifar"
    assert run["test_top1"] == 55.25 and run["test_top5"] == 91.0 and run["best_epoch"] == 2
    assert run["evaluated_epochs"] == 3
    with pytest.raises(InputError, match="config.yaml"):
        read_run(tmp_path)


def test_compare_with_run_writes_accuracy_chart(capsys, tmp_path, user_module):
    run_dir = _fake_run(tmp_path / "runs" / "mnv1")
    out_dir = tmp_path / "report"
    code, out, _ = run_cli(
        capsys, "compare", f"{user_module}:tiny", "--input-size", "6", "--runs", str(run_dir), "--out", str(out_dir),
        "--repeats", "2", "--warmup", "1", "--threads", "1", "--json",
    )
    assert code == 0
    result = json.loads(out)
    names = [r["name"] for r in result["rows"]]
    assert names == [f"{user_module}:tiny", "mobilenet_v1_x0_25_cifar (mnv1)"]
    assert result["rows"][1]["test_top1"] == 55.25 and result["rows"][0]["test_top1"] is None
    assert result["files"]["chart"] == "accuracy"
    png, svg = out_dir / "compare.png", out_dir / "compare.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in svg.read_text()


def test_compare_without_runs_plots_latency(capsys, tmp_path, user_module):
    code, out, _ = run_cli(
        capsys, "compare", f"{user_module}:tiny", f"{SEED}:standard_conv", "--input-size", "6",
        "--out", str(tmp_path), "--repeats", "2", "--warmup", "1", "--threads", "1",
    )
    assert code == 0
    assert "latency vs MACs" in out
    assert (tmp_path / "compare.png").is_file() and (tmp_path / "compare.svg").is_file()


def test_compare_takes_run_folders_as_positional_arguments(capsys, tmp_path, user_module):
    run_dir = _fake_run(tmp_path / "runs" / "mnv1")
    code, out, _ = run_cli(
        capsys, "compare", str(run_dir), f"{user_module}:tiny", "--input-size", "6", "--out", str(tmp_path / "o"),
        "--repeats", "2", "--warmup", "1", "--threads", "1", "--json",
    )
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [r["name"] for r in rows] == [f"{user_module}:tiny", "mobilenet_v1_x0_25_cifar (mnv1)"]
    assert rows[1]["test_top1"] == 55.25


def test_compare_json_with_a_non_utf8_run_folder_is_strict_json(capsys, tmp_path, user_module):
    """A run folder named with the byte 0xff: its path must reach --json as valid text, not a lone surrogate."""
    import os

    folder = os.path.join(os.fsencode(tmp_path), b"run\xff")
    run_dir = _fake_run(tmp_path / os.fsdecode(folder))
    assert os.path.isdir(folder)  # a real file name with the byte 0xff in it
    code, out, _ = run_cli(
        capsys, "compare", "--runs", str(run_dir), "--out", str(tmp_path / "o"), "--repeats", "1",
        "--warmup", "1", "--threads", "1", "--json",
    )
    assert code == 0
    out.encode("utf-8")  # raises for a lone surrogate
    assert "\\udc" not in out  # nor escaped as one (strict parsers reject '\udcff' without its pair)
    result = json.loads(out)
    assert result["rows"][0]["name"] == "mobilenet_v1_x0_25_cifar (run\\xff)"
    assert result["rows"][0]["run_dir"].endswith("run\\xff")


def test_an_output_path_blocked_by_a_file_is_bad_input(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run_cli(capsys, "guidelines", "--quick", "--only", "G2", "--out", str(blocker / "g.json"))
    assert code == 2 and err.strip() == f"litezoo guidelines: error: a file is in the way of a folder: {blocker}"


def test_compare_bad_inputs_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compare", "--out", str(tmp_path))
    assert code == 2 and "nothing to compare" in err
    code, _, err = run_cli(capsys, "compare", "--runs", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert code == 2 and "does not exist" in err


# --- guidelines ------------------------------------------------------------------------------------------


def test_guidelines_quick_produces_all_four_tables(capsys, tmp_path):
    out_file = tmp_path / "g.json"
    code, out, _ = run_cli(capsys, "guidelines", "--quick", "--threads", "1", "--json", "--out", str(out_file))
    assert code == 0
    report = json.loads(out)
    assert json.loads(out_file.read_text())["guidelines"].keys() == report["guidelines"].keys()
    tables = report["guidelines"]
    assert list(tables) == ["G1", "G2", "G3", "G4"]
    expected_rows = {
        "G1": ["1:1", "1:2", "1:6", "1:12"],
        "G2": ["g=1", "g=2", "g=4", "g=8"],
        "G3": ["1-fragment", "2-fragment-series", "4-fragment-series", "2-fragment-parallel", "4-fragment-parallel"],
        "G4": ["ReLU+shortcut", "ReLU only", "shortcut only", "neither"],
    }
    for g, table in tables.items():
        assert [r["row"] for r in table["rows"]] == expected_rows[g]
        assert table["verdict"].startswith(g)
        assert set(table["paper"]["arm_images_per_s"]) == set(expected_rows[g])
        for column in table["columns"]:
            cells = [r[column] for r in table["rows"]]
            assert all(c["batches_per_s"] > 0 for c in cells)
            macs = [c["macs_per_image"] for c in cells]
            if g != "G4":  # G1-G3 compare structures at (nearly) equal FLOPs, as the paper does
                assert max(macs) / min(macs) < 1.06, (g, macs)
            else:  # G4 removes only ReLU / shortcut: identical MACs
                assert len(set(macs)) == 1
    # G1's premise: at equal FLOPs the unbalanced pairs move more bytes (ShuffleNet V2's Eq. 1).
    g1_bytes = [r["x1"]["mac_bytes_per_image"] for r in tables["G1"]["rows"]]
    assert g1_bytes == sorted(g1_bytes)
    assert report["machine"]["threads"] == 1


def test_guidelines_text_shows_paper_beside_measured(capsys):
    code, out, _ = run_cli(capsys, "guidelines", "--quick", "--only", "G2")
    assert code == 0
    assert "paper ARM x1" in out and "here x1" in out and "Ma et al." in out
    assert "c=184 (paper 180)" in out
