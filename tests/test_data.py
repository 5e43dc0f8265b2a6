"""litezoo.data: sources, decoding, the on-disk cache, bad files, errors, download, and `litezoo data`."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litezoo.cli.main import main as cli_main
from litezoo.data import BadImageWarning, BatchLoader, DatasetError, open_dataset
from litezoo.data import cifar, datasets
from litezoo.data.cache import read_cache

# ---------------------------------------------------------------------------------------------- builders


def write_folder(root: Path, layout: dict[str, dict[str, int]], size=(8, 8), seed=0, fmt="png") -> dict[str, np.ndarray]:
    """root/<split>/<class>/<i>.<fmt> with random pixels; returns {path: pixels} (PNG is lossless)."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                w, h = size if not callable(size) else size(i)
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                path = folder / f"{i:03d}.{fmt}"
                Image.fromarray(arr).save(path)
                pixels[str(path)] = arr
    return pixels


def fake_cifar_arrays(seed=0, per_batch=4, n_test=3):
    rng = np.random.default_rng(seed)
    batches = [(rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), rng.integers(0, 10, per_batch)) for _ in range(5)]
    test = (rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), rng.integers(0, 10, n_test))
    return batches, test


def write_cifar_py(folder: Path, batches, test) -> None:
    """The official python layout: pickled dicts with bytes keys (as the Python 2 originals load)."""
    folder.mkdir(parents=True)
    for i, (data, labels) in enumerate(batches, 1):
        blob = {b"batch_label": b"training batch", b"labels": [int(v) for v in labels], b"data": data,
                b"filenames": [b"x.png"] * len(labels)}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(blob, protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": [int(v) for v in test[1]], b"data": test[0]}, protocol=2))
    names = [n.encode() for n in cifar.CIFAR10_CLASSES]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))


def write_cifar_bin(folder: Path, batches, test) -> None:
    folder.mkdir(parents=True)
    for name, (data, labels) in [(f"data_batch_{i}.bin", b) for i, b in enumerate(batches, 1)] + [("test_batch.bin", test)]:
        records = np.concatenate([np.asarray(labels, np.uint8)[:, None], data], axis=1)
        (folder / name).write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(cifar.CIFAR10_CLASSES) + "\n\n")


def tar_gz(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return out


def nhwc(data: np.ndarray) -> np.ndarray:
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


# ---------------------------------------------------------------------------------------------- sources


def test_image_folder_pixels_labels_and_train_stats(tmp_path, cache):
    pixels = write_folder(tmp_path / "ds", {"train": {"b_dog": 3, "a_cat": 2}, "test": {"a_cat": 1, "b_dog": 2}})
    ds = open_dataset(tmp_path / "ds", "train", cache_dir=cache)
    assert ds.classes == ["a_cat", "b_dog"]
    assert ds.image_size == 8 and ds.stored_size == 8  # uniform 8x8 folder: native size, pixels untouched
    assert ds.labels.tolist() == [0, 0, 1, 1, 1]
    expected = [pixels[str(tmp_path / "ds/train" / c / f"{i:03d}.png")] for c, n in [("a_cat", 2), ("b_dog", 3)] for i in range(n)]
    np.testing.assert_array_equal(ds.images, np.stack(expected))
    flat = np.stack(expected).reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, flat.mean(0), atol=1e-12)
    np.testing.assert_allclose(ds.std, flat.std(0), atol=1e-12)
    test = open_dataset(tmp_path / "ds", "test", cache_dir=cache)
    assert test.labels.tolist() == [0, 1, 1] and test.mean == ds.mean and test.std == ds.std  # TRAIN stats


