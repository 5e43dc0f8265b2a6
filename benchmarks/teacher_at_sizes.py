"""How right and how sure is a distillation teacher on views scaled down as progressive resizing scales them?

The lightweight recipe (``configs/light_cifar10.yaml``) trains its student on augmented batches scaled from 32 px
down to 24 and 28 px for the first epochs, and the teacher gives its probabilities for those same views. This
measures the teacher on them: its agreement with the labels and the mean entropy of its probabilities on one
epoch of augmented training batches (the recipe's own loader and augmentation, epoch 0's order), its inference
rate on them (what a live teacher costs per training image), and its top-1 on the test images, at each size; the
views are scaled by the trainer's own ``resized_batches``.

    python benchmarks/teacher_at_sizes.py --teacher-json \\
        benchmarks/results/time_to_accuracy_orig_fast_seed0_12ep_zen5_altflip_b512_prog06.json

``--table`` also builds the cached teacher's table (``train.distill_cache``: one entry per image, flip, size and
crop position of a ``--grid G`` x G grid; G = 1, the default, is the uncropped image only) and compares each
view's entry with the live teacher's answer on the exact view: how often their top classes agree, the mean KL
divergence live -> table, and the entries' agreement with the labels and entropy (what a student distilled from
the table is told, against what the live teacher tells it). ``--save-table PATH`` keeps that table for training
runs to share (``--set train.distill_cache_grid=G train.distill_table=PATH``; the sizes must be the run's: 24 28 32
for the light recipe): its build time is then a one-off cost per teacher, like the teacher's training, and the
runs that read it do not count it.

    python benchmarks/teacher_at_sizes.py --table --grid 3 \
        --save-table .cache/tables/zen5_fast_seed0_grid3.safetensors \
        --teacher-json benchmarks/results/time_to_accuracy_orig_fast_seed0_12ep_zen5_altflip_b512_prog06.json \
        --out benchmarks/results/teacher_at_sizes_table_grid3.json

Writes ``benchmarks/results/teacher_at_sizes.json``. Duration: ~1 minute on a 2-core CPU (teacher inference only;
~4 minutes with ``--table``, ~25 with ``--table --grid 3``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "teacher_at_sizes.json"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher-json", required=True, type=Path, help="a finished time_to_accuracy run (the teacher)")
    p.add_argument("--recipe", default="light_cifar10")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 28, 24])
    p.add_argument("--limit-train", type=int, default=None, help="only the first N training images")
    p.add_argument("--table", action="store_true",
                   help="also compare the cached teacher's table (train.distill_cache) with the live teacher")
    p.add_argument("--grid", type=int, default=1,
                   help="crop positions per axis in the table (train.distill_cache_grid)")
    p.add_argument("--save-table", type=Path, default=None, help="keep the table there (train.distill_table)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    import torch

    from litezoo.config import resolve
    from litezoo.fsutil import atomic_write_bytes
    from litezoo.machine import machine_info
    from litezoo.data.augment import resize_batch
    from litezoo.distill import teacher_table_key
    from litezoo.run import build_run
    from litezoo.train import build_teacher_table, resized_batches

    record = json.loads(args.teacher_json.read_text())
    teacher_dir = os.path.relpath(REPO / record["run_dir"])
    over = {"train.distill_from": teacher_dir, "train.distill_cache_grid": args.grid}
    if args.limit_train:
        over["data.limit_train"] = args.limit_train
    cfg = resolve(args.recipe, over)
    run = build_run(cfg, torch.device("cpu"), note=lambda line: print(line, file=sys.stderr))
    teacher = run.teacher
    result = {"benchmark": "teacher_at_sizes", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "recipe": args.recipe,
              "teacher": teacher.name, "teacher_precision": teacher.precision.mode, "sizes": {}}  # fmt: skip
    table = None
    if args.table:
        run.sides = sorted(set(args.sizes))  # the table holds the sizes measured here
        tick = time.perf_counter()
        table = build_teacher_table(run)
        table.build_time_s = time.perf_counter() - tick
        result["table"] = {"views": table.views, "build_s": round(table.build_time_s, 1), "grid": table.grid.tolist()}
        print(f"teacher table: {table.views:,} views in {result['table']['build_s']} s", file=sys.stderr)
        if args.save_table:
            ds = run.train_loader.ds
            key = teacher_table_key(teacher, ds.images, ds.labels, run.sides, run.train_loader.crop_span, args.grid)
            table.built_by = f"benchmarks/teacher_at_sizes.py (teacher {teacher_dir})"
            args.save_table.parent.mkdir(parents=True, exist_ok=True)
            table.save(args.save_table, key)
            result["table"]["saved"] = str(args.save_table)
            print(f"teacher table kept in {args.save_table}", file=sys.stderr)
    for side in args.sizes:
        run.train_loader.set_epoch(0)
        agree = seen = 0
        entropy = teacher_s = 0.0
        t_agree = t_same = 0
        t_entropy = t_kl = 0.0
        for x, y, view in run.train_loader.with_views():
            x = resize_batch(x, side)  # as the trainer's resized_batches scales them
            tick = time.perf_counter()
            probs = teacher.probs(x)  # (B, K)
            teacher_s += time.perf_counter() - tick
            agree += int((probs.argmax(1) == y).sum())
            seen += len(y)
            entropy += float(-(probs * probs.clamp_min(1e-12).log()).sum())
            if table is not None:  # the entry a cached-teacher run would use for this exact view
                cached = table.probs(view, side)  # (B, K)
                t_agree += int((cached.argmax(1) == y).sum())
                t_same += int((cached.argmax(1) == probs.argmax(1)).sum())
                t_entropy += float(-(cached * cached.clamp_min(1e-12).log()).sum())
                t_kl += float((probs * (probs.clamp_min(1e-12).log() - cached.clamp_min(1e-12).log())).sum())
        right = tested = 0
        for x, y in resized_batches(run.test_loader, side):
            right += int((teacher.probs(x).argmax(1) == y).sum())
            tested += len(y)
        row = {"train_agreement_with_labels": round(100 * agree / seen, 2), "train_images": seen,
               "mean_entropy_nats": round(entropy / seen, 3), "uniform_entropy_nats": round(math.log(probs.shape[1]), 3),
               "test_top1": round(100 * right / tested, 2), "test_images": tested,
               "teacher_images_per_s": round(seen / teacher_s, 1)}  # fmt: skip
        if table is not None:
            row["table"] = {"agreement_with_labels": round(100 * t_agree / seen, 2),
                            "top1_agreement_with_live": round(100 * t_same / seen, 2),
                            "mean_entropy_nats": round(t_entropy / seen, 3),
                            "mean_kl_live_to_table_nats": round(t_kl / seen, 4)}  # fmt: skip
            t = row["table"]
            print(f"{side} px, table: agrees with the labels {t['agreement_with_labels']}%, with the live teacher's "
                  f"top class {t['top1_agreement_with_live']}%; entropy {t['mean_entropy_nats']} nats; "
                  f"KL(live || table) {t['mean_kl_live_to_table_nats']}")
        result["sizes"][str(side)] = row
        print(f"{side} px: agrees with the labels of {row['train_agreement_with_labels']}% of augmented training "
              f"images, mean entropy {row['mean_entropy_nats']} nats; test top-1 {row['test_top1']}% (no TTA); "
              f"teacher {row['teacher_images_per_s']:.0f} img/s")
    result["test_set"] = cfg.data.path
    atomic_write_bytes(json.dumps(result, indent=1).encode(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
