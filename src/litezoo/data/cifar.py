"""CIFAR-10 in its official forms: the python folder, the binary folder, a .tar.gz of either, and download.

* ``cifar-10-batches-py``: pickled dicts ``data_batch_1..5`` / ``test_batch`` with ``data`` uint8 (N, 3072)
  (1024 red, 1024 green, 1024 blue values, row-major) and ``labels``; ``batches.meta`` has ``label_names``.
  The pickles are read with an unpickler that only accepts plain data and numpy arrays: loading a dataset
  never runs code.
* ``cifar-10-batches-bin``: ``data_batch_1..5.bin`` / ``test_batch.bin``, records of 1 label byte + 3072
  pixel bytes; ``batches.meta.txt`` lists the class names.
* An archive is read member by member with ``tarfile`` (nothing is extracted to disk).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import secrets
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from litezoo.data.errors import DatasetError

log = logging.getLogger("litezoo.data")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_SIDE = 32
_RECORD = 3 * _SIDE * _SIDE

# split -> member names, and the meta file, for each format
_FILES = {
    "python": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"], "meta": "batches.meta"},
    "binary": {
        "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
        "test": ["test_batch.bin"],
        "meta": "batches.meta.txt",
    },
}


@dataclass(frozen=True)
class CifarSource:
    """Where CIFAR-10 batches live: a folder of batch files, or a .tar.gz holding such a folder."""

    kind: str  # "python" | "binary"
    path: Path  # the batches folder, or the archive
    archive: bool

    def fingerprint(self, split: str) -> list:
        """(name, size, mtime_ns) of what the split is read from: the cache key's file list."""
        if self.archive:
            names = [self.path]
        else:
            self.check_complete()
            names = [self.path / n for n in _FILES[self.kind][split]]
        out = []
        for p in names:
            st = p.stat()
            out.append([p.name, st.st_size, st.st_mtime_ns])
        return out

    def check_complete(self) -> None:
        """Raise a DatasetError naming every missing batch file of a (non-archive) batches folder."""
        files = _FILES[self.kind]
        expected = files["train"] + files["test"] + [files["meta"]]
        missing = [n for n in expected if not (self.path / n).is_file()]
        if missing:
            raise DatasetError(
                f"{self.path}: missing CIFAR-10 file(s) {', '.join(missing)}; a complete "
                f"cifar-10-batches-{'py' if self.kind == 'python' else 'bin'} folder holds {', '.join(expected)}"
            )

    def read(self, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """All images of ``split`` as uint8 (N, 32, 32, 3), labels int64 (N,), class names."""
        wanted = _FILES[self.kind][split] + [_FILES[self.kind]["meta"]]
        blobs = self._read_members(wanted)
        classes = _parse_meta(self.kind, blobs[_FILES[self.kind]["meta"]], self.path)
        images, labels = [], []
        for name in _FILES[self.kind][split]:
            x, y = (_parse_py_batch if self.kind == "python" else _parse_bin_batch)(blobs[name], name, self.path)
            images.append(x)
            labels.append(y)
        x = np.concatenate(images)
        y = np.concatenate(labels)
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise DatasetError(f"{self.path}: labels outside 0..{len(classes) - 1} in the {split} batches")
        return x, y, classes

    def _read_members(self, names: list[str]) -> dict[str, bytes]:
        if not self.archive:
            self.check_complete()
            return {n: (self.path / n).read_bytes() for n in names}
        found: dict[str, bytes] = {}
        folder = "cifar-10-batches-py" if self.kind == "python" else "cifar-10-batches-bin"
        try:
            with tarfile.open(self.path, "r:*") as tar:
                for member in tar:
                    parts = member.name.replace("\\", "/").split("/")
                    if member.isfile() and len(parts) >= 2 and parts[-2] == folder and parts[-1] in names:
                        found[parts[-1]] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(f"cannot read the archive {self.path}: {exc}") from None
        missing = [n for n in names if n not in found]
        if missing:
            raise DatasetError(f"{self.path}: {folder}/ in the archive lacks {', '.join(missing)}")
        return found


def detect(path: Path) -> CifarSource | None:
    """A CifarSource if ``path`` is a CIFAR-10 batches folder (or its parent) or a .tar.gz of one."""
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz", ".tar")):
            return None
        kind = _archive_kind(path)
        if kind is None:
            raise DatasetError(
                f"{path}: the archive holds neither cifar-10-batches-py/ nor cifar-10-batches-bin/ "
                "(for an image folder, extract it and pass the folder)"
            )
        return CifarSource(kind, path, archive=True)
    for folder in (path, path / "cifar-10-batches-py", path / "cifar-10-batches-bin"):
        if (folder / "batches.meta").is_file():
            return CifarSource("python", folder, archive=False)
        if (folder / "batches.meta.txt").is_file():
            return CifarSource("binary", folder, archive=False)
    return None


def _archive_kind(path: Path) -> str | None:
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                base = member.name.replace("\\", "/").rstrip("/").split("/")[-1]
                if base == "batches.meta":
                    return "python"
                if base == "batches.meta.txt":
                    return "binary"
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"cannot read the archive {path}: {exc}") from None
    return None


