"""Episodes of the mobile FR3 exploring a generated world: the `Scene` that `recorder.record_episode` writes.

Each step: the exploration script (`world_tour.WorldTour` with the compact arm scan) drives the base for
one step's worth of control ticks, both RGB-D cameras render (the head camera recorded as `camera`, the
wrist camera as `wrist_camera`), the wheel odometry integrates the true motion with noise, and every few
steps a query of a seen or unseen place is rendered (`sim.queries`). The metadata carries the world itself
(`World.to_dict`), so the episode's world can be rebuilt exactly, and the robot, tour and arm settings.

Step rate. The control loop always runs at `control_hz` (15 Hz, the rate the visual odometry wants), and
one recorded step is every `control_hz / rate_hz`-th tick. The default `rate_hz` is 5 Hz: the memory model
consumes steps, and at 5 Hz a step moves the base up to 10 cm or turns it 10 degrees, so T = 200 steps
(40 s) reaches three rooms of a house on most seeds (two on some) and already comes back into a room it
left, and T = 800 (160 s) covers every room with 6-10 revisits, where 15 Hz would spend 200 steps in one
room. Because control does not depend on the recording rate, a 15 Hz episode
of the same seed drives exactly the same path: it holds every frame the 5 Hz one has, and two in between.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert
from spatial_memory.sim import mobile_robot as mr
from spatial_memory.sim.episode import (
    BASE_FRAME,
    HEAD_CAMERA,
    WRIST_CAMERA,
    CameraFrame,
    CameraSpec,
    EpisodeMetadata,
    OdometrySample,
    Query,
    StaticTransform,
    StepRecord,
)
from spatial_memory.sim.exploration import CompactScan, Script
from spatial_memory.sim.mobile_robot import ARM_ROOT, MobileFR3Sim, MobileRobotConfig
from spatial_memory.sim.odometry import WheelOdometry, WheelOdometryConfig
from spatial_memory.sim.presets import world_preset
from spatial_memory.sim.queries import QueryConfig, QuerySampler
from spatial_memory.sim.recorder import RecordResult, check_targets, record_episode
from spatial_memory.sim.world_scene import build_world_spec
from spatial_memory.sim.world_tour import WorldTour, WorldTourConfig
from spatial_memory.sim.worlds import WorldConfig, generate_world

log = logging.getLogger(__name__)

DATASET_CAMERA_PX = 128  # square images for datasets: both cameras


def dataset_robot(width: int = DATASET_CAMERA_PX, height: int = DATASET_CAMERA_PX) -> MobileRobotConfig:
    """The mobile FR3 with both cameras at `width` x `height` (fields of view as the defaults)."""
    base = MobileRobotConfig()
    return dataclasses.replace(
        base,
        head_camera=dataclasses.replace(base.head_camera, width=width, height=height),
        wrist_camera=dataclasses.replace(base.wrist_camera, width=width, height=height),
    )


@dataclass(frozen=True)
class WorldEpisodeConfig:
    """The world, the robot and its cameras, the step and control rates, odometry noise, queries, tour.

    `queries` None records no queries. `ceiling` closes the rooms (indoor views see no sky above walls).
    """

    world: WorldConfig = field(default_factory=lambda: world_preset("house"))
    robot: MobileRobotConfig = field(default_factory=dataset_robot)
    rate_hz: float = 5.0  # recorded steps per simulated second (see the module docstring)
    control_hz: float = 15.0  # control ticks per simulated second; a multiple of rate_hz keeps paths equal
    odometry: WheelOdometryConfig = field(default_factory=WheelOdometryConfig)
    queries: QueryConfig | None = field(default_factory=QueryConfig)
    tour: WorldTourConfig = field(default_factory=WorldTourConfig)
    arm: CompactScan = field(default_factory=CompactScan)
    texture_px: int = 128
    ceiling: bool = True

    def __post_init__(self) -> None:
        kinds = {
            "world": WorldConfig,
            "robot": MobileRobotConfig,
            "odometry": WheelOdometryConfig,
            "tour": WorldTourConfig,
            "arm": CompactScan,
        }
        for name, kind in kinds.items():
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(
                    f"{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}"
                )
        for name in ("rate_hz", "control_hz"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 100.0:
                raise ConfigError(f"{name} must be within (0, 100] Hz, got {value!r}")
        if self.rate_hz > self.control_hz:
            raise ConfigError(f"rate_hz {self.rate_hz} must not exceed control_hz {self.control_hz}")
        if isinstance(self.texture_px, bool) or not isinstance(self.texture_px, int):
            raise ConfigError(f"texture_px must be an integer, got {self.texture_px!r}")
        if not isinstance(self.ceiling, bool):
            raise ConfigError(f"ceiling must be true or false, got {self.ceiling!r}")
        if self.queries is not None and not hasattr(self.queries, "every_n_steps"):
            raise ConfigError(f"queries must be a QueryConfig or None, got {type(self.queries).__name__}")

    @property
    def ticks_per_step(self) -> int:
        """Control ticks per recorded step."""
        return max(1, round(self.control_hz / self.rate_hz))


@dataclass
class TourStats:
    """What happened to the robot so far: control ticks cut short by an obstacle, arm moves refused."""

    ticks: int = 0
    collided_ticks: int = 0
    arm_blocked_ticks: int = 0


class WorldEpisodeScene:
    """`Scene` of the mobile FR3 touring a generated world (see the module docstring).

    Steps must be taken in order 0, 1, ..., `num_steps - 1` (the tour, odometry and queries are stateful).
    Step 0 is the start pose; each later step first drives for `ticks_per_step` control ticks.
    """

    # (episode camera name, MuJoCo camera name of the mobile FR3)
    CAMERAS = ((HEAD_CAMERA, mr.HEAD_CAMERA), (WRIST_CAMERA, mr.WRIST_CAMERA))

    def __init__(self, config: WorldEpisodeConfig, num_steps: int) -> None:
        if not isinstance(config, WorldEpisodeConfig):
            raise ConfigError(f"config must be a WorldEpisodeConfig, got {type(config).__name__}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise InvalidInputError(f"an episode needs at least one step, got {num_steps!r}")
        self.config, self.num_steps = config, num_steps
        self.world = generate_world(config.world)
        self.tour = WorldTour(self.world, config.tour, seed=config.world.seed)
        self.sim = self._make_sim()
        self.sim.reset(*self.tour.start_pose(), q=config.arm(0.0))
        self.script = Script(self.tour, arm=config.arm, stuck_steps=config.tour.stuck_steps)
        self.stats = TourStats()
        self._odometry = WheelOdometry(config.odometry)
        self._queries = self._make_sampler()
        self._dt = 1.0 / (config.rate_hz * config.ticks_per_step)
        self._next = 0
        self._metadata = self._make_metadata()

    def _make_sim(self) -> MobileFR3Sim:
        cfg = self.config
        cams = (cfg.robot.head_camera, cfg.robot.wrist_camera)
        offscreen = (max(16, *(c.width for c in cams)), max(16, *(c.height for c in cams)))
        spec = build_world_spec(
            self.world, texture_px=cfg.texture_px, ceiling=cfg.ceiling, offscreen=offscreen
        )
        # The base must keep its footprint off obstacles; the planner keeps the (larger) planning radius.
        footprint = self.world.occupancy(cfg.tour.resolution_m, cfg.robot.footprint_radius_m)
        return MobileFR3Sim(spec, cfg.robot, is_free=footprint.is_free)

    def _make_sampler(self) -> QuerySampler | None:
        queries = self.config.queries
        if queries is None or not queries.every_n_steps:
            return None
        return QuerySampler(self.sim, self.tour.grid, queries, seed=self.config.world.seed)

    # ------------------------------------------------------------------ metadata
    @property
    def metadata(self) -> EpisodeMetadata:
        return self._metadata

    def _make_metadata(self) -> EpisodeMetadata:
        cfg, sim = self.config, self.sim
        fk = sim.kinematics.forward_all(sim.q)
        T_link_optical = invert(fk["wrist_camera_link"]) @ fk[mr.WRIST_OPTICAL_FRAME]
        head, wrist = cfg.robot.head_camera, cfg.robot.wrist_camera
        cameras = (
            CameraSpec(
                name=HEAD_CAMERA,
                frame_id=mr.HEAD_OPTICAL_FRAME,
                width=head.width,
                height=head.height,
                K=sim.intrinsics(mr.HEAD_CAMERA),
                parent_frame=BASE_FRAME,  # on the mast: fixed on the base
                T_parent_cam=cfg.robot.T_base_head_optical(),
            ),
            CameraSpec(
                name=WRIST_CAMERA,
                frame_id=mr.WRIST_OPTICAL_FRAME,
                width=wrist.width,
                height=wrist.height,
                K=sim.intrinsics(mr.WRIST_CAMERA),
                parent_frame="wrist_camera_link",  # the rest of the chain is the arm's FK (fk_node)
                T_parent_cam=T_link_optical,
            ),
        )
        return EpisodeMetadata(
            scene="world",
            seed=cfg.world.seed,
            rate_hz=cfg.rate_hz,
            cameras=cameras,
            joint_names=sim.kinematics.joint_names,
            world={
                "world": self.world.to_dict(),
                "robot": asdict(cfg.robot),
                "tour": asdict(cfg.tour),
                "arm": asdict(cfg.arm),
                "control_hz": cfg.control_hz,
                "queries": None if cfg.queries is None else asdict(cfg.queries),
            },
            odometry_noise=asdict(cfg.odometry),
            T_world_odom=sim.T_world_base,  # the odometry starts at the start pose
            static_transforms=(StaticTransform(BASE_FRAME, ARM_ROOT, cfg.robot.T_base_arm()),),
        )

    # ------------------------------------------------------------------ stepping
    def step(self, t: int) -> StepRecord:
        """Drive to step `t` (the next one in order), render it and return its record."""
        if t != self._next or t >= self.num_steps:
            raise InvalidInputError(
                f"steps run in order 0..{self.num_steps - 1}: expected {self._next}, got {t}"
            )
        if t > 0:
            self._drive()
        frames = tuple(self._camera_frame(name, mj_name) for name, mj_name in self.CAMERAS)
        stamp_ns = round(t * 1e9 / self.config.rate_hz)
        T_world_base = self.sim.T_world_base
        T_odom_base = self._odometry.update(T_world_base, stamp_ns)
        query = self._query(t, frames[0], T_world_base)
        self._next += 1
        return StepRecord(
            stamp_ns=stamp_ns,
            cameras=frames,
            joint_names=self.sim.kinematics.joint_names,
            joint_positions=self.sim.q,
            T_world_base=T_world_base,
            odometry=OdometrySample(T_odom_base=T_odom_base, twist=self._odometry.twist),
            query=query,
        )

    def _drive(self) -> None:
        """One step's control ticks: the script's command, then the simulation."""
        for _ in range(self.config.ticks_per_step):
            t_s = self.stats.ticks * self._dt
            cmd = self.script.command(self.sim.pose2d, t_s, self.sim.collided)
            if cmd is None:  # a finite script has ended: stand still
                gt = self.sim.step(0.0, 0.0, self._dt)
            else:
                gt = self.sim.step(cmd.v, cmd.omega, self._dt, q_target=cmd.q_target)
            self.stats.ticks += 1
            self.stats.collided_ticks += gt.collided
            self.stats.arm_blocked_ticks += gt.arm_blocked

    def _camera_frame(self, name: str, mj_name: str) -> CameraFrame:
        spec = self._metadata.camera(name)
        return CameraFrame(
            name=name,
            rgb=self.sim.render(mj_name),
            depth=self.sim.render_depth(mj_name),
            K=spec.K,
            frame_id=spec.frame_id,
            T_world_cam=self.sim.camera_pose(mj_name),
        )

    def _query(self, t: int, head: CameraFrame, T_world_base: np.ndarray) -> Query | None:
        """Show the sampler the head camera's frame; a query every `every_n_steps` steps (not at 0)."""
        if self._queries is None:
            return None
        self._queries.observe(t, head.T_world_cam, head.depth, head.K)
        every = self.config.queries.every_n_steps
        if t == 0 or t % every:
            return None
        pose, q = self.sim.pose2d, self.sim.q
        sample = self._queries.sample(t, T_world_base)
        if self.sim.pose2d != pose or not np.array_equal(self.sim.q, q):
            raise RuntimeError("the query sampler moved the robot")  # a bug in the sampler, not bad input
        if sample is None or isinstance(sample, Query):
            return sample
        return sample.query

    def close(self) -> None:
        log.info(
            "world episode: %d control ticks, %d cut short by an obstacle, %d arm moves refused, "
            "%d behaviours skipped",
            self.stats.ticks,
            self.stats.collided_ticks,
            self.stats.arm_blocked_ticks,
            len(self.script.skipped),
        )
        self.sim.close()

    def __enter__(self) -> WorldEpisodeScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------
