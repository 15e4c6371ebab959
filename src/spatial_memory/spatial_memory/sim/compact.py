"""Episodes as compact arrays for training: memory-mapped `.npy` files and an index.

A directory of `.npy` arrays, memory-mapped on read
(`<cam>.rgb` (T,H,W,3) uint8, `<cam>.depth` (T,H,W) float32 or float16, `<cam>.K` (T,3,3),
`<cam>.T_world_cam` (T,4,4), `stamps_ns`, `joint_positions` (T,J), `T_world_base`, `T_odom_base`,
`twist` (T,6, NaN rows = not measured), `query_step` / `query_rgb` / `T_base_query` / `query_seen` /
`query_overlap` / `query_source_step`)
and `episode.json` (metadata and an index of the arrays). Both writers build in a hidden temporary
directory next to the target and rename it into place on success, so a failed write leaves nothing.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from spatial_memory.atomic import check_new_target, publish_dir, staging_dir
from spatial_memory.errors import InvalidInputError
from spatial_memory.sim.episode import (
    CameraFrame,
    EpisodeMetadata,
    OdometrySample,
    Query,
    StepRecord,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# Compact training format
# ----------------------------------------------------------------------------------------------------

COMPACT_FORMAT = "spatial_memory.compact"
COMPACT_VERSION = 1
COMPACT_INDEX = "episode.json"
DEPTH_DTYPES = ("float32", "float16")


def _per_step_arrays(metadata: EpisodeMetadata, depth_dtype: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Array name -> (shape of one step, dtype) of every per-step array of the compact format."""
    out: dict[str, tuple[tuple[int, ...], str]] = {
        "stamps_ns": ((), "int64"),
        "joint_positions": ((len(metadata.joint_names),), "float64"),
        "T_world_base": ((4, 4), "float64"),
        "T_odom_base": ((4, 4), "float64"),
        "twist": ((6,), "float64"),
    }
    for cam in metadata.cameras:
        h, w = cam.height, cam.width
        out[f"{cam.name}.rgb"] = ((h, w, 3), "uint8")
        out[f"{cam.name}.depth"] = ((h, w), depth_dtype)
        out[f"{cam.name}.K"] = ((3, 3), "float64")
        out[f"{cam.name}.T_world_cam"] = ((4, 4), "float64")
    return out


