"""Run an exported litezoo model without PyTorch: numpy + Pillow + ONNX Runtime only.

An edge box needs ``pip install --no-deps litezoo`` and the ``runtime`` extra (numpy, pillow, onnxruntime)::

    from litezoo.runtime import OnnxClassifier, predict_files
    clf = OnnxClassifier("shufflenet.onnx")                 # preprocessing read from the file's metadata
    result = predict_files(clf, ["cat.jpg", "dog.png"], topk=3)

This module must never import torch (a test runs it in a venv that has none): everything it needs — the
input size, resize/crop, mean/std and class names — travels inside the ONNX file as the ``litezoo`` metadata
entry written by ``litezoo export``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import itertools
import json
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from litezoo.data.decode import to_rgb8
from litezoo.errors import InputError
from litezoo.machine import cpu_model_and_flags, usable_cpus

METADATA_KEY = "litezoo"  # the ONNX metadata_props entry holding the JSON preprocessing record
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# An image smaller than this fraction of the model's input side is refused (not upscaled): it says the images
# and the model do not belong together (e.g. 32 px CIFAR images fed to a 224 px network).
MIN_SIDE_FRACTION = 0.5
RUNTIMES = ("ort", "openvino")
# OpenVINO's Python binding initialises a function-local static on a request's first input copy while it has let go
# of the GIL: two threads making their first call at once deadlock (one holds the GIL and waits on the static's
# guard, the other holds the guard and waits for the GIL; seen on a 2-core Zen 5 with 2 prediction lanes). The
# first OpenVINO inference of each thread therefore runs alone; every later call runs side by side as before.
_OV_FIRST_CALL = threading.Lock()
_EXIF_ORIENTATION = 0x0112


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing (the eval transform of litezoo.data, re-done with Pillow + numpy)


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize`` px, centre-crop ``crop`` px, scale to [0, 1], normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """One file as uint8 (crop, crop, 3) RGB; raises :class:`BadImageFile` for an unreadable file."""
        path = str(path)
        try:
            with Image.open(path) as im:
                w, h = im.size
                scale = self.resize / min(w, h)
                if scale < 0.5 and im.format == "JPEG":
                    # reduce-on-load: libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below what we resample to
                    im.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
                im.load()
                if im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                    im = ImageOps.exif_transpose(im)
                return self.fit(to_rgb8(im)[0])  # the training cache's rule for every Pillow mode
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
            reason = "not a readable image" if isinstance(exc, UnidentifiedImageError) else f"corrupt image ({exc})"
            raise BadImageFile(f"{path}: {reason}") from None

    def fit(self, im: Image.Image) -> np.ndarray:
        """Shorter side -> resize, centre crop -> (crop, crop, 3) uint8, in one Pillow resample with a box."""
        w, h = im.size
        if (w, h) == (self.crop, self.crop) and self.resize == self.crop:
            return np.asarray(im, dtype=np.uint8)
        side = self.crop * min(w, h) / self.resize  # the crop's side in source pixels
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        return np.asarray(im.resize((self.crop, self.crop), Image.BILINEAR, box=box), dtype=np.uint8)

    @functools.cached_property
    def _scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 (3,) each: (x / 255 - mean) / std == x * scale + shift."""
        std = np.asarray(self.std, dtype=np.float32)
        return 1.0 / (255.0 * std), -np.asarray(self.mean, dtype=np.float32) / std

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, 3, H, W), (x / 255 - mean) / std."""
        out = np.empty((pixels.shape[0], 3, *pixels.shape[1:3]), dtype=np.float32)
        for i in range(len(pixels)):
            self.normalise_into(pixels[i], out[i])
        return out

    def normalise_into(self, pixels: np.ndarray, out: np.ndarray) -> None:
        """One image: uint8 (H, W, 3) -> ``out`` float32 (3, H, W) in place (a slot of the batch buffer).

        Channel by channel, straight into the output plane: no float (H, W, 3) temporary and no transpose
        copy (5-10x faster than the whole-batch astype/transpose, measured; the same float32 values).
        """
        scale, shift = self._scale_shift
        for c in range(3):
            np.multiply(pixels[..., c], scale[c], out=out[c], dtype=np.float32)
            out[c] += shift[c]


class BadImageFile(Exception):
    """An unreadable image; the message names the file and the reason (it is skipped, not fatal)."""


# ---------------------------------------------------------------------------------------------------------------
# The exported model


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The litezoo record of an exported ``.onnx`` file (raises InputError for a missing/corrupt/foreign file)."""
    return _open_session(Path(path), threads=None)[1]


