"""litezoo.autotune: precision and memory format chosen by timing training steps, cached per machine and net."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import litezoo
from litezoo.autotune import (
    cache_key,
    cache_key_fields,
    candidates_for,
    measure_precision,
    read_cache,
)
from litezoo import autotune as autotune_module
from litezoo.errors import InputError

CPU = torch.device("cpu")
REAL_MACHINE_CONTENDED = autotune_module.machine_contended  # before the fixture below replaces it


@pytest.fixture(autouse=True)
def _quiet_machine(monkeypatch):
    """The cache tests must not depend on how busy the test machine is (a contended measurement is not cached)."""
    import litezoo.autotune as at

    monkeypatch.setattr(at, "machine_contended", lambda: None)


class FakeClock:
    """A clock that only moves when the model runs: each forward adds the cost of the precision and memory format
    it runs in, so "which candidate is fastest" is decided by the test, not by the machine."""

    def __init__(self, costs: dict[str, float]):
        self.now = 0.0
        self.costs = costs

    def __call__(self) -> float:
        return self.now

    def __deepcopy__(self, memo):  # autotune trains deep copies of the model: they must charge this same clock
        return self


class ClockedNet(nn.Module):
    """Conv + linear with the zoo's num_classes; its forward charges the fake clock."""

    def __init__(self, clock: FakeClock, num_classes: int = 3):
        super().__init__()
        self.clock = clock
        self.num_classes = num_classes
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):  # (N, 3, H, W) -> (N, K)
        mode = "bf16" if torch.is_autocast_enabled("cpu") else "fp32"
        layout = "channels_last" if x.is_contiguous(memory_format=torch.channels_last) else "NCHW"
        self.clock.now += self.clock.costs[f"{mode} {layout}"]
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def costs_with_winner(winner: str) -> dict[str, float]:
    labels = [c.label for c in candidates_for(CPU, (False, True))] + ["fp32 NCHW", "fp32 channels_last"]
    return {label: (1.0 if label == winner else 4.0) for label in labels}


@pytest.mark.parametrize("winner_index", [0, -1])
def test_fake_timer_picks_the_faster_candidate(tmp_path, winner_index):
    winner = candidates_for(CPU, (False, True))[winner_index]  # fp32 NCHW, or the last (bf16 cl if native)
    clock = FakeClock(costs_with_winner(winner.label))
    d = measure_precision(ClockedNet(clock), CPU, (8, 3, 8, 8), cache_path=tmp_path / "a.json", timer=clock)
    assert (d.precision.mode, d.channels_last) == (winner.mode, winner.channels_last)
    # images/s = batch / seconds per step: 8 images per 1.0 s for the winner, per 4.0 s for the others
    assert d.measured[winner.label] == pytest.approx(8.0)
    assert all(v == pytest.approx(2.0) for k, v in d.measured.items() if k != winner.label)
    assert not d.cached
    assert d.precision.reason == d.line
    assert d.line.startswith("amp auto: measured (batch 8) ")
    assert d.line.endswith(f"-> {winner.mode}, {'channels_last' if winner.channels_last else 'NCHW'}")
    assert f"{winner.label} 8 img/s" in d.line


def test_only_the_allowed_layout_is_measured(tmp_path):
    clock = FakeClock(costs_with_winner("fp32 channels_last"))
    d = measure_precision(ClockedNet(clock), CPU, (4, 3, 8, 8), layouts=(False,), cache_path=tmp_path / "a.json",
                          timer=clock)  # fmt: skip
    assert d.channels_last is False
    assert all(label.endswith("NCHW") for label in d.measured)


def test_budget_stops_after_one_timed_round(tmp_path):
    clock = FakeClock({k: 100.0 for k in costs_with_winner("fp32 NCHW")})  # every step "takes" 100 s
    calls = []
    net = ClockedNet(clock)
    forward = net.forward
    net.forward = lambda x: (calls.append(1), forward(x))[1]
    d = measure_precision(net, CPU, (4, 3, 8, 8), cache_path=tmp_path / "a.json", timer=clock, rounds=5, budget_s=5)
    assert len(calls) == 2 * len(d.measured)  # one warm-up + one timed step per candidate, not 1 + 5


