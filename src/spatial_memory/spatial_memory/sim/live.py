"""A live simulation for the ROS graph: a generated world, the mobile FR3, wheel odometry, velocity and arm
commands, stepped at a fixed rate. No ROS here: `spatial_memory.ros.sim_node` wraps it.

`LiveSim.tick()` advances the world by one fixed step (`1 / rate_hz`) and returns a `LiveTick`: the sim
time, the arm joints, the noisy wheel odometry (with its measured twist), the ground-truth base pose, and
the camera frames that are due this tick at each camera's own rate (`MobileFR3Sim.cameras_due`).

Commands. `command_velocity(v, omega)` sets the unicycle command (m/s, rad/s; clipped to the robot's
limits when applied); it holds for `cmd_vel_timeout_s` of sim time, after which the base stops until a new
command arrives (the usual dead-man behaviour of a mobile base driver). `command_joints(names, positions)`
sets an arm position target by joint name; the arm moves towards it at `max_joint_speed` and stays there.
A bad command (NaN, wrong joint names or count, out of limits) raises `InvalidInputError` and changes
nothing.

Pacing. `Pacer` says how many fixed steps to run at a given wall time so that sim time follows wall time
times a real-time factor, and reports when the simulation cannot keep up (the node logs a warning).

Frames (REP-103/105) are the sim's: `world` (the generated world's origin), `base_link` (the robot body on
the floor), the FR3's `base` on top of it, `head_camera_link` / `head_camera_optical_frame` on the mast and
the wrist camera of the arm's description. The odometry frame starts at the true start pose.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import mujoco
import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import finite_float, invert
from spatial_memory.sim import mobile_robot as mr
from spatial_memory.sim.episode import HEAD_CAMERA, WRIST_CAMERA, CameraFrame, OdometrySample
from spatial_memory.sim.exploration import STOW_POSE
from spatial_memory.sim.odometry import WheelOdometry, WheelOdometryConfig
from spatial_memory.sim.presets import PLANNING_RADIUS_M, WORLD_PRESETS, world_preset
from spatial_memory.sim.world_scene import build_world_spec
from spatial_memory.sim.worlds import World, WorldConfig, generate_world

log = logging.getLogger(__name__)

# Episode (topic) camera name -> the MuJoCo camera of the mobile FR3, as in recorded bags: the head camera
# is `camera` (camera/image, ...), the wrist camera `wrist_camera`.
CAMERA_NAMES: dict[str, str] = {HEAD_CAMERA: mr.HEAD_CAMERA, WRIST_CAMERA: mr.WRIST_CAMERA}
_MAX_RATE_HZ = 1000.0
ARM_STARTS = ("stowed", "home")  # LiveSimConfig.arm_start


def _number(value: object, name: str, lo: float, hi: float) -> float:
    """A real number within [lo, hi] or ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a number within [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _default_robot() -> mr.MobileRobotConfig:
    """Camera sizes and rates a 2-core machine renders in real time next to the rest of the graph."""
    return mr.MobileRobotConfig(
        head_camera=mr.CameraConfig(width=160, height=120, fovy_deg=60.0, rate_hz=15.0),
        wrist_camera=mr.CameraConfig(width=128, height=96, fovy_deg=58.0, rate_hz=5.0),
    )


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class LiveWorldConfig:
    """Which world to generate and where the robot starts. 0 for a size field keeps the preset's value."""

    preset: str = "house"  # one of sim.presets.WORLD_PRESETS
    seed: int = 0
    width_m: float = 0.0  # footprint along x (m); 0 = the preset's
    depth_m: float = 0.0  # footprint along y (m); 0 = the preset's
    num_rooms: int = 0  # 0 = the preset's
    texture_px: int = 64  # side of every texture image (smaller renders a little faster)
    ceiling: bool = True  # close the rooms: the head camera sees a ceiling, not the sky
    start_room: int = 0  # the robot starts in the centre of this room...
    start_yaw: float = 0.0  # ...facing this way (rad, world frame)
    start_at_xy: bool = False  # True: it starts at `start_xy` (world, m) instead of a room's centre...
    start_xy: tuple[float, ...] = (0.0, 0.0)  # ...e.g. where a saved memory left it (a restart)

    def __post_init__(self) -> None:
        if self.preset not in WORLD_PRESETS:
            raise ConfigError(f"world preset must be one of {sorted(WORLD_PRESETS)}, got {self.preset!r}")
        for name in ("seed", "num_rooms", "start_room"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"world {name} must be a non-negative integer, got {value!r}")
        for name in ("width_m", "depth_m"):
            object.__setattr__(self, name, _number(getattr(self, name), f"world {name}", 0.0, 1e3))
        t = self.texture_px
        if isinstance(t, bool) or not isinstance(t, int) or not 8 <= t <= 1024:
            raise ConfigError(f"world texture_px must be an integer within 8..1024, got {t!r}")
        if not isinstance(self.ceiling, bool):
            raise ConfigError(f"world ceiling must be true or false, got {self.ceiling!r}")
        object.__setattr__(self, "start_yaw", _number(self.start_yaw, "world start_yaw", -10.0, 10.0))
        if not isinstance(self.start_at_xy, bool):
            raise ConfigError(f"world start_at_xy must be true or false, got {self.start_at_xy!r}")
        xy = tuple(self.start_xy)
        if len(xy) != 2:
            raise ConfigError(f"world start_xy must be two numbers (x, y), got {self.start_xy!r}")
        object.__setattr__(self, "start_xy", tuple(_number(v, "world start_xy", -1e3, 1e3) for v in xy))
        self.world_config()  # the world must be possible (LiveSimConfig checks again with its robot's radius)

    def world_config(self, robot_radius_m: float = 0.0) -> WorldConfig:
        """The generator's config: the preset, then the non-zero overrides; ConfigError if it cannot be.
        The world is made for the larger of the preset's planning radius and `robot_radius_m`."""
        values: dict[str, float | int] = {
            k: getattr(self, k) for k in ("width_m", "depth_m", "num_rooms") if getattr(self, k)
        }
        if robot_radius_m > PLANNING_RADIUS_M:
            values["robot_radius_m"] = robot_radius_m
        cfg = world_preset(self.preset, self.seed, **values)
        if self.start_room >= cfg.num_rooms:
            raise ConfigError(
                f"world start_room {self.start_room} does not exist: the world has {cfg.num_rooms} room(s)"
            )
        return cfg


@dataclass(frozen=True)
class LiveSimConfig:
    """The live simulation: step rate, command timeout, world, robot (cameras included), odometry noise and
    the arm's pose at the start.

    `arm_start`: 'stowed' (the default) folds the arm beside the mast, out of the head camera's view: the
    pose a mobile manipulator drives with, and the one the memory's training tours drive with (the compact
    scan around `exploration.STOW_POSE`). 'home' is the FR3's ready pose, reaching forward into the lower
    middle of the head camera's picture (what the visual odometry's arm mask is measured with).

    Built from partial dicts (`config.from_dict`), nested sections take their own class defaults: the
    robot's cameras then fall back to `MobileRobotConfig`'s 320x240 at 15 Hz, not the small defaults here.
    """

    rate_hz: float = 30.0  # fixed simulation steps per second of sim time (joint states, odometry, /clock)
    cmd_vel_timeout_s: float = 0.5  # the base stops when no velocity command came for this long (sim time)
    world: LiveWorldConfig = field(default_factory=LiveWorldConfig)
    robot: mr.MobileRobotConfig = field(default_factory=_default_robot)
    odometry: WheelOdometryConfig = field(default_factory=WheelOdometryConfig)
    arm_start: str = "stowed"  # the arm at the start: 'stowed' (out of the head camera's view) or 'home'

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate_hz", _number(self.rate_hz, "rate_hz", 1.0, _MAX_RATE_HZ))
        if self.arm_start not in ARM_STARTS:
            raise ConfigError(f"arm_start must be one of {ARM_STARTS}, got {self.arm_start!r}")
        object.__setattr__(
            self, "cmd_vel_timeout_s", _number(self.cmd_vel_timeout_s, "cmd_vel_timeout_s", 1e-3, 60.0)
        )
        for section, cls in (
            ("world", LiveWorldConfig),
            ("robot", mr.MobileRobotConfig),
            ("odometry", WheelOdometryConfig),
        ):
            if not isinstance(getattr(self, section), cls):
                raise ConfigError(f"{section} must be a {cls.__name__}, got {getattr(self, section)!r}")
        for mj_name in CAMERA_NAMES.values():
            rate = self.robot.camera(mj_name).rate_hz
            if rate > self.rate_hz:
                raise ConfigError(
                    f"robot.{mj_name}.rate_hz {rate:g} is above the simulation rate_hz {self.rate_hz:g}: "
                    "frames come at most once per step"
                )
        self.world.world_config(self.robot.footprint_radius_m)  # the world must be possible

    @property
    def dt_ns(self) -> int:
        """One step in nanoseconds."""
        return round(1e9 / self.rate_hz)


# ---------------------------------------------------------------------------------------------- output
@dataclass(frozen=True, eq=False)
class LiveTick:
    """What one step produced. Poses are 4x4 float64 `T_a_b`; `cameras` holds only the frames due now."""

    stamp_ns: int  # sim time after the step (the /clock value and every header stamp of this tick)
    joint_names: tuple[str, ...]  # fr3_joint1..7
    q: np.ndarray  # (7,) rad, the arm now
    odometry: OdometrySample  # T_odom_base (noisy) and its twist in base_link (vx vy vz wx wy wz)
    T_world_base: np.ndarray  # ground truth
    cameras: tuple[CameraFrame, ...] = ()  # frames due this tick, with their ground-truth poses
    command: tuple[float, float] = (0.0, 0.0)  # (v, omega) the base actually moved with (clipped, blocked)
    driving: bool = False  # a velocity command younger than the timeout was applied
    stopped_by_timeout: bool = False  # this tick the last velocity command expired: the base stopped
    collided: bool = False  # the base stopped early at an obstacle
    arm_blocked: bool = False  # the arm's motion was refused: it would have hit the world

    def camera(self, name: str) -> CameraFrame | None:
        """The frame of camera `name` (`camera` or `wrist_camera`) if it was due this tick, else None."""
        return next((c for c in self.cameras if c.name == name), None)


@dataclass(frozen=True, eq=False)
class StaticEdge:
    """A fixed transform of the robot: `T_parent_child`."""

    parent: str
    child: str
    T_parent_child: np.ndarray


# ---------------------------------------------------------------------------------------------- the sim
class LiveSim:
    """A generated world with the mobile FR3 in it, stepped one fixed `dt` per `tick()`. Not thread-safe."""

    def __init__(self, config: LiveSimConfig = LiveSimConfig()) -> None:
        if not isinstance(config, LiveSimConfig):
            raise ConfigError(f"config must be a LiveSimConfig, got {type(config).__name__}")
        self.config = config
        wcfg = config.world
        self.world: World = generate_world(wcfg.world_config(config.robot.footprint_radius_m))
        spec = build_world_spec(self.world, texture_px=wcfg.texture_px, ceiling=wcfg.ceiling)
        self.sim = mr.MobileFR3Sim(spec, config.robot)  # MuJoCo contacts keep the robot out of the walls
        try:
            cx, cy = wcfg.start_xy if wcfg.start_at_xy else self.world.rooms[wcfg.start_room].center
            q = STOW_POSE if config.arm_start == "stowed" else None  # None: the FR3's home pose
            self.sim.reset(cx, cy, wcfg.start_yaw, q=q)
        except InvalidInputError as exc:
            self.sim.close()
            where = f"at {wcfg.start_xy}" if wcfg.start_at_xy else f"in room {wcfg.start_room}"
            raise ConfigError(f"cannot start {where}: {exc}") from exc
        self.odometry = WheelOdometry(config.odometry)
        start = self.sim.ground_truth()
        self.odometry.update(start.T_world_base, start.stamp_ns)
        self.T_world_odom = start.T_world_base.copy()  # odom starts at the true start pose (REP-105)
        self.joint_names: tuple[str, ...] = self.sim.kinematics.joint_names
        self._K = {name: self.sim.intrinsics(mj) for name, mj in CAMERA_NAMES.items()}
        self._warm_up_renderers()
        self._dt_s = config.dt_ns / 1e9
        # the timeout in whole steps (0.5 s at 30 Hz: a command drives the next 15 steps)
        self._timeout_ns = max(1, round(config.cmd_vel_timeout_s * config.rate_hz)) * config.dt_ns
        self._cmd: tuple[float, float] = (0.0, 0.0)
        self._cmd_ns: int | None = None  # sim time of the last velocity command; None = none or expired
        self._q_target: np.ndarray | None = None
        log.info(
            "live sim: world %r seed %d (%d rooms), start in room %d at (%.2f, %.2f), %g Hz",
            wcfg.preset,
            wcfg.seed,
            len(self.world.rooms),
            wcfg.start_room,
            cx,
            cy,
            config.rate_hz,
        )

    def _warm_up_renderers(self) -> None:
        """Render every camera once: GL contexts are made now (not in the first ticks, which would then
        fall behind real time), and a machine that cannot render offscreen fails here, clearly."""
        try:
            for mj_name in CAMERA_NAMES.values():
                self.sim.render_rgbd(mj_name)
        except (mujoco.FatalError, RuntimeError, ImportError, OSError) as exc:  # depends on the GL backend
            self.sim.close()
            raise ConfigError(
                f"cannot render offscreen with MUJOCO_GL={os.environ.get('MUJOCO_GL', '(unset)')!r}: {exc} "
                "(use egl on a headless machine, osmesa without EGL)"
            ) from exc

    # ------------------------------------------------------------------ state
    @property
    def stamp_ns(self) -> int:
        """Sim time now (ns); 0 at the start, one `dt` more after each tick."""
        return self.sim.stamp_ns

    @property
    def q_target(self) -> np.ndarray | None:
        """The arm's position target (a copy), or None before any joint command."""
        return None if self._q_target is None else self._q_target.copy()

    def intrinsics(self, camera: str) -> np.ndarray:
        """Pinhole K of a camera (`camera` or `wrist_camera`) at its image size."""
        if camera not in self._K:
            raise InvalidInputError(f"unknown camera {camera!r}; the sim has {sorted(self._K)}")
        return self._K[camera].copy()

    def static_edges(self) -> tuple[StaticEdge, ...]:
        """The fixed mounts on the base: the arm's root and the head camera (link and optical frame).

        The wrist camera is not here: it hangs off the arm, whose TF comes from the arm's description.
        """
        cfg = self.config.robot
        T_base_link = cfg.T_base_head_link()
        return (
            StaticEdge(mr.BASE_LINK, mr.ARM_ROOT, cfg.T_base_arm()),
            StaticEdge(mr.BASE_LINK, mr.HEAD_CAMERA_LINK, T_base_link),
            StaticEdge(
                mr.HEAD_CAMERA_LINK, mr.HEAD_OPTICAL_FRAME, invert(T_base_link) @ cfg.T_base_head_optical()
            ),
        )

    # ------------------------------------------------------------------ commands
    def command_velocity(self, v: float, omega: float) -> None:
        """Drive with (v m/s, omega rad/s) from now for `cmd_vel_timeout_s`; NaN/inf is refused."""
        v = finite_float(v, "linear velocity")
        omega = finite_float(omega, "angular velocity")
        self._cmd, self._cmd_ns = (v, omega), self.sim.stamp_ns

    def stop(self) -> None:
        """Drop the velocity command: the base stands still from the next tick."""
        self._cmd, self._cmd_ns = (0.0, 0.0), None

    def command_joints(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """Set the arm's position target: each of fr3_joint1..7 named exactly once, any order (rad).

        Returns the target in fr3_joint1..7 order. Unknown, missing or repeated names, a count that does not
        match the positions, NaN or out-of-limit values raise InvalidInputError and keep the old target.
        """
        names = [str(n) for n in names]
        try:
            values = np.asarray(positions, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"joint command positions must be numbers: {exc}") from exc
        if len(names) != values.size:
            raise InvalidInputError(
                f"joint command has {len(names)} names but {values.size} positions: they must pair up"
            )
        expected = self.joint_names
        repeated = sorted({n for n in names if names.count(n) > 1})
        unknown = [n for n in names if n not in expected]
        missing = [n for n in expected if n not in names]
        if repeated or unknown or missing:
            found = {"unknown": unknown, "missing": missing, "repeated": repeated}
            problems = [f"{what} {which}" for what, which in found.items() if which]
            raise InvalidInputError(
                f"a joint command must name each of {', '.join(expected)} exactly once: {'; '.join(problems)}"
            )
        q = self.sim.kinematics.check_joints(values[[names.index(n) for n in expected]])
        self._q_target = q
        return q.copy()

    def teleport(self, x: float, y: float, yaw: float) -> None:
        """Carry the robot to (x, y, yaw) in the world (a kidnap): the sim time and the arm stay, the velocity
        command is dropped, and the wheel odometry does not see the move (its pose goes on from where it
        was). A pose in collision is refused (InvalidInputError) and nothing changes."""
        gt = self.sim.reset(x, y, yaw, q=self.sim.q, stamp_ns=self.sim.stamp_ns)
        self.odometry.carried(gt.T_world_base)
        self.stop()

    # ------------------------------------------------------------------ stepping
    def _velocity(self, now_ns: int) -> tuple[float, float, bool]:
        """The command to apply in the step starting at `now_ns`, and whether it just expired."""
        if self._cmd_ns is None:
            return 0.0, 0.0, False
        if now_ns - self._cmd_ns < self._timeout_ns:
            return (*self._cmd, False)
        self.stop()
        return 0.0, 0.0, True

    def tick(self) -> LiveTick:
        """Advance one fixed step: drive, move the arm, integrate odometry, render the cameras now due."""
        prev_ns = self.sim.stamp_ns
        v, omega, expired = self._velocity(prev_ns)
        target = self._q_target
        if target is not None and np.array_equal(target, self.sim.q):
            target = None  # reached: skip the arm's collision check
        gt = self.sim.step(v, omega, self._dt_s, q_target=target)
        T_odom_base = self.odometry.update(gt.T_world_base, gt.stamp_ns)
        cameras = tuple(
            self._frame(episode_name, gt)
            for episode_name, mj_name in CAMERA_NAMES.items()
            if mj_name in self.sim.cameras_due(prev_ns, gt.stamp_ns)
        )
        return LiveTick(
            stamp_ns=gt.stamp_ns,
            joint_names=self.joint_names,
            q=gt.q,
            odometry=OdometrySample(T_odom_base=T_odom_base, twist=self.odometry.twist),
            T_world_base=gt.T_world_base,
            cameras=cameras,
            command=(gt.v, gt.omega),
            driving=self._cmd_ns is not None,
            stopped_by_timeout=expired,
            collided=gt.collided,
            arm_blocked=gt.arm_blocked,
        )

    def _frame(self, name: str, gt: mr.GroundTruth) -> CameraFrame:
        mj_name = CAMERA_NAMES[name]
        rgb, depth = self.sim.render_rgbd(mj_name)
        return CameraFrame(
            name=name,
            rgb=rgb,
            depth=depth,
            K=self._K[name],
            frame_id=mr.OPTICAL_FRAMES[mj_name],
            T_world_cam=gt.camera_poses[mj_name],
        )

    def close(self) -> None:
        """Free the renderers."""
        self.sim.close()

    def __enter__(self) -> LiveSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- pacing
@dataclass
class Pacer:
    """How many fixed steps to run at a wall time so sim time follows wall time x `real_time_factor`.

    `due(wall_ns)` counts the steps whose sim time has come since the first call (the first call runs one
    step). When more than `max_burst` are due the simulation cannot keep up: it runs `max_burst`, drops the
    rest (sim time then runs slower than asked) and adds the dropped sim time to `lag_ns`.
    """

    dt_ns: int
    real_time_factor: float = 1.0
    max_burst: int = 5  # 1/6 s at 30 Hz: a short stall (another process, a map render) is caught up
    lag_ns: int = field(default=0, init=False)  # sim time dropped so far because steps could not keep up
    steps: int = field(default=0, init=False)  # steps handed out so far
    _start_wall_ns: int | None = field(default=None, init=False, repr=False)
    _start_step: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.dt_ns, bool) or not isinstance(self.dt_ns, int) or self.dt_ns <= 0:
            raise ConfigError(f"dt_ns must be a positive integer, got {self.dt_ns!r}")
        self.real_time_factor = _number(self.real_time_factor, "real_time_factor", 1e-3, 100.0)
        if isinstance(self.max_burst, bool) or not isinstance(self.max_burst, int) or self.max_burst < 1:
            raise ConfigError(f"max_burst must be an integer >= 1, got {self.max_burst!r}")

    @property
    def period_s(self) -> float:
        """Wall time between steps at the real-time factor: the timer period that drives `due`."""
        return self.dt_ns / 1e9 / self.real_time_factor

    def due(self, wall_ns: int) -> int:
        """Steps to run now (0 when early); counts them as done."""
        if self._start_wall_ns is None:
            self._start_wall_ns, self._start_step = int(wall_ns), self.steps
        sim_ns = (wall_ns - self._start_wall_ns) * self.real_time_factor
        n = self._start_step + math.floor(sim_ns / self.dt_ns) + 1 - self.steps
        if n > self.max_burst:
            dropped = n - self.max_burst
            self.lag_ns += dropped * self.dt_ns
            self._start_step -= dropped  # re-anchor: the dropped steps are never run
            n = self.max_burst
        n = max(n, 0)
        self.steps += n
        return n


__all__ = [
    "CAMERA_NAMES",
    "WORLD_PRESETS",
    "LiveSim",
    "LiveSimConfig",
    "LiveTick",
    "LiveWorldConfig",
    "Pacer",
    "StaticEdge",
]