def test_photo_folder_resize_and_centre_crop(tmp_path, cache):
    sizes = [(40, 30), (30, 50), (17, 17)]
    pixels = write_folder(tmp_path / "ds", {"train": {"x": 3}, "valid": {"x": 3}}, size=lambda i: sizes[i])
    tr = open_dataset(tmp_path / "ds", "train", image_size=70, cache_dir=cache)  # > 64 px: photo regime
    ev = open_dataset(tmp_path / "ds", "test", image_size=70, cache_dir=cache)  # "test" -> valid/
    assert ev.split == "valid"
    assert tr.stored_size == round(70 * 256 / 224) == 80 and ev.stored_size == 70
    for k, (w, h) in enumerate(sizes):
        img = Image.fromarray(pixels[str(tmp_path / f"ds/valid/x/{k:03d}.png")])
        side = 70 * min(w, h) / 80  # eval: shorter side to 80, centre crop 70
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        np.testing.assert_array_equal(ev.images[k], np.asarray(img.resize((70, 70), Image.BILINEAR, box=box)))
    x, _ = next(iter(BatchLoader(ev, 3, train=False)))
    assert x.shape == (3, 3, 70, 70)


@pytest.mark.parametrize("form", ["python", "binary", "python-tar", "binary-tar"])
def test_cifar_official_forms(tmp_path, cache, form):
    batches, test = fake_cifar_arrays()
    kind = form.split("-")[0]
    folder = tmp_path / ("cifar-10-batches-py" if kind == "python" else "cifar-10-batches-bin")
    (write_cifar_py if kind == "python" else write_cifar_bin)(folder, batches, test)
    spec = tar_gz(folder, tmp_path / "c.tar.gz") if form.endswith("tar") else folder
    tr = open_dataset(spec, "train", cache_dir=cache)
    te = open_dataset(spec, "val", cache_dir=cache)  # val/valid are aliases of test
    assert tr.source == f"cifar10-{kind}" and tr.classes == cifar.CIFAR10_CLASSES and tr.image_size == 32
    np.testing.assert_array_equal(tr.images, nhwc(np.concatenate([b[0] for b in batches])))
    np.testing.assert_array_equal(tr.labels, np.concatenate([b[1] for b in batches]))
    np.testing.assert_array_equal(te.images, nhwc(test[0]))
    np.testing.assert_array_equal(te.labels, test[1])
    flat = tr.images.reshape(-1, 3) / 255
    np.testing.assert_allclose(te.mean, flat.mean(0), atol=1e-12)
    np.testing.assert_allclose(te.std, flat.std(0), atol=1e-12)


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path, cache):
    batches, test = fake_cifar_arrays()
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_py(folder, batches, test)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": [0], b"data": Evil()}, protocol=2))
    with pytest.raises(DatasetError, match="refusing to load"):
        open_dataset(folder, "test", cache_dir=cache)
    assert not (tmp_path / "pwned").exists()


def test_limit_is_class_balanced_and_deterministic(tmp_path, cache):
    write_folder(tmp_path / "ds", {"train": {"a": 6, "b": 2, "c": 4}})
    ds = open_dataset(tmp_path / "ds", "train", limit=7, cache_dir=cache)
    assert ds.class_counts() == {"a": 3, "b": 2, "c": 2}
    full = open_dataset(tmp_path / "ds", "train", cache_dir=cache)
    assert ds.mean == full.mean  # stats do not depend on limit
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 0])
    assert datasets.select_limit(labels, 5).tolist() == [0, 1, 2, 3, 4]  # rank 0 of a, b, c; rank 1 of a, b
    assert datasets.select_limit(np.array([1, 1, 1, 0]), 2).tolist() == [0, 3]


# ---------------------------------------------------------------------------------------------- cache


def test_cache_reused_without_decoding(tmp_path, cache, monkeypatch):
    write_folder(tmp_path / "ds", {"train": {"a": 2, "b": 2}})
    first = open_dataset(tmp_path / "ds", cache_dir=cache)
    assert first.decoded and first.cache_path.exists()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache matches")

    monkeypatch.setattr(datasets, "decode_files", no_decoding)
    second = open_dataset(tmp_path / "ds", cache_dir=cache)
    assert not second.decoded and isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(first.images, second.images)


