"""Locate the files the package ships in `share/spatial_memory/` (URDF, configs, launch files).

Looked up in order: `$SPATIAL_MEMORY_SHARE`, the ament index (a colcon/ROS install),
`<prefix>/share/spatial_memory` (a pip install puts setup.py's data_files there), and the source
checkout (editable installs, tests).
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

from spatial_memory.errors import ResourceNotFoundError

PACKAGE = "spatial_memory"


def _candidates() -> list[Path]:
    roots: list[Path] = []
    env = os.environ.get("SPATIAL_MEMORY_SHARE")
    if env:
        roots.append(Path(env))
    try:  # a ROS install; ament_index_python is a ROS package, absent without ROS
        from ament_index_python.packages import get_package_share_directory

        roots.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # noqa: BLE001 - absent module or package not in the index: fall through
        pass
    roots.append(Path(sys.prefix) / "share" / PACKAGE)
    roots.append(Path(__file__).resolve().parents[3])  # <repo>/src/spatial_memory/spatial_memory -> <repo>
    return roots


@cache
def share_path(relative: str) -> Path:
    """Absolute path of a shipped file such as 'urdf/fr3.urdf' or 'config/robot.yaml'."""
    tried = []
    for root in _candidates():
        path = root / relative
        if path.is_file():
            return path
        tried.append(str(path))
    raise ResourceNotFoundError(f"cannot find {relative!r}; looked in: " + ", ".join(tried))
