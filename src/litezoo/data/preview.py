"""A PNG grid of dataset samples with their class names: the picture to look at before training."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch

from litezoo.data.datasets import ImageDataset, select_limit
from litezoo.data.loader import BatchLoader
from litezoo.fsutil import atomic_write_bytes


def pick_samples(ds: ImageDataset, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random dataset indices, classes taking turns (so every class shows up), sorted by class."""
    perm = np.random.default_rng(seed).permutation(len(ds))
    picked = perm[select_limit(ds.labels[perm], n)]
    return picked[np.argsort(ds.labels[picked], kind="stable")]


def sample_images(ds: ImageDataset, indices: np.ndarray, *, augmented: bool = False, seed: int = 0,
                  cutout: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The model's view of ``indices`` as uint8 (n, S, S, 3) pictures and their labels.

    ``augmented``: through the training augmentation (random crop/flip or random-resized-crop, and
    ``cutout``); otherwise the evaluation transform. Normalisation is undone for display.
    """
    loader = BatchLoader(ds, len(indices), train=augmented, seed=seed, cutout=cutout, drop_last=False,
                         rank=0, world_size=1)
    x, y = loader.make_batch(indices, 0)
    mean = x.new_tensor(ds.mean).view(1, 3, 1, 1)
    std = x.new_tensor(ds.std).view(1, 3, 1, 1)
    pixels = ((x * std + mean).clamp_(0, 1) * 255).round_().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy(), y.cpu().numpy()


def save_sample_grid(ds: ImageDataset, out: str | os.PathLike, *, n: int = 32, seed: int = 0,
                     augmented: bool = False, cutout: int = 0, columns: int = 8) -> Path:
    """Write a grid of ``n`` samples (class name above each) to the PNG ``out`` (atomically); return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    indices = pick_samples(ds, min(n, len(ds)), seed)
    pictures, labels = sample_images(ds, indices, augmented=augmented, seed=seed, cutout=cutout)
    by_class = np.argsort(labels, kind="stable")  # the loader groups augmented batches by crop: regroup
    pictures, labels = pictures[by_class], labels[by_class]
    cols = min(columns, len(indices))
    rows = math.ceil(len(indices) / cols)
    fig = Figure(figsize=(1.7 * cols, 1.9 * rows + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    small = ds.image_size <= 64
    for k, (picture, label) in enumerate(zip(pictures, labels)):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(picture, interpolation="nearest" if small else "antialiased")
        ax.set_title(ds.classes[int(label)], fontsize=9)
        ax.set_axis_off()
    kind = "training augmentation" if augmented else "as evaluated"
    fig.suptitle(f"{Path(ds.root).name} / {ds.split}: {len(indices)} of {len(ds)} images, "
                 f"{ds.image_size} px, {kind}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(buf.getvalue(), out)