def test_cache_rebuilt_when_a_file_changes_or_is_added(tmp_path, cache, caplog):
    write_folder(tmp_path / "ds", {"train": {"a": 2, "b": 2}})
    ds = open_dataset(tmp_path / "ds", cache_dir=cache)
    target = tmp_path / "ds/train/a/001.png"
    new = np.full((8, 8, 3), 7, np.uint8)
    Image.fromarray(new).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # filesystems with coarse mtimes
    with caplog.at_level("WARNING", logger="litezoo.data"):
        again = open_dataset(tmp_path / "ds", cache_dir=cache)
    assert again.decoded and "rebuilding" in caplog.text
    np.testing.assert_array_equal(again.images[1], new)
    assert again.cache_path == ds.cache_path  # same slot, replaced
    write_folder(tmp_path / "ds2", {"train": {"a": 1}}, seed=5)
    os.replace(tmp_path / "ds2/train/a/000.png", tmp_path / "ds/train/a/zz.png")
    assert len(open_dataset(tmp_path / "ds", cache_dir=cache)) == 5


def test_truncated_or_foreign_cache_file_is_rebuilt(tmp_path, cache):
    write_folder(tmp_path / "ds", {"train": {"a": 2, "b": 2}})
    ds = open_dataset(tmp_path / "ds", cache_dir=cache)
    path, good = ds.cache_path, np.array(ds.images)
    del ds
    with open(path, "r+b") as f:  # cut the trailer off
        f.truncate(path.stat().st_size - 40)
    again = open_dataset(tmp_path / "ds", cache_dir=cache)
    assert again.decoded
    np.testing.assert_array_equal(again.images, good)
    path.write_bytes(b"LZCACHE1" + b"\0" * 5000)
    assert open_dataset(tmp_path / "ds", cache_dir=cache).decoded


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to kill a writer mid-build")
def test_writer_killed_mid_build_leaves_no_cache(tmp_path, cache):
    write_folder(tmp_path / "ds", {"train": {"a": 2, "b": 2}})
    pid = os.fork()
    if pid == 0:  # child: die hard while the cache is being written (after decoding, before finishing)
        try:
            open_dataset(tmp_path / "ds", cache_dir=cache, workers=1, progress=lambda done, total: os._exit(3))
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    decoded = cache / "decoded"
    leftovers = [p.name for p in decoded.iterdir()]
    assert not [n for n in leftovers if n.endswith(".lzc")], leftovers  # nothing that looks like a cache
    assert [n for n in leftovers if ".lzc.tmp-" in n]  # only the unfinished temp file
    ds = open_dataset(tmp_path / "ds", cache_dir=cache)
    assert ds.decoded and len(ds) == 4
    assert not [p for p in decoded.iterdir() if ".tmp-" in p.name]  # cleaned up by the next build


def test_error_during_build_removes_temp_file(tmp_path, cache):
    write_folder(tmp_path / "ds", {"train": {"a": 2}})

    def fail(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        open_dataset(tmp_path / "ds", cache_dir=cache, progress=fail)
    assert [p.name for p in (cache / "decoded").iterdir() if not p.name.endswith(".lock")] == []


# ---------------------------------------------------------------------------------------------- bad files


def _write_bad_files(folder: Path) -> dict[str, str]:
    good = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 30, 3), dtype=np.uint8))
    buf = io.BytesIO()
    good.save(buf, format="JPEG", quality=95)
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 3 // 4])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("this is a text file, not a PNG\n")
    Image.new("RGB", (40, 40), (9, 9, 9)).save(folder / "huge.png")  # 1600 px > the limit set below
    return {"truncated.jpg": "truncated", "empty.jpg": "empty file", "notes.png": "not a readable image",
            "huge.png": "decompression-bomb"}


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_files_skipped_with_one_warning(tmp_path, cache, monkeypatch, workers):
    n_good = 3 if workers == 1 else 70  # >= 64 files: the process pool is used
    pixels = write_folder(tmp_path / "ds", {"train": {"a": n_good, "b": 2}}, size=(4, 4))
    expected_reasons = _write_bad_files(tmp_path / "ds/train/a")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset(tmp_path / "ds", cache_dir=cache, image_size=4, workers=workers)
    lines = [w for w in caught if issubclass(w.category, BadImageWarning)]
    assert len(lines) == 1
    message = str(lines[0].message)
    assert "\n" not in message and "skipped 4" in message
    for name, reason in expected_reasons.items():
        assert name in message
        path = str(tmp_path / "ds/train/a" / name)
        assert path in ds.skipped and reason in ds.skipped_reasons[path]
    assert len(ds) == n_good + 2  # left out, not replaced by a filled image
    good = [pixels[p] for p in sorted(pixels)]
    np.testing.assert_array_equal(ds.images, np.stack(good))
    with pytest.warns(BadImageWarning, match="skipped 4"):  # reused cache: same list, warned again
        again = open_dataset(tmp_path / "ds", cache_dir=cache, image_size=4)
    assert not again.decoded and again.skipped == ds.skipped


