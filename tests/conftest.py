"""Shared fixtures: where the read-only shared data lives (``../shared/data`` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$LITEZOO_SHARED_DATA`` or ``../shared/data`` next to the repository (as CI lays it out)."""
    return Path(os.environ.get("LITEZOO_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "cifar10").is_dir():
        pytest.fail(f"shared data not found at {path} (set LITEZOO_SHARED_DATA)")
    return path
