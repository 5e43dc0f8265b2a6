"""Did the interruption, run-lock and metrics work slow the training step? Images/s of the fast recipe through the
real trainer of an old commit and of this checkout, alternated in one run.

Each run is a fresh ``litezoo train --config fast_cifar10`` process running one version's code (PYTHONPATH points
at that version's ``src/``; the old commit is checked out in a temporary git worktree). A small driver stamps the
clock at the end of every optimizer step taken inside ``litezoo.train.train_one_epoch`` (torch's global
optimizer-step hook; the precision autotune's steps before training are left out). The interval between two step
ends is one whole training step as the trainer runs it: next batch (augmentation), forward, loss, backward, SGD
step, EMA update, statistics and the after-step hook (progress; in the new code also the stop-signal flag and the
time-based checkpoint check). The first ``--skip`` steps (oneDNN creating its kernels) are not counted. The
versions alternate old new, new old, old new ... so a drift in the machine's load hits both alike.

Both versions train the same data (``--data``) with their own copy of the recipe (config keys that differ are
recorded), one epoch of ``batch x steps`` images (``data.limit_train``), the warm-up set to 0.23 epochs for both
(the recipe's share; the old commit refuses a warm-up longer than the run) and a small test split (evaluation,
checkpoints and export come after the last step and are not timed).

    python benchmarks/step_overhead.py           # 9182697 vs this checkout -> benchmarks/results/step_overhead.json
    python benchmarks/step_overhead.py --batch 256 --steps 8 --rounds 2
    python benchmarks/step_overhead.py --old 9182697 --new HEAD     # two commits (default --new: this checkout)

Duration: 2 x rounds runs of ``batch x steps`` training images plus ~15-20 s each on an idle machine (start, data,
autotune, evaluation, checkpoints). Defaults (batch 1024, 5 steps, 3 rounds) at ~125 img/s (vgg_fast_cifar fp32 on
a 2-core Zen 3): 6 x (41 + 15..20) s, 6 to 6.5 minutes.

The config keys that differ between the versions (recorded) do not touch the training step: keys the old commit
lacks (at their defaults in the new one), ``train.amp`` (the new code writes down its measured choice) and
``train.tta_translate`` (evaluation only). The model note of each run says which precision and memory format ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "step_overhead.json"
DEFAULT_OLD = "9182697"  # round 1's head, before the interruption / run lock / metrics work (issue 19)
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-original"
RECIPE = "fast_cifar10"

# Runs in each version's process: stamps the end of every training step, then runs the CLI as usual.
DRIVER = """
import json, os, sys, time
from torch.optim.optimizer import register_optimizer_step_post_hook
import litezoo
import litezoo.train as trainer
from litezoo.cli.main import main

epochs, inside = [], [False]  # per train_one_epoch call: [entry time, end of step 1, end of step 2, ...]
real = trainer.train_one_epoch


def timed(*args, **kwargs):
    epochs.append([time.perf_counter()])
    inside[0] = True
    try:
        return real(*args, **kwargs)
    finally:
        inside[0] = False


def stamp(optimizer, args, kwargs):
    if inside[0]:  # the trainer's steps only (the precision autotune's come before training)
        epochs[-1].append(time.perf_counter())


trainer.train_one_epoch = timed  # fit looks it up in its module at each epoch
register_optimizer_step_post_hook(stamp)
code = main(sys.argv[1:])
with open(os.environ["STEP_OVERHEAD_OUT"], "w") as f:
    json.dump({"litezoo_file": litezoo.__file__, "epochs": epochs, "exit_code": code}, f)
