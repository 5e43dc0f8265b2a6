"""Open a dataset by path or name, decode it once into the on-disk cache, and describe it.

What is cached (``ImageDataset.images``, uint8 (N, H, W, 3), H = W = ``stored_size``):

* CIFAR-10 from the official batches: the native 32 px pixels, unchanged (below 32 px: resized).
* Image folders: each file resized (shorter side) and centre-cropped to a square, once, by :class:`Fit`:
  - small images (``image_size`` <= 64, CIFAR-style training): train and eval both cached at ``image_size``;
  - photos (``image_size`` > 64): train cached at ``round(image_size * 256/224)`` (e.g. 256 for 224) so
    the loader's random-resized-crop has room to move; eval cached as "resize to that, centre-crop
    ``image_size``" — the classic Resize(256) + CenterCrop(224) evaluation;
  - a folder whose files are all one square size no larger than that (e.g. the CIFAR JPEG copy) is cached
    at its native size, and the loader resizes on the fly: no upscaled copies on disk.
  :class:`litezoo.data.BatchLoader` maps ``stored_size`` to ``image_size`` (crop, or resize).

``mean``/``std`` are per-channel statistics of the TRAIN split (so evaluation normalises the same way):
all training images for CIFAR batches; for image folders, up to 5,000 training images evenly spaced over
the sorted file list, preprocessed as they are cached for training. They do not depend on ``limit`` or on
which split is opened, and are cached next to the images.

``limit=N`` keeps a class-balanced, deterministic subset: classes take turns, each giving its next image in
file order, until N are kept (classes with fewer images run out first). Bad files among them are skipped,
not replaced, so a few less than N may remain.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from litezoo.data import cifar
from litezoo.data.classnames import display_names
from litezoo.data.cache import (
    DATA_OFFSET,
    CacheContents,
    CacheWriter,
    digest,
    read_cache,
    resolve_cache_dir,
    slot_lock,
    write_json_atomic,
)
from litezoo.data.decode import IMAGE_EXTENSIONS, Fit, decode_files, sniff_square_size
from litezoo.data.errors import BadImageWarning, DatasetError, PixelRangeWarning, SmallImageWarning

log = logging.getLogger("litezoo.data")

PREPROCESS_VERSION = 2  # bump when decoding/preprocessing changes: every cache is rebuilt
DEFAULT_IMAGE_SIZE = 224  # image folders of photos
SMALL_IMAGE_MAX = 64  # at or below: CIFAR-style data (no random-resized-crop, no 1.14x train cache)
TRAIN_CACHE_SCALE = 256 / 224  # photos: train cache side / image_size (room for random-resized-crop)
STATS_SAMPLE = 5000  # image folders: training images the mean/std are measured on
NAMED_DATASETS = ("cifar10",)
SPLIT_FOLDERS = ("train", "test", "val", "valid")
# requested split -> folders tried in order
_SPLIT_CHOICES = {
    "train": ("train",),
    "test": ("test", "val", "valid"),
    "val": ("val", "valid", "test"),
    "valid": ("valid", "val", "test"),
}
_MAX_LISTED = 20  # bad files named in the warning line; all are in ImageDataset.skipped
SMALL_FRACTION = 4  # warn about images whose shorter side is below image_size / SMALL_FRACTION

ProgressFn = Callable[[int, int], None]


@dataclass(eq=False)
class ImageDataset:
    """A decoded split: uint8 images (memory-mapped cache), int64 labels, class names and TRAIN mean/std."""

    images: np.ndarray  # uint8 (N, H, W, 3), H = W = stored_size
    labels: np.ndarray  # int64 (N,)
    classes: list[str]  # display names (see litezoo.data.classnames); labels index this list
    mean: tuple[float, float, float]  # of the TRAIN split, in [0, 1]
    std: tuple[float, float, float]
    image_size: int  # what the model sees (the loader crops/resizes stored_size to this)
    root: Path
    split: str  # "train" or "test" (for folders: the folder actually used, e.g. "valid")
    source: str  # "image-folder" | "cifar10-python" | "cifar10-binary"
    cache_path: Path
    skipped: list[str] = field(default_factory=list)  # absolute paths of bad files left out
    skipped_reasons: dict[str, str] = field(default_factory=dict)  # path -> why
    decoded: bool = False  # True if this call decoded the files (False: the cache was reused)
    class_folders: list[str] = field(default_factory=list)  # the folder names behind ``classes``, same order
    small_images: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (w, h), far below image_size
    pixel_notes: dict[str, str] = field(default_factory=dict)  # path -> how an I/F image's range was guessed

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def stored_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(c) for name, c in zip(self.classes, counts)}

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.root}, split={self.split!r}, n={len(self)}, classes={len(self.classes)}, "
            f"image_size={self.image_size}, stored={self.stored_size}px, skipped={len(self.skipped)})"
        )


def open_dataset(
    spec: str | os.PathLike,
    split: str = "train",
    *,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    limit: int | None = None,
    progress: ProgressFn | None = None,
    workers: int | None = None,
    class_names: str | os.PathLike | None = None,
) -> ImageDataset:
    """Open ``split`` of the dataset ``spec``, decoding it into the cache the first time.

    ``spec``: an image-folder root (``root/{train,test|val|valid}/<class>/*.{jpg,png,bmp,webp,tif}``), a
    ``cifar-10-batches-py`` / ``-bin`` folder (or its parent), a ``.tar.gz`` of one, or the name
    ``"cifar10"`` (looked for in ``cache_dir``; downloaded there, md5-checked, if ``download``).
    ``split``: "train" or "test"; "val"/"valid" are aliases, and for folders "test" means whichever of
    test/, val/, valid/ exists. ``image_size`` None: 32 for CIFAR-10, an image folder's own size if all
    its images share one square size, else 224. ``cache_dir`` None: ``$LITEZOO_CACHE`` or
    ``~/.cache/litezoo``. ``limit``: keep N images (class-balanced, see the module doc). ``progress``:
    called as ``progress(done, total)`` while decoding. ``workers``: decoding processes (default: CPUs).
    ``class_names``: a file of display names for the class folders (default: ``classes.txt`` at the
    root, else ImageNet names for WordNet-id folders; see :mod:`litezoo.data.classnames`).

    Bad image files are skipped and listed in one :class:`BadImageWarning` line (and in ``.skipped``).
    Images whose shorter side is below ``image_size / 4`` are listed in one :class:`SmallImageWarning`
    line (``.small_images``); 32-bit integer or float images whose value range had to be guessed, in one
    :class:`PixelRangeWarning` line (``.pixel_notes``).
    Raises :class:`DatasetError` for a missing path, an unknown name, an empty class folder, a split
    without images, or class folders that differ between splits.
    """
    if limit is not None and limit <= 0:
        raise DatasetError(f"limit must be a positive number of images, got {limit}")
    if image_size is not None and image_size < 1:
        raise DatasetError(f"image_size must be a positive number of pixels, got {image_size}")
    if split not in _SPLIT_CHOICES:
        raise DatasetError(f"unknown split {split!r}: use train or test (val/valid are aliases of test)")
    cache_root = resolve_cache_dir(cache_dir)
    source = _resolve_source(spec, cache_root, download, progress)
    if isinstance(source, cifar.CifarSource):
        ds = _open_cifar(source, split, image_size, cache_root, limit, progress)
        if class_names is not None:  # CIFAR's batches name their classes; only an explicit file renames them
            ds.classes = display_names(source.path, ds.class_folders, class_names)
    else:
        ds = _open_folder(source, split, image_size, cache_root, limit, progress, workers, class_names)
    if ds.skipped:
        warnings.warn(_skipped_line(ds), BadImageWarning, stacklevel=2)
    if ds.small_images:
        warnings.warn(_small_line(ds), SmallImageWarning, stacklevel=2)
    if ds.pixel_notes:
        warnings.warn(_notes_line(ds), PixelRangeWarning, stacklevel=2)
    return ds


def dataset_splits(spec: str | os.PathLike) -> list[str]:
    """The splits ``spec`` has, as accepted by :func:`open_dataset` (e.g. ["train", "test"]). No decoding."""
    path = Path(spec).expanduser()
    if path.is_dir() and cifar.detect(path) is None:
        return [s for s in SPLIT_FOLDERS if (path / s).is_dir()]
    return ["train", "test"]


# --------------------------------------------------------------------------------------------------------
# Which dataset is meant


def _resolve_source(spec, cache_root: Path, download: bool, progress: ProgressFn | None):
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.exists():
        source = cifar.detect(path)
        if source is not None:
            return source
        if path.is_dir():
            return path
        raise DatasetError(
            f"{path} is not a dataset: expected an image folder root/{{train,test}}/<class>/*.jpg, a "
            "cifar-10-batches-py or cifar-10-batches-bin folder, or a .tar.gz of one"
        )
    if text.lower().replace("-", "") in NAMED_DATASETS:
        source = cifar.find_local(cache_root)
        if source is not None:
            return source
        if not download:
            raise DatasetError(
                f"cifar10: no local copy in {cache_root} (downloading is off); " + cifar.where_to_put(cache_root)
            )
        return cifar.download(cache_root, progress)
    if os.sep not in text and "/" not in text and not Path(text).suffix:
        known = ", ".join(NAMED_DATASETS)
        raise DatasetError(f"unknown dataset {text!r}: not a known name ({known}) nor an existing path")
    raise DatasetError(f"dataset path not found: {path}")


# --------------------------------------------------------------------------------------------------------
# CIFAR-10 batches


def _open_cifar(source: cifar.CifarSource, split: str, image_size, cache_root: Path, limit, progress) -> ImageDataset:
    split = "train" if split == "train" else "test"
    size = image_size or 32
    stored = min(size, 32)  # keep native pixels; only shrink when the model wants less than 32 px
    fit = Fit(stored, stored)
    key = digest({"v": PREPROCESS_VERSION, "source": f"cifar10-{source.kind}", "split": split,
                  "files": source.fingerprint(split), "fit": fit.describe(), "limit": limit})
    slot = _slot_path(cache_root, f"cifar10-{source.kind}", split, fit, limit, str(source.path.resolve()))
    train_pixels = None
    contents, why = read_cache(slot, key)
    decoded = False
    if contents is None:
        with slot_lock(slot):
            contents, why = read_cache(slot, key)  # another process may have built it while we waited
            if contents is None:
                _log_rebuild(slot, why)
                start = time.perf_counter()
                images, labels, classes = source.read(split)
                if split == "train" and limit is None:
                    train_pixels = images
                keep = select_limit(labels, limit)
                images, labels = images[keep], labels[keep]
                writer = CacheWriter(slot, len(labels), stored, stored)
                try:
                    if stored == 32:
                        writer.images[:] = images
                    else:
                        for i, img in enumerate(images):
                            writer.images[i] = _fit_array(img, fit)
                    writer.finish(np.ones(len(labels), bool), labels,
                                  {"key": key, "classes": classes, "skipped": [], "reasons": {},
                                   "dataset": str(source.path.resolve()), "split": split})
                except BaseException:
                    writer.abort()
                    raise
                decoded = True
                if progress is not None:
                    progress(len(labels), len(labels))
                log.info("cifar10 %s: %d images cached in %.1fs -> %s",
                         split, len(labels), time.perf_counter() - start, slot)
                contents, why = read_cache(slot, key)
                if contents is None:  # pragma: no cover - only if the disk changed under us
                    raise DatasetError(f"the cache just written to {slot} cannot be read back ({why})")
    mean, std = _cifar_stats(source, cache_root, train_pixels)
    return ImageDataset(
        images=contents.images, labels=contents.labels, classes=list(contents.meta["classes"]),
        mean=mean, std=std, image_size=size, root=source.path, split=split,
        source=f"cifar10-{source.kind}", cache_path=slot, decoded=decoded,
        class_folders=list(contents.meta["classes"]),
    )


def _cifar_stats(source: cifar.CifarSource, cache_root: Path, train_pixels: np.ndarray | None):
    """Exact per-channel mean/std over all CIFAR-10 training images (cached; computed once)."""
    key = digest({"v": PREPROCESS_VERSION, "stats": "cifar10-all", "files": source.fingerprint("train")})

    def compute():
        pixels = train_pixels if train_pixels is not None else source.read("train")[0]
        return _array_stats(pixels)

    return _cached_stats(cache_root, key, compute, source.path)


def _array_stats(images: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std in [0, 1] of images[rows] (uint8 (N, H, W, 3)), exact integer sums, in chunks."""
    rows = np.arange(len(images)) if rows is None else rows
    _, h, w, _ = images.shape
    chunk = max(1, (16 << 20) // (h * w * 3))  # uint32 squares of 16 MB of pixels at a time
    total = np.zeros(3, dtype=np.uint64)
    total_sq = np.zeros(3, dtype=np.uint64)
    for start in range(0, len(rows), chunk):
        flat = np.asarray(images[rows[start : start + chunk]]).reshape(-1, 3)
        total += flat.sum(0, dtype=np.uint64)
        total_sq += (flat.astype(np.uint32) ** 2).sum(0, dtype=np.uint64)
    count = len(rows) * h * w
    mean = total / count
    return mean / 255.0, np.sqrt(np.maximum(total_sq / count - mean**2, 0.0)) / 255.0


def _fit_array(img: np.ndarray, fit: Fit) -> np.ndarray:
    side = fit.crop
    return np.asarray(Image.fromarray(img).resize((side, side), Image.BILINEAR), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------------
# Image folders


@dataclass
class _Listing:
    folder: Path
    classes: list[str]
    paths: list[str]  # absolute, sorted by (class, relative path)
    labels: np.ndarray  # int64
    fingerprint: list  # [relative path, size, mtime_ns] per file


def _open_folder(root: Path, split: str, image_size, cache_root: Path, limit, progress, workers,
                 class_names) -> ImageDataset:
    present = [s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    if not present:
        raise DatasetError(_no_split_message(root))
    folder = next((s for s in _SPLIT_CHOICES[split] if s in present), None)
    if folder is None:
        raise DatasetError(
            f"{root} has no {split} split: looked for {', '.join(f'{s}/' for s in _SPLIT_CHOICES[split])} "
            f"(found {', '.join(f'{s}/' for s in present)})"
        )
    listing = _scan_split(root / folder)
    # the class lists of train and of the evaluation split must agree (labels are indices into them)
    eval_folder = next((s for s in _SPLIT_CHOICES["test"] if s in present), None)
    for other in {"train" if "train" in present else None, eval_folder} - {None, folder}:
        _check_same_classes(listing, root / other)
    train = listing if folder == "train" else (_scan_split(root / "train") if "train" in present else listing)

    train_native = sniff_square_size(train.paths)
    size = image_size or train_native or DEFAULT_IMAGE_SIZE
    native = train_native if train is listing else sniff_square_size(listing.paths)
    fit = _folder_fit(size, native, is_train=folder == "train")

    keep_files = select_limit(listing.labels, limit)
    paths = [listing.paths[i] for i in keep_files]
    labels = listing.labels[keep_files]
    key = digest({"v": PREPROCESS_VERSION, "source": "image-folder", "split": folder, "fit": fit.describe(),
                  "classes": listing.classes, "files": [listing.fingerprint[i] for i in keep_files],
                  "max_pixels": Image.MAX_IMAGE_PIXELS})
    slot = _slot_path(cache_root, root.resolve().name, folder, fit, limit, str(root.resolve()))
    contents, why = read_cache(slot, key)
    decoded = False
    if contents is None:
        with slot_lock(slot):
            contents, why = read_cache(slot, key)
            if contents is None:
                _log_rebuild(slot, why)
                _build_folder_cache(slot, key, root / folder, listing.classes, paths, labels, fit, progress, workers)
                decoded = True
                contents, why = read_cache(slot, key)
                if contents is None:  # pragma: no cover
                    raise DatasetError(f"the cache just written to {slot} cannot be read back ({why})")
    train_fit = _folder_fit(size, train_native, is_train=True)
    full_train = contents if folder == "train" and limit is None else None
    mean, std = _folder_stats(train, train_fit, cache_root, workers, full_train)
    meta = contents.meta
    small = {path: (w, h) for path, (w, h) in meta["upscaled"].items() if min(w, h) * SMALL_FRACTION < size}
    return ImageDataset(
        images=contents.images, labels=contents.labels, classes=display_names(root, meta["classes"], class_names),
        mean=mean, std=std, image_size=size, root=root, split=folder, source="image-folder", cache_path=slot,
        skipped=list(meta["skipped"]), skipped_reasons=dict(meta["reasons"]), decoded=decoded,
        class_folders=list(meta["classes"]), small_images=small, pixel_notes=dict(meta["notes"]),
    )


def _folder_fit(size: int, native: int | None, *, is_train: bool) -> Fit:
    """The one preprocessing an image folder's split is cached with (see the module doc)."""
    photo = size > SMALL_IMAGE_MAX
    outer = round(size * TRAIN_CACHE_SCALE) if photo else size
    if native is not None and native <= (outer if is_train else size):
        return Fit(native, native)
    return Fit(outer, outer) if is_train else Fit(outer, size)


def _build_folder_cache(slot, key, folder: Path, classes, paths, labels, fit: Fit, progress, workers) -> None:
    start = time.perf_counter()
    log.info("decoding %d images from %s into %s", len(paths), folder, slot)
    writer = CacheWriter(slot, len(paths), fit.crop, fit.crop)
    try:
        result = decode_files(paths, fit, out_path=str(writer.tmp_path), out_offset=DATA_OFFSET,
                              workers=workers, progress=progress)
        keep = np.ones(len(paths), dtype=bool)
        keep[list(result.failures)] = False
        counts = np.bincount(labels[keep], minlength=len(classes))
        if (counts == 0).any():
            empty = [c for c, n in zip(classes, counts) if n == 0]
            raise DatasetError(f"{folder}: no readable images left in class folder(s) {', '.join(empty)} "
                               f"({len(result.failures)} file(s) could not be decoded)")
        bad = sorted(result.failures)
        writer.finish(keep, labels[keep], {
            "key": key, "classes": classes, "skipped": [paths[i] for i in bad],
            "dataset": str(folder.parent.resolve()), "split": folder.name,
            "reasons": {paths[i]: result.failures[i] for i in bad}, "fit": fit.describe(),
            # files upscaled into the cache (shorter side < crop): the small-image warning filters them by
            # the image_size asked for when opened, which the cache key does not always pin down
            "upscaled": {paths[i]: list(wh) for i, wh in sorted(result.upscaled.items())},
            "notes": {paths[i]: note for i, note in sorted(result.notes.items())},
        })
    except BaseException:
        writer.abort()
        raise
    log.info("decoded %d images in %.1fs", len(paths), time.perf_counter() - start)


def _folder_stats(train: _Listing, fit: Fit, cache_root: Path, workers, train_cache: CacheContents | None):
    """Mean/std of up to STATS_SAMPLE training images, evenly spaced, preprocessed as cached for training.

    Read from the training cache when it holds every training file, else decoded; both give the same
    numbers (exact integer sums over the same pixels).
    """
    picks = np.unique(np.linspace(0, len(train.paths) - 1, min(STATS_SAMPLE, len(train.paths))).round().astype(int))
    key = digest({"v": PREPROCESS_VERSION, "stats": "image-folder", "fit": fit.describe(),
                  "files": [train.fingerprint[i] for i in picks], "max_pixels": Image.MAX_IMAGE_PIXELS})

    def compute():
        if train_cache is not None:
            skipped = set(train_cache.meta["skipped"])
            kept = np.array([p not in skipped for p in train.paths])
            rows = (np.cumsum(kept) - 1)[picks[kept[picks]]]  # cache row of each readable pick
            if len(rows):
                return _array_stats(train_cache.images, rows)
        result = decode_files([train.paths[i] for i in picks], fit, stats=True, workers=workers)
        if result.mean is None:
            raise DatasetError(f"{train.folder}: none of the sampled training images could be decoded")
        return result.mean, result.std

    return _cached_stats(cache_root, key, compute, train.folder.parent)


def _cached_stats(cache_root: Path, key: str, compute, dataset: Path) -> tuple[tuple, tuple]:
    path = cache_root / "decoded" / f"stats-{key[:24]}.json"
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return tuple(saved["mean"]), tuple(saved["std"])
    except (OSError, ValueError, KeyError):
        pass
    mean, std = compute()
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"key": key, "mean": mean, "std": std, "dataset": str(dataset.resolve())})
    except OSError as exc:  # full or read-only disk: the numbers are right, they are just measured again next time
        log.warning("could not save the dataset statistics to %s (%s)", path, exc.strerror or exc)
    return mean, std


def _scan_split(folder: Path) -> _Listing:
    """Class folders (sorted) and their image files (sorted, recursively); errors for empty ones."""
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        loose = [e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
        hint = f" ({len(loose)} images lie directly in it: put each class in its own subfolder)" if loose else ""
        raise DatasetError(
            f"no images in split {folder}: it has no class folders{hint}; expected {folder}/<class>/*.jpg"
        )
    paths: list[str] = []
    labels: list[int] = []
    fingerprint: list = []
    empty: list[str] = []
    for index, name in enumerate(classes):
        files = _image_files(os.path.join(folder, name), name)
        if not files:
            empty.append(name)
            continue
        for path, rel, st in files:
            paths.append(path)
            labels.append(index)
            fingerprint.append([rel, st.st_size, st.st_mtime_ns])
    if not paths:
        raise DatasetError(f"no images in split {folder}: its class folders ({', '.join(classes)}) are all empty "
                           f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
    if empty:
        raise DatasetError(f"empty class folder(s) in {folder}: {', '.join(empty)} (no {'/'.join(IMAGE_EXTENSIONS)} "
                           "files); remove them or add images")
    return _Listing(folder, classes, paths, np.asarray(labels, dtype=np.int64), fingerprint)


def _image_files(folder: str, rel: str) -> list[tuple[str, str, os.stat_result]]:
    """(path, path relative to the split, stat) of image files under ``folder``, recursively, sorted."""
    found = []
    with os.scandir(folder) as entries:
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir():
                found += _image_files(e.path, f"{rel}/{e.name}")
            elif e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file():
                found.append((e.path, f"{rel}/{e.name}", e.stat()))
    found.sort(key=lambda item: item[1])
    return found


def _check_same_classes(listing: _Listing, other: Path) -> None:
    theirs = sorted(e.name for e in os.scandir(other) if e.is_dir() and not e.name.startswith("."))
    if theirs != listing.classes:
        a, b = listing.folder.name, other.name
        only_a = sorted(set(listing.classes) - set(theirs))
        only_b = sorted(set(theirs) - set(listing.classes))
        raise DatasetError(
            f"class folders differ between {a}/ and {b}/ in {listing.folder.parent}: "
            f"only in {a}/: {only_a or 'none'}; only in {b}/: {only_b or 'none'}"
        )


def _no_split_message(root: Path) -> str:
    has_class_images = any(
        e.is_dir() and any(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(e.path)) for e in os.scandir(root)
    )
    if has_class_images:
        return (f"{root} looks like a single split (class folders directly inside): pass its parent, or arrange "
                f"it as {root}/train/<class>/ and {root}/test/<class>/")
    return f"{root} has no train/, test/, val/ or valid/ folder (expected root/<split>/<class>/*.jpg)"


# --------------------------------------------------------------------------------------------------------
# Shared helpers


def select_limit(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Sorted indices of a class-balanced subset of ``limit`` items (round-robin over classes, file order)."""
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rank = np.empty(n, dtype=np.int64)  # position of each item within its class, in file order
    rank[order] = np.arange(n) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    picked = np.lexsort((labels, rank))[:limit]  # by rank, then by class
    return np.sort(picked)


def _slot_path(cache_root: Path, name: str, split: str, fit: Fit, limit: int | None, where: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "dataset"
    tag = f"-first{limit}" if limit is not None else ""
    place = digest([where, split, fit.describe()])[:10]
    return cache_root / "decoded" / f"{safe}-{split}-{fit.crop}px{tag}-{place}.lzc"


def _log_rebuild(slot: Path, why: str) -> None:
    if slot.exists():
        log.warning("image cache %s is out of date (%s): rebuilding it", slot, why)


def _skipped_line(ds: ImageDataset) -> str:
    base = Path(ds.root) / ds.split
    items = []
    for path in ds.skipped[:_MAX_LISTED]:
        try:
            shown = os.path.relpath(path, base)
        except ValueError:  # pragma: no cover - other drive on Windows
            shown = path
        items.append(f"{shown} ({ds.skipped_reasons.get(path, 'unreadable')})")
    more = f" ... and {len(ds.skipped) - _MAX_LISTED} more (see .skipped)" if len(ds.skipped) > _MAX_LISTED else ""
    return f"{base}: skipped {len(ds.skipped)} unreadable image file(s): {', '.join(items)}{more}"


def _listed(ds: ImageDataset, paths: list[str], describe) -> str:
    base = Path(ds.root) / ds.split
    shown = [f"{os.path.relpath(p, base)} ({describe(p)})" for p in paths[:_MAX_LISTED]]
    more = f" ... and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else ""
    return ", ".join(shown) + more


def _small_line(ds: ImageDataset) -> str:
    paths = sorted(ds.small_images)
    items = _listed(ds, paths, lambda p: "x".join(map(str, ds.small_images[p])))
    return (f"{Path(ds.root) / ds.split}: {len(paths)} image(s) far smaller than the training size "
            f"{ds.image_size} px (shorter side < {ds.image_size / SMALL_FRACTION:g} px) become blurry or flat "
            f"tiles (see .small_images): {items}")


def _notes_line(ds: ImageDataset) -> str:
    paths = sorted(ds.pixel_notes)
    return (f"{Path(ds.root) / ds.split}: guessed the value range of {len(paths)} 32-bit integer/float "
            f"image(s) (see .pixel_notes): {_listed(ds, paths, ds.pixel_notes.get)}")
