"""SqueezeNet: Fire module, bypass variants, head, sizes, CIFAR form."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import litezoo
from litezoo.config import OptimConfig, resolve
from litezoo.models import squeezenet
from litezoo.models.squeezenet import Fire
from litezoo.schedules import build_optimizer, build_scheduler


FIRES = [f"fire{i}" for i in range(2, 10)]


def _fire_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``x`` and return each Fire module's input."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        getattr(model.features, name).register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(name, args[0].clone())
        )
        for name in FIRES
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def test_fire_output_channels_and_relu() -> None:
    fire = Fire(96, 16, 64, 64)
    y = fire(torch.randn(2, 96, 9, 7))
    assert y.shape == (2, 128, 9, 7)
    assert (y >= 0).all()  # ReLU after expand, no bypass
    # Unequal expand widths concatenate: e1x1 first, then e3x3.
    fire = Fire(32, 8, 16, 48)
    assert fire(torch.randn(1, 32, 5, 5)).shape == (1, 64, 5, 5)
    assert fire.squeeze[0].out_channels == 8 and fire.expand3x3.kernel_size == (3, 3)


def test_fire_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match=r"96 -> 128"):
        Fire(96, 16, 64, 64, shortcut="identity")
    with pytest.raises(ValueError, match=r"squeeze_chs \(128\).*\(128\)"):
        Fire(96, 128, 64, 64)
    with pytest.raises(ValueError, match="'dense'"):
        Fire(128, 16, 64, 64, shortcut="dense")
    with pytest.raises(ValueError, match="bypass.*'residual'"):
        litezoo.models.squeezenet.SqueezeNet(96, 7, [[16, 64, 64]], [], bypass="residual")


def test_published_parameter_counts() -> None:
    with torch.device("meta"):
        counts = {n: sum(p.numel() for p in litezoo.create_model(n).parameters()) for n in
                  ["squeezenet1_0", "squeezenet1_1", "squeezenet1_0_simple_bypass", "squeezenet1_0_complex_bypass"]}
    assert counts["squeezenet1_0"] == 1_248_424  # torchvision
    assert counts["squeezenet1_1"] == 1_235_496  # torchvision
    assert counts["squeezenet1_0_simple_bypass"] == counts["squeezenet1_0"]  # identity shortcuts are free
    # Complex bypass: 1x1 convs (with bias) around fire2 96->128, fire4 128->256, fire6 256->384, fire8 384->512.
    extra = sum(cin * cout + cout for cin, cout in [(96, 128), (128, 256), (256, 384), (384, 512)])
    assert counts["squeezenet1_0_complex_bypass"] - counts["squeezenet1_0"] == extra == 341_248


def test_bypass_placement() -> None:
    with torch.device("meta"):
        vanilla = litezoo.create_model("squeezenet1_0")
        simple = litezoo.create_model("squeezenet1_0_simple_bypass")
        complex_ = litezoo.create_model("squeezenet1_0_complex_bypass")
    kinds = {
        "vanilla": [type(getattr(vanilla.features, f).shortcut).__name__ for f in FIRES],
        "simple": [type(getattr(simple.features, f).shortcut).__name__ for f in FIRES],
        "complex": [type(getattr(complex_.features, f).shortcut).__name__ for f in FIRES],
    }
    assert kinds["vanilla"] == ["NoneType"] * 8
    assert kinds["simple"] == ["NoneType", "Identity"] * 4  # fire3, 5, 7, 9
    assert kinds["complex"] == ["Conv2d", "Identity"] * 4  # + 1x1 convs around fire2, 4, 6, 8


@pytest.mark.parametrize("name", ["squeezenet1_0_simple_bypass", "squeezenet1_0_complex_bypass"])
def test_bypass_adds_the_shortcut(name: str) -> None:
    torch.manual_seed(0)
    model = litezoo.create_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    inputs = _fire_inputs(model, x)
    with torch.no_grad():
        for fname in FIRES:
            fire = getattr(model.features, fname)
            if fire.shortcut is None:
                continue
            x_in = inputs[fname]
            with_bypass = fire(x_in)
            shortcut, fire.shortcut = fire.shortcut, None
            without = fire(x_in)
            fire.shortcut = shortcut
            expected = x_in if isinstance(shortcut, nn.Identity) else shortcut(x_in)
            torch.testing.assert_close(with_bypass - without, expected, atol=1e-5, rtol=1e-5)

    # Same weights in the vanilla network give a different output: the bypass is on the forward path.
    vanilla = litezoo.create_model("squeezenet1_0", num_classes=10).eval()
    vanilla_keys = set(vanilla.state_dict())
    vanilla.load_state_dict({k: v for k, v in model.state_dict().items() if k in vanilla_keys})
    with torch.no_grad():
        assert not torch.allclose(vanilla(x), model(x))


def test_head_is_conv10_relu_avgpool_with_paper_weight_init() -> None:
    torch.manual_seed(0)
    model = litezoo.create_model("squeezenet1_1", num_classes=1000)
    conv10 = model.head.conv
    assert conv10.kernel_size == (1, 1) and conv10.in_channels == 512 and conv10.out_channels == 1000
    assert 0.009 < conv10.weight.std().item() < 0.011 and abs(conv10.weight.mean().item()) < 1e-3
    # One common bias for every class (see SqueezeNetHead.reset): equal shift, so softmax is unchanged.
    assert torch.equal(conv10.bias, torch.full((1000,), squeezenet.CONV10_BIAS_INIT))
    assert isinstance(model.head.drop, nn.Dropout) and model.head.drop.p == 0.5
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # no fully connected layer
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 48, 48))
    assert logits.shape == (2, 1000) and (logits >= 0).all()  # ReLU before the pool


def test_reset_classifier_and_pre_logits() -> None:
    model = litezoo.create_model("squeezenet1_1_cifar", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        torch.testing.assert_close(pooled, feats.mean((2, 3)))
        model.reset_classifier(0)
        torch.testing.assert_close(model(x), pooled)
        model.reset_classifier(4)
        assert model(x).shape == (2, 4) and model.num_classes == 4


def test_no_batchnorm_unless_asked() -> None:
    plain = litezoo.create_model("squeezenet1_0_cifar", num_classes=10)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    bn = litezoo.create_model("squeezenet1_0_cifar", num_classes=10, batch_norm=True)
    # conv1 + (squeeze, expand1x1, expand3x3) x 8 fires; BN convs drop their bias.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 1 + 3 * 8
    assert all(m.bias is None for m in bn.features.modules() if isinstance(m, nn.Conv2d))
    assert bn(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1"])
def test_cifar_form_keeps_resolution(name: str) -> None:
    model = litezoo.create_model(name + "_cifar", num_classes=10)
    conv1 = model.features.conv1[0]
    assert conv1.stride == (1, 1) and conv1.kernel_size == (3, 3)
    assert not hasattr(model.features, "maxpool1")
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 8, 8)
        # The ImageNet form: 224 -> 109 (1.0) or 111 (1.1) after the unpadded stride-2 conv1, then three
        # ceil-mode 3x3/2 max-pools -> 54/55 -> 27 -> 13.
        big = litezoo.create_model(name, num_classes=10)
        assert big.forward_features(torch.randn(1, 3, 224, 224)).shape[-2:] == (13, 13)


def _weakly_separable_images(
    n: int, side: int, generator: torch.Generator, signal: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes told apart only by which half of the image is slightly brighter (+signal under unit noise).

    The weak signal stands in for real photos: the features need some steps to separate the classes, and
    during those steps the final ReLU must not die.
    """
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, side, side, generator=generator)
    half = side // 2
    x[y == 0, :, :, :half] += signal
    x[y == 1, :, :, half:] += signal
    return x, y


