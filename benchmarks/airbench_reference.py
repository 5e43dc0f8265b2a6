"""The upstream airbench code (Keller Jordan's CIFAR-10 speed records) run unchanged on the shared JPEG copy.

Why: litezoo's fast recipe (models/vgg_fast.py, configs/fast_cifar10*.yaml) is a reimplementation of airbench94/95.
On the shared CIFAR-10 (a JPEG re-encoding, quality ~75) it ends 3-4 points below airbench's published figures
(94.01% / 95.0%). This script runs airbench's *own* training function on the same data and CPU, so the two causes
can be told apart: if upstream loses the same points here, the data copy costs them, not the reimplementation.

litezoo does not depend on airbench. Fetch its source once (it is on PyPI; nothing is imported from an install):

    pip download airbench==0.1.8 --no-deps -d /tmp/ab && tar xzf /tmp/ab/airbench-0.1.8.tar.gz -C /tmp/ab
    python benchmarks/airbench_reference.py 94 --airbench /tmp/ab/airbench-0.1.8/airbench
    python benchmarks/airbench_reference.py 95 --airbench /tmp/ab/airbench-0.1.8/airbench

What is adapted for a CPU, at run time, without editing upstream files (everything else is upstream's code:
net, optimizer and its decoupled hyperparameters, triangle schedule, lookahead, whitening init, alternating flip,
translate with reflect padding, TTA level 2):
  * data: upstream's ``CifarLoader`` downloads the original pixels through torchvision and keeps them in fp16 on
    the GPU; here a subclass fills the same fields from litezoo's decoded cache of ``--data`` in fp32 on the CPU
    (its ``__iter__``, i.e. upstream's batched augmentation, is untouched). torchvision is replaced by a stub
    providing the one transform upstream uses (``Normalize``).
  * precision: upstream calls ``net.half().cuda()``; here those two calls leave the net in fp32 on the CPU and
    its forward runs under bf16 autocast where the CPU computes bf16 natively (fp32 otherwise), logits in fp32.
  * timing: ``torch.cuda.Event`` is replaced by a wall-clock timer (upstream times training + final TTA).

Writes benchmarks/results/airbench_reference_<94|95>[suffix].json after every epoch (the per-epoch table upstream
prints: train loss/acc of the last batch, test accuracy without TTA, and at the end with TTA level 2).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _torchvision_stub() -> None:
    """Upstream imports torchvision for CIFAR10 download and ``T.Normalize``; only the latter is used here."""

    class Normalize:
        def __init__(self, mean, std):
            self.mean = torch.as_tensor(mean).view(1, 3, 1, 1)
            self.std = torch.as_tensor(std).view(1, 3, 1, 1)

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            out = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
            return out.contiguous(memory_format=torch.channels_last)

    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.Normalize = Normalize
    tv.datasets = types.ModuleType("torchvision.datasets")
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms, "torchvision.datasets": tv.datasets})


class _WallClockEvent:
    """Stands in for torch.cuda.Event(enable_timing=True): elapsed_time in milliseconds."""

    def __init__(self, enable_timing: bool = True):
        self.t = 0.0

    def record(self) -> None:
        self.t = time.perf_counter()

    def elapsed_time(self, end: "_WallClockEvent") -> float:
        return 1e3 * (end.t - self.t)


def _load_package(folder: Path) -> types.ModuleType:
    """Import upstream's folder as the package ``airbench`` (its modules use relative imports)."""
    init = folder / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"error: {folder} is not airbench's package folder (no __init__.py); see this script's doc")
    spec = importlib.util.spec_from_file_location("airbench", init, submodule_search_locations=[str(folder)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["airbench"] = pkg
    spec.loader.exec_module(pkg)
    return pkg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variant", choices=["94", "95"], help="airbench94 (64/256/256, 9.9 ep) or airbench95 (128/384/384, 15 ep)")
    p.add_argument("--airbench", required=True, type=Path, help="the unpacked package folder airbench-0.1.8/airbench")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--suffix", default="")
    args = p.parse_args(argv)

    sys.path.insert(0, str(REPO / "src"))
    from litezoo.data import open_dataset
    from litezoo.fsutil import atomic_write_bytes
    from litezoo.machine import cpu_native_bf16, machine_info

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    _torchvision_stub()
    torch.cuda.Event = _WallClockEvent  # upstream times with CUDA events
    torch.cuda.synchronize = lambda *a, **k: None
    _load_package(args.airbench.resolve())
    utils = importlib.import_module("airbench.utils")
    lib = importlib.import_module(f"airbench.lib_airbench{args.variant}")

    splits = {s: open_dataset(args.data, s) for s in ("train", "test")}
    bf16, why = cpu_native_bf16()
    out = RESULTS / f"airbench_reference_{args.variant}{args.suffix}.json"
    result = {
        "benchmark": "airbench_reference",
        "what": f"upstream airbench{args.variant} (airbench 0.1.8 from PyPI) trained by its own train(), CPU adaptations "
        "in benchmarks/airbench_reference.py",
        "published_on_original_pixels": {"94": 94.01, "95": 95.01}[args.variant],
        "data": str(args.data),
        "hyp": lib.hyp,
        "seed": args.seed,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "precision_why": why,
        "machine": machine_info(),  # after set_num_threads: records the threads used
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",
        "epochs": [],
    }

    class LocalCifarLoader(utils.CifarLoader):
        """Upstream's loader, its fields filled from litezoo's cache instead of a torchvision download."""

        def __init__(self, path, train=True, batch_size=500, aug=None, drop_last=None, shuffle=None, altflip=False, gpu=0):
            ds = splits["train" if train else "test"]
            self.epoch = 0
            self.images = torch.from_numpy(np.array(ds.images)).float().div_(255).permute(0, 3, 1, 2)
            self.images = self.images.contiguous(memory_format=torch.channels_last)  # (N, 3, 32, 32)
            self.labels = torch.from_numpy(np.array(ds.labels)).long()
            self.classes = list(ds.classes)
            self.normalize = utils.T.Normalize(utils.CIFAR_MEAN, utils.CIFAR_STD)
            self.proc_images = {}
            self.aug = aug or {}
            self.batch_size = batch_size
            self.drop_last = train if drop_last is None else drop_last
            self.shuffle = train if shuffle is None else shuffle
            self.altflip = altflip

    def make_net():
        # upstream: net.half().cuda(); here both are no-ops and the forward gets bf16 autocast if native
        with contextlib.ExitStack() as stack:
            for name in ("half", "cuda"):
                orig = getattr(nn.Module, name)
                setattr(nn.Module, name, lambda self, *a, **k: self)
                stack.callback(setattr, nn.Module, name, orig)
            net = getattr(lib, f"make_net{args.variant}")()
        forward = net.forward

        def cpu_forward(x):
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return forward(x).float()

        net.forward = cpu_forward
        return net

    printer = utils.print_training_details

    def record(variables, is_final_entry):
        printer(variables, is_final_entry)
        row = {k: variables.get(k) for k in ("epoch", "train_loss", "train_acc", "val_acc", "tta_val_acc", "total_time_seconds")}
        row = {k: (100 * v if k.endswith("acc") and isinstance(v, float) else v) for k, v in row.items()}
        result["epochs"].append(row)
        if is_final_entry:
            result["status"] = "finished"
            result["final_tta_top1"] = row["tta_val_acc"]
        atomic_write_bytes(json.dumps(result, indent=1).encode(), out)

    utils.CifarLoader = LocalCifarLoader
    utils.print_training_details = record
    loader = LocalCifarLoader("", train=True, batch_size=lib.hyp["opt"]["batch_size"], aug=lib.hyp["aug"], altflip=True)
    getattr(lib, f"train{args.variant}")(train_loader=loader, make_net=make_net, run=0)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