def _open_session(path: Path, threads: int | None):
    import onnxruntime as ort

    if not path.is_file():
        raise InputError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    opts = ort.SessionOptions()
    if threads:
        # per-session: ONNX Runtime's own pool, nothing global changes
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 — ORT raises its own (Fail, InvalidProtobuf, ...) types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} is not a readable ONNX model ({first[:200]})") from None
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise InputError(f"{path} has no litezoo metadata (input size, mean/std, classes): export it with "
                         f"`litezoo export`")  # fmt: skip
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise InputError(f"{path} has corrupt litezoo metadata") from None
    return session, meta


class OnnxClassifier:
    """An exported classifier: ``logits(x)`` for normalised (N, 3, H, W) float32 input.

    ``runtime``: "ort" (ONNX Runtime, the torch-free default) or "openvino" (the optional ``openvino`` package,
    which reads the same .onnx file; compiled for ``batch`` images per call, its CPU default precision).
    ``logits`` may be called from ``streams`` threads at once: ONNX Runtime sessions allow concurrent calls;
    OpenVINO gets ``streams`` CPU streams (``threads`` each) and one infer request per calling thread.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, runtime: str = "ort",
                 batch: int = 32, streams: int = 1):  # fmt: skip
        if runtime not in RUNTIMES:
            raise InputError(f"unknown runtime {runtime!r}: choose from {', '.join(RUNTIMES)}")
        self.path = Path(path)
        self.session, self.meta = _open_session(self.path, threads)
        self.threads, self.runtime = threads, runtime
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.classes: list[str] = list(self.meta["classes"])
        size = int(self.meta["image_size"])
        h, w = inp.shape[2], inp.shape[3]
        if (isinstance(h, int) and h != size) or (isinstance(w, int) and w != size):
            raise InputError(f"{self.path}: the graph takes {h}x{w} px but its metadata says {size} px")
        batch_dim = inp.shape[0]
        self.fixed_batch: int | None = batch_dim if isinstance(batch_dim, int) else None
        self.preprocess = Preprocess(int(self.meta.get("resize", size)), size,
                                     tuple(self.meta["mean"]), tuple(self.meta["std"]))  # fmt: skip
        self._run = self._ort_run
        if runtime == "openvino":
            try:
                import openvino as ov
            except ImportError:
                raise InputError("runtime openvino: the openvino package is not installed") from None
            core = ov.Core()
            model = core.read_model(str(self.path))
            self.fixed_batch = self.fixed_batch or batch
            model.reshape([self.fixed_batch, int(self.meta.get("in_chans", 3)), size, size])
            config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads * streams} if threads else {}
            if streams > 1:
                config["NUM_STREAMS"] = streams  # requests from different threads run side by side
            self._compiled = core.compile_model(model, "CPU", config)
            self._local = threading.local()
            self._run = self._ov_run
            self.session = None  # OpenVINO runs it; the ORT session was only for validation and metadata

    def _ort_run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def _ov_run(self, x: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        first = request is None
        if first:  # one infer request per thread: a request is not re-entrant
            request = self._local.request = self._compiled.create_infer_request()
        with _OV_FIRST_CALL if first else contextlib.nullcontext():  # a thread's first call runs alone (see there)
            return np.array(request.infer({0: x})[0])  # a copy: the request reuses its output memory

    @property
    def image_size(self) -> int:
        return self.preprocess.crop

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 -> (N, K) float32 logits (a fixed batch is fed one batch-sized slice at a time)."""
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return np.asarray(self._run(x))
        out = []
        for start in range(0, len(x), self.fixed_batch):
            part = x[start : start + self.fixed_batch]
            pad = self.fixed_batch - len(part)
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), dtype=part.dtype)])
            out.append(np.asarray(self._run(part))[: self.fixed_batch - pad])
        return np.concatenate(out)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------------------------
# Prediction on files


def list_images(inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[str | None]]:
    """Image files of ``inputs`` (files and folders) and their labels: a folder of class folders is labelled.

    A folder whose images sit in sub-folders gives each image its sub-folder's name as the true label;
    loose files have label None. An empty selection raises InputError.
    """
    files: list[Path] = []
    labels: list[str | None] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f"{p} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            for q in found:
                files.append(q)
                labels.append(q.parent.name if q.parent != p else None)
        elif p.is_file():
            files.append(p)
            labels.append(None)
        else:
            raise InputError(f"{p} does not exist")
    if not files:
        raise InputError("no images given")
    return files, labels


