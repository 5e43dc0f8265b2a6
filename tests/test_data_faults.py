"""The decode cache under faults: damaged files, a builder SIGKILLed mid-build, two builders at once, a full disk.

Every case ends with the cache rebuilt (or left as it was) and the pixels exactly those of the image files —
never a half-made cache in use. Builders run as real subprocesses where the fault is about processes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from litezoo.data import cache as cache_mod
from litezoo.data import open_dataset
from litezoo.errors import WorkError

N_PER_CLASS = 20


def make_dataset(root: Path, side: int = 8, width: int | None = None) -> np.ndarray:
    """root/train/{a,b}/NN.png with random pixels; returns the expected cache rows (label-sorted file order)
    when the images are square (then cached at their native size, untouched)."""
    rng = np.random.default_rng(19)
    rows = []
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(N_PER_CLASS):
            arr = rng.integers(0, 256, (side, width or side, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "train" / cls / f"{i:02d}.png")
            rows.append(arr)
    return np.stack(rows)


def only_cache_file(cache: Path) -> Path:
    files = list((cache / "decoded").glob("*.lzc"))
    assert len(files) == 1, files
    return files[0]


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "decoded").iterdir() if ".tmp-" in p.name)


# ---------------------------------------------------------------------------------------------- damaged files


def _damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "truncate-trailer":
        os.truncate(path, size - 10)
    elif how == "truncate-pixels":
        os.truncate(path, cache_mod.DATA_OFFSET + 100)
    elif how == "truncate-empty":
        os.truncate(path, 0)
    elif how == "garbage-whole-file":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    elif how == "garbage-in-pixels":
        # header, trailer, size and even the mtime stay as they were: only the checksum can tell
        st = path.stat()
        with open(path, "r+b") as f:
            f.seek(cache_mod.DATA_OFFSET + 500)
            f.write(b"\xff\x00" * 50)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif how == "garbage-in-labels":
        with open(path, "r+b") as f:
            f.seek(cache_mod.DATA_OFFSET + 2 * N_PER_CLASS * 8 * 8 * 3)
            f.write((5).to_bytes(8, "little"))  # label 0 -> 5
    elif how == "garbage-in-trailer":  # a class renamed: still valid JSON, same length, same key
        data = path.read_bytes()
        at = data.rindex(b'"classes":["a"')
        path.write_bytes(data[:at] + b'"classes":["z"' + data[at + 14 :])
    else:
        raise AssertionError(how)


DAMAGE = ["truncate-trailer", "truncate-pixels", "truncate-empty", "garbage-whole-file", "garbage-in-pixels",
          "garbage-in-labels", "garbage-in-trailer"]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, caplog, how):
    expected = make_dataset(tmp_path / "ds")
    cache = tmp_path / "c"
    first = open_dataset(tmp_path / "ds", cache_dir=cache)
    assert first.decoded
    np.testing.assert_array_equal(first.images, expected)
    path = first.cache_path
    del first
    _damage(path, how)
    with caplog.at_level(logging.WARNING, logger="litezoo.data"):
        again = open_dataset(tmp_path / "ds", cache_dir=cache)
    assert again.decoded, "a damaged cache was used"
    np.testing.assert_array_equal(again.images, expected)
    assert again.labels.tolist() == [0] * N_PER_CLASS + [1] * N_PER_CLASS and again.classes == ["a", "b"]
    assert "rebuilding" in caplog.text and str(path) in caplog.text
    if how.startswith("garbage-in"):
        assert "checksum mismatch" in caplog.text
    assert not open_dataset(tmp_path / "ds", cache_dir=cache).decoded  # the rebuilt cache is then reused
    assert leftovers(cache) == []


def test_checked_once_then_trusted_until_the_file_changes(tmp_path, monkeypatch):
    make_dataset(tmp_path / "ds")
    cache = tmp_path / "c"
    path = open_dataset(tmp_path / "ds", cache_dir=cache).cache_path
    calls = []
    real = cache_mod._crc_of
    monkeypatch.setattr(cache_mod, "_crc_of", lambda *a: calls.append(1) or real(*a))
    assert not open_dataset(tmp_path / "ds", cache_dir=cache).decoded
    assert calls == []  # the builder recorded its checksum: no re-read on open
    cache_mod._stamp_path(path).unlink()  # e.g. killed between the rename and the record
    assert not open_dataset(tmp_path / "ds", cache_dir=cache).decoded
    assert calls == [1]  # checked in full, found good, recorded again
    assert not open_dataset(tmp_path / "ds", cache_dir=cache).decoded
    assert calls == [1]


# ---------------------------------------------------------------------------------------------- fuzzed cache files

CACHE_OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """(bytes of a built 4-image cache, its key, its contents, a scratch path for mutated copies)."""
    base = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(7)
    for cls in ("a", "b"):
        (base / "ds/train" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(base / "ds/train" / cls / f"{i}.png")
    ds = open_dataset(base / "ds", cache_dir=base / "c")
    blob = ds.cache_path.read_bytes()
    with open(ds.cache_path, "rb") as f:
        meta = cache_mod._read_trailer(f, len(blob))[0]
    return blob, meta["key"], (np.array(ds.images), ds.labels.copy(), meta), base / "case.lzc"


@settings(max_examples=1500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(count=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_fuzzed_cache_files_are_rejected_or_identical(tiny_cache, count, seed):
    """Flipped, overwritten, cut or inserted bytes anywhere (header, pixels, labels, trailer, tail): the
    reader returns exactly the original contents (only the header's unused padding was hit) or nothing."""
    blob, key, (images, labels, meta), path = tiny_cache
    rng = random.Random(seed)
    data = bytearray(blob)
    for _ in range(count):
        pos = rng.randrange(len(data))
        kind = rng.choice(["flip", "set", "cut", "insert", "tail"])
        if kind == "flip":
            data[pos] ^= 1 << rng.randrange(8)
        elif kind == "set":
            data[pos] = rng.randrange(256)
        elif kind == "cut":
            del data[pos : pos + rng.randint(1, 16)]
        elif kind == "insert":
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        else:  # the tail: trailer length, CRC, end magic
            at = len(data) - rng.randint(1, cache_mod._TAIL.size)
            data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    cache_mod._stamp_path(path).unlink(missing_ok=True)  # as for any changed file: the CRC is checked
    contents, why = cache_mod.read_cache(path, key)
    if contents is None:
        assert why
        CACHE_OUTCOMES["rejected"] += 1
        return
    np.testing.assert_array_equal(contents.images, images)
    np.testing.assert_array_equal(contents.labels, labels)
    assert contents.meta == meta
    CACHE_OUTCOMES["identical"] += 1


def test_cache_fuzz_totals():
    total = sum(CACHE_OUTCOMES.values())
    if total == 0:
        pytest.skip("run with the cache fuzz test above")
    print(f"fuzzed {total} cache files: {CACHE_OUTCOMES['rejected']} rejected, {CACHE_OUTCOMES['identical']} "
          "identical (mutations in the unused header padding)")
    assert total >= 1000 and CACHE_OUTCOMES["rejected"] > 0


# ---------------------------------------------------------------------------------------------- real processes

_BUILDER = r"""
import hashlib, json, os, sys, time
import litezoo.data.decode as decode
from litezoo.data import open_dataset

real = decode.load_image
def slow(*args):  # a slow disk: long enough to be killed, or to overlap with the other builder
    time.sleep(float(os.environ["DELAY"]))
    return real(*args)
decode.load_image = slow
go = os.environ.get("GO")
while go and not os.path.exists(go):
    time.sleep(0.005)
ds = open_dataset(sys.argv[1], cache_dir=sys.argv[2], workers=1)
print(json.dumps({"decoded": ds.decoded, "sha": hashlib.sha256(ds.images.tobytes()).hexdigest(),
                  "labels": ds.labels.tolist()}))
"""


def _builder(tmp_path: Path, delay: float, go: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, DELAY=str(delay), GO=str(go or ""))
    return subprocess.Popen([sys.executable, "-c", _BUILDER, str(tmp_path / "ds"), str(tmp_path / "c")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0.0, 0.5])
def test_builder_sigkilled_mid_build_leaves_nothing_usable(tmp_path, kill_after):
    expected = make_dataset(tmp_path / "ds")
    decoded = tmp_path / "c" / "decoded"
    proc = _builder(tmp_path, delay=0.05)  # 40 images: ~2 s of decoding
    try:
        _wait_for(lambda: decoded.is_dir() and any(".lzc.tmp-" in p.name for p in decoded.iterdir()))
        time.sleep(kill_after)
        assert proc.poll() is None, "the builder finished before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not list(decoded.glob("*.lzc")), "a half-made cache took the final name"
    assert leftovers(tmp_path / "c")  # only the temp file of the dead builder
    ds = open_dataset(tmp_path / "ds", cache_dir=tmp_path / "c")  # its lock died with it: no wait
    assert ds.decoded
    np.testing.assert_array_equal(ds.images, expected)
    assert leftovers(tmp_path / "c") == []  # cleaned by the next build


@pytest.mark.slow
def test_two_builders_at_once_build_once_and_agree(tmp_path):
    expected = make_dataset(tmp_path / "ds")
    go = tmp_path / "go"
    procs = [_builder(tmp_path, delay=0.02, go=go) for _ in range(2)]
    time.sleep(0.5)  # both interpreters up and polling for the start signal
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["decoded"] for r in results) == [False, True]  # one built, the other waited and reused it
    sha = hashlib.sha256(expected.tobytes()).hexdigest()
    assert [r["sha"] for r in results] == [sha, sha]
    assert results[0]["labels"] == results[1]["labels"] == [0] * N_PER_CLASS + [1] * N_PER_CLASS
    only_cache_file(tmp_path / "c")
    assert leftovers(tmp_path / "c") == []


