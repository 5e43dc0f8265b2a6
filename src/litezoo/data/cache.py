"""The decoded-image cache: one file per (dataset, split, preprocessing), memory-mapped on open.

File layout (little-endian)::

    offset 0       b"LZCACHE1" + zero padding            (DATA_OFFSET bytes: keeps the pixels page-aligned)
    DATA_OFFSET    images  uint8 (N, H, W, 3)            rows in label-sorted file order
    ...            labels  int64 (N,)
    ...            trailer JSON (utf-8): key, shape, classes, skipped files, ...
    end - 20       uint64 length of the trailer JSON, uint32 CRC-32 of everything from DATA_OFFSET up to
                   here (pixels, labels, trailer), then b"LZCEND02"

The trailer goes last because it is only known once decoding is over (which files were bad). A cache is
used only if both magics are present, the file size matches the trailer's shape exactly, the trailer's
``key`` equals the key computed from the current files, and the CRC-32 matches — anything else is
rebuilt, never silently used. (Only the header's zero padding is outside the CRC; nothing reads it.)

The CRC is checked once per file version, not on every open (2 GB take seconds): after a check passes,
``<name>.ok`` records the file's inode, size, mtime and ctime; an open whose ``fstat`` matches that record
skips the check. Any rewrite, truncation or in-place overwrite changes size, mtime or ctime, so the next
open checks the CRC again. The ``.ok`` file's mtime is the cache's "last used" time (``litezoo cache list``).

Writes are atomic: the temp file ``<name>.tmp-<pid>-<token>`` is preallocated with ``posix_fallocate``
(a full disk fails here, at once, with the space needed — never later as a SIGBUS in a worker writing
through its memmap), pixels are decoded straight into it, the file is finished, flushed and fsync'ed,
then ``os.replace``d onto the final name. A crash leaves only a ``.tmp-`` file, which is never opened as a
cache and is deleted by the next build of the same slot. Builders of one slot take turns through an
``fcntl`` lock on ``<name>.lock`` (released by the kernel if a builder dies); the second one reuses the
first one's cache.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from litezoo.data.errors import DatasetError
from litezoo.errors import WorkError
from litezoo.fsutil import atomic_write_bytes, fsync_dir

try:  # POSIX advisory locks: concurrent builders (e.g. DDP ranks) wait for one another
    import fcntl
except ImportError:  # pragma: no cover - Windows: atomic replace still keeps readers safe
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("litezoo.data")

FORMAT_VERSION = 2  # 2: CRC-32 of pixels, labels and trailer in the tail
MAGIC = b"LZCACHE1"
END_MAGIC = b"LZCEND02"  # 02: the tail holds the CRC-32
DATA_OFFSET = 4096
_TAIL = struct.Struct("<QI8s")  # trailer length, CRC-32, END_MAGIC
_CRC_BLOCK = 16 << 20  # bytes checksummed per step
CACHE_SUFFIX = ".lzc"


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
            found = _read_trailer(f, size)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return None, f"unreadable ({exc})"
        if found is None or not isinstance(found[0], dict):
            return None, "not a litezoo cache, or incomplete (no header or trailer)"
        meta, meta_len, crc = found
        if meta.get("format_version") != FORMAT_VERSION:
            return None, f"format version {meta.get('format_version')} != {FORMAT_VERSION}"
        if meta.get("key") != key:
            return None, "built from different files or settings"
        try:
            n, h, w = (int(meta[k]) for k in ("n", "height", "width"))
        except (KeyError, TypeError, ValueError):
            return None, "trailer lacks its shape (corrupt)"
        pixels = n * h * w * 3
        if min(n, h, w) < 0 or size != DATA_OFFSET + pixels + 8 * n + meta_len + _TAIL.size:
            return None, "size does not match its header (truncated or corrupt)"
        st = os.fstat(f.fileno())
        stamp = _stamp_path(path)
        if _read_stamp(stamp) != _identity(st, crc):
            if _crc_of(f, DATA_OFFSET, size - _TAIL.size - DATA_OFFSET) != crc:
                return None, "checksum mismatch (pixels, labels or trailer overwritten)"
            _write_stamp(stamp, _identity(st, crc))
        images = np.memmap(f, dtype=np.uint8, mode="r", offset=DATA_OFFSET, shape=(n, h, w, 3))
        f.seek(DATA_OFFSET + pixels)
        labels = np.frombuffer(f.read(8 * n), dtype="<i8").astype(np.int64)
    with contextlib.suppress(OSError):  # "last used", for `litezoo cache list` (read-only folders: skip)
        os.utime(stamp)
    return CacheContents(images=images, labels=labels, meta=meta), ""


def _crc_of(f, offset: int, length: int) -> int:
    """CRC-32 of ``length`` bytes of the open file ``f`` from ``offset``, read in blocks."""
    f.seek(offset)
    crc = 0
    while length > 0:
        block = f.read(min(_CRC_BLOCK, length))
        if not block:
            return -1  # shorter than its header says: can never match
        crc = zlib.crc32(block, crc)
        length -= len(block)
    return crc


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".ok")


def _identity(st: os.stat_result, crc: int) -> dict[str, int]:
    """What changes whenever the file's bytes may have changed: a new file, a new size, a write, a utime."""
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "crc32": crc}


