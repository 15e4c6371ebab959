"""Record simulated episodes: run a scene step by step and write a ROS 2 bag and/or compact arrays.

Any world plugs in through the small `Scene` protocol (`metadata`, `step(t) -> StepRecord`, `close()`).
Today that is `TabletopEpisodeScene`: the stationary FR3 on the kitchen table touring its viewpoints
(`sim.arm_motion.tour`), seen by the exocentric camera (recorded as the head camera, `camera`) and the
wrist camera, with wheel odometry from `sim.odometry` and, every few steps, a query image rendered at
another point of the tour.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from spatial_memory.atomic import check_output_dir, remove_stale_partials
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert
from spatial_memory.msgs import topics
from spatial_memory.robot.description import CameraMount
from spatial_memory.sim.arm_motion import TourConfig, tour
from spatial_memory.sim.bag import BagWriter
from spatial_memory.sim.compact import DEPTH_DTYPES, CompactWriter
from spatial_memory.sim.episode import (
    HEAD_CAMERA,
    WRIST_CAMERA,
    CameraFrame,
    CameraSpec,
    EpisodeMetadata,
    OdometrySample,
    Query,
    StepRecord,
)
from spatial_memory.sim.odometry import WheelOdometry, WheelOdometryConfig
from spatial_memory.sim.tabletop import EXO_CAMERA, TabletopConfig, TabletopScene
from spatial_memory.sim.tabletop import WRIST_CAMERA as MJ_WRIST_CAMERA

log = logging.getLogger(__name__)

# --format values of `spatial-memory sim record`; 'npz' names the compact arrays (a folder of .npy files)
FORMATS: dict[str, tuple[str, ...]] = {
    "bag": ("bag",),
    "compact": ("compact",),
    "npz": ("compact",),
    "both": ("bag", "compact"),
}
OUTPUT_NAMES = {"bag": "bag", "compact": "compact"}  # sub-folders of a recording folder


class Scene(Protocol):
    """A simulated world that produces one `StepRecord` per step, in order t = 0, 1, 2, ..."""

    @property
    def metadata(self) -> EpisodeMetadata: ...

    def step(self, t: int) -> StepRecord: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------------
# The tabletop scene as an episode source
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TabletopEpisodeConfig:
    """The tabletop world, the recording rate, the arm's tour, odometry noise and the query schedule.

    A query is rendered every `query_every` steps (0 = none) at a random time of the tour; it counts as
    `seen` when the wrist camera has already been within `seen_distance_m` and `seen_angle_deg` (optical
    axes) of the query camera's pose at this or an earlier step.
    """

    scene: TabletopConfig = field(default_factory=lambda: TabletopConfig(width=128, height=96))
    rate_hz: float = 15.0
    tour: TourConfig = field(default_factory=TourConfig)
    camera: CameraMount = field(default_factory=CameraMount)
    odometry: WheelOdometryConfig = field(default_factory=WheelOdometryConfig)
    query_every: int = 10
    seen_distance_m: float = 0.10
    seen_angle_deg: float = 25.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ConfigError(f"rate_hz must be positive, got {self.rate_hz}")
        if self.query_every < 0:
            raise ConfigError(f"query_every must be >= 0, got {self.query_every}")
        if self.seen_distance_m <= 0 or not 0 < self.seen_angle_deg <= 180:
            raise ConfigError("seen_distance_m must be > 0 and seen_angle_deg within (0, 180]")


class TabletopEpisodeScene:
    """`Scene` over `TabletopScene`: the FR3 tours its viewpoints; both cameras render RGB-D each step.

    Steps must be taken in order (the odometry and the `seen` bookkeeping are stateful).
    """

    # (episode camera name, MuJoCo camera name): the exocentric camera is recorded as the head camera
    CAMERAS = ((HEAD_CAMERA, EXO_CAMERA), (WRIST_CAMERA, MJ_WRIST_CAMERA))

    def __init__(self, config: TabletopEpisodeConfig, num_steps: int) -> None:
        if num_steps < 1:
            raise InvalidInputError(f"an episode needs at least one step, got {num_steps}")
        self.config = config
        self.num_steps = num_steps
        self.scene = TabletopScene(config.scene, config.camera)
        self._joints = tour(np.arange(num_steps) / config.rate_hz, config.tour)
        self._odometry = WheelOdometry(config.odometry)
        self._rng = np.random.default_rng([config.scene.seed, 1])
        self._wrist_positions: list[np.ndarray] = []
        self._wrist_axes: list[np.ndarray] = []
        self._next = 0
        self._metadata = self._make_metadata()

    @property
    def metadata(self) -> EpisodeMetadata:
        return self._metadata

    def _make_metadata(self) -> EpisodeMetadata:
        cfg, scene = self.config, self.scene
        fk = scene.kinematics.forward_all(scene.kinematics.home)
        T_link_optical = invert(fk["wrist_camera_link"]) @ fk[topics.CAMERA_OPTICAL_FRAME]
        size = {"width": cfg.scene.width, "height": cfg.scene.height}
        cameras = (
            CameraSpec(
                name=HEAD_CAMERA,
                frame_id="camera_optical_frame",
                K=scene.intrinsics(EXO_CAMERA),
                parent_frame="world",
                T_parent_cam=scene.camera_pose(EXO_CAMERA),  # the exocentric camera is fixed in the world
                **size,
            ),
            CameraSpec(
                name=WRIST_CAMERA,
                frame_id=topics.CAMERA_OPTICAL_FRAME,
                K=scene.intrinsics(MJ_WRIST_CAMERA),
                parent_frame="wrist_camera_link",  # the rest of the chain is the arm's FK (fk_node)
                T_parent_cam=T_link_optical,
                **size,
            ),
        )
        return EpisodeMetadata(
            scene="tabletop",
            seed=cfg.scene.seed,
            rate_hz=cfg.rate_hz,
            cameras=cameras,
            joint_names=scene.kinematics.joint_names,
            world={
                "tabletop": asdict(cfg.scene),
                "tour": asdict(cfg.tour),
                "camera_mount": asdict(cfg.camera),
            },
            odometry_noise=asdict(cfg.odometry),
            T_world_odom=scene.T_world_base,  # odometry starts at the (fixed) base pose
        )

    def step(self, t: int) -> StepRecord:
        """Render step `t` (the next one in order) and return its record."""
        if t != self._next or t >= self.num_steps:
            raise InvalidInputError(
                f"steps run in order 0..{self.num_steps - 1}: expected {self._next}, got {t}"
            )
        q = self.scene.set_joints(self._joints[t])
        frames = tuple(self._camera_frame(name, mj_name) for name, mj_name in self.CAMERAS)
        wrist = frames[1].T_world_cam
        self._wrist_positions.append(wrist[:3, 3])
        self._wrist_axes.append(wrist[:3, 2])
        query = self._query() if self.config.query_every and t and t % self.config.query_every == 0 else None
        self.scene.set_joints(q)
        self._next += 1
        stamp_ns = round(t * 1e9 / self.config.rate_hz)
        T_odom_base = self._odometry.update(self.scene.T_world_base, stamp_ns)
        return StepRecord(
            stamp_ns=stamp_ns,
            cameras=frames,
            joint_names=self.scene.kinematics.joint_names,
            joint_positions=q,
            T_world_base=self.scene.T_world_base,
            odometry=OdometrySample(T_odom_base=T_odom_base, twist=self._odometry.twist),
            query=query,
        )

    def _camera_frame(self, name: str, mj_name: str) -> CameraFrame:
        spec = self._metadata.camera(name)
        return CameraFrame(
            name=name,
            rgb=self.scene.render(mj_name),
            depth=self.scene.render_depth(mj_name),
            K=spec.K,
            frame_id=spec.frame_id,
            T_world_cam=self.scene.camera_pose(mj_name),
        )

    def _query(self) -> Query:
        """A wrist-camera view from a random time of one tour pass (or of the episode, if longer)."""
        cfg = self.config
        one_pass = len(cfg.tour.pans) * (cfg.tour.dwell_s + cfg.tour.move_s)
        when = self._rng.uniform(0.0, max(one_pass, self.num_steps / cfg.rate_hz))
        self.scene.set_joints(tour(np.array([when]), cfg.tour)[0])
        rgb = self.scene.render(MJ_WRIST_CAMERA)
        T_world_query = self.scene.camera_pose(MJ_WRIST_CAMERA)
        return Query(
            rgb=rgb,
            T_base_query=invert(self.scene.T_world_base) @ T_world_query,
            seen=self._seen(T_world_query),
        )

    def _seen(self, T_world_query: np.ndarray) -> bool:
        """Has the wrist camera been close to this pose (position and viewing direction) already?"""
        distance = np.linalg.norm(np.array(self._wrist_positions) - T_world_query[:3, 3], axis=1)
        cos = np.array(self._wrist_axes) @ T_world_query[:3, 2]
        near = (distance < self.config.seen_distance_m) & (
            cos > math.cos(math.radians(self.config.seen_angle_deg))
        )
        return bool(near.any())

    def close(self) -> None:
        self.scene.close()

    def __enter__(self) -> TabletopEpisodeScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------
# Recording
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordResult:
    """What a recording wrote: the episode folders by format, the step and query counts, the time taken."""

    out_dir: Path
    steps: int
    queries: int
    files: dict[str, Path]
    wall_time_s: float


def check_targets(out_dir: Path, formats: tuple[str, ...], depth_dtype: str) -> dict[str, Path]:
    """Episode folder per format, checked before any simulation runs (never overwrite an episode); stale
    partial folders of a killed recording into the same targets are removed."""
    unknown = sorted(set(formats) - set(OUTPUT_NAMES))
    if unknown or not formats:
        raise InvalidInputError(f"formats must be some of {sorted(OUTPUT_NAMES)}, got {list(formats)}")
    if depth_dtype not in DEPTH_DTYPES:
        raise InvalidInputError(f"depth_dtype must be one of {DEPTH_DTYPES}, got {depth_dtype!r}")
    check_output_dir(out_dir, "recording folder")  # a file in the way or a read-only place: say so now
    targets = {fmt: out_dir / OUTPUT_NAMES[fmt] for fmt in dict.fromkeys(formats)}
    for path in targets.values():
        if path.exists() or path.is_symlink():
            raise InvalidInputError(f"{path} exists already; choose another --out or remove it")
        remove_stale_partials(path)  # a recording killed mid-way (kill -9) left its hidden staging folder
    return targets


def record_episode(
    scene: Scene,
    out_dir: str | Path,
    steps: int,
    *,
    formats: tuple[str, ...] = ("bag", "compact"),
    depth_dtype: str = "float32",
    progress: bool = True,
) -> RecordResult:
    """Run `scene` for `steps` steps and write them to `out_dir/bag` and/or `out_dir/compact`.

    Existing episodes are never overwritten; a failure at any step leaves no episode folder behind.
    """
    out_dir = Path(out_dir)
    targets = check_targets(out_dir, formats, depth_dtype)
    start, queries = time.perf_counter(), 0
    with ExitStack() as stack:
        writers: list[BagWriter | CompactWriter] = []
        if "bag" in targets:
            writers.append(stack.enter_context(BagWriter(targets["bag"], scene.metadata)))
        if "compact" in targets:
            writer = CompactWriter(targets["compact"], scene.metadata, steps, depth_dtype=depth_dtype)
            writers.append(stack.enter_context(writer))
        for t in tqdm(range(steps), desc="recording", unit="step", disable=not progress):
            step = scene.step(t)
            queries += step.query is not None
            for w in writers:
                w.write(step)
    wall = time.perf_counter() - start
    log.info("recorded %d steps (%d queries) in %.1f s to %s", steps, queries, wall, out_dir)
    return RecordResult(out_dir=out_dir, steps=steps, queries=queries, files=targets, wall_time_s=wall)


def record_tabletop_episode(
    out_dir: str | Path,
    steps: int,
    seed: int = 0,
    width: int = 128,
    height: int = 96,
    *,
    rate_hz: float = 15.0,
    formats: tuple[str, ...] = ("bag", "compact"),
    query_every: int = 10,
    odometry: WheelOdometryConfig | None = None,
    depth_dtype: str = "float32",
    progress: bool = True,
) -> RecordResult:
    """Record the tabletop scene (seed, image size) for `steps` steps at `rate_hz` into `out_dir`."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInputError(f"steps must be a positive int, got {steps!r}")
    check_targets(Path(out_dir), formats, depth_dtype)  # fail before building the scene
    config = TabletopEpisodeConfig(
        scene=TabletopConfig(seed=seed, width=width, height=height),
        rate_hz=rate_hz,
        odometry=odometry or WheelOdometryConfig(),
        query_every=query_every,
    )
    with TabletopEpisodeScene(config, steps) as scene:
        return record_episode(
            scene, out_dir, steps, formats=formats, depth_dtype=depth_dtype, progress=progress
        )
