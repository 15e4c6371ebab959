"""Turn in place: the base odometry from vision (`vo.odometry.VisualOdometry`, what vo_node runs) against the
wheel odometry, in-process on the live simulation (no ROS).

The mobile FR3 turns in place at `omega` rad/s in a generated world (`sim.live.LiveSim` with the graph's
defaults: 30 Hz steps, the 160x120 RGB-D head camera at 15 Hz, the arm at home and masked, wheel odometry
with its noise). Every camera frame is recorded with the joint angles, the wheel odometry's pose and the
true body pose; the VO then runs over the recorded frames, as vo_node would: fed every frame (a VO that keeps
up) or with frames dropped (`max_gap`: each next frame comes 1 to `max_gap` camera frames after the last,
seeded; vo_node drops the frames that arrive while it is busy, and in a busy graph the gaps vary), with the
wheel pose of each frame (vo_node's `use_wheel_odometry`) or without it (vision alone).

Score: the heading (yaw of `base_link`) each odometry reports relative to its first pose, against the truth's
(unwrapped, so a full turn is 360 degrees, not 0): the error at the end scaled to one full turn of the truth
(`heading_error_deg_per_turn`), the largest error on the way, and the VO's tracking losses.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from spatial_memory.errors import ConfigError
from spatial_memory.geometry import invert
from spatial_memory.resources import share_path
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.robot.silhouette import ArmSilhouette, urdf_primitives
from spatial_memory.sim.episode import HEAD_CAMERA
from spatial_memory.sim.live import LiveSim, LiveSimConfig, LiveWorldConfig
from spatial_memory.vo.odometry import VisualOdometry, VisualOdometryConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnScenario:
    """A named, seeded turn in place: which world, where, how fast and for how long."""

    preset: str = "house"
    seed: int = 0  # the world's seed
    start_room: int = 0
    omega: float = 0.6  # rad/s, counter-clockwise (negative: clockwise)
    turns: float = 1.0  # full turns to record (at least this much sim time)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.omega) and 0.05 <= abs(self.omega) <= 1.0):
            raise ConfigError(f"omega must be within 0.05-1.0 rad/s either way, got {self.omega!r}")
        if not (math.isfinite(self.turns) and 0.0 < self.turns <= 10.0):
            raise ConfigError(f"turns must be within (0, 10], got {self.turns!r}")

    @property
    def name(self) -> str:
        return f"{self.preset}-{self.seed}-room{self.start_room}-{self.omega:+.2f}rad/s"


@dataclass(frozen=True, eq=False)
class TurnRecording:
    """The recorded frames (the head camera's, in order) and what the VO needs to run on them."""

    scenario: TurnScenario
    K: np.ndarray
    width: int
    height: int
    T_base_cam: np.ndarray
    T_cam_arm: np.ndarray
    stamps_ns: np.ndarray  # (N,)
    rgb: tuple[np.ndarray, ...]
    depth: tuple[np.ndarray, ...]
    joints: np.ndarray  # (N, 7)
    wheel: np.ndarray  # (N, 4, 4) T_odom_base of the wheel odometry
    truth: np.ndarray  # (N, 4, 4) T_world_base


@dataclass(frozen=True)
class TurnResult:
    """One odometry's heading against the truth over the frames it was given."""

    frames: int
    true_turn_deg: float
    heading_error_deg_per_turn: float  # at the end, scaled to one full turn of the truth
    max_heading_error_deg: float
    losses: int = 0
    ms_per_frame: float = 0.0
    sources: dict[str, int] | None = None


def record_turn(scenario: TurnScenario, config: LiveSimConfig | None = None) -> TurnRecording:
    """Turn in place in the live sim for `scenario.turns` full turns (plus one frame) and record every head
    camera frame. `config`: the sim (default: the graph's defaults in `scenario`'s world)."""
    config = config or LiveSimConfig(  # the arm in view: what the visual odometry's arm mask is for
        world=LiveWorldConfig(preset=scenario.preset, seed=scenario.seed, start_room=scenario.start_room),
        arm_start="home",
    )
    duration_ns = round(1e9 * scenario.turns * 2.0 * math.pi / abs(scenario.omega))
    stamps, rgb, depth, joints, wheel, truth = [], [], [], [], [], []
    with LiveSim(config) as sim:
        robot = config.robot
        T_base_cam = robot.T_base_head_optical()
        K = sim.intrinsics(HEAD_CAMERA)
        while not stamps or stamps[-1] - stamps[0] < duration_ns:
            sim.command_velocity(0.0, scenario.omega)
            tick = sim.tick()
            frame = tick.camera(HEAD_CAMERA)
            if frame is None:
                continue
            stamps.append(tick.stamp_ns)
            rgb.append(frame.rgb)
            depth.append(frame.depth)
            joints.append(tick.q)
            wheel.append(tick.odometry.T_odom_base)
            truth.append(tick.T_world_base)
    return TurnRecording(
        scenario=scenario,
        K=K,
        width=robot.head_camera.width,
        height=robot.head_camera.height,
        T_base_cam=T_base_cam,
        T_cam_arm=invert(T_base_cam) @ robot.T_base_arm(),
        stamps_ns=np.array(stamps, dtype=np.int64),
        rgb=tuple(rgb),
        depth=tuple(depth),
        joints=np.array(joints),
        wheel=np.array(wheel),
        truth=np.array(truth),
    )


def delivered(count: int, max_gap: int = 1, seed: int = 0) -> list[int]:
    """Indices of the frames a VO gets out of `count`: every one (max_gap 1), or each next one 1 to
    `max_gap` frames after the last (uniform, seeded), the first always."""
    if max_gap < 1:
        raise ConfigError(f"max_gap must be >= 1, got {max_gap}")
    rng = np.random.default_rng(seed)
    out = [0]
    while True:
        nxt = out[-1] + int(rng.integers(1, max_gap + 1))
        if nxt >= count:
            return out
        out.append(nxt)


def _yaw(T: np.ndarray) -> float:
    return math.atan2(T[1, 0], T[0, 0])


def heading_error(poses: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(true turn in degrees, the error at the end per full turn of the truth, the largest error) of the
    headings of `poses` against `truth` ((N, 4, 4) each), both relative to their first pose, unwrapped."""

    def unwrapped(Ts: np.ndarray) -> np.ndarray:
        T0 = invert(Ts[0])
        return np.unwrap([_yaw(T0 @ T) for T in Ts])

    est, true = unwrapped(poses), unwrapped(truth)
    err = np.degrees(est - true)
    turn = float(np.degrees(true[-1]))
    per_turn = float(err[-1]) * 360.0 / abs(turn) if abs(turn) > 1e-9 else math.nan
    return turn, per_turn, float(np.max(np.abs(err)))


def run_vo(
    rec: TurnRecording,
    config: VisualOdometryConfig | None = None,
    frames: list[int] | None = None,
    use_wheel: bool = True,
) -> TurnResult:
    """VisualOdometry over the recorded `frames` (default: all), with the arm masked from the joint angles
    and, with `use_wheel`, each frame's wheel pose (as vo_node with `use_wheel_odometry`)."""
    frames = list(range(len(rec.stamps_ns))) if frames is None else frames
    silhouette = ArmSilhouette(FR3Kinematics(), urdf_primitives(share_path("urdf/fr3.urdf")))
    odo = VisualOdometry(
        rec.K, rec.width, rec.height, rec.T_base_cam, config, silhouette=silhouette, T_cam_arm=rec.T_cam_arm
    )
    poses, seconds = [], 0.0
    for i in frames:
        start = time.perf_counter()
        step = odo.step(
            rec.rgb[i],
            int(rec.stamps_ns[i]),
            depth=rec.depth[i],
            joints=rec.joints[i],
            T_odom_base_wheel=rec.wheel[i] if use_wheel else None,
        )
        seconds += time.perf_counter() - start
        poses.append(step.T_odom_base)
    turn, per_turn, worst = heading_error(np.array(poses), rec.truth[frames])
    counts = dict(odo.counts)
    return TurnResult(
        frames=len(frames),
        true_turn_deg=turn,
        heading_error_deg_per_turn=per_turn,
        max_heading_error_deg=worst,
        losses=int(counts.pop("losses")),
        ms_per_frame=1e3 * seconds / len(frames),
        sources={k: int(v) for k, v in counts.items() if k in ("visual", "wheel", "prior")},
    )


def wheel_result(rec: TurnRecording, frames: list[int] | None = None) -> TurnResult:
    """The wheel odometry's heading over the same frames: the baseline."""
    frames = list(range(len(rec.stamps_ns))) if frames is None else frames
    turn, per_turn, worst = heading_error(rec.wheel[frames], rec.truth[frames])
    return TurnResult(len(frames), turn, per_turn, worst)
