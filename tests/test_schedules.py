"""Optimizer parameter groups and lr schedules: closed forms vs hand-written formulas and vs torch, resume."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn

from litezoo.config import OptimConfig, ScheduleConfig
from litezoo.errors import InputError
from litezoo.schedules import build_optimizer, build_scheduler, lr_at, param_groups

BASE = 0.1
T, SPE = 100, 10  # 10 epochs of 10 steps


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine OpenMP hand-offs cost ~0.1 s per op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))


def run(cfg: ScheduleConfig, steps: int, optim: OptimConfig | None = None):
    """Build optimizer + scheduler on the tiny model and return the lr seen before each of ``steps`` steps."""
    opt = build_optimizer(tiny_model(), optim or OptimConfig(lr=BASE))
    sched = build_scheduler(opt, cfg, steps, SPE)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])  # after the last step
    return lrs, opt, sched


# --- closed forms against hand-written values -----------------------------------------------------------------

WARM = dict(warmup_epochs=2.0, warmup_start_factor=0.1, min_lr=0.001)  # W = 20 steps


@pytest.mark.parametrize(
    "cfg, expected",
    [
        # warm-up start, warm-up middle, warm-up end, midpoint of the decay, end
        (ScheduleConfig(name="cosine", **WARM), {0: 0.01, 10: 0.055, 20: 0.1, 60: 0.0505, 100: 0.001}),
        (ScheduleConfig(name="linear", **WARM), {0: 0.01, 20: 0.1, 40: 0.07525, 60: 0.0505, 100: 0.001}),
        (ScheduleConfig(name="poly", power=2.0, **WARM), {0: 0.01, 20: 0.1, 60: 0.02575, 100: 0.001}),
        (ScheduleConfig(name="constant", **WARM), {0: 0.01, 10: 0.055, 20: 0.1, 60: 0.1, 100: 0.1}),
        (  # milestones at 30, 60, 80 of 100 steps
            ScheduleConfig(name="steps", milestones=(0.3, 0.6, 0.8), gamma=0.1, **WARM),
            {0: 0.01, 20: 0.1, 29: 0.1, 30: 0.01, 59: 0.01, 60: 0.001, 80: 1e-4, 100: 1e-4},
        ),
        (ScheduleConfig(name="cosine", min_lr=0.0), {0: 0.1, 50: 0.05, 100: 0.0}),  # no warm-up: starts at the peak
        (ScheduleConfig(name="linear", warmup_epochs=0.5, warmup_start_factor=0.0), {0: 0.0, 1: 0.02, 5: 0.1}),  # W=5
    ],
    ids=["cosine", "linear", "poly", "constant", "steps", "cosine-no-warmup", "fractional-warmup"],
)
def test_lr_at_matches_hand_computed_values(cfg, expected):
    for step, lr in expected.items():
        assert lr_at(cfg, BASE, step, T, SPE) == pytest.approx(lr, rel=1e-9, abs=1e-12), f"step {step}"


def test_onecycle_closed_form_landmarks():
    cfg = ScheduleConfig(name="onecycle", pct_start=0.3, div_factor=25, final_div_factor=1e4)
    assert lr_at(cfg, BASE, 0, T, SPE) == pytest.approx(0.004)  # max_lr / div_factor
    assert lr_at(cfg, BASE, 29, T, SPE) == pytest.approx(0.1)  # the peak at pct_start * T - 1
    assert lr_at(cfg, BASE, 99, T, SPE) == pytest.approx(0.004 / 1e4)  # the floor at T - 1
    mid = (29 + 99) / 2  # halfway down the cosine: half way between peak and floor
    assert lr_at(cfg, BASE, int(mid), T, SPE) == pytest.approx((0.1 + 4e-7) / 2)


def test_squeezenet_tutorial_linear_schedule_is_reproduced():
    """seeds/003 get_lr(lr_decay_mode='linear'), rewritten here, against the recipe's schedule."""
    lr_init, lr_end, lr_max, epochs, warm_epochs, spe = 0.0, 0.0, 0.01, 6, 2, 5
    total, warm = epochs * spe, warm_epochs * spe
    tutorial = [
        lr_init + (lr_max - lr_init) * i / warm
        if i < warm
        else lr_max - (lr_max - lr_end) * (i - warm) / (total - warm)
        for i in range(total)
    ]
    cfg = ScheduleConfig(name="linear", warmup_epochs=warm_epochs, warmup_start_factor=0.0, min_lr=lr_end)
    ours = [lr_at(cfg, lr_max, i, total, spe) for i in range(total)]
    assert ours == pytest.approx(tutorial, abs=1e-15)


# --- the scheduler follows the closed form --------------------------------------------------------------------

