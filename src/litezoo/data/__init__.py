"""Datasets, the decoded-image cache, batch augmentation and the reproducible loader.

    from litezoo.data import open_dataset, BatchLoader
    train = open_dataset("cifar10", "train")                  # decodes once into the cache, then memmaps
    loader = BatchLoader(train, 512, train=True, seed=0)     # crop+flip (+cutout, mixup...) on whole batches
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader: ...

This package knows nothing about models or run configs: the trainer passes plain keyword arguments.
"""

from litezoo.data.cache import default_cache_dir
from litezoo.data.classnames import imagenet_class_names, imagenet_name, imagenet_wnids
from litezoo.data.datasets import ImageDataset, dataset_splits, open_dataset
from litezoo.data.errors import BadImageWarning, DatasetError, DataWarning, PixelRangeWarning, SmallImageWarning
from litezoo.data.loader import BatchLoader
from litezoo.data.preview import save_sample_grid

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
