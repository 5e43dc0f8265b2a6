"""Benchmark the data pipeline: decoding the shared CIFAR-10 into a fresh cache, reopening it, and loader +
augmentation throughput (images/s) for 32 px batches of 512 — target >= 20,000 img/s.

    python benchmarks/data_loader.py                      # writes benchmarks/results/data_loader_cpu.json
    python benchmarks/data_loader.py --no-photos --batches 50

Also (unless --no-photos) decodes dogs-vs-cats train at 224 px and measures random-resized-crop batches.
The machine may be shared: the load average before and after is recorded next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import PIL
import torch

from litezoo.data import BatchLoader, open_dataset
from litezoo.fsutil import atomic_write_bytes
from litezoo.machine import load_average, machine_info

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LITEZOO_SHARED_DATA", REPO.parent / "shared" / "data"))


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def loader_throughput(ds, batches: int, **kwargs) -> dict:
    """Images/s over ``batches`` batches after 3 warm-up batches (crosses epochs if needed)."""
    loader = BatchLoader(ds, **kwargs)
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    for _ in range(3):
        next_batch()
    times, images = [], 0
    start = time.perf_counter()
    for _ in range(batches):
        t0 = time.perf_counter()
        x, _ = next_batch()
        times.append(time.perf_counter() - t0)
        images += x.shape[0]
    total = time.perf_counter() - start
    return {
        "images_per_s": round(images / total),
        "ms_per_batch_median": round(1e3 * statistics.median(times), 2),
        "ms_per_batch_mean": round(1e3 * total / batches, 2),
        "batches": batches,
        "images": images,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(SHARED / "cifar10"))
    parser.add_argument("--photos", default=str(SHARED / "dogs-vs-cats"))
    parser.add_argument("--no-photos", action="store_true")
    parser.add_argument("--batches", type=int, default=100, help="timed batches per loader configuration")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to measure the loader with")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "data_loader_cpu.json"))
    args = parser.parse_args(argv)

    result: dict = {"benchmark": "data_loader", "machine": machine_info(), "pillow_version": PIL.__version__,
                    "load_average_start": load_average(),
                    "note": "2-core machine shared with other engineers' jobs: absolute numbers are noisy"}
    cache = Path(tempfile.mkdtemp(prefix="litezoo-bench-", dir=REPO / ".cache" if (REPO / ".cache").is_dir() else None))
    try:
        # -- decoding the shared CIFAR-10 JPEG copy into a fresh cache
        train, t_train = timed(lambda: open_dataset(args.data, "train", image_size=32, cache_dir=cache))
        test, t_test = timed(lambda: open_dataset(args.data, "test", image_size=32, cache_dir=cache))
        assert train.decoded and test.decoded
        _, t_train2 = timed(lambda: open_dataset(args.data, "train", image_size=32, cache_dir=cache))
        _, t_test2 = timed(lambda: open_dataset(args.data, "test", image_size=32, cache_dir=cache))
        result["cifar10_decode"] = {
            "dataset": "CIFAR-10 (JPEG copy), " + args.data,
            "train_images": len(train), "test_images": len(test),
            "train_first_open_s": round(t_train, 2), "test_first_open_s": round(t_test, 2),
            "decode_images_per_s": round((len(train) + len(test)) / (t_train + t_test)),
            "train_second_open_s": round(t_train2, 3), "test_second_open_s": round(t_test2, 3),
            "cache_bytes": train.cache_path.stat().st_size + test.cache_path.stat().st_size,
            "mean": train.mean, "std": train.std, "skipped": len(train.skipped) + len(test.skipped),
            "note": "first open = scan + parallel decode (all usable CPUs) + atomic write; "
                    "second open = scan + key check + memmap",
        }
        print(json.dumps(result["cifar10_decode"], indent=1), file=sys.stderr)

        # -- loader + augmentation throughput, 32 px, batch 512
        configs = {
            "train_crop_flip": dict(train=True),
            "train_crop_flip_cutout16": dict(train=True, cutout=16),
            "train_crop_flip_mixup_cutmix": dict(train=True, mixup_alpha=0.2, cutmix_alpha=1.0),
            "train_crop_flip_channels_last": dict(train=True, channels_last=True),
            "eval": dict(train=False),
        }
        default_threads = torch.get_num_threads()
        loader_results = {}
        # torch's global threads (the trainer's setting) x the loader's own (1 = its default, None = inherit)
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            for loader_threads in ([1, None] if threads > 1 else [1]):
                for name, kw in configs.items():
                    data = train if kw["train"] else test
                    r = loader_throughput(data, args.batches, batch_size=512, seed=0, threads=loader_threads, **kw)
                    key = f"{name}_torch{threads}_loader{loader_threads or 'inherit'}"
                    loader_results[key] = r
                    print(f"{key:50s}: {r['images_per_s']:>8d} img/s ({r['ms_per_batch_median']} ms/batch median)",
                          file=sys.stderr)
        torch.set_num_threads(default_threads)
        result["loader_32px_batch512"] = loader_results
        default_cfg = loader_results[f"train_crop_flip_torch{default_threads}_loader1"]["images_per_s"] \
            if f"train_crop_flip_torch{default_threads}_loader1" in loader_results else None
        result["target"] = {"images_per_s": 20000, "train_crop_flip_default_settings": default_cfg,
                            "met": default_cfg is not None and default_cfg >= 20000}

        # -- photos: decode at 224 (train cached at 256) and random-resized-crop batches
        if not args.no_photos and Path(args.photos).is_dir():
            photos, t_photos = timed(lambda: open_dataset(args.photos, "train", image_size=224, cache_dir=cache))
            valid, t_valid = timed(lambda: open_dataset(args.photos, "test", image_size=224, cache_dir=cache))
            torch.set_num_threads(default_threads)
            rrc = loader_throughput(photos, max(10, args.batches // 5), batch_size=64, train=True, seed=0)
            ev = loader_throughput(valid, max(10, args.batches // 5), batch_size=64, train=False)
            result["dogs_vs_cats_224"] = {
                "train_images": len(photos), "valid_images": len(valid),
                "train_stored_px": photos.stored_size, "valid_stored_px": valid.stored_size,
                "train_first_open_s": round(t_photos, 2), "valid_first_open_s": round(t_valid, 2),
                "train_rrc_flip_batch64": rrc, "eval_batch64": ev, "torch_threads": default_threads, "loader_threads": 1,
            }
            print(json.dumps(result["dogs_vs_cats_224"], indent=1), file=sys.stderr)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    result["load_average_end"] = load_average()
    out = atomic_write_bytes((json.dumps(result, indent=2) + "\n").encode(), args.out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