def _read_stamp(stamp: Path) -> dict | None:
    try:
        return json.loads(stamp.read_bytes())
    except (OSError, ValueError):
        return None


def _write_stamp(stamp: Path, identity: dict[str, int]) -> None:
    try:
        atomic_write_bytes(json.dumps(identity).encode(), stamp)
    except OSError as exc:  # a read-only or full cache folder: the CRC is checked again next time
        log.debug("cannot record the checked cache %s (%s)", stamp, exc)


# --------------------------------------------------------------------------------------------------------
# Seeing and clearing caches (`litezoo cache list|clear`)


@dataclass
class CacheEntry:
    """One file of a cache folder, as ``litezoo cache list`` shows it."""

    path: Path
    kind: str  # "images" (a finished cache) | "unfinished" (a build's temp file) | "stats" | "outdated" | "unreadable"
    bytes: int
    last_used: float  # POSIX time: the last open of an images cache; else the file's mtime
    dataset: str | None = None  # the dataset folder/archive it was built from
    split: str | None = None
    stored_size: int | None = None  # side of the stored square images, px
    images: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "dataset": self.dataset, "split": self.split,
                "stored_size": self.stored_size, "images": self.images, "bytes": self.bytes,
                "last_used": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_used))}


def list_caches(cache_dir: str | os.PathLike | None = None) -> list[CacheEntry]:
    """Every decoded-image cache, unfinished build and statistics file under ``cache_dir``/decoded.

    Reads headers and trailers only (no checksum), so it is instant even for large caches.
    """
    folder = resolve_cache_dir(cache_dir) / "decoded"
    if not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.iterdir()):
        name = path.name
        try:
            st = path.stat()
        except FileNotFoundError:  # removed while we looked
            continue
        if name.endswith(CACHE_SUFFIX):
            entries.append(_describe_cache(path, st))
        elif CACHE_SUFFIX + ".tmp-" in name:
            entries.append(CacheEntry(path, "unfinished", st.st_size, st.st_mtime))
        elif name.startswith("stats-") and name.endswith(".json"):
            dataset = (_read_stamp(path) or {}).get("dataset")
            entries.append(CacheEntry(path, "stats", st.st_size, st.st_mtime, dataset=dataset))
    return entries


def _describe_cache(path: Path, st: os.stat_result) -> CacheEntry:
    stamp = _stamp_path(path)
    last_used = stamp.stat().st_mtime if stamp.exists() else st.st_mtime
    end = b""
    try:
        with open(path, "rb") as f:
            meta = (_read_trailer(f, st.st_size) or (None,))[0]
            f.seek(max(0, st.st_size - len(END_MAGIC)))
            end = f.read()
    except (OSError, ValueError, UnicodeDecodeError):
        meta = None
    if not isinstance(meta, dict) or "n" not in meta:
        # a finished cache of an older litezoo (rebuilt when next used), or damaged
        kind = "outdated" if end[:6] == END_MAGIC[:6] and end != END_MAGIC else "unreadable"
        return CacheEntry(path, kind, st.st_size, last_used)
    return CacheEntry(path, "images", st.st_size, last_used, dataset=meta.get("dataset"), split=meta.get("split"),
                      stored_size=meta.get("height"), images=meta.get("n"))


