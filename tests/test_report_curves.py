"""curves.png: one run's loss, top-1 and lr per epoch, written atomically, tolerant of a cut-off metrics line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from litezoo.errors import InputError
from litezoo.report import save_curves

ROWS = [
    {"epoch": 1, "lr": 0.1, "train_loss": 2.0, "train_top1": 30.0, "test_loss": 1.8, "test_top1": 35.0},
    {"epoch": 2, "lr": 0.05, "train_loss": 1.2, "train_top1": 60.0, "test_loss": 1.1, "test_top1": 62.5},
    {"epoch": 3, "lr": 0.01, "train_loss": 0.8, "train_top1": 75.0, "test_loss": None, "test_top1": None},
]
MPL_BLUE, MPL_ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's first two line colours


def write_run(folder, rows, tail: str = ""):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("model: {name: shufflenet_v2_x0_5_cifar}\ntrain: {epochs: 3}\n")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return folder


def colour_share(pixels: np.ndarray, rgb) -> float:
    return float(np.mean(np.all(np.abs(pixels[..., :3].astype(int) - rgb) <= 8, axis=-1)))


def test_curves_png_has_three_panels_of_lines(tmp_path):
    run = write_run(tmp_path / "run", ROWS, tail='{"epoch": 4, "lr": 0.0')  # killed while writing epoch 4
    path = save_curves(run)
    assert path == run / "curves.png"
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (360, 1200, 3)
    thirds = np.array_split(image, 3, axis=1)
    # train (blue) in every panel; test (orange) in the loss and accuracy panels, not in the lr panel.
    assert all(colour_share(t, MPL_BLUE) > 1e-4 for t in thirds)
    assert colour_share(thirds[0], MPL_ORANGE) > 1e-4 and colour_share(thirds[1], MPL_ORANGE) > 1e-4
    assert colour_share(thirds[2], MPL_ORANGE) == 0
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temp file left behind


def test_curves_to_another_path_and_bad_input(tmp_path):
    run = write_run(tmp_path / "run", ROWS[:1])
    out = save_curves(run, tmp_path / "elsewhere" / "c.png")
    assert out.is_file() and not (run / "curves.png").exists()
    with pytest.raises(InputError, match="no metrics.jsonl"):
        save_curves(tmp_path)
    empty = write_run(tmp_path / "empty", [], tail='{"epo')
    with pytest.raises(InputError, match="no complete epoch"):
        save_curves(empty)
