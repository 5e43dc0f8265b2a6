"""Decode image files into fixed-size uint8 arrays, in parallel, straight into a cache file.

Every image goes through one deterministic preprocessing (:class:`Fit`): scale so the shorter side is
``resize`` px, then take the centred ``crop`` x ``crop`` square — a single PIL resample with a source box.
An image that is already ``crop`` x ``crop`` with ``resize == crop`` is copied untouched (CIFAR pixels stay
exact).

Bad files never become grey or black rows: each failure is reported as ``(index, reason)`` and the caller
drops the row.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_EXIF_ORIENTATION = 0x0112
_CHUNK_BYTES = 8 << 20  # decoded pixels per worker task: big enough to amortise IPC, small enough to balance


@dataclass(frozen=True)
class Fit:
    """Resize the shorter side to ``resize`` px, then centre-crop a ``crop`` x ``crop`` square."""

    resize: int
    crop: int

    def describe(self) -> dict[str, int]:
        return {"resize": self.resize, "crop": self.crop}


class BadImage(Exception):
    """A file that is not a usable image; the message is the short reason shown to the user."""


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Loaded:
    """One decoded file: the tile, the file's own size, and a note when its pixel range had to be guessed."""

    pixels: np.ndarray  # uint8 (fit.crop, fit.crop, 3)
    size: tuple[int, int]  # (width, height) before any resizing
    note: str | None = None