ALL = [
    ScheduleConfig(name="cosine", **WARM),
    ScheduleConfig(name="linear", **WARM),
    ScheduleConfig(name="poly", power=1.5, **WARM),
    ScheduleConfig(name="steps", **WARM),
    ScheduleConfig(name="constant", **WARM),
    ScheduleConfig(name="onecycle"),
]


@pytest.mark.parametrize("cfg", ALL, ids=[c.name for c in ALL])
def test_scheduler_agrees_with_lr_at_in_every_group(cfg):
    lrs, opt, _ = run(cfg, T)
    assert len(opt.param_groups) == 2  # decay + no-decay groups both follow the schedule
    assert lrs == pytest.approx([lr_at(cfg, BASE, s, T, SPE) for s in range(T + 1)], rel=1e-12, abs=1e-15)
    assert opt.param_groups[1]["lr"] == pytest.approx(lrs[-1], rel=1e-12, abs=1e-15)


def test_onecycle_equals_torch_onecycle_including_momentum():
    cfg = ScheduleConfig(name="onecycle", pct_start=0.25, div_factor=10, final_div_factor=100)
    ours_opt = build_optimizer(tiny_model(), OptimConfig(lr=BASE, momentum=0.0, no_decay_bn_bias=False))
    ours = build_scheduler(ours_opt, cfg, T, SPE)
    ref_opt = torch.optim.SGD(tiny_model().parameters(), lr=1.0, weight_decay=5e-4)  # lr is overwritten
    ref = torch.optim.lr_scheduler.OneCycleLR(
        ref_opt, max_lr=BASE, total_steps=T, pct_start=0.25, div_factor=10, final_div_factor=100
    )
    for _ in range(T):
        for o in (ours_opt, ref_opt):
            o.step()
        ours.step()
        ref.step()
        assert ours_opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
        assert ours_opt.param_groups[0]["momentum"] == ref_opt.param_groups[0]["momentum"]


def test_onecycle_cycles_adamw_beta1_like_torch():
    cfg = ScheduleConfig(name="onecycle")
    opt = build_optimizer(tiny_model(), OptimConfig(name="adamw", lr=BASE))
    sched = build_scheduler(opt, cfg, 20, SPE)
    ref_opt = torch.optim.AdamW(tiny_model().parameters(), lr=BASE)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=BASE, total_steps=20)
    for _ in range(20):
        opt.step(), ref_opt.step(), sched.step(), ref.step()
        assert opt.param_groups[0]["betas"] == ref_opt.param_groups[0]["betas"]
        assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]


def test_mobilenet_tutorial_sgd_without_momentum_gets_momentum_from_onecycle():
    """seeds/001 builds SGD with momentum 0; OneCycleLR(cycle_momentum=True) sets it to 0.95 and cycles it."""
    model = tiny_model()
    opt = build_optimizer(model, OptimConfig(lr=BASE, momentum=0.0))
    sched = build_scheduler(opt, ScheduleConfig(name="onecycle"), T, SPE)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)
    model(torch.randn(2, 3, 4, 4)).sum().backward()
    opt.step()
    assert "momentum_buffer" in opt.state[next(model.parameters())]  # momentum really is in use
    for _ in range(29):
        sched.step()
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.85)  # lowest at the lr peak