# ---------------------------------------------------------------------------------------------- full disk


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["_preallocate", "_write"])
def test_full_disk_names_path_and_space_and_keeps_previous_caches(tmp_path, monkeypatch, where):
    expected = make_dataset(tmp_path / "ds", side=16)
    cache = tmp_path / "c"
    previous = open_dataset(tmp_path / "ds", cache_dir=cache)  # 16 px cache: built fine
    old_path, old_bytes = previous.cache_path, previous.cache_path.read_bytes()
    del previous
    monkeypatch.setattr(cache_mod, where, _enospc)  # no space at reservation, or for the labels + trailer
    with pytest.raises(WorkError) as info:
        open_dataset(tmp_path / "ds", image_size=8, cache_dir=cache)  # another slot: needs a new file
    message = str(info.value)
    assert "no space left for the image cache" in message and "-train-8px-" in message
    needed = cache_mod.DATA_OFFSET + 40 * 8 * 8 * 3 + 8 * 40 + (1 << 20)
    assert f"({needed} bytes)" in message and "\n" not in message
    assert leftovers(cache) == []  # the temp file is gone
    assert old_path.read_bytes() == old_bytes  # the previous cache is untouched ...
    monkeypatch.undo()
    again = open_dataset(tmp_path / "ds", cache_dir=cache)  # ... and still used as it is
    assert not again.decoded
    np.testing.assert_array_equal(again.images, expected)