def load_image(path: str, fit: Fit, max_pixels: int | None) -> Loaded:
    """Decode one file to uint8 (fit.crop, fit.crop, 3) RGB, or raise :class:`BadImage` with the reason."""
    try:
        if os.path.getsize(path) == 0:
            raise BadImage("empty file (0 bytes)")
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; we refuse everything over the limit ourselves
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # "Corrupt EXIF data", "Tag data larger than file", ...: the file decodes or is a BadImage,
            # either way the user hears about it once, from us (not once per file from each worker)
            warnings.filterwarnings("ignore", module=r"PIL\.")
            with Image.open(path) as im:
                w, h = im.size
                if w < 1 or h < 1:
                    raise BadImage(f"{w}x{h} image has no pixels")
                if max_pixels is not None and w * h > max_pixels:
                    raise BadImage(f"{w}x{h} is over Pillow's decompression-bomb limit of {max_pixels} pixels")
                scale = fit.resize / min(w, h)
                if scale < 0.5 and im.format == "JPEG":
                    # let libjpeg decode at 1/2, 1/4 or 1/8 scale (never below the size we resample to)
                    im.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
                im.load()
                if im.getexif().get(_EXIF_ORIENTATION, 1) != 1:  # phone photos: rotate as viewers do
                    im = ImageOps.exif_transpose(im)
                rgb, note = to_rgb8(im)
                return Loaded(_fit(rgb, fit), (w, h), note)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"over Pillow's decompression-bomb limit ({exc})") from None
    except UnidentifiedImageError:
        raise BadImage("not a readable image (unknown or corrupt format)") from None
    except OSError as exc:
        text = str(exc)
        raise BadImage("truncated image" if "truncated" in text else f"corrupt image ({text})") from None
    except MemoryError:
        raise BadImage("corrupt image (claims more pixels than fit in memory)") from None
    except Exception as exc:  # noqa: BLE001 - damaged files make Pillow's format plugins raise ValueError and
        # SyntaxError (seen in tests/test_fuzz_decode.py) and, in some Pillow versions, struct.error, IndexError
        # or TypeError: in a decoder of untrusted bytes each means "not a usable image", never a crash
        raise BadImage(f"corrupt image ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------------------------------
# Pixel modes -> 8-bit RGB. Decided once, documented in docs/data.md:
# * transparency (LA, PA, RGBA, P with a transparent colour, La, RGBa) is composited over WHITE, as image
#   viewers and browsers show it: out = round((c * a + 255 * (255 - a)) / 255);
# * 16-bit data (I;16, I;16B, I;16L, I;16N) is scaled, not clipped: out = round(v / 257) (65535 -> 255);
# * I (32-bit int) is taken as 16-bit data 0..65535 (what 16-bit PGM/TIFF decode to); values outside that
#   range are stretched min..max -> 0..255, and all values <= 255 look like 8-bit data: both get a note;
# * F (32-bit float) is taken as 0..1; values outside [0, 1] are stretched min..max with a note; NaN or
#   infinity make the file a bad image;
# * CMYK, YCbCr: Pillow's conversions (CMYK: r = (255 - c) * (255 - k) / 255; YCbCr: JPEG's BT.601 full range);
# * LAB (CIE L*a*b*, D50, as Pillow stores it: L 0..255 = 0..100, a/b offset by 128): littleCMS to sRGB.

_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def to_rgb8(im: Image.Image) -> tuple[Image.Image, str | None]:
    """``im`` as an 8-bit RGB image (see the rules above), and a note when its value range was a guess."""
    mode = im.mode
    if mode == "RGB":
        return im, None
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint32)  # (H, W, 4)
        alpha = rgba[..., 3:]
        out = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255  # exact rounding of the blend
        return Image.fromarray(out.astype(np.uint8), "RGB"), None
    if mode in _SIXTEEN_BIT:
        v = np.asarray(im).astype(np.uint32)  # (H, W), any byte order
        return _gray(((2 * v + 257) // 514).astype(np.uint8)), None  # round(v / 257)
    if mode == "I":
        return _int32_to_rgb(np.asarray(im).astype(np.int64))
    if mode == "F":
        return _float_to_rgb(np.asarray(im).astype(np.float64))
    if mode == "LAB":
        return _lab_to_srgb(im), None
    try:
        return im.convert("RGB"), None  # 1, L, P, CMYK, YCbCr, RGBX, HSV
    except ValueError as exc:
        raise BadImage(f"unsupported pixel mode {mode} ({exc})") from None


def _gray(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(values[..., None], 3, axis=2), "RGB")


def _stretch(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.rint((v - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _int32_to_rgb(v: np.ndarray) -> tuple[Image.Image, str | None]:
    lo, hi = int(v.min()), int(v.max())
    if lo < 0 or hi > 65535:
        if hi == lo:
            return _gray(np.zeros(v.shape, np.uint8)), f"32-bit integer image of constant value {lo}: shown black"
        return _gray(_stretch(v, lo, hi)), f"32-bit integer values {lo}..{hi} outside 0..65535: stretched to 0..255"
    note = None
    if 0 < hi <= 255:
        note = f"32-bit integer values all within 0..{hi}: taken as 16-bit data (dark); convert 8-bit data to mode L"
    return _gray(((2 * v + 257) // 514).astype(np.uint8)), note


def _float_to_rgb(v: np.ndarray) -> tuple[Image.Image, str | None]:
    if not np.isfinite(v).all():
        raise BadImage("float image with NaN or infinite values")
    lo, hi = float(v.min()), float(v.max())
    if lo >= 0.0 and hi <= 1.0:
        return _gray(np.rint(v * 255.0).astype(np.uint8)), None
    if hi == lo:
        return _gray(np.full(v.shape, 255 if lo > 1 else 0, np.uint8)), f"float image of constant value {lo:g}"
    return _gray(_stretch(v, lo, hi)), f"float values {lo:g}..{hi:g} outside 0..1: stretched to 0..255"


@functools.lru_cache(maxsize=1)
def _lab_transform():
    from PIL import ImageCms  # littleCMS; only LAB files need it

    return ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")


def _lab_to_srgb(im: Image.Image) -> Image.Image:
    from PIL import ImageCms

    return ImageCms.applyTransform(im, _lab_transform())


def _fit(im: Image.Image, fit: Fit) -> np.ndarray:
    w, h = im.size
    if (w, h) == (fit.crop, fit.crop) and fit.resize == fit.crop:
        return np.asarray(im, dtype=np.uint8)
    side = fit.crop * min(w, h) / fit.resize  # the crop's side in source pixels
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    return np.asarray(im.resize((fit.crop, fit.crop), Image.BILINEAR, box=box), dtype=np.uint8)


def sniff_square_size(paths: Sequence[str], sample: int = 32) -> int | None:
    """The side length if a spread-out sample of files are all the same square size, else None.

    Reads headers only. Used to keep uniform small images (e.g. a CIFAR JPEG folder) at native size.
    """
    if not paths:
        return None
    picks = np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).round().astype(int))
    sizes = set()
    for i in picks:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(paths[i]) as im:
                    sizes.add(im.size)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # bad files are reported by the decoder
        if len(sizes) > 1:
            return None
    if len(sizes) == 1:
        w, h = sizes.pop()
        return w if w == h else None
    return None


# --------------------------------------------------------------------------------------------------------
# Parallel decoding. Workers write rows into the cache's temp file through their own memmap, so only the
# file names and the failures cross process boundaries, never pixels.

_worker_out: dict[str, np.memmap] = {}


def _worker_init(max_pixels: int | None, out_path: str | None, shape: tuple[int, ...], offset: int) -> None:
    # decode truncated files as errors, whatever the parent process set
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    _worker_out.clear()
    if out_path is not None:
        _worker_out["rows"] = np.memmap(out_path, dtype=np.uint8, mode="r+", offset=offset, shape=shape)


def _decode_chunk(paths: Sequence[str], start: int, fit: Fit, max_pixels: int | None, stats: bool):
    """Decode paths[k] into row start+k.

    Returns (failures [(row, reason)], notes [(row, note)], upscaled [(row, (w, h))] for files whose shorter
    side is below fit.crop, channel sum, sum of squares, n).
    """
    rows = _worker_out.get("rows")
    failures: list[tuple[int, str]] = []
    notes: list[tuple[int, str]] = []
    upscaled: list[tuple[int, tuple[int, int]]] = []
    total = np.zeros(3, dtype=np.uint64)  # exact integer sums: the same numbers however the work is split
    total_sq = np.zeros(3, dtype=np.uint64)
    count = 0
    for k, path in enumerate(paths):
        try:
            loaded = load_image(path, fit, max_pixels)
        except BadImage as exc:
            failures.append((start + k, str(exc)))
            continue
        if loaded.note is not None:
            notes.append((start + k, loaded.note))
        if min(loaded.size) < fit.crop:
            upscaled.append((start + k, loaded.size))
        pixels = loaded.pixels
        if rows is not None:
            rows[start + k] = pixels
        if stats:
            flat = pixels.reshape(-1, 3)
            total += flat.sum(0, dtype=np.uint64)
            total_sq += (flat.astype(np.uint32) ** 2).sum(0, dtype=np.uint64)
            count += flat.shape[0]
    if rows is not None:
        rows.flush()
    return failures, notes, upscaled, total, total_sq, count


@dataclass
class DecodeResult:
    failures: dict[int, str]  # row -> reason
    notes: dict[int, str] = field(default_factory=dict)  # row -> how its value range was guessed (I, F modes)
    upscaled: dict[int, tuple[int, int]] = field(default_factory=dict)  # row -> (w, h) when shorter side < crop
    mean: np.ndarray | None = None  # per channel, in [0, 1] (when stats were asked for)
    std: np.ndarray | None = None


def decode_files(
    paths: Sequence[str],
    fit: Fit,
    *,
    out_path: str | None = None,
    out_offset: int = 0,
    stats: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DecodeResult:
    """Decode ``paths`` into rows 0..N-1 of the uint8 (N, crop, crop, 3) array stored in ``out_path`` at
    ``out_offset`` (and/or only compute per-channel mean/std with ``stats=True``).

    Runs in ``workers`` processes (default: the CPUs this process may use); small jobs run in-process.
    """
    n = len(paths)
    max_pixels = Image.MAX_IMAGE_PIXELS  # read here so a limit set by the caller reaches every worker
    shape = (n, fit.crop, fit.crop, 3)
    chunk = max(16, min(1024, _CHUNK_BYTES // (fit.crop * fit.crop * 3)))
    tasks = [(list(paths[s : s + chunk]), s) for s in range(0, n, chunk)]
    workers = default_workers() if workers is None else max(1, workers)
    workers = min(workers, len(tasks))
    failures: dict[int, str] = {}
    notes: dict[int, str] = {}
    upscaled: dict[int, tuple[int, int]] = {}
    total = np.zeros(3, dtype=np.uint64)
    total_sq = np.zeros(3, dtype=np.uint64)
    count = 0
    done = 0

    def collect(result, size: int) -> None:
        nonlocal total, total_sq, count, done
        fails, noted, small, s, sq, c = result
        failures.update(fails)
        notes.update(noted)
        upscaled.update(small)
        total, total_sq, count = total + s, total_sq + sq, count + c
        done += size
        if progress is not None:
            progress(done, n)

    if workers <= 1 or n < 64:
        _worker_init(max_pixels, out_path, shape, out_offset)
        try:
            for chunk_paths, start in tasks:
                collect(_decode_chunk(chunk_paths, start, fit, max_pixels, stats), len(chunk_paths))
        finally:
            _worker_out.clear()
    else:
        # fork is fast and the children only run PIL/numpy; elsewhere the platform default (spawn)
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(max_pixels, out_path, shape, out_offset)) as pool:
            pending = {pool.submit(_decode_chunk, p, s, fit, max_pixels, stats): len(p) for p, s in tasks}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        collect(future.result(), pending.pop(future))
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    result = DecodeResult(failures=failures, notes=notes, upscaled=upscaled)
    if stats and count:
        mean = total / count
        result.mean = mean / 255.0
        result.std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0)) / 255.0
    return result
