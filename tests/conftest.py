"""Shared fixtures: where the read-only shared data lives (``../shared/data`` beside the checkout)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """A script of the checkout that is not a package module (``benchmarks/which_net.py``,
    ``tests/fixtures/torchvision/make_fixtures.py``), imported from its file: ``from conftest import load_script``."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_data_dir() -> Path:
    """``$LITEZOO_SHARED_DATA`` or ``../shared/data`` next to the repository (as CI lays it out)."""
    return Path(os.environ.get("LITEZOO_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "cifar10").is_dir():
        pytest.fail(f"shared data not found at {path} (set LITEZOO_SHARED_DATA)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny test models run fastest and deterministically on one thread; several OpenMP threads fighting
    for two (possibly busy) cores made tiny forwards 100x slower. Subprocess tests set their own threads."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