sys.exit(code)
"""


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def checkout(ref: str, where: Path) -> Path:
    """A detached worktree of ``ref`` at ``where`` (removed again by :func:`remove_worktree`)."""
    git("worktree", "add", "--detach", str(where), ref)
    return where


def remove_worktree(where: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=REPO, capture_output=True)
    subprocess.run(["git", "worktree", "prune"], cwd=REPO, capture_output=True)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def one_run(tree: Path, label: str, work: Path, index: int, args: argparse.Namespace) -> dict[str, Any]:
    """One training process of the version in ``tree``; its step intervals and what it chose."""
    run_dir = work / f"run{index:02d}_{label}"
    stamps, log = work / f"stamps{index:02d}.json", work / f"log{index:02d}.txt"
    overrides = {"data.limit_train": args.batch * args.steps, "data.limit_eval": args.eval_images,
                 "data.cache_dir": work / f"cache_{label}", "schedule.warmup_epochs": 0.23}  # fmt: skip
    if args.threads:
        overrides["train.threads"] = args.threads
    cmd = [sys.executable, str(work / "driver.py"), "train", "--config", RECIPE, "--data", str(args.data),
           "--out", str(run_dir), "--epochs", "1", "--batch-size", str(args.batch), "--amp", args.amp,
           *[f"--{k}={v}" for k, v in overrides.items()]]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "STEP_OVERHEAD_OUT": str(stamps),
           "LITEZOO_CACHE": str(work / f"cache_{label}")}  # fmt: skip
    load = list(os.getloadavg())
    t0 = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.run(cmd, cwd=work, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    text = log.read_text()
    if code != 0 or not stamps.is_file():
        raise SystemExit(f"{label} run failed (exit {code}):\n{text[-3000:]}")
    got = json.loads(stamps.read_text())
    if Path(got["litezoo_file"]).resolve().parents[1] != (tree / "src").resolve():
        raise SystemExit(f"{label} run imported litezoo from {got['litezoo_file']}, not from {tree / 'src'}")
    marks = got["epochs"][0]  # one epoch: [entry, end of step 1, ...]
    intervals = [b - a for a, b in zip(marks, marks[1:])]  # intervals[i]: step i + 1 (the first includes the entry)
    if len(intervals) != args.steps:
        raise SystemExit(f"{label} run took {len(intervals)} steps, expected {args.steps}")
    counted = intervals[args.skip:]
    note = next((ln.strip() for ln in text.splitlines() if "channels_last" in ln and "params" in ln), None)
    config = flatten(yaml.safe_load((run_dir / "config.yaml").read_text()))
    shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints: ~25 MB per run
    return {
        "version": label, "step_s": [round(s, 4) for s in intervals], "counted_from_step": args.skip + 1,
        "images_per_s": round(args.batch * len(counted) / sum(counted), 2),
        "median_images_per_s": round(args.batch / statistics.median(counted), 2),
        "process_wall_s": round(wall, 1), "load_average_before": load, "model_note": note, "config": config,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", default=DEFAULT_OLD, help=f"the commit before the change (default {DEFAULT_OLD})")
    p.add_argument("--new", default=None, help="a commit to compare with (default: this checkout as it is)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 for both versions (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1024, help="global batch (the recipe's: 1024)")
    p.add_argument("--steps", type=int, default=5, help="training steps per run (default 5)")
    p.add_argument("--skip", type=int, default=1, help="first steps of each run not counted (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="old/new pairs, order alternating (default 3)")
    p.add_argument("--amp", default="auto", help="train.amp for both (default auto, as the recipe)")
    p.add_argument("--threads", type=int, default=None, help="train.threads for both (default: torch's)")
    p.add_argument("--eval-images", type=int, default=200, help="test images evaluated after the step (not timed)")
    p.add_argument("--out", type=Path, default=OUT, help="result file (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (worktrees, logs)")
    args = p.parse_args(argv)
    if args.steps - args.skip < 1 or args.skip < 0 or args.batch < 1 or args.rounds < 1:
        p.error("need --batch >= 1, --rounds >= 1 and --steps > --skip >= 0")
    if not args.data.exists():
        p.error(f"--data {args.data} does not exist")
    args.data = args.data.resolve()

    from litezoo.fsutil import atomic_write_bytes
    from litezoo.machine import machine_info

    old_commit = git("rev-parse", "--verify", f"{args.old}^{{commit}}")
    new_commit = git("rev-parse", "--verify", f"{args.new}^{{commit}}") if args.new else git("rev-parse", "HEAD")
    work = Path(tempfile.mkdtemp(prefix="litezoo-step-overhead-"))
    (work / "driver.py").write_text(DRIVER)
    trees: dict[str, Path] = {}
    est = 2 * args.rounds * (args.batch * args.steps / 125 + 15)
    print(f"old {old_commit[:9]} vs new {new_commit[:9] if args.new else 'this checkout'}: {2 * args.rounds} runs "
          f"of {args.steps} steps x {args.batch} images (~{est / 60:.0f} min at 125 img/s); work folder {work}",
          flush=True)  # fmt: skip
    started, machine = time.strftime("%Y-%m-%dT%H:%M:%S"), machine_info()  # the commit and load at the start
    runs: list[dict[str, Any]] = []
    try:
        trees["old"] = checkout(old_commit, work / "old")
        trees["new"] = checkout(new_commit, work / "new") if args.new else REPO
        index = 0
        for r in range(args.rounds):
            for label in ("old", "new") if r % 2 == 0 else ("new", "old"):
                run = one_run(trees[label], label, work, index, args)
                run["round"] = r
                runs.append(run)
                index += 1
                print(f"round {r} {label}: {run['images_per_s']:7.1f} img/s (median {run['median_images_per_s']:.1f}); "
                      f"steps {run['step_s']} s; load {run['load_average_before'][0]:.2f}", flush=True)  # fmt: skip
    finally:
        for label, tree in trees.items():
            if tree != REPO:
                remove_worktree(tree)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    summary: dict[str, Any] = {}
    for label in ("old", "new"):
        mine = [x for x in runs if x["version"] == label]
        counted = [s for x in mine for s in x["step_s"][args.skip:]]
        summary[label] = {"runs": len(mine), "steps_counted": len(counted),
                          "images_per_s": round(args.batch * len(counted) / sum(counted), 2),
                          "median_images_per_s": round(args.batch / statistics.median(counted), 2),
                          "per_run_images_per_s": [x["images_per_s"] for x in mine]}  # fmt: skip
    per_round = [round(n["images_per_s"] / o["images_per_s"], 4) for r in range(args.rounds)
                 for o in runs if o["round"] == r and o["version"] == "old"
                 for n in runs if n["round"] == r and n["version"] == "new"]  # fmt: skip
    summary["new_over_old"] = round(summary["new"]["images_per_s"] / summary["old"]["images_per_s"], 4)
    medians = [summary[v]["median_images_per_s"] for v in ("new", "old")]
    summary["new_over_old_median"] = round(medians[0] / medians[1], 4)
    summary["new_over_old_per_round"] = per_round
    # What the two versions ran with: the model note (precision, memory format) and the config keys that differ.
    configs = {label: next(x["config"] for x in runs if x["version"] == label) for label in ("old", "new")}
    skip_keys = {"data.path", "data.cache_dir"}
    keys = sorted((set(configs["old"]) | set(configs["new"])) - skip_keys)
    differ = {k: [configs["old"].get(k), configs["new"].get(k)] for k in keys
              if configs["old"].get(k) != configs["new"].get(k)}  # fmt: skip
    notes = {label: sorted({x["model_note"] or "" for x in runs if x["version"] == label}) for label in ("old", "new")}
    for x in runs:
        del x["config"]
    result = {
        "benchmark": "step_overhead", "question": "images/s of the fast recipe's training step, before and after",
        "machine": machine, "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "old_commit": old_commit, "new_commit": new_commit, "new_is_this_checkout": args.new is None,
        "settings": {"recipe": RECIPE, "data": str(args.data), "batch": args.batch, "steps": args.steps,
                     "skip": args.skip, "rounds": args.rounds, "amp": args.amp, "threads": args.threads,
                     "eval_images": args.eval_images},
        "model_notes": notes, "config_differences_old_new": differ, "summary": summary, "runs": runs,
        "command": "python benchmarks/step_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }  # fmt: skip
    atomic_write_bytes(json.dumps(result, indent=1).encode(), args.out)
    print(json.dumps({"summary": summary, "model_notes": notes, "config_differences_old_new": differ}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