def test_trains_from_scratch_without_a_dead_final_relu() -> None:
    """The issue's failure: every output became exactly 0 (the ReLU after conv10 died), loss ln 2 for good.

    With conv10's bias at 0 this run ends with all-zero logits; with the common positive bias it learns.
    Optimiser: the default recipe's SGD (momentum 0.9, weight decay 5e-4, none on biases) at the authors'
    learning-rate scale (0.04 at batch 512 -> ~0.003 at batch 16): the default lr 0.1 is too high for a
    BatchNorm-free SqueezeNet whatever the head (it diverges in the first steps; see the model's docstring).
    """
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = _weakly_separable_images(64, 64, gen)
    model = litezoo.create_model("squeezenet1_1", num_classes=2)
    defaults = OptimConfig()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": defaults.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=0.003,
        momentum=defaults.momentum,
    )
    losses = []
    for _ in range(60):
        idx = torch.randperm(64, generator=gen)[:16]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        out = model(x)  # (64, 2)
    assert (out != 0).any(dim=1).all(), "some inputs get all-zero logits: the final ReLU died"
    assert out.std(dim=0).min() > 1e-3, f"outputs are constant over the inputs: {out[:4].tolist()}"
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.3, f"loss did not fall ({first:.4f} -> {last:.4f})"


