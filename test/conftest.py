"""Shared test fixtures: repo paths and the TUM RGB-D clip next to the checkout."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(autouse=True)
def _project_logs_reach_caplog():
    """Where ROS 2 is sourced, pytest loads launch_testing's plugin, and its `import launch` makes every
    logger created afterwards a LaunchLogger that does not propagate: the project's records would then miss
    the root logger (caplog, a CLI's basicConfig). For each test, plain loggers again and the project's
    existing ones propagating; restored afterwards, so launch's own tests see launch's logging."""
    cls = logging.getLoggerClass()
    stuck = [
        lg
        for name, lg in logging.Logger.manager.loggerDict.items()
        if name.split(".")[0] == "spatial_memory" and isinstance(lg, logging.Logger) and not lg.propagate
    ]
    logging.setLoggerClass(logging.Logger)
    for lg in stuck:
        lg.propagate = True
    yield
    logging.setLoggerClass(cls)
    for lg in stuck:
        lg.propagate = False


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tum_teddy() -> Path:
    path = SHARED / "data" / "rgbd_dataset_freiburg3_teddy_frames000-099"
    if not path.is_dir():
        pytest.skip(f"TUM clip not found at {path} (it lives in ../shared/data beside the checkout)")
    return path