def test_decision_cache_round_trip(tmp_path):
    path = tmp_path / "autotune.json"
    winner = candidates_for(CPU, (False, True))[-1]
    clock = FakeClock(costs_with_winner(winner.label))
    first = measure_precision(ClockedNet(clock), CPU, (8, 3, 8, 8), model_name="clocked", cache_path=path, timer=clock)
    entries = read_cache(path)
    assert list(entries) == [first.key]
    entry = entries[first.key]
    assert entry["choice"] == winner.label and entry["measured"] == first.measured and entry["measure_batch"] == 8

    def no_timing():
        raise AssertionError("a cached decision must not measure again")

    second = measure_precision(ClockedNet(clock), CPU, (8, 3, 8, 8), model_name="clocked", cache_path=path,
                               timer=no_timing)  # fmt: skip
    assert second.cached and second.key == first.key
    assert (second.precision.mode, second.channels_last, second.measured) == (
        first.precision.mode, first.channels_last, first.measured)  # fmt: skip
    assert second.line.startswith("amp auto: cached in autotune.json (batch 8) ") and second.cache_path == path

    # Another batch shape is another key: measured again, both entries kept.
    third = measure_precision(ClockedNet(clock), CPU, (4, 3, 8, 8), model_name="clocked", cache_path=path, timer=clock)
    assert not third.cached and set(read_cache(path)) == {first.key, third.key}

    # use_cache=False measures even though the entry exists.
    clock2 = FakeClock(costs_with_winner("fp32 NCHW"))
    fresh = measure_precision(ClockedNet(clock2), CPU, (8, 3, 8, 8), model_name="clocked", cache_path=path,
                              timer=clock2, use_cache=False)  # fmt: skip
    assert not fresh.cached and fresh.precision.mode == "fp32" and read_cache(path)[first.key]["choice"] == "fp32 NCHW"


def test_corrupt_or_foreign_cache_counts_as_empty(tmp_path):
    path = tmp_path / "autotune.json"
    path.write_text("{not json")
    assert read_cache(path) == {}
    clock = FakeClock(costs_with_winner("fp32 NCHW"))
    d = measure_precision(ClockedNet(clock), CPU, (4, 3, 8, 8), cache_path=path, timer=clock)
    assert json.loads(path.read_text())["entries"][d.key]["choice"] == "fp32 NCHW"  # rewritten whole
    path.write_text(json.dumps({"version": 999, "entries": {d.key: {}}}))
    assert read_cache(path) == {}
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temp file