# ---------------------------------------------------------------------------------------------------------------
# The default recipe (issue: `litezoo train --model squeezenet1_1` with no lr diverged at the generic lr 0.1)


def _resolve_quietly(recipe=None, overrides=None):
    """``resolve`` where any warning fails the test: an lr the caller chose is used without a word."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return resolve(recipe, overrides)


def test_no_lr_set_gives_squeezenet_its_own_lr_and_warm_up_with_a_warning() -> None:
    generic = OptimConfig().lr
    said = (rf"squeezenet1_1: no learning rate set, so training uses optim.lr 0.01 with a 2-epoch warm-up instead "
            rf"of the generic optim.lr {generic:g}: .*BatchNorm")
    with pytest.warns(UserWarning, match=said):
        cfg = resolve(None, {"model": "squeezenet1_1"})
    assert (cfg.optim.lr, cfg.schedule.warmup_epochs, cfg.train.epochs) == (0.01, 2.0, 30)
    with pytest.warns(UserWarning, match="0.6-epoch warm-up"):  # a short run warms up for a share of it
        assert resolve(None, {"model": "squeezenet1_0_cifar", "epochs": 3}).schedule.warmup_epochs == 0.6
    with pytest.warns(UserWarning, match=r"uses optim.lr 0.01 instead"):  # the caller's warm-up is kept
        assert resolve(None, {"model": "squeezenet1_1", "warmup_epochs": 0.5}).schedule.warmup_epochs == 0.5
    with pytest.warns(UserWarning, match=r"uses optim.lr 0.01 instead"):  # onecycle warms up by itself
        assert resolve(None, {"model": "squeezenet1_1", "schedule": "onecycle"}).schedule.warmup_epochs == 0
    # An lr from a flag or a recipe is the caller's choice: used as given, nothing said.
    explicit = _resolve_quietly(None, {"model": "squeezenet1_1", "lr": "0.1"})
    assert (explicit.optim.lr, explicit.schedule.warmup_epochs) == (0.1, 0.0)
    assert _resolve_quietly("squeezenet_cifar10").optim.lr == 0.01  # the recipe's own lr and 5-epoch warm-up
    assert _resolve_quietly("squeezenet_cifar10").schedule.warmup_epochs == 5
    assert _resolve_quietly(None, {"model": "squeezenet1_1", "optimizer": "adamw"}).optim.lr == generic  # SGD only
    assert _resolve_quietly(None, {"model": "shufflenet_v2_x0_5"}).optim.lr == generic  # other models: generic


def _train_steps(
    lr_overrides: dict, steps_per_epoch: int = 4, epochs: int = 3, stop_after: int | None = None
) -> tuple[list[float], torch.Tensor]:
    """SqueezeNet 1.1 trained by the resolved recipe (optimiser, schedule with warm-up) on 32 px synthetic
    two-class images, batch 32 to keep it fast (the lr is not rescaled by batch size, so it is the recipe's lr at
    a noisier batch); the per-step losses and the trained model's logits on 128 images."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the model-default warning is tested above
        cfg = resolve(None, {"model": "squeezenet1_1", "epochs": epochs, "batch_size": 32, **lr_overrides})
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = _weakly_separable_images(256, 32, gen, signal=0.5)
    model = litezoo.create_model("squeezenet1_1", num_classes=2)
    opt = build_optimizer(model, cfg.optim)
    sched = build_scheduler(opt, cfg.schedule, epochs * steps_per_epoch, steps_per_epoch)
    losses = []
    for _ in range(stop_after or epochs * steps_per_epoch):
        idx = torch.randperm(len(x), generator=gen)[: cfg.data.batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        return losses, model(x[:128])  # (128, 2)


def test_default_recipe_trains_from_scratch_without_diverging() -> None:
    """A few steps of `litezoo train --model squeezenet1_1` with no lr set: finite loss, inputs told apart.

    The schedule is squeezed into 12 steps so that the peak lr (after a 0.6-epoch warm-up) is reached. The
    generic lr 0.1 on the same data is the control: its first steps leave the network with constant outputs.
    """
    losses, out = _train_steps({})
    assert all(math.isfinite(v) for v in losses), losses
    assert out.std(dim=0).min() > 1e-3, f"outputs are constant over the inputs: {out[:4].tolist()}"
    assert len(set(out.argmax(dim=1).tolist())) == 2, "every input gets the same class"
    losses, out = _train_steps({"lr": 0.1}, stop_after=3)
    dead = not all(math.isfinite(v) for v in losses) or out.std(dim=0).min() <= 1e-3
    assert dead, "the generic lr 0.1 no longer breaks SqueezeNet: is the model default still needed?"
