"""Fine-tuning: --init-from any layout, --freeze backbone|none|until:MODULE (frozen BN stays in eval mode),
discriminative learning rates (optim.backbone_lr_scale), head training on cached features, the VGG16 recipe
with a torchvision-layout file, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_script

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
    make = load_script("tests/fixtures/torchvision/make_fixtures.py")
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


# ---------------------------------------------------------------------------------------------------------------
# The finetune recipes: each resolves, builds its network from ImageNet-layout weights and trains two steps

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# recipe -> the variant trained here and the torchvision fixture it starts from. Where the recipe's own variant
# has no fixture, the fixture's variant of the same family (same key mapping) stands in for it; a family whose
# fixture is not made yet starts from a fresh model saved in litezoo's format instead.
RECIPE_CASES = {
    "squeezenet_finetune": "squeezenet1_1",
    "shufflenet_v2_finetune": "shufflenet_v2_x0_5",
    "efficientnet_finetune": "efficientnet_b0",
    "mobilenet_v2_finetune": "mobilenet_v2_x1_0",
    "mobilenet_v3_finetune": "mobilenet_v3_large_x1_0",
    "vgg_finetune": "vgg11_bn",  # 133 M parameters even at 11 layers: the slow one
}


@pytest.mark.parametrize(
    "recipe", [pytest.param(r, marks=pytest.mark.slow) if r.startswith("vgg") else r for r in RECIPE_CASES]
)
def test_finetune_recipe_trains_from_pretrained_weights(recipe, tmp_path):
    variant = RECIPE_CASES[recipe]
    shipped = resolve(recipe)
    # What every finetune recipe promises: ImageNet's input statistics and resolution, the whole network
    # training with the pretrained part slower than the fresh classifier, and a network of the stated family.
    assert shipped.data.image_size == 224 and shipped.model.freeze == "none"
    assert shipped.data.mean == pytest.approx(IMAGENET_MEAN) and shipped.data.std == pytest.approx(IMAGENET_STD)
    assert 0 < shipped.optim.backbone_lr_scale < 1
    assert litezoo.model_info(shipped.model.name).family == litezoo.model_info(variant).family

    if (FIXTURES / f"{variant}.pt").exists():
        state, layout = _fixture_state(variant), "torchvision"
    else:
        torch.manual_seed(1)
        state, layout = litezoo.create_model(variant).state_dict(), "litezoo"
    weights = tmp_path / "imagenet.pth"
    torch.save(state, weights)
    del state
    start = litezoo.create_model(variant, num_classes=3)
    assert load_weights(start, weights).layout == layout
    data = _folder(tmp_path / "three")
    cfg = resolve(recipe, {"data.path": str(data), "data.cache_dir": str(tmp_path / "cache"), "model.name": variant,
                           "model.init_from": str(weights), "data.image_size": 32, "data.batch_size": 8,
                           "data.eval_batch_size": 12, "data.limit_train": 16, "train.epochs": 1, "train.amp": "off",
                           "train.device": "cpu", "train.threads": 1})  # fmt: skip
    assert (cfg.optim.lr, cfg.optim.backbone_lr_scale) == (shipped.optim.lr, shipped.optim.backbone_lr_scale)
    fit(cfg, tmp_path / "run", progress=Progress(quiet=True))
    from litezoo.checkpoint import load_safetensors

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2  # 16 images / batch 8
    tuned, meta = load_safetensors(tmp_path / "run" / "model.safetensors")
    assert meta["num_classes"] == 3 and meta["mean"] == pytest.approx(IMAGENET_MEAN)
    head = classifier_keys(start)
    params = dict(start.named_parameters())
    assert all(tuned[k].shape[0] == 3 for k in head)  # a fresh 3-way classifier (the file's has 1000 classes)
    # The backbone started from the file and moved a little (lr * backbone_lr_scale, two steps): a run that
    # ignored the weights would sit a whole random initialisation away (relative change ~1.4).
    body = [k for k in params if k not in head]
    delta = torch.sqrt(sum(((tuned[k].float() - params[k].detach()) ** 2).sum() for k in body))
    norm = torch.sqrt(sum((params[k].detach() ** 2).sum() for k in body))
    assert 0 < delta / norm < 0.05


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
    err = [line for line in capsys.readouterr().err.strip().splitlines() if ": warning: " not in line]  # (no lr: model default)
    assert len(err) == 1 and "one class" in err[0]


def _megvii_v1_file(path: Path, name: str = "shufflenet_v1_g3_x0_5") -> Path:
    """A state dict under megvii's ShuffleNet V1 names (ShuffleNetV1/network.py) with litezoo's shapes, random
    values (so that the shuffle order shows in the output), as their release wraps it."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in litezoo.create_model(name).state_dict().items()}
    names = {"stem.0": "first_conv.0", "stem.1": "first_conv.1", "head.fc": "classifier.0"}
    parts = {"pw1.0": "branch_main_1.0", "pw1.1": "branch_main_1.1", "dw.0": "branch_main_1.3", "dw.1": "branch_main_1.4",
             "pw2.0": "branch_main_2.0", "pw2.1": "branch_main_2.1"}  # fmt: skip
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        module, leaf = key.rsplit(".", 1)
        if module.startswith("stages."):
            _, s, u, part, idx = module.split(".")
            unit = sum((4, 8, 4)[: int(s)]) + int(u)
            module = f"features.{unit}.{parts[f'{part}.{idx}']}"
        elif module == "head.fc" and leaf == "bias":
            continue  # megvii's classifier has no bias
        else:
            module = names[module]
        if leaf == "num_batches_tracked":
            value = torch.zeros(shape, dtype=torch.long)
        elif leaf == "running_var":
            value = torch.rand(shape, generator=g) + 0.5
        else:
            value = torch.randn(shape, generator=g) * 0.3
        state[f"module.{module}.{leaf}"] = value
    torch.save({"state_dict": state}, path)
    return path


