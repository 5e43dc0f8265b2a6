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
