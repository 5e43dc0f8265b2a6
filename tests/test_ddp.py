"""Data-parallel training with torchrun on CPU (gloo): 2 processes match 1 process, and runs move between them.

The equivalence check uses SqueezeNet 1.1 (no BatchNorm), no dropout and no augmentation. With BatchNorm, each
process normalises with the statistics of its own half batch, so a 2-process run is a different computation
from a 1-process run at the same global batch (not a rounding difference); SyncBatchNorm is CUDA-only in torch.
Augmentation draws are seeded per rank, so they too differ by design. What remains equal is the mathematics:
the same 8 images per step (rank r takes positions r, r+2, ... of the shared permutation), and DDP averages the
two half-batch mean gradients, which is the full-batch mean gradient. Only float32 rounding differs (summation
order in the convolutions' batch reductions and in the all-reduce), about 1e-7 relative per operation.
Measured: max |w_2proc - w_1proc| = 3e-8 after 8 steps at lr 0.01 on Sapphire Rapids and Zen 3, but 2.7e-5 on
a Zen 5 (oneDNN's AVX-512 kernels; 3.9e-6 there with ONEDNN_MAX_CPU_ISA=AVX2): the kernels chosen for a batch of
4 and of 8 sum in different orders, and 8 steps amplify that. So the tolerance is relative to how far training
moved the weights (3e-2 here): the two runs must agree to 1% of that movement (Zen 5: 0.09%). A real DDP mistake
is far larger: gradients summed instead of averaged act as twice the lr, and a 1-process run at lr 0.02 ends
1.8x the movement away from the one at lr 0.01 (measured on the Zen 5). The lr matters: at lr 0.02 this tiny
net without BatchNorm is unstable (its loss rises above chance) and the same rounding differences grow about 10x
per step (3e-5 after 4 steps on Sapphire Rapids), which says nothing about DDP.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from litezoo import checkpoint as ck
from litezoo import distributed
from litezoo.config import resolve
from litezoo.interrupt import StopSignals
from litezoo.progress import Progress
from litezoo.train import TEACHER_TABLE, fit
from test_train import make_image_folder

QUIET = Progress(quiet=True)
RELATIVE_TOLERANCE = 1e-2  # max |w_2proc - w_1proc| / max |w_1proc - w_init| after 8 SGD steps (module docstring)


def _options(data: Path) -> dict[str, str]:
    return {
        "model.name": "squeezenet1_1_cifar", "model.drop_rate": "0", "data.path": str(data),
        "data.cache_dir": str(data.parent / "cache"), "data.batch_size": "8", "data.eval_batch_size": "16",
        "data.flip": "false", "data.crop_padding": "0", "train.epochs": "2", "train.amp": "off",
        "train.device": "cpu", "train.threads": "1", "optim.lr": "0.01", "optim.momentum": "0.9",
    }  # fmt: skip


def _torchrun(args: list[str], log: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd = [*torchrun, "-m", "litezoo", *args]
    with open(log, "w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=600).returncode
    assert code == 0, log.read_text()


@pytest.mark.slow
def test_two_processes_match_one_and_runs_move_between_them(tmp_path):
    data = make_image_folder(tmp_path / "data")
    options = _options(data)
    flags = [f"--{k}={v}" for k, v in options.items()]

    # 2 processes x 4 images vs 1 process x 8 images: 2 epochs of 4 steps each.
    _torchrun(["train", "--out", str(tmp_path / "ddp"), "--quiet", *flags], tmp_path / "ddp.log")
    fit(resolve(None, options), tmp_path / "one", progress=QUIET)

    two = ck.load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    one = ck.load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    assert two.world_size == 2 and one.world_size == 1 and two.step == one.step == 8
    assert list(two.model) == list(one.model)  # the unwrapped model: no "module." prefix
    assert not any(k.startswith("module.") for k in two.model)
    diff = max((two.model[k] - one.model[k]).abs().max().item() for k in one.model)
    init = fit_init_weights(options, tmp_path)
    moved = max((one.model[k] - init[k]).abs().max().item() for k in one.model)
    assert moved > 1e-3, moved  # training moved the weights: the comparison below means something
    assert diff < RELATIVE_TOLERANCE * moved, (diff, moved)
    # Metrics were reduced over both processes: the whole test split evaluated once, same numbers.
    for a, b in zip(two.state["history"], one.state["history"]):
        assert a["test_top1"] == b["test_top1"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    # Only rank 0 wrote: one metrics line per epoch.
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 2

    # The DDP run continues in one process ...
    with pytest.warns(UserWarning, match="changed lr schedule"):  # 3 epochs now: a longer schedule
        fit(resolve(None, {**options, "train.epochs": "3"}), tmp_path / "ddp", resume=True, progress=QUIET)
    after_one = ck.load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert after_one.world_size == 1 and after_one.step == 12
    # ... and back in two.
    _torchrun(["train", "--resume", str(tmp_path / "ddp"), "--epochs", "4", "--quiet"], tmp_path / "resume.log")
    final = ck.load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert final.world_size == 2 and final.step == 16
    assert [r["epoch"] for r in final.state["history"]] == [1, 2, 3, 4]
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 4


def fit_init_weights(options: dict[str, str], tmp_path: Path) -> dict[str, torch.Tensor]:
    """The initial weights of the runs above (same seed): build the model as fit does."""
    from litezoo.run import build_model, seed_everything

    cfg = resolve(None, options)
    seed_everything(cfg.train.seed)
    return build_model(cfg, num_classes=4).state_dict()


# The CLI, saying "PID p RANK r" at start and "STEP n RANK r" after every optimizer step, pausing 0.5 s per step,
# so the test can signal the processes in the middle of the run. Each line is ONE write(): both workers share the
# pipe and reach each step at the same moment (DDP's gradient all-reduce keeps them in step), and print() writes
# the text and its newline separately when PYTHONUNBUFFERED is set (as in this project's environment), so two
# print()ed lines could arrive as "STEP 2STEP 2\n\n" -- the test then never saw "STEP 2", sent no signal, and the
# run finished with exit 0 (the flake of about one run in three, first blamed on timing).
STEP_DRIVER = """
import os, sys, time
from torch.optim.optimizer import register_optimizer_step_post_hook
from litezoo.cli.main import main
rank = os.environ["RANK"]
def say(text):
    os.write(1, (text + "\\n").encode())
