"""TensorBoard event files written by the real tensorboard package, read back with tensorboard's own reader."""

from __future__ import annotations

import pytest
import torch

from litezoo import tblog
from litezoo.errors import InputError

pytest.importorskip("tensorboard", reason="tensorboard is an optional extra: pip install 'litezoo[tensorboard]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every event, no sampling
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_steps_and_epochs_read_back_with_tensorboards_reader(tmp_path):
    with tblog.TensorBoardLog(tmp_path / "tb") as tb:
        for step, (loss, lr) in enumerate([(2.25, 0.1), (1.5, 0.05), (0.75, 0.025)], 1):
            tb.log_step(step, {"loss": loss, "lr": lr})
        # None (an epoch without evaluation), NaN, strings and bools are not scalars: skipped.
        tb.log_epoch(1, {"train_loss": 1.5, "test_top1": None, "note": "x", "flag": True})
        tb.log_epoch(2, {"train_loss": 0.5, "test_top1": 87.5, "test_loss": float("nan")})
    acc = read_events(tmp_path / "tb")
    assert sorted(acc.Tags()["scalars"]) == ["epoch/test_top1", "epoch/train_loss", "step/loss", "step/lr"]
    assert scalars(acc, "step/loss") == [(1, 2.25), (2, 1.5), (3, 0.75)]
    assert scalars(acc, "step/lr") == [(1, pytest.approx(0.1)), (2, pytest.approx(0.05)), (3, pytest.approx(0.025))]
    assert scalars(acc, "epoch/train_loss") == [(1, 1.5), (2, 0.5)]
    assert scalars(acc, "epoch/test_top1") == [(2, 87.5)]


def test_epochs_are_on_disk_before_close(tmp_path):
    """A run killed mid-training keeps the finished epochs: log_epoch flushes."""
    tb = tblog.TensorBoardLog(tmp_path / "tb")
    try:
        tb.log_epoch(1, {"test_top1": 42.0})
        assert scalars(read_events(tmp_path / "tb"), "epoch/test_top1") == [(1, 42.0)]
    finally:
        tb.close()


def test_model_graph_and_mode_restored(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))  # fmt: skip
    model.train()
    running = model[1].running_mean.clone()
    with tblog.TensorBoardLog(tmp_path / "tb") as tb:
        tb.log_graph(model, torch.randn(1, 3, 8, 8))
    acc = read_events(tmp_path / "tb")
    assert acc.Tags()["graph"]
    ops = {node.op for node in acc.Graph().node}
    assert any("conv" in op.lower() for op in ops)
    assert any("linear" in op.lower() or "addmm" in op.lower() for op in ops)
    assert model.training  # mode restored
    assert torch.equal(model[1].running_mean, running)  # traced in eval mode: BN statistics untouched


def test_missing_tensorboard_is_a_one_line_input_error(tmp_path, monkeypatch):
    real = tblog.importlib.util.find_spec
    monkeypatch.setattr(tblog.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(InputError, match=r"train.tensorboard: true needs the tensorboard package: pip install") as info:
        tblog.TensorBoardLog(tmp_path / "tb")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "tb").exists()  # nothing written


# --- in the trainer: train.tensorboard -------------------------------------------------------------------------

def tiny_image_folder(root):
    """root/{train,test}/class_<c>/*.png: 4 classes of noisy single-colour 32 px images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 4)):
        for c, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.clip(rng.normal(colour, 30, (32, 32, 3)), 0, 255).astype(np.uint8)).save(
                    folder / f"{i}.png")
    return root


def tiny_config(tmp_path, **overrides):
    from litezoo.config import resolve

    data = tiny_image_folder(tmp_path / "data")
    return resolve(None, {"model.name": "shufflenet_v2_x0_5_cifar", "data.path": str(data),
                          "data.cache_dir": str(tmp_path / "cache"), "train.epochs": 2, "data.batch_size": 8,
                          "data.eval_batch_size": 16, "train.amp": "off", "train.device": "cpu",
                          "train.threads": 1, **overrides})  # fmt: skip


def test_fit_writes_real_event_files_per_step_and_per_epoch(tmp_path):
    import json

    from litezoo.progress import Progress
    from litezoo.train import fit

    result = fit(tiny_config(tmp_path, **{"train.tensorboard": True}), tmp_path / "run", progress=Progress(quiet=True))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    acc = read_events(tmp_path / "run" / "tensorboard")
    # per epoch: every number of every metrics row, at x = epoch
    for key in ("train_loss", "test_top1", "lr", "images_per_s"):
        assert scalars(acc, f"epoch/{key}") == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in rows]
    # per step: 32 images / batch 8 = 4 steps per epoch, steps 1..8
    assert [s for s, _ in scalars(acc, "step/loss")] == list(range(1, 9))
    assert [s for s, _ in scalars(acc, "step/lr")] == list(range(1, 9))
    assert all(v > 0 for _, v in scalars(acc, "step/loss"))
    assert result["step"] == 8
    assert result["curves"] == str(tmp_path / "run" / "curves.png") and (tmp_path / "run" / "curves.png").is_file()


def test_tensorboard_off_by_default_and_missing_package_stops_before_work(tmp_path, monkeypatch):
    from litezoo.progress import Progress
    from litezoo.train import fit

    fit(tiny_config(tmp_path), tmp_path / "run", progress=Progress(quiet=True))
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert (tmp_path / "run" / "curves.png").is_file()  # every finished run leaves its curves

    real = tblog.importlib.util.find_spec
    monkeypatch.setattr(tblog.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    cfg = tiny_config(tmp_path / "second", **{"train.tensorboard": True})
    with pytest.raises(InputError, match="needs the tensorboard package"):
        fit(cfg, tmp_path / "second" / "run", progress=Progress(quiet=True))
    assert not (tmp_path / "second" / "run").exists()  # stopped before any file was written
