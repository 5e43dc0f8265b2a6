"""The torch-free deployment path, for real: a venv without torch runs `litezoo predict` on an exported model.

The venv gets numpy, Pillow and onnxruntime only (symlinked from this environment's site-packages, the way the
`runtime` extra installs them) plus the litezoo source tree; importing torch there must fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[1] / "src"


def _site_packages_of(module: str) -> Path:
    mod = __import__(module)
    return Path(mod.__file__).resolve().parent.parent


def _torchless_python(root: Path) -> Path:
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    links = root / "runtime-packages"
    links.mkdir()
    for module in ("numpy", "PIL", "onnxruntime"):
        site = _site_packages_of(module)
        for entry in site.iterdir():  # the package and its bundled shared libraries (numpy.libs, pillow.libs)
            name = entry.name.lower()
            if name == module.lower() or name.startswith(f"{module.lower()}.libs") or (
                module == "PIL" and name.startswith("pillow.libs")
            ):  # fmt: skip
                (links / entry.name).symlink_to(entry)
    (links / "litezoo").symlink_to(SRC / "litezoo")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(purelib, "runtime.pth").write_text(str(links) + "\n")
    return python


def test_predict_runs_without_torch(tmp_path, exported_tiny):
    onnx_path, folder = exported_tiny
    python = _torchless_python(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["LITEZOO_CACHE"] = str(tmp_path / "cache")
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    proc = subprocess.run(
        [str(python), "-m", "litezoo", "predict", str(onnx_path), str(folder), "--topk", "2", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # the same numbers as in this (torch) environment, through the library directly
    from litezoo.runtime import OnnxClassifier, predict_files

    here = predict_files(OnnxClassifier(onnx_path, threads=1), [folder], topk=2).to_dict()
    assert out["num_images"] == here["num_images"] > 0
    assert out["accuracy"] == here["accuracy"]
    for a, b in zip(out["predictions"], here["predictions"]):
        assert a["path"] == b["path"] and a["top"][0]["class"] == b["top"][0]["class"]
        np.testing.assert_allclose(a["top"][0]["prob"], b["top"][0]["prob"], atol=1e-5)
    # and the module really ran torch-free: a bad file is still one line, exit 2
    bad = subprocess.run([str(python), "-m", "litezoo", "predict", str(folder / "cat" / "0.png"), str(folder)],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "not a readable ONNX model" in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.fixture(scope="module")
def exported_tiny(tmp_path_factory):
    from test_deploy import make_folder, make_run

    from litezoo.deploy.export import export_onnx

    root = tmp_path_factory.mktemp("torchfree")
    data = make_folder(root / "data", {"train": 12, "test": 4})
    run = make_run(data, root / "run", root / "cache", steps=4)
    path = export_onnx(run, root / "tiny.onnx", dynamic_batch=True, check_images=8)["path"]
    (data / "test" / "cat" / "broken.jpg").write_bytes(b"garbage")
    return Path(path), data / "test"
