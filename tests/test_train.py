"""fit(): the run folder, metrics, keep-K, callbacks, NaN handling, resume checks and exact resume at epoch ends.

Tiny on purpose: a 4-class image folder of 64 + 32 PNGs at 32 px generated here, and ShuffleNet V2 0.5x.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from litezoo import checkpoint as ck
from litezoo import run as run_mod
from litezoo import train as train_mod
from litezoo.config import resolve, to_dict
from litezoo.errors import InputError, WorkError
from litezoo.progress import Progress
from litezoo.metrics import METRIC_COLUMNS
from litezoo.train import fit

MODEL = "shufflenet_v2_x0_5_cifar"
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (200, 40, 200)]


def make_image_folder(root: Path, classes: int = 4, train_per_class: int = 8, test_per_class: int = 4, size: int = 32):
    """root/{train,test}/<class>/*.png: noisy images whose mean colour gives the class (learnable in a few steps)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(rng.normal(COLOURS[c], 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("tiny") / "data")


def tiny_config(data: Path, **overrides):
    base = {
        "model.name": MODEL, "data.path": str(data), "data.cache_dir": str(data.parent / "cache"),
        "train.epochs": 2, "data.batch_size": 8, "data.eval_batch_size": 16, "train.amp": "off",
        "train.device": "cpu", "optim.lr": 0.02, "schedule.name": "cosine", "train.threads": 1,
    }  # fmt: skip
    base.update(overrides)
    return resolve(None, base)


QUIET = Progress(quiet=True)


def untimed(rows: list[dict]) -> list[dict]:
    """Metrics rows without the wall-clock fields (which differ between otherwise identical runs)."""
    return [{k: v for k, v in r.items() if "time" not in k and k != "images_per_s"} for r in rows]


def test_fit_writes_the_run_folder(tiny_data, tmp_path):
    rows = []
    cfg = tiny_config(tiny_data, **{"train.epochs": 3, "checkpoint.keep": 2})
    result = fit(cfg, tmp_path / "run", callbacks=[rows.append], progress=QUIET)
    run = tmp_path / "run"

    # metrics.jsonl: one row per epoch with every column; the callback saw the same rows.
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines == rows and [r["epoch"] for r in lines] == [1, 2, 3]
    assert all(set(METRIC_COLUMNS) <= set(r) for r in lines)
    assert [r["step"] for r in lines] == [4, 8, 12]  # 32 images / batch 8
    for r in lines:
        assert 0 <= r["test_top1"] <= r["test_top5"] <= 100 and r["train_loss"] > 0 and r["images_per_s"] > 0
        assert 0 < r["train_time_s"] < r["time_s"]  # training time excludes evaluation
    assert lines[0]["train_time_s"] < lines[1]["train_time_s"] < lines[2]["train_time_s"]
    with open(run / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in table] == [1, 2, 3] and list(table[0]) == METRIC_COLUMNS

    # keep-K (2) epoch files, last and best; no temp files.
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch_0002.pt", "epoch_0003.pt", "last.pt"]
    assert (run / "checkpoints" / "last.pt").read_bytes() == (run / "checkpoints" / "epoch_0003.pt").read_bytes()

    # The checkpoint loads with weights_only and holds the resolved config (class count filled in).
    last = ck.load_checkpoint(run / "checkpoints" / "last.pt")
    expected = to_dict(cfg)
    expected["model"]["num_classes"], expected["data"]["image_size"] = 4, 32
    assert last.config == expected
    assert last.epoch == 3 and last.step == 12 and last.meta.classes == [f"class_{c}" for c in range(4)]
    assert last.optimizer["state"] and last.scheduler and last.scaler is None and last.ema is None
    assert len(last.rng) == 1 and last.loader["epoch"] == 3 and len(last.state["history"]) == 3
    assert "config.yaml" in {p.name for p in run.iterdir()}

    # best.pt is the epoch with the highest test top-1.
    best = ck.load_checkpoint(run / "checkpoints" / "best.pt")
    best_row = max(lines, key=lambda r: r["test_top1"])  # first of the ties, as training keeps only improvements
    assert best.epoch == best_row["epoch"] == result["best_epoch"]

    # model.safetensors holds the final weights; evaluating it reproduces the logged test top-1.
    tensors, meta = ck.load_safetensors(run / "model.safetensors")
    assert all(torch.equal(tensors[k], v) for k, v in last.model.items())
    assert meta["model_name"] == MODEL and meta["num_classes"] == 4

    from litezoo.evaluate import evaluate_saved

    res, _ = evaluate_saved(run, tiny_data, device="cpu", cache_dir=tiny_data.parent / "cache")
    assert res.top1 == pytest.approx(lines[-1]["test_top1"]) and res.num_samples == 16
    assert result["test_top1"] == lines[-1]["test_top1"] and result["weights"] == str(run / "model.safetensors")


def test_the_model_learns_the_tiny_task(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.epochs": 6, "optim.name": "adamw", "optim.lr": 0.005,
                                    "optim.weight_decay": 0.01})  # fmt: skip
    rows = []
    fit(cfg, tmp_path / "run", callbacks=[rows.append], progress=QUIET)
    # Train metrics: after 24 steps the BN running statistics used at evaluation still lag behind the weights.
    assert rows[-1]["train_loss"] < 0.6 * rows[0]["train_loss"], rows
    assert rows[-1]["train_top1"] >= 70.0, rows  # four colour classes: chance is 25%


def test_callback_can_stop_training(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.epochs": 5})
    result = fit(cfg, tmp_path / "run", callbacks=[lambda row: row["epoch"] >= 2], progress=QUIET)
    assert result["epoch"] == 2 and result["stopped_early"]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_resume_at_epoch_end_is_bit_identical(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.epochs": 3, "data.cutout": 8, "model.drop_rate": 0.2,
                                    "train.channels_last": True})  # fmt: skip
    fit(cfg, tmp_path / "full", progress=QUIET)
    fit(cfg, tmp_path / "split", callbacks=[lambda row: row["epoch"] == 1], progress=QUIET)
    result = fit(cfg, tmp_path / "split", resume=True, progress=QUIET)
    assert result["epoch"] == 3
    a = ck.load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = ck.load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a.model.keys() == b.model.keys()
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert untimed(a.state["history"]) == untimed(b.state["history"])
    assert len((tmp_path / "split" / "metrics.jsonl").read_text().splitlines()) == 3


class _NanAt:
    """A criterion that returns NaN on its n-th call (1-based), the real loss otherwise."""

    def __init__(self, cfg, n):
        self.inner, self.n, self.calls = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing), n, 0

    def __call__(self, logits, y):
        self.calls += 1
        loss = self.inner(logits, y)
        return loss * float("nan") if self.calls == self.n else loss


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(run_mod, "make_criterion", lambda cfg: _NanAt(cfg, 7))
    cfg = tiny_config(tiny_data, **{"train.epochs": 3, "checkpoint.every_steps": 2})
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    saved = {}

    def remember_last(row):
        saved["bytes"] = last.read_bytes()  # after epoch 1 (step 4); step 6 then writes last.pt again

    with pytest.raises(WorkError) as err:
        fit(cfg, tmp_path / "run", callbacks=[remember_last], progress=QUIET)
    msg = str(err.value)
    assert "loss is nan at step 7" in msg and "lr " in msg and str(last) in msg and "--on-nan skip" in msg
    state = ck.load_checkpoint(last)
    assert state.step == 6 and state.state["batch_index"] == 2  # the step-6 checkpoint, before the bad step
    assert all(torch.isfinite(v).all() for v in state.model.values() if v.is_floating_point())
    assert saved["bytes"] != last.read_bytes()  # (the step-6 save did happen after epoch 1)


def test_nan_loss_skip(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(run_mod, "make_criterion", lambda cfg: _NanAt(cfg, 6))
    cfg = tiny_config(tiny_data, **{"train.on_nan": "skip"})
    result = fit(cfg, tmp_path / "run", progress=QUIET)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in rows] == [0, 1] and result["step"] == 8
    state = ck.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in state.model.values() if v.is_floating_point())


def test_progressive_size_schedule():
    # 16 epochs, 24 -> 32 px over the first half, in 4 px steps: 24 until the side passes 28, 32 from epoch 8 on.
    sides = [run_mod.progressive_size(e, 16, 32, 24, 0.5) for e in range(16)]
    assert sides == [24] * 4 + [28] * 4 + [32] * 8
    assert [run_mod.progressive_size(e, 4, 32, 16, 0.5) for e in range(4)] == [16, 24, 32, 32]
    assert [run_mod.progressive_size(e, 3, 32, None, 0.5) for e in range(3)] == [32, 32, 32]  # off
    assert run_mod.progressive_size(0, 3, 32, 40, 0.5) == 32  # a start above the full size: off
    assert run_mod.progressive_size(0, 10, 32, 18, 1.0) == 18  # a start off the 4 px grid is kept


def test_progressive_resizing_trains_small_then_full_and_evaluates_full(tiny_data, tmp_path, monkeypatch):
    sides: list[tuple[int, ...]] = []
    original = train_mod.train_one_epoch

    def spy(model, loader, *args, **kwargs):  # records the shape of every training batch, passes them on
        def recorded():
            for x, y in loader:
                sides.append(tuple(x.shape[-2:]))
                yield x, y

        return original(model, recorded(), *args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", spy)
    cfg = tiny_config(tiny_data, **{"train.epochs": 4, "data.progressive_start_size": 16, "train.channels_last": True})
    result = fit(cfg, tmp_path / "run", progress=QUIET)
    per_epoch = [sides[i * 4] for i in range(4)]  # 32 images / batch 8 = 4 steps per epoch
    assert len(sides) == 16 and per_epoch == [(16, 16), (24, 24), (32, 32), (32, 32)]
    assert all(s == per_epoch[i // 4] for i, s in enumerate(sides))
    # Evaluation at the full size: the saved weights reproduce the logged test top-1 on 32 px images.
    from litezoo.evaluate import evaluate_saved

    res, info = evaluate_saved(tmp_path / "run", tiny_data, device="cpu", cache_dir=tiny_data.parent / "cache")
    assert info["image_size"] == 32 and res.top1 == pytest.approx(result["test_top1"])


def test_resized_batches_scale_and_keep_the_memory_format():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([0, 1])
    (small, labels), = list(train_mod.resized_batches([(x, y)], 4))
    assert small.shape == (2, 3, 4, 4) and small.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(labels, y)
    # Antialiased 2x downscale of a linear ramp: away from the border (where the filter is cut off) each output
    # pixel is the value at its block's centre, i.e. the mean of the 2x2 block it covers (by hand).
    expected = x.reshape(2, 3, 4, 2, 4, 2).mean(dim=(3, 5))
    assert torch.allclose(small[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-3)
    flat = torch.full((1, 3, 8, 8), 0.7)
    (flat_small, _), = list(train_mod.resized_batches([(flat, y[:1])], 4))
    assert torch.allclose(flat_small, torch.full((1, 3, 4, 4), 0.7))  # a flat image stays flat
    (same, _), = list(train_mod.resized_batches([(x, y)], 8))
    assert same is x  # already the size: untouched


def test_new_run_refuses_a_folder_with_checkpoints(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.epochs": 1})
    fit(cfg, tmp_path / "run", progress=QUIET)
    with pytest.raises(InputError, match="already holds checkpoints"):
        fit(cfg, tmp_path / "run", progress=QUIET)


def test_resume_with_another_model_or_class_count_fails_before_the_first_step(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.epochs": 2})
    fit(cfg, tmp_path / "run", callbacks=[lambda row: True], progress=QUIET)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    other_model = tiny_config(tiny_data, **{"model.name": "mobilenet_v1_x0_25_cifar"})
    with pytest.raises(InputError, match="holds model 'shufflenet_v2_x0_5_cifar'"):
        fit(other_model, tmp_path / "run", resume=True, progress=QUIET)
    with pytest.raises(InputError, match="has 4 classes, but model.num_classes=10"):
        fit(tiny_config(tiny_data, **{"model.num_classes": 10}), tmp_path / "run", resume=True, progress=QUIET)
    three = make_image_folder(tmp_path / "three", classes=3, train_per_class=4, test_per_class=2)
    with pytest.raises(InputError, match="has 4 classes but the data .* has 3"):
        fit(tiny_config(three), tmp_path / "run", resume=True, progress=QUIET)
    assert last.read_bytes() == before


def test_truncated_last_checkpoint_names_the_last_good_one(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.epochs": 2})
    fit(cfg, tmp_path / "run", callbacks=[lambda row: True], progress=QUIET)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(InputError) as err:
        fit(cfg, tmp_path / "run", resume=True, progress=QUIET)
    assert str(last) in str(err.value) and "epoch_0001.pt" in str(err.value)


def test_ema_weights_are_evaluated_and_exported(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.epochs": 1, "train.ema_decay": 0.9})
    fit(cfg, tmp_path / "run", progress=QUIET)
    state = ck.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    tensors, meta = ck.load_safetensors(tmp_path / "run" / "model.safetensors")
    assert meta["ema"] is True
    assert all(torch.equal(tensors[k], v) for k, v in state.ema["module"].items())
    assert not all(torch.equal(tensors[k], v) for k, v in state.model.items())

    # load_weights (litezoo eval --weights): either set on request; the .safetensors holds only the evaluated one
    run = tmp_path / "run"
    for which, expected, is_ema in (("raw", state.model, False), ("ema", state.ema["module"], True)):
        got, meta = ck.load_weights(run, which)
        assert meta["ema"] is is_ema and all(torch.equal(got[k], v) for k, v in expected.items())
    assert ck.load_weights(run / "model.safetensors", "ema")[1]["ema"] is True
    with pytest.raises(InputError, match="holds only the EMA weights"):
        ck.load_weights(run / "model.safetensors", "raw")
    with pytest.raises(InputError, match="weights must be one of"):
        ck.load_weights(run, "best")


def test_lookahead_changes_training_and_ends_on_the_slow_weights(tiny_data, tmp_path):
    plain = fit(tiny_config(tiny_data), tmp_path / "plain", progress=QUIET)
    cfg = tiny_config(tiny_data, **{"train.lookahead_every": 2, "train.lookahead_decay": 0.9})
    looked = fit(cfg, tmp_path / "run", progress=QUIET)
    state = ck.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    slow = state.lookahead["slow"]
    # after the last step the trained weights are the slow copy (airbench's final pull), BN statistics included
    assert set(slow) == {k for k, v in state.model.items() if v.dtype.is_floating_point}
    assert all(torch.equal(state.model[k], v) for k, v in slow.items())
    assert state.lookahead["total_steps"] == 2 * 4  # 32 images / batch 8, 2 epochs
    assert looked["test_loss"] != plain["test_loss"]  # the pulls changed what was trained
    assert ck.load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt").lookahead is None
    with pytest.raises(InputError, match="has no EMA weights"):
        ck.load_weights(tmp_path / "plain", "ema")


def test_init_from_and_freeze_features(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, **{"train.epochs": 1})
    fit(cfg, tmp_path / "source", progress=QUIET)
    source, _ = ck.load_safetensors(tmp_path / "source" / "model.safetensors")
    # Fine-tune on a 3-class task: the classifier is re-initialised, the frozen features stay as they were.
    three = make_image_folder(tmp_path / "three", classes=3)
    ft = tiny_config(three, **{"model.init_from": str(tmp_path / "source" / "model.safetensors"),
                               "model.freeze_features": True, "train.epochs": 1})  # fmt: skip
    fit(ft, tmp_path / "ft", progress=QUIET)
    tuned, meta = ck.load_safetensors(tmp_path / "ft" / "model.safetensors")
    assert meta["num_classes"] == 3 and tuned["head.fc.weight"].shape[0] == 3
    features = [k for k in source if not k.startswith("head.")]
    assert features and all(torch.equal(tuned[k], source[k]) for k in features)  # BN statistics too


def test_eval_every_and_progress_lines(tiny_data, tmp_path):
    import io

    stream = io.StringIO()  # not a terminal: no bar, a line every log_every steps, a summary per epoch
    cfg = tiny_config(tiny_data, **{"train.epochs": 3, "train.eval_every": 2, "train.log_every": 2})
    fit(cfg, tmp_path / "run", progress=Progress(stream), callbacks=[])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["test_top1"] is None for r in rows] == [True, False, False]  # epoch 2, and always the last one
    assert ck.load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt").epoch == 2
    text = stream.getvalue()
    assert "mixed precision is off" in text  # the chosen precision is explained
    assert "epoch 1/3 step 2/4  loss" in text and "epoch 3/3 step 4/4" in text
    summaries = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert len(summaries) == 3 and "test loss" not in summaries[0] and "top-5" in summaries[1]


def test_channels_last_and_automatic_precision(tiny_data, tmp_path, monkeypatch):
    """What the log says was chosen is what ran: checked on the batches and under the autocast training used."""
    import io

    seen = {}
    original = train_mod.train_one_epoch

    def spy(model, loader, *args, autocast=None, **kwargs):
        def recorded():
            for x, y in loader:
                seen.setdefault("channels_last", x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
                                and not x.is_contiguous())  # fmt: skip
                yield x, y

        with autocast():
            seen["dtype"] = torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype  # what autocast turns a matmul into
        return original(model, recorded(), *args, autocast=autocast, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", spy)
    stream = io.StringIO()
    cfg = tiny_config(tiny_data, **{"train.epochs": 1, "train.amp": "auto", "train.channels_last": "auto"})
    result = fit(cfg, tmp_path / "run", progress=Progress(stream))
    (line,) = [line for line in stream.getvalue().splitlines() if "channels_last" in line]
    # amp=auto times training steps of each precision x memory format (litezoo.autotune) and says what it chose
    chosen = re.search(r"\| amp auto: (measured|cached in autotune.json) \(batch \d+\) .* -> (bf16|fp32), (channels_last|NCHW)( \(contended: .*\))?$", line)
    assert chosen, line
    said_bf16 = chosen.group(2) == "bf16"
    assert seen["dtype"] == (torch.bfloat16 if said_bf16 else torch.float32)
    on = chosen.group(3) == "channels_last"
    assert f"channels_last {'on' if on else 'off'}" in line and seen["channels_last"] is on
    assert np.isfinite(result["train_loss"]) and result["step"] == 4
    tensors, _ = ck.load_safetensors(tmp_path / "run" / "model.safetensors")
    assert all(t.is_contiguous() for t in tensors.values())


def test_channels_last_rule(monkeypatch):
    rule = run_mod.use_channels_last
    assert rule(True, torch.device("cpu")) is True and rule(False, torch.device("cuda")) is False
    assert rule("auto", torch.device("cuda")) is True and rule("auto", torch.device("mps")) is False
    for capability, expected in (("AVX512", True), ("AVX2", False), ("DEFAULT", False)):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert rule("auto", torch.device("cpu")) is expected


def _as_version_1(ckpt: ck.Checkpoint) -> dict:
    """The file litezoo wrote before the Checkpoint dataclass (format version 1): one flat dict, spelled as the
    old writer in train.py spelled it."""
    m, s = ckpt.meta, ckpt.state
    return {
        "format": "litezoo-checkpoint", "version": 1, "model_name": m.model_name, "num_classes": m.num_classes,
        "in_chans": m.in_chans, "image_size": m.image_size, "classes": m.classes, "mean": m.mean, "std": m.std,
        "config": ckpt.config, "model": ckpt.model, "optimizer": ckpt.optimizer, "scheduler": ckpt.scheduler,
        "scaler": ckpt.scaler, "ema": ckpt.ema, "lookahead": ckpt.lookahead, "rng": ckpt.rng,
        "world_size": ckpt.world_size, "loader": ckpt.loader, "epoch": s["epoch"], "step": s["step"],
        "batch_index": s["batch_index"], "epoch_stats": s["epoch_stats"], "best_top1": s["best_top1"],
        "best_epoch": s["best_epoch"], "train_time_s": s["train_time_s"], "time_s": s["time_s"],
        "history": s["history"],
    }  # fmt: skip


def test_version_1_checkpoint_resumes_and_evaluates(tiny_data, tmp_path):
    import shutil

    from litezoo.evaluate import evaluate_saved

    # EMA and step checkpoints on: every field in play.
    cfg = tiny_config(tiny_data, **{"train.epochs": 2, "checkpoint.every_steps": 3, "train.ema_decay": 0.9})
    fit(cfg, tmp_path / "v2", callbacks=[lambda row: True], progress=QUIET)  # stops after epoch 1 (step 4)
    shutil.copytree(tmp_path / "v2", tmp_path / "v1")
    last_v1 = tmp_path / "v1" / "checkpoints" / "last.pt"
    torch.save(_as_version_1(ck.load_checkpoint(last_v1)), last_v1)
    assert torch.load(last_v1, weights_only=True)["version"] == 1

    old = ck.load_checkpoint(last_v1)  # read into the version-2 dataclass
    new = ck.load_checkpoint(tmp_path / "v2" / "checkpoints" / "last.pt")
    # Version 1 predates the optional meta fields (class folders behind renamed classes, build options): they
    # read as None, and everything else is the same.
    assert old.meta.class_folders is None and old.meta.options is None
    assert old.meta == dataclasses.replace(new.meta, class_folders=None, options=None)
    assert old.step == new.step == 4 and old.state.keys() == new.state.keys()
    weights, meta = ck.load_weights(last_v1)  # evaluate's loader: EMA weights, as the run evaluated them
    assert meta["ema"] is True and all(torch.equal(weights[k], v) for k, v in new.ema["module"].items())
    res, _ = evaluate_saved(last_v1, tiny_data, device="cpu", cache_dir=tiny_data.parent / "cache")
    assert res.num_samples == 16

    # Resuming the version-1 file continues exactly as resuming the version-2 one.
    fit(cfg, tmp_path / "v1", resume=True, progress=QUIET)
    fit(cfg, tmp_path / "v2", resume=True, progress=QUIET)
    a = ck.load_checkpoint(tmp_path / "v1" / "checkpoints" / "last.pt")
    b = ck.load_checkpoint(tmp_path / "v2" / "checkpoints" / "last.pt")
    assert a.step == b.step == 8 and all(torch.equal(a.model[k], b.model[k]) for k in b.model)
    assert untimed(a.state["history"]) == untimed(b.state["history"])


def test_fit_sets_threads_only_when_asked_and_restores_them(tiny_data, tmp_path, monkeypatch):
    seen = []
    original = train_mod.train_one_epoch

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", spy)
    before = torch.get_num_threads()
    other = 2 if before != 2 else 3
    torch.set_num_threads(other)
    try:
        fit(tiny_config(tiny_data, **{"train.epochs": 1, "train.threads": 1}), tmp_path / "a", progress=QUIET)
        assert seen == [1] and torch.get_num_threads() == other  # set for the run, restored after
        fit(tiny_config(tiny_data, **{"train.epochs": 1, "train.threads": None}), tmp_path / "b", progress=QUIET)
        assert seen == [1, other] and torch.get_num_threads() == other  # not asked: left alone
    finally:
        torch.set_num_threads(before)