say(f"PID {os.getpid()} RANK {rank}")
count = [0]
def report(optimizer, args, kwargs):
    count[0] += 1
    say(f"STEP {count[0]} RANK {rank}")
    time.sleep(0.5)
register_optimizer_step_post_hook(report)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("signalled", ["workers", "workers_and_launcher"])
def test_sigterm_under_torchrun_stops_every_process_at_the_same_step(tmp_path, signalled):
    """A scheduler's SIGTERM reaches every process of the job, each at its own moment; they must agree on one
    step, write one checkpoint and stop (a disagreement would hang in the collective save or fail).

    "workers_and_launcher" signals torchrun too (as SLURM signals every process of a job step): torchrun passes
    the SIGTERM on, so each worker gets two. In both cases torchrun SIGTERMs the remaining workers as soon as
    one exits. A repeated SIGTERM must not abort the agreed stop (before the fix the repeat stopped a worker at
    once, possibly in the middle of writing last.pt)."""
    data = make_image_folder(tmp_path / "data")
    driver = tmp_path / "driver.py"
    driver.write_text(STEP_DRIVER)
    # 16 steps of >= 0.5 s: the signals, sent at step 2, land at least 7 s before the end. Few epochs and a longer
    # pause rather than many short steps: the resume below trains the rest without pauses (and evaluates and
    # checkpoints every epoch), so every extra epoch was paid there (10 epochs of 0.2 s: half the test's time).
    epochs = 4
    flags = [f"--{k}={v}" for k, v in {**_options(data), "train.epochs": str(epochs)}.items()]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(driver),
           "train", "--out", str(out), "--quiet", *flags]  # fmt: skip
    seen: list[str] = []
    with open(tmp_path / "ddp.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        pids: dict[int, int] = {}  # rank -> pid
        signalled_at = None
        try:
            for line in proc.stdout:
                seen.append(line)
                if m := re.fullmatch(r"PID (\d+) RANK (\d+)", line.strip()):
                    pids[int(m[2])] = int(m[1])
                if re.fullmatch(r"STEP 2 RANK \d+", line.strip()):  # a process reached step 2 (of 16)
                    signalled_at = 2
                    launcher = [proc.pid] if signalled == "workers_and_launcher" else []
                    targets = [pids[0], *launcher, pids[1]]
                    for pid in targets:  # one at a time, 50 ms apart
                        os.kill(pid, signal.SIGTERM)
                        time.sleep(0.05)
                    break
            seen.append(proc.stdout.read())
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = (tmp_path / "ddp.log").read_text()
    context = text + "".join(seen)
    assert signalled_at == 2 and sorted(pids) == [0, 1], context  # the stdout protocol worked
    assert proc.returncode != 0, context
    assert text.count("litezoo train: stopped by SIGTERM at epoch") == 1, context  # rank 0 reports, once
    assert "stopped at once" not in text, context  # no repeated SIGTERM aborted the agreed stop
    saved = ck.load_checkpoint(out / "checkpoints" / "last.pt")
    assert saved.world_size == 2 and 2 <= saved.step < 4 * epochs and len(saved.rng) == 2, (saved.step, context)
    steps = [int(m[1]) for m in re.finditer(r"STEP (\d+) RANK 0", "".join(seen))]
    assert steps and max(steps) == saved.step, (steps, saved.step)  # the checkpoint holds the last step taken
    if signalled == "workers":  # resuming under torchrun finishes the run (once is enough)
        _torchrun(["train", "--resume", str(out), "--quiet"], tmp_path / "resume.log")
        final = ck.load_checkpoint(out / "checkpoints" / "last.pt")
        assert final.step == 4 * epochs and [r["epoch"] for r in final.state["history"]] == list(range(1, epochs + 1))


def test_under_a_launcher_a_repeated_signal_only_confirms_the_stop():
    """torchrun passes a signal on to every worker and SIGTERMs the rest when one exits: repeats are expected
    there and must not abort the checkpoint being written; a single process keeps "a second signal stops at once"."""
    before = signal.getsignal(signal.SIGTERM)
    stop = StopSignals(repeat_stops_at_once=False).install()
    try:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # no exception
        signal.raise_signal(signal.SIGINT)  # nor for a SIGINT after it
        assert stop.signum == signal.SIGTERM and stop.repeats == 2
    finally:
        stop.restore()
    stop.restore()  # twice: nothing
    assert signal.getsignal(signal.SIGTERM) is before


def test_under_launcher_is_read_from_torchrun_environment(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.under_launcher()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun --nproc-per-node 1: still its worker
    assert distributed.under_launcher()
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.under_launcher()


@pytest.mark.slow
def test_two_processes_build_the_teacher_table_of_one(tmp_path):
    """train.distill_cache under torchrun: each process judges its block of the images and the blocks are summed
    (an image judged twice or not at all is an error), so the table equals a single process's."""
    data = make_image_folder(tmp_path / "data")
    options = _options(data)
    fit(resolve(None, {**options, "train.epochs": "1"}), tmp_path / "teacher", progress=QUIET)
    student = {**options, "train.epochs": "1", "train.distill_from": str(tmp_path / "teacher"),
               "train.distill_cache": "true"}
    _torchrun(["train", "--out", str(tmp_path / "ddp"), "--quiet", *[f"--{k}={v}" for k, v in student.items()]],
              tmp_path / "ddp.log")  # fmt: skip
    fit(resolve(None, student), tmp_path / "one", progress=QUIET)
    two = load_file(tmp_path / "ddp" / TEACHER_TABLE)
    one = load_file(tmp_path / "one" / TEACHER_TABLE)
    assert sorted(two) == sorted(one) == ["logits_32"]
    assert one["logits_32"].abs().sum() > 0  # filled (SqueezeNet's logits pass a ReLU: single zeros are expected)
    assert torch.allclose(two["logits_32"], one["logits_32"], atol=1e-4)