class CompactWriter:
    """Writes an episode of exactly `num_steps` steps as memory-mappable `.npy` arrays; a context manager.

    Arrays are preallocated on disk (no episode-sized buffer in memory) in a hidden staging directory
    that is renamed to `path` when all steps are in. `depth_dtype='float16'` halves the depth size
    (about 1 mm resolution at 2 m; values above 65504 m become inf).
    """

    def __init__(
        self, path: str | Path, metadata: EpisodeMetadata, num_steps: int, *, depth_dtype: str = "float32"
    ) -> None:
        if depth_dtype not in DEPTH_DTYPES:
            raise InvalidInputError(f"depth_dtype must be one of {DEPTH_DTYPES}, got {depth_dtype!r}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise InvalidInputError(f"num_steps must be a positive int, got {num_steps!r}")
        self.path = check_new_target(Path(path))
        self.metadata = metadata
        self.num_steps = num_steps
        self.depth_dtype = depth_dtype
        self.steps_written = 0
        self._layout = _per_step_arrays(metadata, depth_dtype)
        self._staging: Path | None = None
        self._arrays: dict[str, np.ndarray] = {}
        self._queries: list[tuple[int, Query]] = []

    def open(self) -> CompactWriter:
        self._staging = staging_dir(self.path)
        for name, (shape, dtype) in self._layout.items():
            self._arrays[name] = np.lib.format.open_memmap(
                self._staging / f"{name}.npy", mode="w+", dtype=dtype, shape=(self.num_steps, *shape)
            )
        return self

    def write(self, step: StepRecord) -> None:
        """Store one step in the next row of every array."""
        if self._staging is None:
            raise InvalidInputError("the compact writer is not open (use it as a context manager)")
        if self.steps_written >= self.num_steps:
            raise InvalidInputError(f"the episode was declared with {self.num_steps} steps; got more")
        self.metadata.check_step(step)
        i, a = self.steps_written, self._arrays
        if i and step.stamp_ns <= a["stamps_ns"][i - 1]:
            raise InvalidInputError(
                f"step stamps must increase: {step.stamp_ns} ns after {a['stamps_ns'][i - 1]} ns"
            )
        if step.query is not None and self._queries and step.query.rgb.shape != self._queries[0][1].rgb.shape:
            raise InvalidInputError(
                f"query images must share one size: {step.query.rgb.shape} vs {self._queries[0][1].rgb.shape}"
            )
        a["stamps_ns"][i] = step.stamp_ns
        a["joint_positions"][i] = step.joint_positions
        a["T_world_base"][i] = step.T_world_base
        a["T_odom_base"][i] = step.odometry.T_odom_base
        a["twist"][i] = np.nan if step.odometry.twist is None else step.odometry.twist
        for cam in step.cameras:
            a[f"{cam.name}.rgb"][i] = cam.rgb
            a[f"{cam.name}.depth"][i] = cam.depth
            a[f"{cam.name}.K"][i] = cam.K
            a[f"{cam.name}.T_world_cam"][i] = cam.T_world_cam
        if step.query is not None:
            self._queries.append((i, step.query))
        self.steps_written += 1

    def close(self) -> Path:
        """Flush the arrays, write the queries and `episode.json`, and move the directory to `path`."""
        if self._staging is None:
            raise InvalidInputError("the compact writer is not open")
        try:
            if self.steps_written != self.num_steps:
                raise InvalidInputError(
                    f"only {self.steps_written} of the declared {self.num_steps} steps were written; "
                    f"{self.path} not created"
                )
            for arr in self._arrays.values():
                arr.flush()
            self._arrays.clear()
            index = {name: [[self.num_steps, *shape], dtype] for name, (shape, dtype) in self._layout.items()}
            index |= self._write_queries()
            doc = {
                "format": COMPACT_FORMAT,
                "format_version": COMPACT_VERSION,
                "num_steps": self.num_steps,
                "arrays": index,
                "metadata": self.metadata.to_dict(),
            }
            (self._staging / COMPACT_INDEX).write_text(json.dumps(doc, indent=2))
            publish_dir(self._staging, self.path)
            self._staging = None
        finally:
            self.abort()
        log.info("wrote compact episode %s: %d steps", self.path, self.num_steps)
        return self.path

    def _write_queries(self) -> dict[str, list[Any]]:
        q = self._queries
        shape = q[0][1].rgb.shape if q else (0, 0, 3)
        arrays = {
            "query_step": np.array([i for i, _ in q], dtype=np.int64),
            "query_rgb": np.stack([x.rgb for _, x in q]) if q else np.zeros((0, *shape), np.uint8),
            "T_base_query": np.stack([x.T_base_query for _, x in q]) if q else np.zeros((0, 4, 4)),
            "query_seen": np.array([x.seen for _, x in q], dtype=bool),
            "query_overlap": np.array([x.overlap for _, x in q], dtype=np.float64),
            "query_source_step": np.array([x.source_step for _, x in q], dtype=np.int64),
        }
        for name, arr in arrays.items():
            np.save(self._staging / f"{name}.npy", arr)
        return {name: [list(arr.shape), str(arr.dtype)] for name, arr in arrays.items()}

    def abort(self) -> None:
        """Drop whatever was written (the target path is never touched)."""
        self._arrays.clear()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self) -> CompactWriter:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_compact(
    path: str | Path, metadata: EpisodeMetadata, steps: Sequence[StepRecord], *, depth_dtype: str = "float32"
) -> Path:
    """Write a whole episode in the compact format; nothing appears at `path` unless every step was good."""
    with CompactWriter(path, metadata, len(steps), depth_dtype=depth_dtype) as writer:
        for step in steps:
            writer.write(step)
    return writer.path


