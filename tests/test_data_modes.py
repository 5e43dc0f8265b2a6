"""Every Pillow pixel mode a user may have becomes the right 8-bit RGB tile; tiny images and guessed ranges warn.

Expected tiles are computed here with numpy from the documented rules (docs/data.md), never with the code
under test: alpha over white, 16-bit scaled by 1/257, I as 16-bit data, F as 0..1, CMYK/YCbCr/LAB by formula.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litezoo.data import PixelRangeWarning, SmallImageWarning, open_dataset
from litezoo.data.decode import BadImage, Fit, load_image

SIDE = 4
RNG = np.random.default_rng(15)


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """round((c * a + 255 * (255 - a)) / 255) in exact integers."""
    c, a = rgb.astype(np.int64), alpha.astype(np.int64)[..., None]
    num = c * a + 255 * (255 - a)
    return ((2 * num + 255) // 510).astype(np.uint8)  # round half up of num / 255


def gray3(v: np.ndarray) -> np.ndarray:
    return np.repeat(v.astype(np.uint8)[..., None], 3, axis=2)


def lab_d50_to_srgb(lab8: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D50; Pillow's 8-bit encoding) -> sRGB, by the textbook formulas (Bradford to D65)."""
    L = lab8[..., 0] * 100.0 / 255.0
    a = lab8[..., 1].astype(float) - 128.0
    b = lab8[..., 2].astype(float) - 128.0
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], -1)
    d = 6 / 29
    xyz = np.where(f > d, f**3, 3 * d * d * (f - 4 / 29)) * np.array([0.9642, 1.0, 0.8249])
    bradford = np.array([[0.9555766, -0.0230393, 0.0631636], [-0.0282895, 1.0099416, 0.0210077],
                         [0.0122982, -0.0204830, 1.3299098]])
    to_rgb = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                       [0.0556434, -0.2040259, 1.0572252]])
    lin = np.clip(xyz @ bradford.T @ to_rgb.T, 0, 1)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.rint(srgb * 255).astype(np.uint8)


def case(mode: str):
    """(image in `mode`, expected uint8 (SIDE, SIDE, 3) tile, allowed max abs error)."""
    shape = (SIDE, SIDE)
    u8 = lambda *extra: RNG.integers(0, 256, shape + extra, dtype=np.uint8)  # noqa: E731
    if mode == "1":
        bits = RNG.integers(0, 2, shape).astype(bool)
        return Image.fromarray(bits), gray3(bits * 255), 0
    if mode == "L":
        v = u8()
        return Image.fromarray(v, "L"), gray3(v), 0
    if mode == "LA":
        v = u8(2)
        return Image.fromarray(v, "LA"), over_white(gray3(v[..., 0]), v[..., 1]), 0
    if mode in ("P", "P+transparency", "PA"):
        palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
        idx = RNG.integers(0, 8, shape, dtype=np.uint8)
        if mode == "PA":
            alpha = u8()
            im = Image.frombytes("PA", shape[::-1], np.stack([idx, alpha], -1).tobytes())
            im.putpalette(palette.tobytes())
            return im, over_white(palette[idx], alpha), 0
        im = Image.fromarray(idx, "P")
        im.putpalette(palette.tobytes())
        if mode == "P":
            return im, palette[idx], 0
        im.info["transparency"] = 3  # palette index 3 is fully transparent -> white
        expected = palette[idx].copy()
        expected[idx == 3] = 255
        return im, expected, 0
    if mode in ("I;16", "I;16B"):
        v = RNG.integers(0, 65536, shape).astype(np.uint16)
        v[0, 0], v[0, 1] = 65535, 0
        dtype = "<u2" if mode == "I;16" else ">u2"
        im = Image.frombytes(mode, shape[::-1], v.astype(dtype).tobytes())
        return im, gray3(np.rint(v / 257)), 0  # v / 257 is never exactly k + 0.5 (257 is odd)
    if mode == "I":
        v = RNG.integers(0, 65536, shape).astype(np.int32)
        v[0, 0] = 65535
        return Image.fromarray(v, "I"), gray3(np.rint(v / 257)), 0
    if mode == "F":
        v = RNG.random(shape).astype(np.float32)
        v[0, 0], v[0, 1] = 0.0, 1.0
        return Image.fromarray(v, "F"), gray3(np.rint(v.astype(np.float64) * 255)), 0
    if mode == "RGB":
        v = u8(3)
        return Image.fromarray(v, "RGB"), v, 0
    if mode == "RGBA":
        v = u8(4)
        v[0, 0, 3], v[0, 1, 3] = 0, 255  # fully transparent -> white; opaque -> unchanged
        return Image.fromarray(v, "RGBA"), over_white(v[..., :3], v[..., 3]), 0
    if mode == "CMYK":
        v = u8(4).astype(np.int64)
        rgb = np.rint((255 - v[..., :3]) * (255 - v[..., 3:]) / 255)  # the naive (profile-free) CMYK inverse
        return Image.fromarray(v.astype(np.uint8), "CMYK"), rgb.astype(np.uint8), 1
    if mode == "YCbCr":
        v = u8(3).astype(np.float64)
        y, cb, cr = v[..., 0], v[..., 1] - 128, v[..., 2] - 128  # JPEG's full-range BT.601
        rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)
        return Image.fromarray(v.astype(np.uint8), "YCbCr"), np.clip(np.rint(rgb), 0, 255).astype(np.uint8), 1
    if mode == "LAB":
        v = np.stack([u8(), RNG.integers(88, 168, shape, dtype=np.uint8), RNG.integers(88, 168, shape, dtype=np.uint8)], -1)
        v[0, 0], v[0, 1], v[0, 2] = (0, 128, 128), (255, 128, 128), (128, 128, 128)  # black, white, L*=50 grey
        # TIFF's CIELab stores a*/b* as signed bytes and Pillow reads them back offset by 128, but writes
        # its own a/b bytes unchanged: flip the top bit so the file holds what a TIFF writer would write
        im = Image.frombytes("LAB", shape[::-1], (v ^ np.array([0, 128, 128], np.uint8)).tobytes())
        return im, lab_d50_to_srgb(v), 3  # littleCMS' 8-bit pipeline rounds differently by a few levels
    raise AssertionError(mode)


