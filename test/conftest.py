"""Shared test fixtures: repo paths and the TUM RGB-D clip next to the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tum_teddy() -> Path:
    path = SHARED / "data" / "rgbd_dataset_freiburg3_teddy_frames000-099"
    if not path.is_dir():
        pytest.skip(f"TUM clip not found at {path} (it lives in ../shared/data beside the checkout)")
    return path