def test_class_with_only_bad_files_is_an_error(tmp_path, cache):
    write_folder(tmp_path / "ds", {"train": {"a": 2}})
    (tmp_path / "ds/train/b").mkdir()
    (tmp_path / "ds/train/b/x.png").write_text("not an image")
    with pytest.raises(DatasetError, match="no readable images left in class folder"):
        open_dataset(tmp_path / "ds", cache_dir=cache)
    assert not list((cache / "decoded").glob("*.lzc"))


# ---------------------------------------------------------------------------------------------- errors


def test_layout_errors(tmp_path, cache):
    write_folder(tmp_path / "empty_class", {"train": {"a": 1}})
    (tmp_path / "empty_class/train/b").mkdir()
    with pytest.raises(DatasetError, match=r"empty class folder.*\bb\b"):
        open_dataset(tmp_path / "empty_class", cache_dir=cache)

    (tmp_path / "no_images/train/a").mkdir(parents=True)
    (tmp_path / "no_images/train/a/readme.txt").write_text("hi")
    with pytest.raises(DatasetError, match="no images in split"):
        open_dataset(tmp_path / "no_images", cache_dir=cache)

    (tmp_path / "no_classes/train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class folders"):
        open_dataset(tmp_path / "no_classes", cache_dir=cache)

    write_folder(tmp_path / "mismatch", {"train": {"a": 1, "b": 1}, "test": {"a": 1, "c": 1}})
    for split in ("train", "test"):
        with pytest.raises(DatasetError, match="class folders differ between") as err:
            open_dataset(tmp_path / "mismatch", split, cache_dir=cache)
        assert "only in train/: ['b']" in str(err.value) and "only in test/: ['c']" in str(err.value)

    write_folder(tmp_path / "train_only", {"train": {"a": 1}})
    with pytest.raises(DatasetError, match="no test split"):
        open_dataset(tmp_path / "train_only", "test", cache_dir=cache)

    write_folder(tmp_path / "flat", {".": {"cats": 1, "dogs": 1}})
    with pytest.raises(DatasetError, match="looks like a single split"):
        open_dataset(tmp_path / "flat", cache_dir=cache)

    with pytest.raises(DatasetError, match="dataset path not found"):
        open_dataset(tmp_path / "nowhere", cache_dir=cache)
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet7'"):
        open_dataset("imagenet7", cache_dir=cache)
    with pytest.raises(DatasetError, match="unknown split"):
        open_dataset(tmp_path / "flat", "dev", cache_dir=cache)
    assert issubclass(DatasetError, ValueError)  # litezoo.errors.InputError: CLI exit code 2


# ---------------------------------------------------------------------------------------------- download


