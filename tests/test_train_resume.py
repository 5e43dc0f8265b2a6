"""A run killed with SIGKILL at a random step and resumed ends bit-identical to the uninterrupted run (CPU)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from litezoo import checkpoint as ck
from test_train import make_image_folder, untimed

# Runs the CLI and prints "STEP n" after every optimizer step, so the test can kill it at a chosen one.
DRIVER = """
import sys, torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from litezoo.cli.main import main
count = [0]
def report(optimizer, args, kwargs):
    count[0] += 1
    print(f"STEP {count[0]}", flush=True)
register_optimizer_step_post_hook(report)
sys.exit(main(sys.argv[1:]))
"""

STEPS_PER_EPOCH = 8  # 32 images / batch 4
EPOCHS = 2


def _train_args(data: Path, out: Path) -> list[str]:
    return [
        "train", "--model", "shufflenet_v2_x0_5_cifar", "--data", str(data), "--out", str(out),
        "--epochs", str(EPOCHS), "--batch-size", "4", "--seed", "3", "--amp", "off", "--device", "cpu", "--quiet",
        "--data.cache_dir", str(data.parent / "cache"), "--data.eval_batch_size", "16", "--train.threads", "1",
        "--checkpoint.every_steps", "3", "--optim.lr", "0.02", "--optim.grad_clip", "2.0",
        # every stateful piece in play: dropout (torch RNG), cutout (loader), EMA, lookahead, label smoothing
        "--model.drop_rate", "0.2", "--data.cutout", "8", "--train.ema_decay", "0.9", "--label-smoothing", "0.1",
        "--train.lookahead_every", "2",
    ]  # fmt: skip


def _run(args: list[str], log: Path, kill_at: int | None = None, sig: int = signal.SIGKILL) -> tuple[int, list[int]]:
    """Run the CLI; with ``kill_at``, send ``sig`` once step ``kill_at`` is reported. Returns (exit code, steps)."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], stdout=subprocess.PIPE, stderr=err, text=True)
        steps = []
        try:
            for line in proc.stdout:
                if line.startswith("STEP "):
                    steps.append(int(line.split()[1]))
                    if steps[-1] == kill_at:
                        proc.send_signal(sig)
                        if sig == signal.SIGKILL:
                            break
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    return proc.returncode, steps


def _assert_equal(a, b, where="state"):
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def replayable_rng() -> random.Random:
    """A random generator whose seed is printed (shown with a failure) and can be given back to replay it:
    LITEZOO_TEST_SEED=<seed> python -m pytest tests/test_train_resume.py."""
    seed = int(os.environ.get("LITEZOO_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"LITEZOO_TEST_SEED={seed}")
    return random.Random(seed)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """(data, run folder): the uninterrupted run every test below compares with, trained once for the module.

    It is deterministic (fixed seed, one thread, CPU), so sharing it changes nothing the tests compare; each test
    still makes its own interrupted run and resume from the same data folder (and its preprocessed cache)."""
    root = tmp_path_factory.mktemp("resume")
    data = make_image_folder(root / "data")
    rc, steps = _run(_train_args(data, root / "ref"), root / "ref.log")
    assert rc == 0, (root / "ref.log").read_text()
    assert steps == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    return data, root / "ref"


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, reference):
    data, ref_dir = reference
    kill_at = replayable_rng().randint(4, EPOCHS * STEPS_PER_EPOCH - 3)  # after the first checkpoint (step 3)

    rc, steps = _run(_train_args(data, tmp_path / "run"), tmp_path / "run.log", kill_at=kill_at)
    assert rc == -signal.SIGKILL and steps[-1] == kill_at, f"kill_at={kill_at}: {rc}, {steps}"
    saved = ck.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert 3 <= saved.step <= kill_at

    rc, steps = _run(["train", "--resume", str(tmp_path / "run"), "--quiet"], tmp_path / "resume.log")
    assert rc == 0, (tmp_path / "resume.log").read_text()
    assert steps == list(range(1, EPOCHS * STEPS_PER_EPOCH - saved.step + 1))  # only the missing steps

    ref = ck.load_checkpoint(ref_dir / "checkpoints" / "last.pt")
    got = ck.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    msg = f"kill_at={kill_at}, resumed from step {saved.step}"
    for key in ("model", "ema", "optimizer", "scheduler"):
        _assert_equal(getattr(ref, key), getattr(got, key), f"{msg}: {key}")
    for key in ("step", "epoch", "best_top1", "best_epoch"):
        _assert_equal(ref.state[key], got.state[key], f"{msg}: {key}")
    # The same metrics (apart from timings), in the files too.
    _assert_equal(untimed(ref.state["history"]), untimed(got.state["history"]), f"{msg}: history")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    ref_w, _ = ck.load_safetensors(ref_dir / "model.safetensors")
    got_w, _ = ck.load_safetensors(tmp_path / "run" / "model.safetensors")
    _assert_equal(ref_w, got_w, f"{msg}: model.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_checkpoints_the_step_then_resume_is_bit_identical(tmp_path, reference, sig, code):
    """The gentle stops: the step in flight finishes, last.pt is written there (mid-epoch), the process says how
    to resume and exits 128 + signal; resuming ends bit-identical to the uninterrupted run."""
    data, ref_dir = reference
    stop_at = replayable_rng().randint(1, EPOCHS * STEPS_PER_EPOCH - 4)

    rc, steps = _run(_train_args(data, tmp_path / "run"), tmp_path / "run.log", kill_at=stop_at, sig=sig)
    log = (tmp_path / "run.log").read_text()
    assert rc == code, f"stop_at={stop_at}: {rc}\n{log}"
    saved = ck.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    # Nothing trained is lost: the checkpoint holds every step the process took (the signal lands in the step
    # after the reported one at the latest, and that step is finished, not dropped).
    assert saved.step == steps[-1] and stop_at <= saved.step <= stop_at + 1, (stop_at, saved.step, steps)
    assert f"resume with: litezoo train --resume {tmp_path / 'run'}" in log
    assert f"stopped by {sig.name} at epoch" in log and "Traceback" not in log

    rc, steps = _run(["train", "--resume", str(tmp_path / "run"), "--quiet"], tmp_path / "resume.log")
    assert rc == 0, (tmp_path / "resume.log").read_text()
    assert steps == list(range(1, EPOCHS * STEPS_PER_EPOCH - saved.step + 1))

    ref = ck.load_checkpoint(ref_dir / "checkpoints" / "last.pt")
    got = ck.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    msg = f"{sig.name} at step {stop_at}, saved step {saved.step}"
    for key in ("model", "ema", "optimizer", "scheduler", "lookahead"):
        _assert_equal(getattr(ref, key), getattr(got, key), f"{msg}: {key}")
    _assert_equal(untimed(ref.state["history"]), untimed(got.state["history"]), f"{msg}: history")
    ref_w, _ = ck.load_safetensors(ref_dir / "model.safetensors")
    got_w, _ = ck.load_safetensors(tmp_path / "run" / "model.safetensors")
    _assert_equal(ref_w, got_w, f"{msg}: model.safetensors")