def check_sizes(files: Sequence[Path], side: int, sample: int = 32) -> None:
    """Refuse images that do not belong to this model: most of them smaller than half its input side.

    Reads only the headers of up to ``sample`` files spread over the list. A few small photos among large
    ones are upscaled like the rest are resized; a folder of 32 px images given to a 224 px network is an
    error (upscaling 7x makes the answer meaningless), as is a single such image.
    """
    step = max(1, len(files) // sample)
    small, seen, example = 0, 0, None
    for path in files[::step][:sample]:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            continue  # unreadable: reported (and skipped) when it is decoded
        seen += 1
        if min(w, h) < MIN_SIDE_FRACTION * side:
            small += 1
            example = example or (path, w, h)
    if seen and small * 2 > seen:
        path, w, h = example
        raise InputError(f"the images do not fit this model: it takes {side}x{side} px, but {small} of {seen} "
                         f"checked are smaller than half that (e.g. {path}: {w}x{h}); pass --allow-upscale to "
                         f"resize them anyway")  # fmt: skip


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class, probability), best first
    label: str | None = None  # the true class when the folder says so

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.top[0][0] == self.label


@dataclass
class PredictResult:
    predictions: list[Prediction]
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    seconds: float = 0.0  # wall time, decode included
    images: np.ndarray | None = None  # uint8 (N, H, W, 3) of the predicted images (kept for the grid only)

    @property
    def accuracy(self) -> float | None:
        marks = [p.correct for p in self.predictions if p.correct is not None]
        return 100.0 * sum(marks) / len(marks) if marks else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "predictions": [{"path": p.path, "label": p.label, "correct": p.correct,
                             "top": [{"class": c, "prob": round(float(v), 6)} for c, v in p.top]}
                            for p in self.predictions],  # fmt: skip
            "skipped": self.skipped,
            "accuracy": self.accuracy,
            "num_images": len(self.predictions),
            "seconds": round(self.seconds, 4),
            "images_per_second": round(len(self.predictions) / self.seconds, 2) if self.seconds else None,
        }


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_files(
    clf: OnnxClassifier,
    inputs: Sequence[str | os.PathLike],
    *,
    topk: int = 5,
    batch_size: int = 32,
    parallel: int | None = None,
    allow_upscale: bool = False,
    keep_images: bool = False,
) -> PredictResult:
    """Label every image of ``inputs`` (files or folders): top-k classes with probabilities.

    ``parallel`` batches (default: one per usable core) are in flight at once, each decoded and run through the
    model on its own thread, so one batch decodes while another runs; give ``clf`` as many ``streams``.
    Unreadable files are skipped and listed in ``skipped``.
    """
    files, labels = list_images(inputs)
    if not allow_upscale:
        check_sizes(files, clf.image_size)
    classes = clf.classes
    for label in {lb for lb in labels if lb is not None}:
        if label not in classes:
            labels = [None] * len(labels)  # sub-folders are not class names of this model: unlabelled
            break
    k = max(1, min(topk, len(classes)))
    start = time.perf_counter()
    preds: list[Prediction] = []
    skipped: dict[str, str] = {}
    kept: list[np.ndarray] = []
    size = clf.image_size
    pre = clf.preprocess
    batches = list(_chunks(list(zip(files, labels)), batch_size))
    lanes = max(1, min(parallel or usable_cpus(), len(batches)))
    local = threading.local()

    def run_batch(batch: Sequence[tuple[Path, str | None]]):
        """Decode one batch into this thread's buffer, then run the model on it (all on this thread)."""
        buf = getattr(local, "buffer", None)
        if buf is None:  # float32 (B, 3, H, W), reused for every batch this thread runs: no per-batch allocation
            buf = local.buffer = np.empty((min(batch_size, len(files)), 3, size, size), dtype=np.float32)
        decoded: list[np.ndarray | str | None] = []
        for slot, (path, _) in enumerate(batch):
            try:
                pixels = pre.load(path)
            except BadImageFile as exc:
                decoded.append(str(exc).split(": ", 1)[-1])
                continue
            pre.normalise_into(pixels, buf[slot])  # straight into the model's input layout
            decoded.append(pixels if keep_images else None)
        good = [j for j, img in enumerate(decoded) if not isinstance(img, str)]
        if not good:
            return decoded, good, None
        x = buf[: len(batch)] if len(good) == len(batch) else buf[good]  # (B', 3, H, W): a view when all read
        return decoded, good, softmax(clf.logits(x))  # (B', K)

    # `lanes` batches in flight, each decoded and run on its own thread: while one thread decodes (Pillow and
    # numpy release the GIL), another runs the model (so does the runtime), so on a small CPU every core does
    # useful work without the spin-waiting of a multi-threaded runtime. Results are taken in file order.
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        pending: collections.deque = collections.deque()
        todo = iter(batches)
        for batch in itertools.islice(todo, 2 * lanes):
            pending.append((batch, pool.submit(run_batch, batch)))
        while pending:
            batch, fut = pending.popleft()
            decoded, good, probs = fut.result()
            for batch_next in itertools.islice(todo, 1):
                pending.append((batch_next, pool.submit(run_batch, batch_next)))
            for (f, _), img in zip(batch, decoded):
                if isinstance(img, str):
                    skipped[str(f)] = img
            if probs is None:
                continue
            order = np.argsort(-probs, axis=1)[:, :k]
            for j, row, idx in zip(good, probs, order):
                f, lb = batch[j]
                preds.append(Prediction(str(f), [(classes[c], float(row[c])) for c in idx], lb))
            if keep_images:
                kept.append(np.stack([decoded[j] for j in good]))
    seconds = time.perf_counter() - start
    if not preds:
        raise InputError(f"none of the {len(files)} image file(s) could be read "
                         f"(first: {next(iter(skipped.items()))[0]}: {next(iter(skipped.values()))})")  # fmt: skip
    images = np.concatenate(kept) if kept else None
    return PredictResult(preds, skipped, seconds, images)


