"""Transfer learning on dogs-vs-cats at 224 px with ImageNet SqueezeNet 1.1 (issue: the tutorial reproduced and beaten).

Runs (each writes benchmarks/results/transfer_<run>.json with the machine block, the command, the curve):
  head      the tutorial's set-up (seeds/002 section 5): backbone frozen, fresh 2-way classifier, plain SGD lr 0.001,
            batch 64, no augmentation (centre crop), 10 epochs -- on cached features (one backbone pass per image,
            then the head trains on the stored (512, 13, 13) maps; nothing is lost: the tutorial augments nothing)
  finetune  recipe squeezenet_finetune: every layer trains (backbone at 0.1x lr), random-resized crop + flip,
            bf16 where native, cosine lr; `litezoo train` itself
  scratch   recipe squeezenet_scratch: the same data pipeline and number of epochs from random weights (SGD lr 0.01
            at batch 64 with a 1-epoch warm-up: a BN-free SqueezeNet collapsed to constant outputs at lr 0.05)
  speed     images/s of the training loader alone vs the training step alone (224 px, batch 64)

    python benchmarks/transfer.py head finetune scratch speed --weights ../shared/weights/squeezenet1_1-imagenet-tvlayout.pth
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _write(name: str, record: dict) -> Path:
    from litezoo.fsutil import atomic_write_bytes

    path = RESULTS / f"transfer_{name}.json"
    atomic_write_bytes((json.dumps(record, indent=1) + "\n").encode(), path)
    print(f"wrote {path}")
    return path


def _machine() -> dict:
    from litezoo.machine import machine_info

    return machine_info("cpu")


def run_head(args) -> dict:
    import litezoo
    from litezoo.data import BatchLoader, open_dataset
    from litezoo.weights import load_weights
    from litezoo.weights.finetune import cache_features, freeze, train_head_on_features

    torch.manual_seed(0)
    model = litezoo.create_model("squeezenet1_1", num_classes=2)
    report = load_weights(model, args.weights)
    freeze(model, "backbone", {n for n, _ in model.named_parameters() if n.startswith("head.")})
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    t0 = time.perf_counter()
    splits = {}
    for split in ("train", "test"):
        ds = open_dataset(args.data, split, image_size=224)
        loader = BatchLoader(ds, 100, train=False, mean=mean, std=std)  # centre crop, no augmentation
        splits[split] = cache_features(model, loader, dtype=torch.bfloat16)
    cache_s = time.perf_counter() - t0
    feats = splits["train"][0]
    history = train_head_on_features(model, splits["train"], splits["test"], epochs=10, lr=0.001, batch_size=64)
    return {
        "run": "head", "what": "tutorial set-up on cached features: frozen backbone, SGD lr 0.001, batch 64, 10 epochs",
        "command": " ".join(["python benchmarks/transfer.py head", "--weights", args.weights, "--data", args.data]),
        "load_report": report.summary(), "feature_shape": list(feats.shape[1:]), "feature_dtype": "bfloat16",
        "cache_memory_mb": round(sum(s[0].numel() * s[0].element_size() for s in splits.values()) / 1e6, 1),
        "cache_time_s": round(cache_s, 1), "head_train_time_s": round(history[-1]["time_s"], 2),
        "valid_top1": history[-1]["test_top1"], "curve": history,
    }  # fmt: skip


def run_train(args, name: str, recipe: str, extra: list[str]) -> dict:
    out = Path(args.runs) / f"transfer_{name}"
    cmd = ["litezoo", "train", "--config", recipe, "--data", args.data, "--out", str(out),
           "--epochs", str(args.epochs), "--quiet", *extra]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "run": name, "command": " ".join(cmd), "wall_s": round(time.perf_counter() - t0, 1),
        "valid_top1": rows[-1]["test_top1"], "best_valid_top1": max(r["test_top1"] for r in rows),
        "train_time_s": rows[-1]["train_time_s"], "constant_predictions": rows[-1].get("constant_predictions"),
        "curve": [{k: r[k] for k in ("epoch", "train_loss", "train_top1", "test_top1", "train_time_s", "images_per_s")}
                  for r in rows],
    }  # fmt: skip


def run_speed(args) -> dict:
    import litezoo
    from litezoo.data import BatchLoader, open_dataset

    ds = open_dataset(args.data, "train", image_size=224)
    loader = BatchLoader(ds, 64, train=True, seed=0, random_resized_crop=True, flip=True, channels_last=True)
    it, n, t0 = iter(loader), 0, None
    for i in range(args.speed_batches + 1):
        x, y = next(it)
        if i == 0:
            t0 = time.perf_counter()  # the first batch pays one-time set-up
        else:
            n += len(x)
    loader_ips = n / (time.perf_counter() - t0)
    model = litezoo.create_model("squeezenet1_1", num_classes=2).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    steps = {}
    for amp in ("fp32", "bf16"):
        times = []
        for i in range(args.speed_batches + 1):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        steps[amp] = len(x) * (len(times) - 1) / sum(times[1:])
    return {"run": "speed", "batch": 64, "image_size": 224, "loader_images_per_s": round(loader_ips, 1),
            "train_step_images_per_s": {k: round(v, 1) for k, v in steps.items()},
            "threads": torch.get_num_threads()}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs_to_do", nargs="+", choices=["head", "finetune", "scratch", "speed"])
    p.add_argument("--weights", default="../shared/weights/squeezenet1_1-imagenet-tvlayout.pth")
    p.add_argument("--data", default="../shared/data/dogs-vs-cats")
    p.add_argument("--runs", default="runs", help="folder for the training runs")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the finetune and scratch runs")
    p.add_argument("--speed-batches", type=int, default=5)
    p.add_argument("--cpu-shared", action="store_true", help="mark the results: other jobs shared the CPU")
    args = p.parse_args()
    for name in args.runs_to_do:
        if name == "head":
            rec = run_head(args)
        elif name == "finetune":
            rec = run_train(args, name, "squeezenet_finetune", ["--init-from", args.weights])
        elif name == "scratch":
            rec = run_train(args, name, "squeezenet_scratch", [])
        else:
            rec = run_speed(args)
        rec.update({"cpu_shared": args.cpu_shared, "machine": _machine()})
        _write(name, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
