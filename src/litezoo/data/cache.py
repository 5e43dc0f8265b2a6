"""The decoded-image cache: one file per (dataset, split, preprocessing), memory-mapped on open.

File layout (little-endian)::

    offset 0       b"LZCACHE1" + zero padding            (DATA_OFFSET bytes: keeps the pixels page-aligned)
    DATA_OFFSET    images  uint8 (N, H, W, 3)            rows in label-sorted file order
    ...            labels  int64 (N,)
    ...            trailer JSON (utf-8): key, shape, classes, skipped files, ...
    end - 16       uint64 length of the trailer JSON, then b"LZCEND01"

The trailer goes last because it is only known once decoding is over (which files were bad). A cache is
used only if both magics are present, the file size matches the trailer's shape exactly, and the trailer's
``key`` equals the key computed from the current files — anything else is rebuilt, never silently used.

Writes are atomic: pixels are decoded straight into ``<name>.tmp-<pid>-<token>`` in the cache folder
(worker processes write their rows into it through their own memmap), the file is finished, flushed and
fsync'ed, then ``os.replace``d onto the final name. A crash leaves only a ``.tmp-`` file, which is never
opened as a cache and is deleted by the next build of the same slot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from litezoo.data.errors import DatasetError

try:  # POSIX advisory locks: concurrent builders (e.g. DDP ranks) wait for one another
    import fcntl
except ImportError:  # pragma: no cover - Windows: atomic replace still keeps readers safe
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("litezoo.data")

FORMAT_VERSION = 1
MAGIC = b"LZCACHE1"
END_MAGIC = b"LZCEND01"
DATA_OFFSET = 4096
_TAIL = struct.Struct("<Q8s")  # trailer length, END_MAGIC


def default_cache_dir() -> Path:
    """``$LITEZOO_CACHE`` if set, else ``~/.cache/litezoo``."""
    env = os.environ.get("LITEZOO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "litezoo"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def digest(obj: Any) -> str:
    """A stable hex digest of a JSON-able object (the cache key of a file listing + preprocessing)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CacheContents:
    images: np.ndarray  # uint8 (N, H, W, 3), read-only memmap
    labels: np.ndarray  # int64 (N,), in memory
    meta: dict[str, Any]  # the trailer


def read_cache(path: Path, key: str) -> tuple[CacheContents | None, str]:
    """Open a cache file if it is complete and was built for ``key``; else ``(None, why not)``.

    Everything is read through one open file, so a concurrent ``os.replace`` of the path cannot pair
    this file's header with another file's pixels.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None, "no cache yet"
    except OSError as exc:
        return None, f"unreadable ({exc})"
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size < DATA_OFFSET + _TAIL.size or f.read(len(MAGIC)) != MAGIC:
                return None, "not a litezoo cache or incomplete"
            f.seek(size - _TAIL.size)
            meta_len, end = _TAIL.unpack(f.read(_TAIL.size))
            if end != END_MAGIC or meta_len > size:
                return None, "incomplete (no trailer)"
            f.seek(size - _TAIL.size - meta_len)
            meta = json.loads(f.read(meta_len).decode())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return None, f"unreadable ({exc})"
        if meta.get("format_version") != FORMAT_VERSION:
            return None, f"format version {meta.get('format_version')} != {FORMAT_VERSION}"
        if meta.get("key") != key:
            return None, "built from different files or settings"
        n, h, w = meta["n"], meta["height"], meta["width"]
        pixels = n * h * w * 3
        if size != DATA_OFFSET + pixels + 8 * n + meta_len + _TAIL.size:
            return None, "size does not match its header (truncated or corrupt)"
        images = np.memmap(f, dtype=np.uint8, mode="r", offset=DATA_OFFSET, shape=(n, h, w, 3))
        f.seek(DATA_OFFSET + pixels)
        labels = np.frombuffer(f.read(8 * n), dtype="<i8").astype(np.int64)
    return CacheContents(images=images, labels=labels, meta=meta), ""


class CacheWriter:
    """Builds one cache file in a temp file next to ``path``; ``finish`` makes it appear atomically.

    ``rows`` is the number of pixel rows reserved (one per candidate file); bad files are dropped in
    ``finish`` by compacting the kept rows in place.
    """

    def __init__(self, path: Path, rows: int, height: int, width: int):
        self.path = path
        self.shape = (rows, height, width, 3)
        self.tmp_path = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        needed = DATA_OFFSET + rows * height * width * 3 + 8 * rows + (1 << 20)
        free = shutil.disk_usage(path.parent).free
        if free < needed:
            raise DatasetError(
                f"not enough disk space for the image cache in {path.parent}: need {needed / 1e9:.2f} GB, "
                f"{free / 1e9:.2f} GB free (set cache_dir / $LITEZOO_CACHE to a larger disk)"
            )
        with open(self.tmp_path, "wb") as f:
            f.write(MAGIC)
            f.truncate(DATA_OFFSET + rows * height * width * 3)
        self.images = np.memmap(self.tmp_path, dtype=np.uint8, mode="r+", offset=DATA_OFFSET, shape=self.shape)

    def finish(self, keep: np.ndarray, labels: np.ndarray, meta: dict[str, Any]) -> None:
        """Keep rows where ``keep`` is True (in order), append labels + trailer, fsync, rename into place."""
        keep = np.asarray(keep, dtype=bool)
        labels = np.asarray(labels, dtype="<i8")
        n = int(keep.sum())
        if labels.shape != (n,):
            raise ValueError(f"CacheWriter.finish: {labels.shape[0]} labels for {n} kept rows")
        if n < len(keep):  # move kept rows down over the dropped ones, run by run (dst <= src: safe in order)
            dst = 0
            for start, stop in _runs(keep):
                self.images[dst : dst + stop - start] = self.images[start:stop]
                dst += stop - start
        self.images.flush()
        del self.images
        _, h, w, _ = self.shape
        meta = dict(meta, format_version=FORMAT_VERSION, n=n, height=h, width=w)
        trailer = json.dumps(meta, separators=(",", ":")).encode()
        with open(self.tmp_path, "r+b") as f:
            f.truncate(DATA_OFFSET + n * h * w * 3)
            f.seek(0, os.SEEK_END)
            f.write(labels.tobytes())
            f.write(trailer)
            f.write(_TAIL.pack(len(trailer), END_MAGIC))
            f.flush()
            os.fsync(f.fileno())
        os.replace(self.tmp_path, self.path)
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Drop the temp file (after an error); the final path is left untouched."""
        self.__dict__.pop("images", None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def slot_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for building ``path`` (other processes building it wait, then reuse it).

    Also removes temp files left behind by a builder that crashed: while we hold the lock, nobody else
    is writing one.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(path.with_name(path.name + ".lock"), "a+")
    except OSError as exc:
        raise DatasetError(
            f"cannot write the image cache in {path.parent} ({exc.strerror}); "
            "pass cache_dir (--cache-dir) or set $LITEZOO_CACHE to a writable folder"
        ) from None
    with lock_file:
        if fcntl is not None:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            for stale in path.parent.glob(f"{path.name}.tmp-*"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
                    log.info("removed an unfinished cache file from an interrupted run: %s", stale)
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True values."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