class CompactEpisode:
    """A compact episode on disk: the arrays (memory-mapped by default) and steps rebuilt on demand.

    A training loop reads the arrays directly (`episode.array('camera.rgb')[i]`); `step(i)` rebuilds a
    full `StepRecord` (float16 depth comes back as float32).
    """

    def __init__(self, path: str | Path, *, mmap: bool = True) -> None:
        self.path = Path(path)
        try:
            doc = json.loads((self.path / COMPACT_INDEX).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"{self.path} is not a compact episode: {exc}") from exc
        if doc.get("format") != COMPACT_FORMAT or doc.get("format_version") != COMPACT_VERSION:
            raise InvalidInputError(
                f"{self.path}: format {doc.get('format')!r} v{doc.get('format_version')} is not "
                f"{COMPACT_FORMAT!r} v{COMPACT_VERSION}"
            )
        self.metadata = EpisodeMetadata.from_dict(doc["metadata"])
        self.num_steps = int(doc["num_steps"])
        self._arrays = {name: self._load(name, spec, mmap) for name, spec in doc["arrays"].items()}
        self._query_of_step = {int(s): k for k, s in enumerate(self._arrays["query_step"])}

    def _load(self, name: str, spec: list[Any], mmap: bool) -> np.ndarray:
        try:
            arr = np.load(self.path / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{self.path}: cannot read array {name!r}: {exc}") from exc
        if list(arr.shape) != list(spec[0]) or str(arr.dtype) != spec[1]:
            raise InvalidInputError(
                f"{self.path}: array {name!r} is {arr.dtype}{arr.shape}, "
                f"the index says {spec[1]}{tuple(spec[0])}"
            )
        return arr

    def __len__(self) -> int:
        return self.num_steps

    @property
    def stamps_ns(self) -> np.ndarray:
        return self._arrays["stamps_ns"]

    @property
    def array_names(self) -> tuple[str, ...]:
        return tuple(self._arrays)

    def array(self, name: str) -> np.ndarray:
        """One stored array by name (e.g. 'camera.rgb', 'T_world_base', 'query_rgb')."""
        try:
            return self._arrays[name]
        except KeyError:
            raise InvalidInputError(f"no array {name!r}; the episode has {sorted(self._arrays)}") from None

    def step(self, index: int) -> StepRecord:
        """Step `index` (negative counts from the end) as a StepRecord with its own arrays."""
        if not -self.num_steps <= index < self.num_steps:
            raise InvalidInputError(f"step {index} out of range: the episode has {self.num_steps} steps")
        i = index % self.num_steps
        a = self._arrays
        cameras = tuple(
            CameraFrame(
                name=cam.name,
                rgb=np.array(a[f"{cam.name}.rgb"][i]),
                depth=np.array(a[f"{cam.name}.depth"][i], dtype=np.float32),
                K=np.array(a[f"{cam.name}.K"][i]),
                frame_id=cam.frame_id,
                T_world_cam=np.array(a[f"{cam.name}.T_world_cam"][i]),
            )
            for cam in self.metadata.cameras
        )
        twist = np.array(a["twist"][i])
        query = None
        if i in self._query_of_step:
            k = self._query_of_step[i]
            query = Query(
                rgb=np.array(a["query_rgb"][k]),
                T_base_query=np.array(a["T_base_query"][k]),
                seen=bool(a["query_seen"][k]),
                overlap=float(a["query_overlap"][k]) if "query_overlap" in a else math.nan,
                source_step=int(a["query_source_step"][k]) if "query_source_step" in a else -1,
            )
        return StepRecord(
            stamp_ns=int(a["stamps_ns"][i]),
            cameras=cameras,
            joint_names=self.metadata.joint_names,
            joint_positions=np.array(a["joint_positions"][i]),
            T_world_base=np.array(a["T_world_base"][i]),
            odometry=OdometrySample(
                T_odom_base=np.array(a["T_odom_base"][i]), twist=None if np.isnan(twist).any() else twist
            ),
            query=query,
        )

    def __getitem__(self, index: int) -> StepRecord:
        return self.step(index)

    def poses(self) -> dict[str, np.ndarray]:
        """Ground-truth and odometry poses of every step (T, 4, 4), keyed as in `BagReader.poses`."""
        names = ["T_world_base", "T_odom_base", *(f"{c.name}.T_world_cam" for c in self.metadata.cameras)]
        return {name: np.array(self._arrays[name]) for name in names}

    def __iter__(self) -> Iterator[StepRecord]:
        return (self.step(i) for i in range(self.num_steps))

    def close(self) -> None:
        """Drop the memory maps."""
        self._arrays.clear()

    def __enter__(self) -> CompactEpisode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
