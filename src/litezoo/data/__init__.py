"""Datasets, the decoded-image cache, batch augmentation and the reproducible loader.

    from litezoo.data import open_dataset, BatchLoader
    train = open_dataset("cifar10", "train")                  # decodes once into the cache, then memmaps
    loader = BatchLoader(train, 512, train=True, seed=0)     # crop+flip (+cutout, mixup...) on whole batches
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader: ...

This package knows nothing about models or run configs: the trainer passes plain keyword arguments.
Only the loader and the preview need torch; they are imported on first use, so decoding (``litezoo.data.decode``,
used by the torch-free runtime too), datasets and the cache work without importing torch.
"""

from typing import TYPE_CHECKING

from litezoo.data.cache import default_cache_dir
from litezoo.data.classnames import imagenet_class_names, imagenet_name, imagenet_wnids
from litezoo.data.datasets import ImageDataset, dataset_splits, open_dataset
from litezoo.data.errors import BadImageWarning, DatasetError, DataWarning, PixelRangeWarning, SmallImageWarning

if TYPE_CHECKING:
    from litezoo.data.loader import BatchLoader
    from litezoo.data.preview import save_sample_grid

_LAZY = {"BatchLoader": "litezoo.data.loader", "save_sample_grid": "litezoo.data.preview"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'litezoo.data' has no attribute {name!r}")

__all__ = [
    "BadImageWarning",
    "BatchLoader",
    "DataWarning",
    "DatasetError",
    "ImageDataset",
    "PixelRangeWarning",
    "SmallImageWarning",
    "dataset_splits",
    "default_cache_dir",
    "imagenet_class_names",
    "imagenet_name",
    "imagenet_wnids",
    "open_dataset",
    "save_sample_grid",
]
