"""A wheel built from this tree installs into a fresh virtual environment and trains from another folder.

What a normal (non-editable) install sees: only what the wheel ships. The recipes must be package data
(`--config fast_cifar10` used to fail outside the checkout) and nothing may reach back into the source tree.
Nothing is downloaded: the wheel is built without build isolation (this environment's setuptools) and installed
with --no-deps --no-index; torch, numpy and the other dependencies come from this environment through a .pth
file (its lines are added to sys.path after the new environment's own site-packages, so litezoo itself is
found in the wheel's copy, and this environment's editable-install hooks are not run).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _tiny_cifar_bin(folder: Path, train_per_file: int = 52, test: int = 100) -> Path:
    """CIFAR-10's binary layout: records of 1 label byte + 3,072 pixel bytes (R, G, B planes), 5 train files."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)

    def records(n: int) -> bytes:
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        # Each class has its own mean colour, so the data are not pure noise.
        pixels = rng.integers(0, 64, (n, 3, 1024), dtype=np.uint8) + (labels[:, None, None] * 19).astype(np.uint8)
        return np.concatenate([labels[:, None], pixels.reshape(n, 3072)], axis=1).tobytes()

    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(records(train_per_file))
    (folder / "test_batch.bin").write_bytes(records(test))
    (folder / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n")
    return folder


def test_wheel_installs_in_a_fresh_venv_and_trains_from_another_folder(tmp_path):
    # 1. Build the wheel from a copy of the tree (the build writes build/ and *.egg-info beside the sources).
    source = tmp_path / "source"
    source.mkdir()
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", wheels, source], cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("litezoo-*.whl")

    # 2. A fresh venv with only the wheel; dependencies through a .pth line to this environment's packages.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=tmp_path)  # fmt: skip
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()})
    (purelib / "zz_deps_from_the_test_environment.pth").write_text("\n".join(ours) + "\n")

    # 3. From a folder that is not the checkout: the installed copy, with its recipes, and no git commit.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LITEZOO_DEBUG")}
    env |= {"LITEZOO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "2"}
    probe = (
        "import json, litezoo, litezoo.config as C, litezoo.machine as M\n"
        "print(json.dumps({'file': litezoo.__file__, 'recipes': C.list_recipes(), 'git': M.git_commit()}))"
    )
    info = json.loads(_run([python, "-c", probe], elsewhere, env))
    assert Path(info["file"]).is_relative_to(venv), f"imported litezoo from {info['file']}, not the wheel"
    assert {"fast_cifar10", "mobilenet_v1_cifar10", "squeezenet_cifar10"} <= set(info["recipes"])
    assert info["git"] == {"commit": None, "dirty": None}  # an installed copy is not a checkout

    # 4. Train one epoch of the shipped fast recipe on a tiny CIFAR-layout folder (260 images, so batches of
    #    64 give 4 steps: the point is the installed copy and its recipe, not the batch size). The recipe warms up
    #    over 3.7 epochs, so a 1-epoch run shortens the warm-up too.
    data = _tiny_cifar_bin(tmp_path / "data" / "cifar-10-batches-bin")
    out = tmp_path / "runs" / "one"
    stdout = _run([venv / "bin" / "litezoo", "train", "--config", "fast_cifar10", "--data", data, "--out", out,
                   "--epochs", "1", "--warmup-epochs", "0.2", "--batch-size", "64", "--json"], elsewhere, env)  # fmt: skip
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["epoch"] == 1 and 0.0 <= result["test_top1"] <= 100.0
    assert (out / "model.safetensors").is_file() and (out / "config.yaml").is_file()
    assert "name: vgg_fast_cifar" in (out / "config.yaml").read_text()

    # The README's path form finds the shipped recipe outside the checkout too (no configs/ folder here).
    check = "import litezoo.config as C; print(C.resolve('configs/fast_cifar10.yaml') == C.resolve('fast_cifar10'))"
    assert _run([python, "-c", check], elsewhere, env).strip() == "True"
