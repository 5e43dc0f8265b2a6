"""ModelEma and Lookahead against hand-written averages on a tiny model with BatchNorm."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn

from litezoo.ema import Lookahead, ModelEma
from litezoo.errors import InputError


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add hand-off latency
    yield
    torch.set_num_threads(before)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))


def train_steps(model: nn.Module, ema: ModelEma | None, steps: int, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    """SGD steps on random data; returns the model's state after each step (and updates ``ema`` if given)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    states = []
    for _ in range(steps):
        x = torch.randn(4, 3, 4, 4, generator=gen)
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        if ema is not None:
            ema.update(model)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return states


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_matches_a_hand_written_average(warmup):
    model = tiny_model()
    decay = 0.9
    ref = {k: v.detach().clone() for k, v in model.state_dict().items()}  # the average starts at the model
    ema = ModelEma(model, decay, warmup=warmup)
    states = train_steps(model, ema, 6)
    for n, state in enumerate(states):
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        for k, v in state.items():
            ref[k] = d * ref[k] + (1 - d) * v if v.dtype.is_floating_point else v.clone()
    got = ema.module.state_dict()
    for k, v in ref.items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-7, msg=k)
        else:
            assert torch.equal(got[k], v), k
    assert got["1.num_batches_tracked"].item() == 6  # int buffer copied, not averaged
    assert got["1.running_mean"].abs().sum() > 0  # BN statistics are averaged too
    assert ema.num_updates == 6


def test_warmup_decay_ramp():
    ema = ModelEma(tiny_model(), 0.999)
    ramp = []
    for _ in range(3):
        ramp.append(ema.current_decay())
        ema.num_updates += 1
    assert ramp == pytest.approx([1 / 10, 2 / 11, 3 / 12])
    ema.num_updates = 100_000
    assert ema.current_decay() == 0.999  # capped at the configured decay
    assert ModelEma(tiny_model(), 0.999, warmup=False).current_decay() == 0.999


def test_averaged_copy_is_separate_frozen_and_in_eval_mode():
    model = tiny_model().train()
    ema = ModelEma(model, 0.99)
    assert not ema.module.training and model.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p is not q for p, q in zip(ema.module.parameters(), model.parameters()))
    with torch.no_grad():
        model[4].weight.add_(1.0)
    assert not torch.equal(ema.module[4].weight, model[4].weight)  # training the model leaves the copy alone


def test_deterministic_and_state_dict_round_trip():
    a, b = ModelEma(tiny_model(), 0.95), ModelEma(tiny_model(), 0.95)
    model_a, model_b = tiny_model(), tiny_model()
    train_steps(model_a, a, 4)
    train_steps(model_b, b, 4)
    for (k, va), vb in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        assert torch.equal(va, vb), k  # same updates -> bit-identical average

    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    restored = ModelEma(tiny_model(), 0.95)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.num_updates == 4
    # The original and the restored EMA continue identically (model_b holds the same weights as model_a).
    train_steps(model_a, a, 2, seed=7)
    train_steps(model_b, restored, 2, seed=7)
    for (k, va), vr in zip(a.module.state_dict().items(), restored.module.state_dict().values()):
        assert torch.equal(va, vr), k


def test_bad_decay_and_bad_state():
    with pytest.raises(InputError, match="EMA decay must be in"):
        ModelEma(tiny_model(), 1.0)
    with pytest.raises(InputError, match="not an EMA state"):
        ModelEma(tiny_model(), 0.9).load_state_dict({"weights": {}})


# --------------------------------------------------------------------------------------------------------------
# Lookahead (airbench's schedule)


def test_lookahead_matches_a_hand_written_reference():
    every, decay, total = 3, 0.9, 10
    model, ref_model = tiny_model(), tiny_model()
    la = Lookahead(model, every, decay, total)
    slow = {k: v.clone() for k, v in ref_model.state_dict().items() if v.dtype.is_floating_point}
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    opt_a = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(ref_model.parameters(), lr=0.1)
    for step in range(1, total + 1):
        for m, opt, gen in ((model, opt_a, gen_a), (ref_model, opt_b, gen_b)):
            opt.zero_grad()
            m(torch.randn(4, 3, 4, 4, generator=gen)).square().mean().backward()
            opt.step()
        la.after_step(model, step)
        # reference: every 3rd step slow <- a*slow + (1-a)*w, w <- slow; after the last step w <- slow
        state = ref_model.state_dict()
        if step % every == 0:
            a = decay**every * (step / total) ** 3
            for k in slow:
                slow[k] = a * slow[k] + (1 - a) * state[k]
                state[k].copy_(slow[k])
        if step == total:
            for k in slow:
                state[k].copy_(slow[k])
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, state[k], rtol=1e-6, atol=1e-7, msg=f"{k} after step {step}")
    # the BN running statistics were averaged too (a float buffer), num_batches_tracked was not touched
    assert "1.running_mean" in la.slow and "1.num_batches_tracked" not in la.slow
    assert int(model.state_dict()["1.num_batches_tracked"]) == total


def test_lookahead_schedule_and_state_round_trip():
    model = tiny_model()
    la = Lookahead(model, 5, 0.95, 100)
    assert la.weight(5) == pytest.approx(0.95**5 * 0.05**3)
    assert la.weight(100) == pytest.approx(0.95**5)  # ~0.77 at the end
    for p in model.parameters():
        p.data.add_(1.0)
    la.after_step(model, 100)  # last step: pulled to 0.77 slow + 0.23 new, then set to slow
    buf = io.BytesIO()
    torch.save(la.state_dict(), buf)
    buf.seek(0)
    other = Lookahead(tiny_model(), 5, 0.95, 100)
    other.load_state_dict(torch.load(buf, weights_only=True))
    for k in la.slow:
        assert torch.equal(other.slow[k], la.slow[k])
    with pytest.raises(InputError, match="lookahead"):
        other.load_state_dict({"slow": {"x": torch.zeros(1)}})
    for bad in [dict(every=0, decay=0.9, total_steps=10), dict(every=2, decay=0.0, total_steps=10),
                dict(every=2, decay=0.9, total_steps=0)]:  # fmt: skip
        with pytest.raises(InputError):
            Lookahead(model, **bad)
