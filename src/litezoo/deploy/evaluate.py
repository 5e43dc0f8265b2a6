"""Accuracy of what ships: evaluate an exported .onnx (fp32 or int8) file on a dataset split.

The preprocessing comes from the file's litezoo metadata; the images go through litezoo.data's eval
transform (the same pixels training evaluated on), then ONNX Runtime. The result is the trainer's
:class:`~litezoo.evaluate.EvalResult`, so reports and confusion plots are shared.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from litezoo.errors import InputError


def evaluate_exported(
    path: str | os.PathLike,
    data: str | os.PathLike,
    *,
    split: str = "test",
    batch_size: int = 256,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    download: bool = True,
):
    """(EvalResult, info) of the exported model at ``path`` on ``split`` of ``data``."""
    import torch
    import torch.nn.functional as F

    from litezoo.data import BatchLoader, open_dataset
    from litezoo.evaluate import EvalResult, match_classes
    from litezoo.runtime import OnnxClassifier

    path = Path(path)
    if path.suffix != ".onnx":
        raise InputError(f"evaluating an exported model needs an .onnx file, got {path}")
    clf = OnnxClassifier(path, threads=threads)
    meta = clf.meta
    ds = open_dataset(data, split, image_size=int(meta["image_size"]), cache_dir=cache_dir, limit=limit,
                      download=download)
    match_classes(meta, ds.class_folders, ds.classes, data)  # InputError when the data's classes differ
    loader = BatchLoader(ds, batch_size, train=False, device="cpu", rank=0, world_size=1,
                         mean=tuple(meta["mean"]), std=tuple(meta["std"]))  # fmt: skip
    k_classes = len(meta["classes"])
    k = min(5, k_classes)
    loss_sum, top_k, confusion = 0.0, 0, np.zeros((k_classes, k_classes), dtype=np.int64)
    for x, y in loader:
        logits = clf.logits(x.contiguous().numpy().astype(np.float32, copy=False))  # (B, K)
        lt = torch.from_numpy(logits)
        loss_sum += float(F.cross_entropy(lt, y, reduction="sum"))
        top = np.argsort(-logits, axis=1)[:, :k]
        yn = y.numpy()
        top_k += int((top == yn[:, None]).any(axis=1).sum())
        np.add.at(confusion, (yn, top[:, 0]), 1)
    n = int(confusion.sum())
    result = EvalResult(loss=loss_sum / n, top1=100.0 * float(np.trace(confusion)) / n, top5=100.0 * top_k / n,
                        num_samples=n, confusion=confusion, classes=list(meta["classes"]))  # fmt: skip
    info = {"model_name": f"{meta['model_name']} ({meta.get('precision', 'fp32')} ONNX)", "split": ds.split,
            "data": str(data), "tta_flip": False, "tta_translate": 0, "weights": "exported",
            "precision": meta.get("precision", "fp32"), "quantization": meta.get("quantization")}  # fmt: skip
    return result, info