def test_cli_megvii_shufflenet_v1_file_builds_megvii_order_and_round_trips(tmp_path, capsys):
    """train --init-from megvii's V1 release builds the megvii-order model by itself and records the option, so
    eval and deploy rebuild the same function; a config that insists on the paper's order is refused in one line."""
    from litezoo.checkpoint import load_checkpoint
    from litezoo.deploy.source import load_source
    from litezoo.evaluate import load_trained_model

    path = _megvii_v1_file(tmp_path / "megvii_v1.pth.tar")
    data = _folder(tmp_path / "three")
    common = ["--model", "shufflenet_v1_g3_x0_5", "--init-from", str(path), "--data", str(data), "--epochs", "1",
              "--device", "cpu", "--image-size", "32", "--batch-size", "8", "--amp", "off", "--threads", "1",
              "--cache-dir", str(tmp_path / "cache"), "--quiet"]  # fmt: skip
    assert main(["train", "--out", str(tmp_path / "paper"), "--shuffle-order", "paper", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shuffle_order='megvii'" in err[0]

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *common]) == 0
    capsys.readouterr()
    assert "shuffle_order: megvii" in (run / "config.yaml").read_text()
    assert load_checkpoint(run / "checkpoints" / "last.pt").meta.options == {"shuffle_order": "megvii"}
    model, meta = load_trained_model(run)
    assert meta["options"] == {"shuffle_order": "megvii"} and model.shuffle_order == "megvii"
    # The trained weights in each order: eval's rebuild computes the megvii-order function, not the paper's.
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    state = model.state_dict()
    megvii_order = litezoo.create_model("shufflenet_v1_g3_x0_5", num_classes=3, shuffle_order="megvii").eval()
    paper_order = litezoo.create_model("shufflenet_v1_g3_x0_5", num_classes=3).eval()
    megvii_order.load_state_dict(state)
    paper_order.load_state_dict(state)
    with torch.no_grad():
        got, want, other = model(x), megvii_order(x), paper_order(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert (got - other).abs().max() > 1e-3
    source = load_source(run)  # what export/quantize/bench start from
    assert source.model.shuffle_order == "megvii"
    with torch.no_grad():
        torch.testing.assert_close(source.model(x), want, rtol=0, atol=0)
    # Resuming rebuilds it too (the config as run says megvii); asking for the paper's order is refused.
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet", "--threads", "1"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt").meta.options == {"shuffle_order": "megvii"}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--shuffle-order", "paper", "--quiet"]) == 2
    assert "shuffle_order='megvii'" in capsys.readouterr().err


def test_efficientnet_from_torchvision_layout_evaluates_as_trained(tmp_path, capsys):
    """EfficientNet from torchvision's weights trains with their BatchNorm eps (1e-5, not litezoo's 1e-3); the run
    records it, so `litezoo eval` rebuilds the very model that trained: same logits, same accuracy."""
    from litezoo.checkpoint import load_safetensors
    from litezoo.evaluate import load_trained_model
    from litezoo.weights import export_weights

    weights = tmp_path / "imagenet.pth"
    torch.save(_fixture_state("efficientnet_b0"), weights)
    data = _folder(tmp_path / "three")
    cfg = resolve("efficientnet_finetune", {
        "data.path": str(data), "data.cache_dir": str(tmp_path / "cache"), "model.name": "efficientnet_b0",
        "model.init_from": str(weights), "data.image_size": 32, "data.batch_size": 8, "data.eval_batch_size": 12,
        "data.limit_train": 16, "train.epochs": 1, "train.amp": "off", "train.device": "cpu", "train.threads": 1})  # fmt: skip
    assert cfg.model.bn_eps is None  # nothing in the config: the weights file decides
    run = tmp_path / "run"
    fit(cfg, run, progress=Progress(quiet=True))
    tuned, meta = load_safetensors(run / "model.safetensors")
    assert meta["options"] == {"bn_eps": 1e-5}
    assert "bn_eps: 1.0e-05" in (run / "config.yaml").read_text()

    # The in-memory model as training built it: torchvision's file loaded (which sets eps 1e-5), then trained.
    trained = litezoo.create_model("efficientnet_b0", num_classes=3)
    load_weights(trained, weights)
    trained.load_state_dict(tuned)
    trained.eval()
    model, _ = load_trained_model(run)
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-5}
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    default_eps = litezoo.create_model("efficientnet_b0", num_classes=3).eval()
    default_eps.load_state_dict(tuned)
    with torch.no_grad():
        got, want, other = model(x), trained(x), default_eps(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert (got - other).abs().max() > 1e-4  # the eps matters: a rebuild at 1e-3 would be another function

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert main(["eval", str(run), "--data", str(data), "--device", "cpu", "--json",
                 "--cache-dir", str(tmp_path / "cache")]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["top1"] == pytest.approx(rows[-1]["test_top1"])
    # The export back to torchvision's layout rebuilds at eps 1e-5 too: no eps warning.
    assert export_weights(run, tmp_path / "out.pth")["notes"] == []


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
