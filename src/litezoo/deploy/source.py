"""What a deploy command starts from: a run folder / checkpoint / weights file, or a bare registry name.

Also the images it measures with: the run's own data (test split for checks and accuracy, train split for
int8 calibration), normalised exactly as training evaluated them, as float32 numpy arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn
import yaml

from litezoo.errors import InputError

# A bare (untrained) model gets the usual ImageNet statistics: it has no training data of its own.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SMALL_IMAGE_MAX = 64  # as litezoo.data: above this, photos are resized to size * 256/224 then centre-cropped
RESIZE_RATIO = 256 / 224


@dataclass
class Source:
    model: nn.Module  # eval mode, CPU, fp32
    meta: dict[str, Any]  # model_name, num_classes, in_chans, image_size, classes, mean, std
    target: str
    data: str | None = None  # the run's dataset (None for a bare model)
    cache_dir: str | None = None
    trained: bool = False
    notes: list[str] = field(default_factory=list)
    download: bool = True  # False: --no-download (a named dataset must already be in the cache)


def resize_for(size: int) -> int:
    """The shorter-side resize that precedes the centre crop at evaluation (the litezoo.data eval fit)."""
    return round(size * RESIZE_RATIO) if size > SMALL_IMAGE_MAX else size


def load_source(target: str | os.PathLike, *, size: int | None = None, data: str | None = None) -> Source:
    """A run folder / .pt / .safetensors (trained) or a registry name (random weights, for speed work)."""
    from litezoo.evaluate import load_trained_model
    from litezoo.registry import create_model, list_models, model_info

    path = Path(target)
    if path.exists():
        model, meta = load_trained_model(path, "cpu")
        if size is not None and size != meta["image_size"]:
            raise InputError(f"{path} was trained at {meta['image_size']} px; --size {size} does not fit it")
        run_dir = path if path.is_dir() else (path.parent.parent if path.parent.name == "checkpoints" else path.parent)
        cfg_data, cache_dir = _run_data(run_dir)
        return Source(model.float().eval(), dict(meta), str(target), data or cfg_data, cache_dir, trained=True)
    name = str(target)
    if name not in list_models():
        if any(sep in name for sep in ("/", "\\", ".onnx", ".pt", ".safetensors")):
            raise InputError(f"{name} does not exist")
        try:
            model_info(name)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    model = create_model(name).eval()
    side = size or model.default_size
    classes = [f"class_{i}" for i in range(model.num_classes)]
    meta = {"model_name": name, "num_classes": len(classes), "in_chans": 3, "image_size": side,
            "classes": classes, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}  # fmt: skip
    return Source(model, meta, name, data, None, trained=False, notes=["untrained model: random weights"])


def _run_data(run_dir: Path) -> tuple[str | None, str | None]:
    cfg = run_dir / "config.yaml"
    if not cfg.is_file():
        return None, None
    try:
        d = yaml.safe_load(cfg.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None, None
    section = d.get("data") or {}
    return section.get("path"), section.get("cache_dir")


def dataset_arrays(src: Source, split: str, limit: int | None, *, batch_size: int = 256):
    """(x float32 (N, C, H, W) normalised, y int64 (N,)) of ``split`` of the run's data, eval transform.

    ``limit`` keeps a class-balanced subset (litezoo.data's rule). Raises InputError when there is no data.
    """
    from litezoo.data import BatchLoader, open_dataset
    from litezoo.evaluate import match_classes

    if not src.data:
        raise InputError(f"{src.target} names no dataset (a bare model or a run folder without config.yaml): "
                         f"pass --data")  # fmt: skip
    meta = src.meta
    ds = open_dataset(src.data, split, image_size=meta["image_size"], cache_dir=src.cache_dir, limit=limit,
                      download=src.download)
    match_classes(meta, ds.class_folders, ds.classes, src.data)  # InputError when the data's classes differ
    loader = BatchLoader(ds, batch_size, train=False, device="cpu", rank=0, world_size=1,
                         mean=tuple(meta["mean"]), std=tuple(meta["std"]))  # fmt: skip
    xs, ys = [], []
    for x, y in loader:
        xs.append(x.contiguous().numpy().astype(np.float32, copy=False))
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)