def test_real_small_filesystem(tmp_path, monkeypatch):
    """A 4 MB tmpfs: the small cache fits, the big one does not; the error says so, the small one survives."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a size-limited tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        make_dataset(tmp_path / "ds", side=8, width=9)  # not square: cached at the size asked for
        small = open_dataset(tmp_path / "ds", image_size=16, cache_dir=mnt)  # 40 x 16 x 16 x 3 bytes
        small_bytes = small.cache_path.read_bytes()
        side = round(200 * 256 / 224)  # photo regime: the train cache has room for random-resized crops
        needed = cache_mod.DATA_OFFSET + 40 * side * side * 3 + 8 * 40 + (1 << 20)  # 7.3 MB > 4 MB
        with pytest.raises(WorkError, match=rf"no space left for the image cache .*-train-{side}px-.*\({needed} bytes\)"):
            open_dataset(tmp_path / "ds", image_size=200, cache_dir=mnt)
        # the disk fills up between the free-space check and the writing (another process): the real
        # posix_fallocate fails with ENOSPC, cleanly, instead of a SIGBUS in a worker later
        plenty = shutil.disk_usage(tmp_path)._replace(free=1 << 40)
        monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda path: plenty)
        with pytest.raises(WorkError, match=rf"no space left .*\({needed} bytes\)"):
            open_dataset(tmp_path / "ds", image_size=200, cache_dir=mnt)
        monkeypatch.undo()
        assert small.cache_path.read_bytes() == small_bytes
        assert leftovers(mnt) == []
        assert not open_dataset(tmp_path / "ds", image_size=16, cache_dir=mnt).decoded
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
