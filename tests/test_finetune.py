"""Fine-tuning: --init-from any layout, --freeze backbone|none|until:MODULE (frozen BN stays in eval mode),
discriminative learning rates (optim.backbone_lr_scale), head training on cached features, the VGG16 recipe
with a torchvision-layout file, and the one-line errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import litezoo
from litezoo.cli.main import main
from litezoo.config import resolve
from litezoo.errors import InputError
from litezoo.progress import Progress
from litezoo.schedules import build_optimizer, build_scheduler
from litezoo.train import fit
from litezoo.weights import classifier_keys, load_weights
from litezoo.weights.finetune import cache_features, freeze, stage_names, train_head_on_features

FIXTURES = Path(__file__).parent / "fixtures" / "torchvision"
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


def _fixture_state(name: str) -> dict[str, torch.Tensor]:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    rec = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    return make.seeded_state_dict(rec["keys"], [tuple(s) for s in rec["shapes"]], rec["seed"])


def _folder(root: Path, classes: int = 3, per_class: int = 8, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(rng.normal(COLOURS[c], 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def _config(data: Path, **overrides):
    base = {"data.path": str(data), "data.cache_dir": str(data.parent / "cache"), "train.epochs": 1,
            "data.batch_size": 8, "data.eval_batch_size": 12, "train.amp": "off", "train.device": "cpu",
            "optim.lr": 0.05, "train.threads": 1, "data.image_size": 32}  # fmt: skip
    base.update(overrides)
    return resolve(None, base)


# ---------------------------------------------------------------------------------------------------------------
# Freezing and learning rates


def test_freeze_modes():
    model = litezoo.create_model("shufflenet_v2_x0_5", num_classes=2)
    head = classifier_keys(model)
    assert head == {"head.fc.weight", "head.fc.bias"}
    freeze(model, "backbone", head)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == head
    frozen = freeze(model, "until:stages.1", head)
    assert "stem.0.weight" in frozen and "stages.1.7.branch_main.2.1.bias" in frozen
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "stages.2.0.branch_main.0.0.weight" in trains and "conv5.0.weight" in trains and head <= trains
    assert freeze(model, "none", head) == [] and all(p.requires_grad for p in model.parameters())
    assert stage_names(model)[:3] == ["stem", "stem.0", "stem.1"] and "stages.2" in stage_names(model)
    with pytest.raises(InputError, match="has no module 'stage9'.*choose one of stem"):
        freeze(model, "until:stage9", head)
    with pytest.raises(InputError, match="model.freeze must be one of"):
        freeze(model, "half", head)


def test_backbone_lr_scale_groups_and_schedule():
    model = litezoo.create_model("squeezenet1_1", num_classes=2)
    cfg = resolve(None, {"optim.lr": 0.1, "optim.backbone_lr_scale": 0.1, "schedule.name": "cosine"})
    opt = build_optimizer(model, cfg.optim)
    head_ids = {id(model.head.conv.weight), id(model.head.conv.bias)}
    for group in opt.param_groups:
        in_head = {id(p) in head_ids for p in group["params"]}
        assert len(in_head) == 1  # a group is all head or all backbone
        assert group["lr"] == pytest.approx(0.1 if in_head.pop() else 0.01)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    sched = build_scheduler(opt, cfg.schedule, total_steps=10, steps_per_epoch=5)
    for _ in range(4):
        opt.step()
        sched.step()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[0] < 0.1 and max(lrs) / min(lrs) == pytest.approx(10.0)  # the ratio survives the schedule
    plain = build_optimizer(model, resolve(None, {"optim.lr": 0.1}).optim)
    assert all(g["lr"] == 0.1 for g in plain.param_groups)


# ---------------------------------------------------------------------------------------------------------------
# Through the trainer


def test_init_from_torchvision_file_and_freeze_until(tmp_path):
    state = _fixture_state("shufflenet_v2_x0_5")
    weights = tmp_path / "shufflenet_v2_x0_5-tv.pth"
    torch.save(state, weights)
    data = _folder(tmp_path / "three")
    cfg = _config(data, **{"model.name": "shufflenet_v2_x0_5", "model.init_from": str(weights),
                           "model.freeze": "until:stages.0", "optim.backbone_lr_scale": 0.5})  # fmt: skip
    fit(cfg, tmp_path / "run", progress=Progress(quiet=True))
    from litezoo.checkpoint import load_safetensors

    tuned, meta = load_safetensors(tmp_path / "run" / "model.safetensors")
    assert meta["num_classes"] == 3 and tuned["head.fc.weight"].shape == (3, 1024)  # fresh 3-way head
    # Frozen: stem and stage 2 (stages.0), BN running statistics included (kept in eval mode).
    assert torch.equal(tuned["stem.0.weight"], state["conv1.0.weight"])
    assert torch.equal(tuned["stem.1.running_mean"], state["conv1.1.running_mean"])
    assert torch.equal(tuned["stages.0.3.branch_main.2.1.running_var"], state["stage2.3.branch2.6.running_var"])
    # Trained: stage 3 onwards, BN statistics updated.
    assert not torch.equal(tuned["stages.1.0.branch_main.0.0.weight"], state["stage3.0.branch2.0.weight"])
    assert not torch.equal(tuned["conv5.1.running_mean"], state["conv5.1.running_mean"])


def test_mean_std_from_config_reach_the_run(tmp_path):
    data = _folder(tmp_path / "three")
    cfg = _config(data, **{"model.name": "squeezenet1_1_cifar", "data.mean": [0.485, 0.456, 0.406],
                           "data.std": [0.229, 0.224, 0.225]})  # fmt: skip
    fit(cfg, tmp_path / "run", progress=Progress(quiet=True))
    from litezoo.checkpoint import load_safetensors

    _, meta = load_safetensors(tmp_path / "run" / "model.safetensors")
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406]) and meta["std"] == pytest.approx([0.229, 0.224, 0.225])


@pytest.mark.slow
def test_vgg16_recipe_with_torchvision_file(tmp_path):
    """The tutorial's recipe (dogs_vs_cats_vgg16) with a torchvision-layout vgg16_bn file (random weights)."""
    state = _fixture_state("vgg16_bn")
    weights = tmp_path / "vgg16_bn-tv.pth"
    torch.save(state, weights)
    del state
    data = _folder(tmp_path / "two", classes=2, per_class=4)
    cfg = resolve("dogs_vs_cats_vgg16", {"data.path": str(data), "data.cache_dir": str(tmp_path / "cache"),
                                         "model.init_from": str(weights), "data.image_size": 32, "train.epochs": 1,
                                         "data.batch_size": 4, "data.eval_batch_size": 4, "train.threads": 2})  # fmt: skip
    fit(cfg, tmp_path / "run", progress=Progress(quiet=True))
    from litezoo.checkpoint import load_safetensors

    tuned, meta = load_safetensors(tmp_path / "run" / "model.safetensors")
    ref = torch.load(weights, weights_only=True)
    assert meta["num_classes"] == 2 and tuned["head.fc.weight"].shape == (2, 4096)
    assert torch.equal(tuned["features.0.weight"], ref["features.0.weight"])  # frozen, as in the tutorial
    assert torch.equal(tuned["head.mlp.3.weight"], ref["classifier.3.weight"])
    assert torch.equal(tuned["features.41.running_mean"], ref["features.41.running_mean"])