# ---------------------------------------------------------------------------------------------------------------
# The prediction grid (the SqueezeNet tutorial's figure): Pillow only, so it works without matplotlib or torch


def save_grid(result: PredictResult, path: str | os.PathLike, *, max_images: int = 64, cell: int = 128) -> Path:
    """A PNG grid of the predicted images, each titled with its prediction: blue when right, red when wrong."""
    from PIL import ImageDraw, ImageFont

    from litezoo.fsutil import atomic_write_bytes

    if result.images is None:
        raise InputError("no images kept for the grid (predict with keep_images=True)")
    n = min(len(result.predictions), max_images)
    cols = min(8, n)
    rows = (n + cols - 1) // cols
    title_h = 30
    canvas = Image.new("RGB", (cols * cell, rows * (cell + title_h)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i in range(n):
        pred = result.predictions[i]
        r, c = divmod(i, cols)
        x0, y0 = c * cell, r * (cell + title_h)
        tile = Image.fromarray(result.images[i]).resize((cell - 4, cell - 4), Image.BILINEAR)
        canvas.paste(tile, (x0 + 2, y0 + title_h))
        name, prob = pred.top[0]
        colour = (0, 0, 0) if pred.correct is None else ((30, 60, 220) if pred.correct else (220, 30, 30))
        draw.text((x0 + 3, y0 + 2), f"{name[:16]}", fill=colour, font=font)
        draw.text((x0 + 3, y0 + 15), f"{100 * prob:.1f}%" + ("" if pred.label is None or pred.correct
                                                             else f" (is {pred.label[:9]})"),
                  fill=colour, font=font)  # fmt: skip
    import io

    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return atomic_write_bytes(buf.getvalue(), path)


# ---------------------------------------------------------------------------------------------------------------
# The runtime choice for this machine, measured once and cached


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """The litezoo cache folder ($LITEZOO_CACHE or ~/.cache/litezoo), as litezoo.data uses."""
    return Path(os.environ.get("LITEZOO_CACHE") or Path.home() / ".cache" / "litezoo").expanduser()


CHOICE_FORMAT = 2  # bumped when the candidate set changes, so choices cached by an older litezoo measure again


def runtime_candidates(cpus: int, openvino: bool) -> list[tuple[str, int | None]]:
    """The (runtime, threads) pairs the choice measures; threads None = the runtime's own default.

    Each runtime on 1 thread and on all usable cores (at batch 1 a small net often runs faster on 1 thread:
    the issue's MobileNetV3-Small 0.68 vs 1.15 ms), and as the runtime configures itself (ONNX Runtime one
    thread per physical core, OpenVINO its own CPU plugin defaults): measuring the defaults too is what makes
    the choice never slower than "just use ORT / OpenVINO" on the same model.
    """
    runtimes = ["ort"] + (["openvino"] if openvino else [])
    return [(rt, t) for rt in runtimes for t in (None, *sorted({1, cpus}))]


def _label(runtime: str, threads: int | None) -> str:
    return f"{runtime} {threads if threads else 'default'} thread(s)"


def _time_candidate(path: str | os.PathLike, runtime: str, threads: int | None, batch_size: int,
                    seconds: float, lanes: int = 1) -> float:  # fmt: skip
    """Seconds per batch of ``batch_size`` with ``lanes`` threads calling the model at once (as predict does):
    wall time over calls, after a warm-up call on each thread. lanes=1 is the median latency of one call."""
    clf = OnnxClassifier(path, threads=threads, runtime=runtime, batch=batch_size, streams=lanes)
    size = clf.image_size
    x = np.random.default_rng(0).standard_normal((batch_size, 3, size, size), dtype=np.float32)

    def loop(deadline: float) -> list[float]:
        clf.logits(x)  # warm-up: first-call allocations and kernel selection (per thread for OpenVINO)
        times = []
        while time.perf_counter() < deadline or len(times) < 3:
            t0 = time.perf_counter()
            clf.logits(x)
            times.append(time.perf_counter() - t0)
        return times

    if lanes == 1:
        return float(np.median(loop(time.perf_counter() + seconds)))
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        t0 = time.perf_counter()
        runs = list(pool.map(loop, [t0 + seconds] * lanes))
        wall = time.perf_counter() - t0
    return wall / sum(len(r) for r in runs)


def choose_runtime(path: str | os.PathLike, batch_size: int, *, seconds: float = 0.4, lanes: int = 1,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """The fastest (runtime, threads) for this file and batch on this CPU, measured once, then cached.

    Candidates: :func:`runtime_candidates` (ONNX Runtime, and OpenVINO where the package is installed). The
    cache key holds the CPU model and flags, the usable core count, the runtime versions, the file's hash, the
    batch and ``lanes``, so a new machine, runtime, model or batch size measures again. ``lanes`` > 1 times
    throughput with that many threads calling the model at once, as :func:`predict_files` runs it (per-thread
    runtime threads then multiply: 2 lanes x 2 threads oversubscribe a 2-core CPU, which the timing shows).
    ``log`` hears what was measured or read from the cache and what was chosen.
    """
    import onnxruntime as ort

    say = log or (lambda _msg: None)
    cpus = usable_cpus()
    cpu_model, flags = cpu_model_and_flags()
    key = {"format": CHOICE_FORMAT, "cpu": cpu_model, "cpu_flags": sorted(flags), "cpus": cpus,
           "onnxruntime": ort.__version__, "model": file_digest(path), "batch": batch_size, "lanes": lanes}  # fmt: skip
    try:
        import openvino  # noqa: F401 — optional: measured too where installed

        key["openvino"] = openvino.__version__
    except ImportError:
        pass
    candidates = runtime_candidates(cpus, "openvino" in key)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    cache = cache_dir() / "deploy" / f"runtime-choice-{digest}.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            choice = cached["choice"]
            say(f"runtime choice for batch {batch_size} (cached in {cache}): "
                f"{_label(choice['runtime'], choice['threads'])}")
            return {**choice, "cached": True, "cache_file": str(cache)}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    say(f"runtime choice for batch {batch_size}: timing {len(candidates)} candidates, ~{seconds:g} s each "
        f"(once per model, batch and machine)")  # fmt: skip
    timings = {c: _time_candidate(path, c[0], c[1], batch_size, seconds, lanes) for c in candidates}
    runtime, threads = min(timings, key=timings.get)
    choice = {"runtime": runtime, "threads": threads, "batch": batch_size, "lanes": lanes,
              "median_ms": {_label(r, t): round(1e3 * v, 3) for (r, t), v in timings.items()}}  # fmt: skip
    say("runtime choice: " + ", ".join(f"{k} {v:.2f} ms" for k, v in choice["median_ms"].items())
        + f" per batch of {batch_size} -> {_label(runtime, threads)}")  # fmt: skip
    try:
        from litezoo.fsutil import atomic_write_bytes

        atomic_write_bytes(json.dumps({"key": key, "choice": choice}, indent=1).encode(), cache)
    except OSError as exc:  # a read-only home must not stop a prediction
        warnings.warn(f"could not cache the runtime choice in {cache}: {exc}", stacklevel=2)
    return {**choice, "cached": False, "cache_file": str(cache)}