def test_key_names_what_decides_the_outcome(monkeypatch):
    cands = candidates_for(CPU, (False, True))
    base = cache_key_fields(CPU, "vgg_fast_cifar", 1_972_000, (1024, 3, 32, 32), cands)
    assert base["torch"] == torch.__version__
    assert base["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert base["threads"] == torch.get_num_threads()
    assert (base["model"], base["params"], base["batch_shape"]) == ("vgg_fast_cifar", 1_972_000, [1024, 3, 32, 32])
    k = cache_key(base)
    assert k == cache_key(cache_key_fields(CPU, "vgg_fast_cifar", 1_972_000, (1024, 3, 32, 32), cands))  # stable
    others = [
        cache_key_fields(CPU, "vgg_fast_cifar", 1_972_000, (512, 3, 32, 32), cands),
        cache_key_fields(CPU, "vgg_fast_wide_cifar", 1_972_000, (1024, 3, 32, 32), cands),
        cache_key_fields(CPU, "vgg_fast_cifar", 1_972_001, (1024, 3, 32, 32), cands),
        cache_key_fields(CPU, "vgg_fast_cifar", 1_972_000, (1024, 3, 32, 32), cands[:1]),
    ]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # an emulated older CPU is another machine
    others.append(cache_key_fields(CPU, "vgg_fast_cifar", 1_972_000, (1024, 3, 32, 32), cands))
    assert others[-1]["isa_env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert len({k, *map(cache_key, others)}) == 1 + len(others)


def test_real_steps_leave_rng_threads_and_model_unchanged(tmp_path):
    """A real measurement of a zoo net with a data-dependent init (vgg_fast's whitening stem) and dropout."""
    model = litezoo.create_model("vgg_fast_cifar", num_classes=10, drop_rate=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    d = measure_precision(model, CPU, (4, 3, 32, 32), model_name="vgg_fast_cifar", cache_path=tmp_path / "a.json",
                          rounds=1)  # fmt: skip
    assert torch.equal(torch.get_rng_state(), rng)  # the run's random stream is where it was
    assert torch.get_num_threads() == threads
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not bool(model.stem.initialized)  # the copy was initialised and trained, not the model
    assert model.training
    labels = {c.label for c in candidates_for(CPU, (False, True))}
    assert set(d.measured) == labels and all(v > 0 for v in d.measured.values())
    best = max(d.measured, key=d.measured.get)
    assert f"{d.precision.mode} {'channels_last' if d.channels_last else 'NCHW'}" == best


def test_bad_batch_shape_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="batch shape"):
        measure_precision(ClockedNet(FakeClock({})), CPU, (0, 3, 8, 8), cache_path=tmp_path / "a.json")


def test_run_precision_step_measures_only_for_auto(tmp_path, monkeypatch):
    import litezoo.autotune as at
    from litezoo.config import resolve

    model = litezoo.create_model("mobilenet_v1_x0_25_cifar", num_classes=10)
    where = {"model.name": "mobilenet_v1_x0_25_cifar", "data.cache_dir": str(tmp_path)}  # the cache goes beside the data's
    explicit = resolve(None, {**where, "train.amp": "off"})
    prec, cl, decision = at.choose_for_run(explicit, model, CPU, (4, 3, 32, 32), static_channels_last=True)
    assert (prec.mode, cl, decision) == ("fp32", True, None)  # no measurement, the static layout rule
    assert not (tmp_path / "autotune.json").exists()

    auto = resolve(None, {**where, "train.amp": "auto", "train.channels_last": "false"})
    prec, cl, decision = at.choose_for_run(auto, model, CPU, (4, 3, 32, 32), static_channels_last=True)
    assert cl is False and all(label.endswith("NCHW") for label in decision.measured)  # the recipe fixed NCHW
    assert prec.reason == decision.line and decision.key in read_cache(tmp_path / "autotune.json")


def test_a_contended_measurement_is_used_but_not_cached(tmp_path, monkeypatch):
    import litezoo.autotune as at

    monkeypatch.setattr(at, "machine_contended", lambda: "contended: load 19 on 2 CPUs")
    clock = FakeClock(costs_with_winner("fp32 channels_last"))
    d = measure_precision(ClockedNet(clock), CPU, (4, 3, 8, 8), cache_path=tmp_path / "a.json", timer=clock)
    assert (d.precision.mode, d.channels_last) == ("fp32", True)
    assert d.line.endswith("-> fp32, channels_last (contended: load 19 on 2 CPUs: not cached)")
    assert not (tmp_path / "a.json").exists()


def test_machine_contended_reads_the_load(monkeypatch):
    import litezoo.autotune as at

    monkeypatch.setattr(at, "usable_cpus", lambda: 2)
    monkeypatch.setattr(at, "load_average", lambda: 3.0)
    assert REAL_MACHINE_CONTENDED() is None
    monkeypatch.setattr(at, "load_average", lambda: 3.5)
    assert REAL_MACHINE_CONTENDED() == "contended: load 3.5 on 2 CPUs"
    monkeypatch.setattr(at, "load_average", lambda: None)  # no load average on this OS
    assert REAL_MACHINE_CONTENDED() is None


class Bf16Fails(ClockedNet):
    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("no bf16 kernel for this op\nsecond line")
        return super().forward(x)


def test_a_failing_reduced_precision_is_left_out_and_reported(tmp_path):
    clock = FakeClock(costs_with_winner("fp32 channels_last"))
    d = measure_precision(Bf16Fails(clock), CPU, (4, 3, 8, 8), cache_path=tmp_path / "a.json", timer=clock)
    assert (d.precision.mode, d.channels_last) == ("fp32", True)
    assert set(d.measured) == {"fp32 NCHW", "fp32 channels_last"}
    bf16 = [c.label for c in candidates_for(CPU, (False, True)) if c.mode == "bf16"]
    assert set(d.failed) == set(bf16) and all(v == "no bf16 kernel for this op" for v in d.failed.values())
    assert all(f"{label} failed (no bf16 kernel for this op)" in d.line for label in bf16)
