"""A model trained on CIFAR-10's binary batches (the original pixels) evaluates on an image-folder copy (the JPEG
copy's layout): same classes in the same order, the training run's normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import litezoo
from litezoo.checkpoint import export_safetensors
from litezoo.cli.main import main
from litezoo.data import cifar, open_dataset

MODEL = "mobilenet_v1_x0_25_cifar"


def write_both_layouts(root: Path, per_class_test: int = 2) -> tuple[Path, Path]:
    """The same test images as official binary batches and as a PNG folder ``test/<class>/N.png`` (lossless)."""
    rng = np.random.default_rng(0)
    n_test = per_class_test * 10
    test_labels = np.repeat(np.arange(10), per_class_test)
    test_pixels = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)  # (N, H, W, C)
    train_pixels = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    train_labels = np.arange(10)

    def records(pixels, labels):  # 1 label byte + red, green, blue planes, row-major
        planes = pixels.transpose(0, 3, 1, 2).reshape(len(labels), -1)
        return np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1).tobytes()

    binary = root / "original" / "cifar-10-batches-bin"
    binary.mkdir(parents=True)
    for i in range(1, 6):
        (binary / f"data_batch_{i}.bin").write_bytes(records(train_pixels[i - 1 :: 5], train_labels[i - 1 :: 5]))
    (binary / "test_batch.bin").write_bytes(records(test_pixels, test_labels))
    (binary / "batches.meta.txt").write_text("\n".join(cifar.CIFAR10_CLASSES) + "\n\n")

    folder = root / "folder"
    for split, pixels, labels in (("train", train_pixels, train_labels), ("test", test_pixels, test_labels)):
        for i, (img, label) in enumerate(zip(pixels, labels)):
            d = folder / split / cifar.CIFAR10_CLASSES[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:04d}.png")
    return binary.parent, folder


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    original, folder = write_both_layouts(root)
    cache = root / "cache"
    # A "trained" model: random weights, exported with the metadata the trainer writes for a binary-batch run.
    train = open_dataset(original, "train", cache_dir=cache)
    torch.manual_seed(0)
    model = litezoo.create_model(MODEL, num_classes=10)
    weights = export_safetensors(model.state_dict(), root / "run" / "model.safetensors", {
        "model_name": MODEL, "num_classes": 10, "in_chans": 3, "image_size": 32, "classes": list(train.classes),
        "mean": [float(v) for v in train.mean], "std": [float(v) for v in train.std], "epoch": 1, "ema": False,
    })  # fmt: skip
    return original, folder, cache, weights


def test_binary_and_folder_layouts_have_the_same_classes_in_the_same_order(layouts):
    original, folder, cache, _ = layouts
    a = open_dataset(original, "test", cache_dir=cache)
    b = open_dataset(folder, "test", cache_dir=cache)
    assert list(a.classes) == list(b.classes) == cifar.CIFAR10_CLASSES
    # the parent folder and the batches folder itself name the same data
    assert list(open_dataset(original / "cifar-10-batches-bin", "test", cache_dir=cache).labels) == list(a.labels)
    assert sorted(a.labels.tolist()) == sorted(b.labels.tolist())


def test_eval_of_a_binary_trained_run_on_the_folder_copy(layouts, tmp_path, capsys):
    original, folder, cache, weights = layouts
    results = {}
    for name, data in (("binary", original), ("folder", folder)):
        code = main(["eval", str(weights), "--data", str(data), "--json", "--device", "cpu", "--cache-dir", str(cache),
                     "--out", str(tmp_path / name), "--tta"])  # fmt: skip
        assert code == 0
        results[name] = json.loads(capsys.readouterr().out)
    # PNG is lossless: the same 20 images, so the same predictions class by class (the folder lists them by class,
    # the binary batch in its own order: per-class figures, not the order, must agree).
    assert results["folder"]["top1"] == pytest.approx(results["binary"]["top1"])
    assert results["folder"]["confusion"] == results["binary"]["confusion"]
    assert results["folder"]["num_samples"] == results["binary"]["num_samples"] == 20


def test_eval_on_data_with_other_classes_is_exit_2(layouts, tmp_path, capsys):
    _, folder, cache, weights = layouts
    other = tmp_path / "other"
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (other / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(other / split / c / "0.png")
    code = main(["eval", str(weights), "--data", str(other), "--device", "cpu", "--cache-dir", str(cache)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "classes" in err and len(err.splitlines()) == 1
