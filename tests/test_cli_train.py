"""`litezoo train` / `litezoo eval` from the command line: bad input is one line and exit 2 before any work."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
import torch

from litezoo.cli.main import main
from test_train import make_image_folder


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("cli") / "data")


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", "shufflenet_v2_x0_5_cifar", "--data", str(data), "--out", str(out), "--epochs", "1",
            "--batch-size", "8", "--amp", "off", "--device", "cpu", "--threads", "1",
            "--data.cache_dir", str(data.parent / "cache"), "--data.eval_batch_size", "16", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cli_run") / "run"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(_train_args(tiny_data, out, "--json", "--epochs", "2", "--label-smoothing", "0.1"))
    assert code == 0
    return out, json.loads(buf.getvalue())


def test_train_json_reports_one_object_and_writes_the_run(trained_run):
    out, result = trained_run
    assert result["epoch"] == 2 and result["weights"] == str(out / "model.safetensors")
    assert {"test_top1", "test_top5", "train_loss", "best_top1", "train_time_s"} <= set(result)
    cfg = (out / "config.yaml").read_text()
    assert "label_smoothing: 0.1" in cfg and "epochs: 2" in cfg and "num_classes: 4" in cfg


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "shufflenet_v2_x0_5_cifr"], "did you mean shufflenet_v2_x0_5_cifar"),
        (["--data", "/no/such/folder"], "/no/such/folder"),
        (["--optim.lrr", "0.1"], "did you mean optim.lr"),
        (["--epochs", "0"], "train.epochs must be ≥ 1"),
        (["--epochs", "-3"], "invalid config: train.epochs must be ≥ 1, got -3"),
        (["--lr", "-0.1"], "optim.lr must be > 0"),
        (["--batch-size", "0"], "data.batch_size must be > 0"),
        (["--optimizer", "adamx"], "optim.name must be one of"),
        (["--schedule", "cosin"], "schedule.name must be one of"),
        (["--amp", "fp8"], "train.amp must be one of"),
        (["--config", "no_such_recipe"], "recipe not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(tiny_data, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    code = main(_train_args(tiny_data, out, *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("litezoo train: error:") and message in err and "\n" not in err, err
    assert not out.exists()


def test_resume_with_another_model_or_class_count_is_exit_2(trained_run, tiny_data, capsys):
    out, _ = trained_run
    before = (out / "checkpoints" / "last.pt").read_bytes()
    assert main(["train", "--resume", str(out), "--model", "mobilenet_v1_x0_25_cifar"]) == 2
    assert "holds model 'shufflenet_v2_x0_5_cifar'" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--model.num_classes", "10"]) == 2
    assert "has 4 classes, but model.num_classes=10" in capsys.readouterr().err
    three = make_image_folder(tiny_data.parent / "three", classes=3, train_per_class=4, test_per_class=2)
    assert main(["train", "--resume", str(out), "--data", str(three)]) == 2
    assert "has 4 classes but the data" in capsys.readouterr().err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_out_is_required_and_existing_runs_are_not_overwritten(trained_run, tiny_data, capsys):
    out, _ = trained_run
    assert main(["train", "--model", "shufflenet_v2_x0_5_cifar", "--data", str(tiny_data)]) == 2
    assert "--out RUN_DIR is required" in capsys.readouterr().err
    assert main(_train_args(tiny_data, out)) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_eval_run_folder_and_checkpoint(trained_run, tiny_data, tmp_path, capsys):
    out, result = trained_run
    code = main(["eval", str(out), "--data", str(tiny_data), "--json", "--device", "cpu", "--out", str(tmp_path),
                 "--cache-dir", str(tiny_data.parent / "cache")])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top1"] == pytest.approx(result["test_top1"]) and report["num_samples"] == 16
    assert len(report["per_class"]) == 4 and sum(sum(row) for row in report["confusion"]) == 16
    png = Path(report["confusion_png"])
    assert png == tmp_path / "confusion_test.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "eval_test.json").read_text())["top1"] == report["top1"]

    # A checkpoint file, with flip TTA, printed for people.
    code = main(["eval", str(out / "checkpoints" / "best.pt"), "--data", str(tiny_data), "--tta", "--device", "cpu",
                 "--out", str(tmp_path), "--cache-dir", str(tiny_data.parent / "cache")])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "per-class accuracy" in text and "confusion matrix" in text and "class_3" in text
    assert "(flip TTA)" in text

    # Translate TTA is recorded in the report; a shift the images cannot take is a clear error (exit 2).
    cache = ["--cache-dir", str(tiny_data.parent / "cache"), "--device", "cpu", "--out", str(tmp_path)]
    assert main(["eval", str(out), "--data", str(tiny_data), "--tta", "--tta-translate", "1", "--json", *cache]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tta_flip"] is True and report["tta_translate"] == 1 and report["num_samples"] == 16
    assert main(["eval", str(out), "--data", str(tiny_data), "--tta-translate", "64", *cache]) == 2
    assert "tta_translate must be 0 to" in capsys.readouterr().err


def test_eval_bad_input(trained_run, tiny_data, tmp_path, capsys):
    out, _ = trained_run
    assert main(["eval", str(tmp_path / "missing"), "--data", str(tiny_data)]) == 2
    assert "does not exist" in capsys.readouterr().err
    three = make_image_folder(tmp_path / "three", classes=3, train_per_class=2, test_per_class=2)
    assert main(["eval", str(out), "--data", str(three), "--device", "cpu", "--cache-dir", str(tmp_path / "c")]) == 2
    assert "the model was trained on" in capsys.readouterr().err


def test_eval_ensemble_of_runs(trained_run, tiny_data, tmp_path, capsys):
    out, _ = trained_run
    other = tmp_path / "run2"  # a second member: same data, another seed
    assert main(_train_args(tiny_data, other, "--seed", "1")) == 0
    capsys.readouterr()
    cache = ["--cache-dir", str(tiny_data.parent / "cache"), "--device", "cpu"]
    # Several targets need --out: the report belongs to no single run.
    assert main(["eval", str(out), str(other), "--data", str(tiny_data), *cache]) == 2
    assert "--out" in capsys.readouterr().err

    code = main(["eval", str(out), str(other), "--data", str(tiny_data), "--json", "--out", str(tmp_path / "ens"), *cache])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == [str(out), str(other)] and report["num_samples"] == 16
    assert report["model_name"] == "ensemble of 2 shufflenet_v2_x0_5_cifar"

    # The same numbers from the members' probabilities, averaged here by hand.
    from litezoo.data import BatchLoader, open_dataset
    from litezoo.evaluate import load_trained_model

    probs, labels = [], None
    for run in (out, other):
        model, meta = load_trained_model(run)
        ds = open_dataset(tiny_data, "test", image_size=meta["image_size"], cache_dir=tiny_data.parent / "cache")
        loader = BatchLoader(ds, 16, train=False, rank=0, world_size=1, mean=tuple(meta["mean"]), std=tuple(meta["std"]))
        with torch.no_grad():
            batches = list(loader)
            probs.append(torch.cat([model(x).softmax(1) for x, _ in batches]))
        labels = torch.cat([y for _, y in batches])
    top1 = 100.0 * ((probs[0] + probs[1]).argmax(1) == labels).float().mean().item()
    assert report["top1"] == pytest.approx(top1)

    # Members trained for different classes cannot be averaged.
    three = make_image_folder(tmp_path / "three", classes=3)
    assert main(_train_args(three, tmp_path / "run3")) == 0
    capsys.readouterr()
    code = main(["eval", str(out), str(tmp_path / "run3"), "--data", str(tiny_data), "--out", str(tmp_path / "e"), *cache])
    assert code == 2 and "cannot ensemble" in capsys.readouterr().err


def test_help_shows_examples(capsys):
    for cmd in ("train", "eval"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert f"example:\n  litezoo {cmd}" in capsys.readouterr().out


def test_out_that_is_a_file_or_a_foreign_folder_is_refused(tiny_data, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert main(_train_args(tiny_data, a_file)) == 2
    err = capsys.readouterr().err.strip()
    assert f"--out {a_file} is a file, not a folder" in err and "\n" not in err and "Errno" not in err
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not yours")
    assert main(_train_args(tiny_data, foreign)) == 2
    assert "is a folder that is not a litezoo run and is not empty (holiday.jpg)" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]  # nothing mixed in
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_train_args(tiny_data, empty)) == 0  # an empty folder is fine


def test_resume_of_a_finished_run_says_nothing_was_left(trained_run, capsys):
    out, _ = trained_run
    before = (out / "checkpoints" / "last.pt").read_bytes()
    assert main(["train", "--resume", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nothing left to train: the run has finished its 2 epochs" in text
    assert "nothing left to train: best test top-1" in text and "\ndone" not in text
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_eval_names_the_split_it_read(trained_run, tiny_data, tmp_path, capsys):
    import shutil

    out, _ = trained_run
    valid = tmp_path / "valid_data"
    shutil.copytree(tiny_data / "train", valid / "train")
    shutil.copytree(tiny_data / "test", valid / "valid")  # no test/ folder: --split test reads valid/
    cache = ["--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--out", str(tmp_path / "report")]
    assert main(["eval", str(out), "--data", str(valid), "--tta-flip", *cache]) == 0
    text = capsys.readouterr().out
    assert f"on valid of {valid} (flip TTA)" in text and "on test of" not in text
    assert (tmp_path / "report" / "confusion_valid.png").is_file()
    assert json.loads((tmp_path / "report" / "eval_valid.json").read_text())["split"] == "valid"


def test_constant_predictions_are_reported_and_logged(tiny_data, tmp_path, capsys, monkeypatch):
    from litezoo import run as run_mod

    real = run_mod.model_for_training

    def dead(*args, **kwargs):  # a network whose output is 0 for every input (as a dead final ReLU gives)
        model = real(*args, **kwargs)
        model.register_forward_hook(lambda module, inputs, output: output * 0)
        return model

    monkeypatch.setattr(run_mod, "model_for_training", dead)
    out = tmp_path / "run"
    assert main(_train_args(tiny_data, out)) == 0
    text = capsys.readouterr().out
    # All logits tie, so which class "wins" is up to topk; that one class wins every time is the point.
    assert re.search(r"warning: epoch 1: the model predicted class 'class_\d' for all 16 images; its logits are "
                     r"identical for every image", text), text
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["constant_predictions"] is True and row["test_top1"] == 25.0  # one class of four
    monkeypatch.setattr(run_mod, "model_for_training", real)
    # A live network: its logits vary with the input (after 4 steps at lr 0.1 it may still favour one class,
    # which is flagged too, but never as identical logits). The column is always written.
    assert main(_train_args(tiny_data, tmp_path / "alive")) == 0
    assert "identical" not in capsys.readouterr().out
    (row,) = [json.loads(line) for line in (tmp_path / "alive" / "metrics.jsonl").read_text().splitlines()]
    assert isinstance(row["constant_predictions"], bool)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("raised, code", [("sigterm", 143), ("ctrl-c twice", 130)])
def test_stop_messages_start_on_a_fresh_line_on_a_terminal(tiny_data, tmp_path, monkeypatch, raised, code):
    import signal

    from litezoo import train as train_mod
    from litezoo.interrupt import Interrupted

    def stopped(*args, **kwargs):
        if raised == "sigterm":
            raise Interrupted(signal.SIGTERM, None, "stopped by SIGTERM at epoch 1, step 3; saved X")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "fit", stopped)
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    assert main(_train_args(tiny_data, tmp_path / "run")) == code
    text = err.getvalue()
    assert text.startswith("\nlitezoo train: ") and text.count("\n") == 2, repr(text)  # not glued to the bar
    assert ("stopped by SIGTERM" if raised == "sigterm" else "interrupted") in text