def test_cifar10_offline_says_where_to_put_files(tmp_path, monkeypatch):
    def offline(url, dest, progress=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar, "fetch", offline)
    cache_dir = tmp_path / "cache"
    with pytest.raises(DatasetError) as err:
        open_dataset("cifar10", cache_dir=cache_dir)
    message = str(err.value)
    assert "download failed" in message and str(cache_dir / "cifar-10-python.tar.gz") in message
    assert cifar.CIFAR10_URL in message and cifar.CIFAR10_MD5 in message
    assert not [p for p in cache_dir.iterdir() if "tmp" in p.name]  # partial download removed
    with pytest.raises(DatasetError, match="downloading is off.*cifar-10-python.tar.gz"):
        open_dataset("cifar10", cache_dir=cache_dir, download=False)


def test_cifar10_download_checks_md5_then_uses_archive(tmp_path, monkeypatch):
    batches, test = fake_cifar_arrays()
    write_cifar_py(tmp_path / "src/cifar-10-batches-py", batches, test)
    archive = tar_gz(tmp_path / "src/cifar-10-batches-py", tmp_path / "src.tar.gz").read_bytes()
    monkeypatch.setattr(cifar, "fetch", lambda url, dest, progress=None: dest.write(archive))
    cache_dir = tmp_path / "cache"
    with pytest.raises(DatasetError, match="md5"):  # the real checksum does not match the fake archive
        open_dataset("cifar10", "test", cache_dir=cache_dir)
    assert not (cache_dir / cifar.CIFAR10_ARCHIVE).exists()
    import hashlib

    monkeypatch.setattr(cifar, "CIFAR10_MD5", hashlib.md5(archive).hexdigest())
    ds = open_dataset("cifar10", "test", cache_dir=cache_dir)
    assert (cache_dir / cifar.CIFAR10_ARCHIVE).is_file()
    np.testing.assert_array_equal(ds.images, nhwc(test[0]))
    monkeypatch.setattr(cifar, "fetch", lambda *a, **k: pytest.fail("downloaded twice"))
    assert len(open_dataset("CIFAR-10", "train", cache_dir=cache_dir)) == 20  # found locally now


# ---------------------------------------------------------------------------------------------- shared data


def test_shared_dogs_vs_cats_valid(shared_data, cache):
    ds = open_dataset(shared_data / "dogs-vs-cats", "test", image_size=32, limit=12, cache_dir=cache)
    assert ds.split == "valid" and ds.classes == ["cats", "dogs"]
    assert ds.class_counts() == {"cats": 6, "dogs": 6} and ds.images.shape == (12, 32, 32, 3)
    assert all(0.2 < m < 0.7 for m in ds.mean) and all(0.1 < s < 0.4 for s in ds.std)


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_data_show_writes_png_and_counts(tmp_path, capsys):
    write_folder(tmp_path / "ds", {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 1}})
    out = tmp_path / "grid.png"
    code = cli_main(["data", "show", str(tmp_path / "ds"), "--split", "train", "--out", str(out), "--n", "4",
                     "--cache-dir", str(tmp_path / "c"), "--augment", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["counts"] == {"cat": 3, "dog": 2} and result["png"] == str(out) and result["skipped"] == []
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100
    code = cli_main(["data", "show", str(tmp_path / "ds"), "--split", "test", "--out", str(out),
                     "--cache-dir", str(tmp_path / "c")])
    text = capsys.readouterr().out
    assert code == 0 and "cat" in text and "total" in text and "wrote" in text


def test_cli_data_info_and_bad_input(tmp_path, capsys):
    write_folder(tmp_path / "ds", {"train": {"cat": 2}, "valid": {"cat": 1}})
    assert cli_main(["data", "info", str(tmp_path / "ds"), "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [s["split"] for s in info["splits"]] == ["train", "valid"]
    assert [s["num_images"] for s in info["splits"]] == [2, 1]
    assert cli_main(["data", "show", str(tmp_path / "missing"), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "dataset path not found" in capsys.readouterr().err


def test_read_cache_rejects_other_key(tmp_path, cache):
    write_folder(tmp_path / "ds", {"train": {"a": 2}})
    ds = open_dataset(tmp_path / "ds", cache_dir=cache)
    contents, why = read_cache(ds.cache_path, "0" * 64)
    assert contents is None and "different files" in why
