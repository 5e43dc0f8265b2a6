"""Fuzzing image decoding (Hypothesis): random bytes and mutated real JPEG/PNG/GIF/BMP/WEBP/TIFF files.

Every case must end in a clean tile — uint8 (16, 16, 3) — or the project's own :class:`BadImage` (which the
dataset turns into a skipped file). Anything else (another exception, a crash, a hang) fails the test.
Pixel counts are capped by the decompression-bomb limit passed to the decoder (a mutated header may claim
any size), and each case runs under an alarm so a hang fails instead of stalling the suite.
"""

from __future__ import annotations

import functools
import io
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from litezoo.data.decode import BadImage, Fit, decode_files, load_image
from _fuzz import Outcomes, fuzz_settings, time_limit

FIT = Fit(16, 16)
MAX_PIXELS = 1 << 20  # a 1024 x 1024 image; mutated headers claiming more are refused before decoding
CASE_SECONDS = 2.0  # a case taking longer than this is a hang
OUTCOMES = Outcomes()  # ("decode", clean | bad), over the whole module (checked by the last test)


@functools.lru_cache(maxsize=1)
def seeds() -> tuple[bytes, ...]:
    """Small real files of every format the loader reads, in several modes (made here, deterministic)."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    files = []

    def save(im: Image.Image, fmt: str, **kw) -> None:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        files.append(buf.getvalue())

    save(rgb, "JPEG", quality=80)
    save(rgb, "JPEG", quality=60, progressive=True)
    save(rgb.convert("L"), "JPEG")
    save(rgb.convert("CMYK"), "JPEG")
    save(rgb, "PNG")
    save(rgb.convert("RGBA"), "PNG")
    save(rgb.convert("P"), "PNG", transparency=0)
    save(Image.fromarray(rng.integers(0, 65536, (12, 10)).astype(np.uint16)), "PNG")  # I;16
    save(rgb, "PNG", optimize=True)
    save(rgb.convert("P"), "GIF")
    save(rgb, "BMP")
    save(rgb, "WEBP", quality=70)
    save(rgb, "TIFF")
    save(Image.fromarray(rng.random((8, 8)).astype(np.float32)), "TIFF")  # F
    return tuple(files)


def check(path: Path, blob: bytes) -> None:
    path.write_bytes(blob)
    with time_limit(CASE_SECONDS, "decoding"):
        try:
            loaded = load_image(str(path), FIT, MAX_PIXELS)
        except BadImage as exc:
            assert str(exc)  # a reason for the user
            OUTCOMES["decode", "bad"] += 1
            return
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape == (16, 16, 3)
    assert loaded.size[0] >= 1 and loaded.size[1] >= 1
    OUTCOMES["decode", "clean"] += 1


def mutate(blob: bytes, count: int, seed: int) -> bytes:
    """``blob`` with ``count`` mutations chosen by ``seed``: flipped or overwritten bytes, cuts, insertions,
    duplicated slices, and overwritten header words (sizes, chunk lengths and markers live in the first bytes).

    Hypothesis draws only (file, count, seed): drawing every byte through it cost 3x the decoding itself.
    """
    rng = random.Random(seed)
    data = bytearray(blob)
    for _ in range(count):
        kind = rng.choice(["flip", "set", "cut", "insert", "duplicate", "header"])
        pos = rng.randrange(max(1, len(data)))
        if kind == "flip" and data:
            data[pos] ^= 1 << rng.randrange(8)
        elif kind == "set" and data:
            data[pos] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif kind == "cut":
            data = data[:pos] if rng.random() < 0.5 else data[:pos] + data[pos + rng.randint(1, 64):]
        elif kind == "insert":
            data[pos:pos] = rng.randbytes(rng.randint(1, 32))
        elif kind == "duplicate":
            data[pos:pos] = data[pos : pos + rng.randint(1, 256)]
        elif kind == "header" and len(data) > 4:
            at = rng.randrange(min(len(data), 64) - 3)
            data[at : at + 4] = rng.randbytes(4)
    return bytes(data)


FUZZ = fuzz_settings(max_examples=3000, derandomize=True)


@pytest.fixture(scope="module")
def case_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "case"


def test_seeds_decode_cleanly(case_file):
    for blob in seeds():
        loaded = load_image(_write(case_file, blob), FIT, MAX_PIXELS)
        assert loaded.pixels.shape == (16, 16, 3)


def _write(path: Path, blob: bytes) -> str:
    path.write_bytes(blob)
    return str(path)


@FUZZ
@given(which=st.integers(0, len(seeds()) - 1), count=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_mutated_files_decode_or_are_bad_images(case_file, which, count, seed):
    check(case_file, mutate(seeds()[which], count, seed))


@settings(FUZZ, max_examples=1000)
@given(prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF", b"II*\x00"]),
       body=st.binary(max_size=512))
def test_random_bytes_decode_or_are_bad_images(case_file, prefix, body):
    check(case_file, prefix + body)


def test_decode_files_skips_bad_fuzzed_files_in_worker_processes(tmp_path):
    """The dataset path: workers decode mutated files; each row is a tile or a named failure, none lost."""
    rng = np.random.default_rng(1)
    blobs = list(seeds())
    paths = []
    for i in range(96):  # >= 64 files: the process pool is used
        data = bytearray(blobs[i % len(blobs)])
        for _ in range(i % 4):  # 0..3 random byte changes: a mix of good and bad files
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        (tmp_path / f"{i:03d}.img").write_bytes(bytes(data))
        paths.append(str(tmp_path / f"{i:03d}.img"))
    out = tmp_path / "rows.u8"
    out.write_bytes(b"\0" * (len(paths) * 16 * 16 * 3))
    result = decode_files(paths, FIT, out_path=str(out), workers=2)
    rows = np.fromfile(out, dtype=np.uint8).reshape(len(paths), 16, 16, 3)
    for i in range(0, len(paths), len(blobs)):  # unmutated seeds: decoded, same tile as in-process
        assert i not in result.failures
        np.testing.assert_array_equal(rows[i], load_image(paths[i], FIT, None).pixels)
    assert all(isinstance(reason, str) and reason for reason in result.failures.values())


def test_fuzz_totals():
    """Runs last in this module: thousands of cases, both outcomes seen (the mutations reach the decoders)."""
    total = OUTCOMES.require({"decode": ("clean", "bad")}, min_total=4000, min_each=101)
    print(f"fuzzed {total} cases: {OUTCOMES['decode', 'clean']} decoded, {OUTCOMES['decode', 'bad']} bad images")
