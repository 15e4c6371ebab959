"""Episodes on disk, in either format: a ROS 2 bag (`sim.bag`) to replay and inspect, and compact arrays
(`sim.compact`) to train on. `open_episode` opens either; the bag is for ROS tools, the compact arrays are
several times faster to read in a training loop (`benchmarks/bench_dataset.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from spatial_memory.errors import InvalidInputError
from spatial_memory.sim.bag import (
    METADATA_KEY,
    BagReader,
    BagWriter,
    jazzy_typestore,
    read_bag_metadata,
    write_bag,
)
from spatial_memory.sim.compact import (
    COMPACT_INDEX,
    DEPTH_DTYPES,
    CompactEpisode,
    CompactWriter,
    write_compact,
)
from spatial_memory.sim.episode import (
    EpisodeMetadata,
    StepRecord,
)

__all__ = [
    "COMPACT_INDEX",
    "DEPTH_DTYPES",
    "METADATA_KEY",
    "BagReader",
    "BagWriter",
    "CompactEpisode",
    "CompactWriter",
    "EpisodeSource",
    "find_episode",
    "jazzy_typestore",
    "open_episode",
    "read_bag_metadata",
    "write_bag",
    "write_compact",
]


# ----------------------------------------------------------------------------------------------------
# Either format
# ----------------------------------------------------------------------------------------------------


class EpisodeSource(Protocol):
    """What both readers offer: metadata, length, random access and iteration over steps."""

    metadata: EpisodeMetadata

    def __len__(self) -> int: ...

    def step(self, index: int) -> StepRecord: ...

    def poses(self) -> dict[str, np.ndarray]: ...

    def __iter__(self) -> Iterator[StepRecord]: ...

    def close(self) -> None: ...


def find_episode(path: str | Path) -> Path:
    """The episode at `path`: a bag or compact directory, or a recording folder with `compact/` or `bag/`."""
    path = Path(path)
    for candidate in (path, path / "compact", path / "bag"):
        if (candidate / COMPACT_INDEX).is_file() or (candidate / "metadata.yaml").is_file():
            return candidate
    raise InvalidInputError(f"no episode at {path} (expected a bag or compact episode, or a folder of them)")


def open_episode(path: str | Path) -> EpisodeSource:
    """Open an episode in either format (the compact one first when a recording folder has both)."""
    found = find_episode(path)
    if (found / COMPACT_INDEX).is_file():
        return CompactEpisode(found)
    return BagReader(found)