MODES = ["1", "L", "LA", "P", "P+transparency", "PA", "I;16", "I;16B", "I", "F", "RGB", "RGBA", "CMYK", "YCbCr",
         "LAB"]
PNG_MODES = {"1", "L", "LA", "P", "P+transparency", "I;16", "RGB", "RGBA"}


def decoded(tmp_path: Path, im: Image.Image, fmt: str, **save) -> tuple[np.ndarray, str]:
    path = tmp_path / f"x.{fmt.lower()}"
    im.save(path, fmt, **save)
    with Image.open(path) as again:
        mode = again.mode
    return load_image(str(path), Fit(SIDE, SIDE), None).pixels, mode


@pytest.mark.parametrize("mode", MODES)
def test_every_pixel_mode_from_a_file(tmp_path, mode):
    im, expected, tol = case(mode)
    if mode == "P+transparency":  # a transparent palette index is a PNG feature
        got, reopened = decoded(tmp_path, im, "PNG", transparency=3)
    else:  # TIFF stores every one of these modes as it is
        got, reopened = decoded(tmp_path, im, "TIFF")
    assert reopened == mode.split("+")[0]  # the file really is in this mode
    assert got.dtype == np.uint8 and got.shape == (SIDE, SIDE, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tol, (got, expected)


@pytest.mark.parametrize("mode", sorted(PNG_MODES))
def test_png_modes(tmp_path, mode):
    im, expected, tol = case(mode)
    save = {"transparency": 3} if mode == "P+transparency" else {}
    got, _ = decoded(tmp_path, im, "PNG", **save)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tol


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    """The reported bug: a 16-bit grey PNG became all white. Now a ramp 0..65535 stays a ramp."""
    ramp = np.linspace(0, 65535, SIDE * SIDE).round().astype(np.uint16).reshape(SIDE, SIDE)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    with Image.open(tmp_path / "ramp.png") as im:
        assert im.mode == "I;16"
    got = load_image(str(tmp_path / "ramp.png"), Fit(SIDE, SIDE), None).pixels
    np.testing.assert_array_equal(got, gray3(np.rint(ramp / 257)))
    assert got.min() == 0 and got.max() == 255 and len(np.unique(got)) == SIDE * SIDE


@pytest.mark.parametrize(
    "values, expected, note",
    [
        (np.array([[-1000, 0], [1000, 3000]], np.int32), lambda v: np.rint((v + 1000) * 255 / 4000), "outside 0..65535"),
        (np.array([[0, 10], [100, 200]], np.int32), lambda v: np.rint(v / 257), "taken as 16-bit"),
        (np.array([[-2.0, 0.0], [1.0, 6.0]], np.float32), lambda v: np.rint((v + 2) * 255 / 8), "outside 0..1"),
    ],
)
def test_ambiguous_ranges_are_stretched_or_kept_with_a_note(tmp_path, values, expected, note):
    path = tmp_path / "x.tiff"
    Image.fromarray(values).save(path)
    loaded = load_image(str(path), Fit(2, 2), None)
    np.testing.assert_array_equal(loaded.pixels, gray3(expected(values.astype(np.float64))))
    assert note in loaded.note


def test_float_nan_is_a_bad_image(tmp_path):
    Image.fromarray(np.array([[np.nan, 0.5]], np.float32)).save(tmp_path / "nan.tiff")
    with pytest.raises(BadImage, match="NaN"):
        load_image(str(tmp_path / "nan.tiff"), Fit(1, 1), None)


def test_dataset_warns_once_about_tiny_images_and_guessed_ranges(tmp_path):
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / "train" / cls / f"{i}.png")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(root / "train/a/dot.png")  # 1x1: becomes a flat tile
    Image.new("RGB", (30, 7), (1, 2, 3)).save(root / "train/b/strip.png")  # shorter side 7 < 32/4
    Image.fromarray(RNG.integers(0, 101, (40, 40)).astype(np.int32)).save(root / "train/b/dark.tiff")  # 8-bit-like
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset(root, image_size=32, cache_dir=tmp_path / "c")
    small = [w for w in caught if issubclass(w.category, SmallImageWarning)]
    ranges = [w for w in caught if issubclass(w.category, PixelRangeWarning)]
    assert len(small) == 1 and len(ranges) == 1
    text = str(small[0].message)
    assert "\n" not in text and "2 image(s)" in text and "a/dot.png (1x1)" in text and "b/strip.png (30x7)" in text
    assert "0.png" not in text  # 40 px images are fine
    assert set(ds.small_images) == {str(root / "train/a/dot.png"), str(root / "train/b/strip.png")}
    assert "b/dark.tiff" in str(ranges[0].message) and "16-bit" in str(ranges[0].message)
    # the cached tile of the 1x1 image is its one colour, stretched (said, not silent)
    row = 3  # class a, sorted: 0.png, 1.png, 2.png, dot.png
    assert ds.labels[row] == 0 and (ds.images[row] == np.array([200, 10, 10], np.uint8)).all()
    # reused cache: warned again; at a smaller image_size the 7 px strip is no longer "far below"
    with pytest.warns(SmallImageWarning, match="2 image"):
        again = open_dataset(root, image_size=32, cache_dir=tmp_path / "c")
    assert not again.decoded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds8 = open_dataset(root, image_size=16, cache_dir=tmp_path / "c")
    assert set(ds8.small_images) == {str(root / "train/a/dot.png")}


def test_jpeg_cmyk_file(tmp_path):
    """Adobe CMYK JPEGs (stored inverted) decode to the same colours as the CMYK TIFF of the same pixels."""
    flat = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    buf = io.BytesIO()
    flat.save(buf, "JPEG", quality=100)
    (tmp_path / "red.jpg").write_bytes(buf.getvalue())
    got = load_image(str(tmp_path / "red.jpg"), Fit(16, 16), None).pixels
    assert np.abs(got.astype(int) - [255, 0, 0]).max() <= 3


def test_decoding_needs_no_torch():
    """The torch-free runtime (predict) can share these conversion rules: importing them loads no torch."""
    import subprocess
    import sys

    code = "import sys, litezoo.data.decode, litezoo.data; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