# --------------------------------------------------------------------------------------------------------
# Parsing


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts/lists/bytes and numpy arrays only — a CIFAR batch needs nothing else."""

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, whatever its module
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if name == "_frombuffer" and module in ("numpy.core.numeric", "numpy._core.numeric"):
            return _frombuffer
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes at pickle protocol 2
            return _latin1_bytes
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch (only plain data)")


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing to decode bytes with codec {encoding!r} in a CIFAR batch")
    return text.encode("latin1")


def _frombuffer(buf, dtype, shape, order):
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _unpickle(blob: bytes, name: str, where: Path) -> dict:
    try:
        obj = _DataOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as exc:
        raise DatasetError(f"{where}: {name} is not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: {name} is not a CIFAR-10 python batch (not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _parse_py_batch(blob: bytes, name: str, where: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(blob, name, where)
    if "data" not in d or "labels" not in d:
        raise DatasetError(f"{where}: {name} lacks 'data' or 'labels'")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != _RECORD or data.shape[0] != labels.shape[0]:
        raise DatasetError(f"{where}: {name} has data of shape {data.shape} for {labels.shape[0]} labels")
    return _chw_rows_to_nhwc(data), labels


def _parse_bin_batch(blob: bytes, name: str, where: Path) -> tuple[np.ndarray, np.ndarray]:
    if len(blob) % (_RECORD + 1):
        raise DatasetError(f"{where}: {name} is {len(blob)} bytes, not a multiple of {_RECORD + 1}")
    records = np.frombuffer(blob, dtype=np.uint8).reshape(-1, _RECORD + 1)
    return _chw_rows_to_nhwc(records[:, 1:]), records[:, 0].astype(np.int64)


def _chw_rows_to_nhwc(rows: np.ndarray) -> np.ndarray:
    # (N, 3072) = (N, 3, 32, 32) planes -> (N, 32, 32, 3)
    return np.ascontiguousarray(rows.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1))


def _parse_meta(kind: str, blob: bytes, where: Path) -> list[str]:
    if kind == "python":
        names = _unpickle(blob, "batches.meta", where).get("label_names")
        if not isinstance(names, list) or not names:
            raise DatasetError(f"{where}: batches.meta has no label_names")
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    names = [line.strip() for line in blob.decode(errors="replace").splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{where}: batches.meta.txt lists no classes")
    return names


# --------------------------------------------------------------------------------------------------------
# Finding a local copy, or downloading one


def find_local(cache_dir: Path) -> CifarSource | None:
    """A CIFAR-10 copy already in ``cache_dir`` (extracted folders first, then archives)."""
    for candidate in ("cifar-10-batches-py", "cifar-10-batches-bin", CIFAR10_ARCHIVE, "cifar-10-binary.tar.gz"):
        path = cache_dir / candidate
        if path.exists():
            source = detect(path)
            if source is not None:
                return source
    return None


def fetch(url: str, dest, progress: Callable[[int, int], None] | None = None) -> None:
    """Stream ``url`` into the open binary file ``dest`` (tests replace this to simulate being offline)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while block := response.read(1 << 20):
            dest.write(block)
            done += len(block)
            if progress is not None:
                progress(done, total)


def where_to_put(cache_dir: Path) -> str:
    return (
        f"download {CIFAR10_URL} (md5 {CIFAR10_MD5}) and put it at {cache_dir / CIFAR10_ARCHIVE} "
        f"(or extract it there as {cache_dir / 'cifar-10-batches-py'}), or pass the path of a local copy "
        "(a cifar-10-batches-py/-bin folder, its .tar.gz, or an image folder root/{train,test}/<class>/)"
    )


def download(cache_dir: Path, progress: Callable[[int, int], None] | None = None) -> CifarSource:
    """Download the official archive into ``cache_dir``, check its md5, and return it as a source."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cifar10: cannot create the cache folder {cache_dir} ({exc.strerror})") from None
    final = cache_dir / CIFAR10_ARCHIVE
    tmp = cache_dir / f"{CIFAR10_ARCHIVE}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    log.warning("cifar10: downloading %s into %s", CIFAR10_URL, cache_dir)
    try:
        with open(tmp, "wb") as f:
            try:
                fetch(CIFAR10_URL, f, progress)
            except Exception as exc:  # offline, DNS, HTTP error, timeout ...
                raise DatasetError(
                    f"cifar10: no local copy in {cache_dir} and the download failed ({type(exc).__name__}: {exc}); "
                    + where_to_put(cache_dir)
                ) from None
            f.flush()
            os.fsync(f.fileno())
        md5 = _md5(tmp)
        if md5 != CIFAR10_MD5:
            raise DatasetError(
                f"cifar10: the downloaded archive has md5 {md5}, expected {CIFAR10_MD5} (corrupt or changed "
                f"download; nothing was kept); " + where_to_put(cache_dir)
            )
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return CifarSource("python", final, archive=True)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()