def remove_cache_entry(entry: CacheEntry) -> str | None:
    """Delete one listed file (with its ``.ok`` record); None when done, else why it was kept.

    A cache whose slot is being built right now is kept (its builder holds the slot lock). A cache that
    another process has open stays readable for it: POSIX keeps an unlinked file's pages until it closes.
    The ``.lock`` files stay: deleting a lock file that a waiting builder has open would let two builders in.
    """
    if entry.kind == "stats":
        _unlink(entry.path)
        return None
    slot = entry.path if entry.kind != "unfinished" else entry.path.with_name(entry.path.name.split(".tmp-")[0])
    with _try_slot_lock(slot) as got:
        if not got:
            return "being built by another process"
        for p in (entry.path, _stamp_path(entry.path)) if entry.kind != "unfinished" else (entry.path,):
            _unlink(p)
    return None


@contextlib.contextmanager
def _try_slot_lock(path: Path) -> Iterator[bool]:
    lock_path = path.with_name(path.name + ".lock")
    if fcntl is None or not lock_path.exists():
        yield True
        return
    with open(lock_path, "a+") as lock_file:
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read_trailer(f, size: int) -> tuple[Any, int, int] | None:
    """(trailer JSON, its length in bytes, the tail's CRC) of an open cache file; None without a complete
    header and tail."""
    f.seek(0)
    if size < DATA_OFFSET + _TAIL.size or f.read(len(MAGIC)) != MAGIC:
        return None
    f.seek(size - _TAIL.size)
    meta_len, crc, end = _TAIL.unpack(f.read(_TAIL.size))
    if end != END_MAGIC or meta_len > size - DATA_OFFSET - _TAIL.size:
        return None
    f.seek(size - _TAIL.size - meta_len)
    return json.loads(f.read(meta_len).decode()), meta_len, crc


class CacheWriter:
    """Builds one cache file in a temp file next to ``path``; ``finish`` makes it appear atomically.

    ``rows`` is the number of pixel rows reserved (one per candidate file); bad files are dropped in
    ``finish`` by compacting the kept rows in place.
    """

    def __init__(self, path: Path, rows: int, height: int, width: int):
        self.path = path
        self.shape = (rows, height, width, 3)
        self.tmp_path = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        self.needed = DATA_OFFSET + rows * height * width * 3 + 8 * rows + (1 << 20)
        free = shutil.disk_usage(path.parent).free
        if free < self.needed:
            raise _no_space(path, self.needed)
        try:
            with open(self.tmp_path, "wb") as f:
                f.write(MAGIC)
                # reserve the blocks now: a full disk fails here, not as a SIGBUS when a worker's memmap
                # write finds no block behind a sparse page
                _preallocate(f.fileno(), DATA_OFFSET + rows * height * width * 3)
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _no_space(path, self.needed) from None
            raise
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
        label_bytes = labels.tobytes()
        try:
            with open(self.tmp_path, "r+b") as f:
                f.truncate(DATA_OFFSET + n * h * w * 3)
                meta = dict(meta, format_version=FORMAT_VERSION, n=n, height=h, width=w)
                trailer = json.dumps(meta, separators=(",", ":")).encode()
                crc = zlib.crc32(trailer, zlib.crc32(label_bytes, _crc_of(f, DATA_OFFSET, n * h * w * 3)))
                f.seek(0, os.SEEK_END)
                _write(f, label_bytes)
                _write(f, trailer)
                _write(f, _TAIL.pack(len(trailer), crc, END_MAGIC))  # the completion marker goes last
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _no_space(self.path, self.needed) from None
            raise
        os.replace(self.tmp_path, self.path)
        fsync_dir(self.path.parent)
        # just written and checksummed: record it as checked (stat after the rename, which sets the ctime;
        # builders of this slot hold its lock, so the file is ours)
        _write_stamp(_stamp_path(self.path), _identity(os.stat(self.path), crc))

    def abort(self) -> None:
        """Drop the temp file (after an error); the final path is left untouched."""
        self.__dict__.pop("images", None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)


def _write(f, data: bytes) -> None:
    # one function per write so tests can make the disk full half-way through a build
    f.write(data)


def _preallocate(fd: int, size: int) -> None:
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
    else:  # pragma: no cover - macOS / Windows: sparse file, the free-space check above has to do
        os.ftruncate(fd, size)


def _no_space(path: Path, needed: int) -> WorkError:
    free = shutil.disk_usage(path.parent).free
    return WorkError(
        f"no space left for the image cache {path}: it needs {_human(needed)} ({needed} bytes), {_human(free)} "
        "free; previous caches are untouched (free space with `litezoo cache clear`, or set cache_dir / "
        "$LITEZOO_CACHE to a larger disk)"
    )


def _human(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write_bytes(json.dumps(obj).encode(), path)


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