# --- resume ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cosine", "steps", "onecycle"])
def test_state_dict_round_trip_resumes_the_same_lr_sequence(name):
    cfg = ScheduleConfig(name=name, warmup_epochs=0.0 if name == "onecycle" else 1.0)
    x = torch.randn(8, 3, 4, 4)

    def train(model, opt, sched, steps):
        lrs = []
        for _ in range(steps):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        return lrs

    model = tiny_model()
    opt = build_optimizer(model, OptimConfig(lr=BASE))
    sched = build_scheduler(opt, cfg, 40, SPE)
    train(model, opt, sched, 13)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
    expected = train(model, opt, sched, 27)  # the uninterrupted run

    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain values only: no code runs on load
    model2 = tiny_model()
    model2.load_state_dict(state["model"])
    opt2 = build_optimizer(model2, OptimConfig(lr=BASE))
    sched2 = build_scheduler(opt2, cfg, 40, SPE)
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    assert train(model2, opt2, sched2, 27) == expected
    assert math.isclose(expected[-1], lr_at(cfg, BASE, 40, 40, SPE), rel_tol=1e-12, abs_tol=1e-15)


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_resuming_with_more_epochs_continues_on_the_new_curve(name):
    cfg = ScheduleConfig(name=name)
    opt = build_optimizer(tiny_model(), OptimConfig(lr=BASE))
    sched = build_scheduler(opt, cfg, 40, SPE)
    for _ in range(13):
        opt.step()
        sched.step()
    state = {"opt": opt.state_dict(), "sched": sched.state_dict()}

    longer_opt = build_optimizer(tiny_model(), OptimConfig(lr=BASE))
    longer = build_scheduler(longer_opt, cfg, 60, SPE)  # e.g. resumed with --epochs 6 instead of 4
    longer_opt.load_state_dict(state["opt"])
    with pytest.warns(UserWarning, match="changed lr schedule .*total_steps.* from step 13"):
        longer.load_state_dict(state["sched"])
    lrs = [longer_opt.param_groups[0]["lr"]]
    for _ in range(60 - 13):
        longer_opt.step()
        longer.step()
        lrs.append(longer_opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([lr_at(cfg, BASE, s, 60, SPE) for s in range(13, 61)], rel=1e-12, abs=1e-15)


def test_resume_errors():
    opt = build_optimizer(tiny_model(), OptimConfig(lr=BASE))
    sched = build_scheduler(opt, ScheduleConfig(), 40, SPE)
    for _ in range(30):
        opt.step()
        sched.step()
    shorter = build_scheduler(build_optimizer(tiny_model(), OptimConfig(lr=BASE)), ScheduleConfig(), 20, SPE)
    with pytest.raises(InputError, match="at step 30, past the end of this run's schedule"):
        shorter.load_state_dict(sched.state_dict())
    with pytest.raises(InputError, match="not a litezoo lr scheduler state"):
        shorter.load_state_dict({"last_epoch": 3})


def test_stepping_past_the_end_is_an_error():
    for cfg in (ScheduleConfig(name="linear"), ScheduleConfig(name="onecycle")):
        _, opt, sched = run(cfg, 10)
        with pytest.raises(ValueError):
            sched.step()


# --- errors ---------------------------------------------------------------------------------------------------


def test_schedule_argument_errors():
    with pytest.raises(InputError, match="unknown lr schedule 'exp'"):
        lr_at(ScheduleConfig(name="exp"), BASE, 0, T, SPE)
    with pytest.raises(InputError, match="unknown lr schedule"):
        build_scheduler(build_optimizer(tiny_model(), OptimConfig()), ScheduleConfig(name="exp"), T, SPE)
    with pytest.raises(InputError, match="warm-up .* must be shorter than training"):
        lr_at(ScheduleConfig(warmup_epochs=10), BASE, 0, T, SPE)
    with pytest.raises(InputError, match="warmup_epochs must be 0 with the onecycle"):
        lr_at(ScheduleConfig(name="onecycle", warmup_epochs=1), BASE, 0, T, SPE)
    with pytest.raises(InputError, match="past the end"):
        lr_at(ScheduleConfig(), BASE, T + 1, T, SPE)
    with pytest.raises(InputError, match="total_steps must be a positive integer"):
        lr_at(ScheduleConfig(), BASE, 0, 0, SPE)


# --- optimizer ------------------------------------------------------------------------------------------------


def test_no_decay_group_holds_bn_and_biases_and_really_skips_decay():
    model = tiny_model()
    model[3].bias.requires_grad_(False)  # frozen parameters are left out
    groups = param_groups(model, 0.5, no_decay_bn_bias=True)
    decay_ids = {id(p) for p in groups[0]["params"]}
    no_decay_ids = {id(p) for p in groups[1]["params"]}
    assert decay_ids == {id(model[0].weight), id(model[3].weight)}
    assert no_decay_ids == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert (groups[0]["weight_decay"], groups[1]["weight_decay"]) == (0.5, 0.0)

    # One SGD step with zero gradients: only weight decay moves anything.
    opt = build_optimizer(model, OptimConfig(lr=0.1, momentum=0.0, weight_decay=0.5))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5))
    for name in ("0.bias", "1.weight", "1.bias", "3.bias"):
        assert torch.equal(after[name], before[name]), name


def test_single_group_when_no_decay_is_off_and_optimizer_settings():
    model = tiny_model()
    opt = build_optimizer(model, OptimConfig(lr=0.2, momentum=0.8, nesterov=True, no_decay_bn_bias=False))
    assert isinstance(opt, torch.optim.SGD) and len(opt.param_groups) == 1
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.2, 0.8, True, 5e-4)
    assert len(g["params"]) == len(list(model.parameters()))
    opt = build_optimizer(model, OptimConfig(name="adamw", lr=1e-3, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["betas"] == (0.8, 0.9) and opt.param_groups[0]["eps"] == 1e-6
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_optimizer_errors():
    with pytest.raises(InputError, match="unknown optimizer 'rmsprop'"):
        build_optimizer(tiny_model(), OptimConfig(name="rmsprop"))
    frozen = tiny_model().requires_grad_(False)
    with pytest.raises(InputError, match="no trainable parameters"):
        build_optimizer(frozen, OptimConfig())