def test_head_on_cached_features_matches_the_model():
    torch.manual_seed(0)
    model = litezoo.create_model("squeezenet1_1", num_classes=3)
    freeze(model, "backbone", classifier_keys(model))
    x = torch.randn(12, 3, 64, 64)
    y = torch.arange(12) % 3
    feats, labels = cache_features(model, [(x[:6], y[:6]), (x[6:], y[6:])])
    assert feats.shape == (12, 512, 3, 3) and torch.equal(labels, y)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(feats), model(x))  # the cache is exactly the backbone
    before = model.features.conv1[0].weight.clone()
    hist = train_head_on_features(model, (feats, labels), (feats, labels), epochs=30, lr=0.5, momentum=0.9, batch_size=4)
    assert len(hist) == 30 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert torch.equal(model.features.conv1[0].weight, before)


# ---------------------------------------------------------------------------------------------------------------
# Bad input through the command line: one line, exit 2


def test_cli_bad_weights_and_one_class_folder(tmp_path, capsys):
    data = _folder(tmp_path / "three")
    other = tmp_path / "sq.pth"
    torch.save(_fixture_state("squeezenet1_1"), other)
    common = ["--data", str(data), "--epochs", "1", "--device", "cpu", "--image-size", "32",
              "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(["train", "--model", "shufflenet_v2_x0_5", "--init-from", str(other), "--out", str(tmp_path / "a"), *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torchvision's squeezenet layout; they do not fit shufflenet_v2_x0_5" in err[0]
    cut = tmp_path / "cut.pth"
    cut.write_bytes(other.read_bytes()[:5000])
    assert main(["train", "--model", "squeezenet1_1", "--init-from", str(cut), "--out", str(tmp_path / "b"), *common]) == 2
    assert "truncated" in capsys.readouterr().err
    one = _folder(tmp_path / "one", classes=1)
    assert main(["train", "--model", "squeezenet1_1", "--out", str(tmp_path / "c"), "--data", str(one), "--epochs", "1",
                 "--batch-size", "4", "--device", "cpu", "--image-size", "32", "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one class" in err[0]


def test_cli_cache_features(tmp_path, capsys):
    state = _fixture_state("shufflenet_v2_x0_5")
    weights = tmp_path / "tv.pth"
    torch.save(state, weights)
    data = _folder(tmp_path / "three")
    common = ["--model", "shufflenet_v2_x0_5", "--data", str(data), "--device", "cpu", "--image-size", "32",
              "--cache-dir", str(tmp_path / "cache"), "--batch-size", "8", "--init-from", str(weights),
              "--cache-features", "true", "--amp", "off"]  # fmt: skip
    assert main(["train", *common, "--out", str(tmp_path / "no"), "--epochs", "2"]) == 2
    assert "needs a frozen backbone" in capsys.readouterr().err
    assert main(["train", *common, "--out", str(tmp_path / "run"), "--epochs", "3", "--freeze", "backbone",
                 "--lr", "0.1", "--json"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["step"] == 3 * 3  # 24 images / batch 8
    from litezoo.checkpoint import load_safetensors

    tuned, meta = load_safetensors(tmp_path / "run" / "model.safetensors")
    assert meta["num_classes"] == 3 and torch.equal(tuned["conv5.0.weight"], state["conv5.0.weight"])
    assert not torch.equal(tuned["head.fc.weight"], torch.zeros_like(tuned["head.fc.weight"]))