# Recording
# ----------------------------------------------------------------------------------------------------


def record_world_episode(
    out_dir: str | Path,
    steps: int,
    seed: int = 0,
    world: str = "house",
    *,
    width: int = DATASET_CAMERA_PX,
    height: int = DATASET_CAMERA_PX,
    rate_hz: float = 5.0,
    formats: tuple[str, ...] = ("bag", "compact"),
    queries_every: int | None = None,
    odometry: WheelOdometryConfig | None = None,
    depth_dtype: str = "float32",
    progress: bool = True,
    query_min_age_steps: int | None = None,
) -> RecordResult:
    """Record the mobile FR3 touring a preset world (`world`: 'room', 'house', 'apartment') for `steps`
    steps at `rate_hz` into `out_dir`. `queries_every` None takes `QueryConfig`'s default; 0 = none.
    `query_min_age_steps`: how old a seen query's source view must be (None: `QueryConfig`'s default)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInputError(f"steps must be a positive int, got {steps!r}")
    check_targets(Path(out_dir), formats, depth_dtype)  # fail before building the world
    config = WorldEpisodeConfig(
        world=world_preset(world, seed),
        robot=dataset_robot(width, height),
        rate_hz=rate_hz,
        odometry=odometry or WheelOdometryConfig(),
        queries=_query_config(queries_every, query_min_age_steps),
    )
    with WorldEpisodeScene(config, steps) as scene:
        return record_episode(
            scene, out_dir, steps, formats=formats, depth_dtype=depth_dtype, progress=progress
        )


def _query_config(every: int | None, min_age_steps: int | None = None) -> QueryConfig | None:
    """QueryConfig for a query every `every` steps (None: the default, 0: no queries), seen ones from views
    at least `min_age_steps` old (None: the default)."""
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
        raise ConfigError(f"queries_every must be a non-negative integer, got {every!r}")
    if every == 0:
        return None
    config = QueryConfig()
    if every is not None:
        config = dataclasses.replace(config, every_n_steps=every)
    if min_age_steps is not None:
        config = dataclasses.replace(config, min_age_steps=min_age_steps)
    return config
