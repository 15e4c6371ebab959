"""Scripted exploration for the mobile FR3: velocity commands and arm joint targets from simple behaviours.

A `Script` runs behaviours one after another (pure-pursuit path following, look-around turns in place,
back-and-forth drives) while an optional arm motion moves the wrist camera. The behaviours come from a list
or, lazily, from a `BehaviourSource` asked for the next one when the last is done (so an endless tour plans
one leg at a time from where the robot really is). Arm motions: `ArmScan` (the stationary tour's
minimum-jerk viewpoints re-aimed at a room, reaching 0.8 m ahead: for open space) and `CompactScan`
(viewpoints around the folded `STOW_POSE`, every link within 0.37 m of the base axis: safe to run while
driving through doorways). Paths are (N, 2) waypoints in metres, e.g. from `sim.planning.plan_path` on a
world's occupancy grid. `run_script` drives a `MobileFR3Sim` with them; a behaviour that keeps the robot
against an obstacle for `stuck_steps` steps is skipped, not retried.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import wrap_angle
from spatial_memory.robot.description import joint_limits
from spatial_memory.sim.arm_motion import LOOKOUT_POSE, TourConfig, tour
from spatial_memory.sim.mobile_robot import GroundTruth, MobileFR3Sim

log = logging.getLogger(__name__)

Pose2D = tuple[float, float, float]


def _positive(value: object, name: str, upper: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= upper:
        raise ConfigError(f"{name} must be a number within (0, {upper:g}], got {value!r}")


@dataclass(frozen=True)
class Command:
    """One control command: base velocities (m/s, rad/s) and an optional arm joint target (7,)."""

    v: float
    omega: float
    q_target: np.ndarray | None = None


class Behaviour(Protocol):
    """Something that turns the base pose and time into a command, or None when it is done."""

    def command(self, pose: Pose2D, t_s: float) -> Command | None: ...


@runtime_checkable
class BehaviourSource(Protocol):
    """Hands out behaviours one at a time, planned from the pose where the robot is when it asks;
    None when there are no more."""

    def next_behaviour(self, pose: Pose2D, t_s: float) -> Behaviour | None: ...


# ---------------------------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class PurePursuitConfig:
    """Pure pursuit on a polyline: steer at the point `lookahead_m` further along the path."""

    lookahead_m: float = 0.4
    speed: float = 0.4  # m/s cruising
    max_angular_speed: float = 1.0  # rad/s
    goal_tolerance_m: float = 0.08
    corner_tolerance_m: float = 0.03  # how close a corner must be reached before turning there
    slow_down_m: float = 0.5  # the speed ramps down linearly within this distance of a corner or the goal
    turn_in_place_rad: float = 0.9  # a heading error above this is turned away on the spot first
    corner_rad: float = 0.3  # a waypoint turning the path by more is a corner: stop there, turn, go on
    align_rad: float = 0.05  # at a corner, turn until the heading error is below this

    def __post_init__(self) -> None:
        _positive(self.lookahead_m, "lookahead_m", 5.0)
        _positive(self.speed, "speed", 5.0)
        _positive(self.max_angular_speed, "max_angular_speed", 10.0)
        _positive(self.goal_tolerance_m, "goal_tolerance_m", 1.0)
        _positive(self.corner_tolerance_m, "corner_tolerance_m", 1.0)
        _positive(self.slow_down_m, "slow_down_m", 10.0)
        _positive(self.turn_in_place_rad, "turn_in_place_rad", math.pi)
        _positive(self.corner_rad, "corner_rad", math.pi)
        _positive(self.align_rad, "align_rad", 1.0)


def check_path(path: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """`path` as a float64 (N, 2) array of finite waypoints (N >= 1), or InvalidInputError."""
    try:
        pts = np.array(path, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"a path must be (N, 2) numbers: {exc}") from exc
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 1:
        raise InvalidInputError(f"a path must be an (N, 2) array with N >= 1, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise InvalidInputError("a path must hold finite coordinates")
    return pts


class FollowPath:
    """Pure-pursuit path following that stops and turns on the spot at sharp corners.

    The lookahead point never passes the next sharp corner (a turn above `corner_rad`), so the robot
    reaches each corner along its segment, turns in place to the next one, and goes on: it cuts no corner,
    so a path whose segments are collision-free (as `plan_path` returns them) stays collision-free up to
    the lateral error of the controller. Done within `goal_tolerance_m` of the last waypoint.
    """

    def __init__(
        self, path: np.ndarray | Sequence[Sequence[float]], config: PurePursuitConfig = PurePursuitConfig()
    ):
        pts = check_path(path)
        keep = np.r_[True, np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-9]
        self.path = pts[keep]
        self.config = config
        self._seg = np.diff(self.path, axis=0)
        self._seg_len = np.linalg.norm(self._seg, axis=1)
        self._s = np.r_[0.0, np.cumsum(self._seg_len)]  # arc length at each waypoint
        self.length_m = float(self._s[-1])
        heading = np.arctan2(self._seg[:, 1], self._seg[:, 0])
        turns = np.abs((np.diff(heading) + math.pi) % (2 * math.pi) - math.pi)
        self._stops = np.r_[self._s[1:-1][turns > config.corner_rad], self.length_m]  # corners, then the goal
        self._next_stop = 0
        self._progress = 0.0  # arc length reached so far (never decreases, never passes the next stop)
        self._aligning = False

    def _project(self, p: np.ndarray) -> float:
        """Arc length of the path point nearest `p`, searched a little behind and ahead of the progress."""
        if len(self._seg) == 0:
            return 0.0
        t = np.einsum("ij,ij->i", p - self.path[:-1], self._seg) / self._seg_len**2
        t = np.clip(t, 0.0, 1.0)
        s = self._s[:-1] + t * self._seg_len
        dist = np.linalg.norm(self.path[:-1] + t[:, None] * self._seg - p, axis=1)
        window = (s >= self._progress - 0.2) & (s <= self._progress + 2.0 * self.config.lookahead_m + 0.2)
        dist[~window] = np.inf
        return float(s[np.argmin(dist)]) if np.isfinite(dist).any() else self._progress

    def _point_at(self, s: float) -> np.ndarray:
        """The path point at arc length `s` (clamped to the path)."""
        if len(self._seg) == 0:
            return self.path[0]
        s = min(max(s, 0.0), self.length_m)
        i = int(np.clip(np.searchsorted(self._s, s, side="right") - 1, 0, len(self._seg) - 1))
        return self.path[i] + (s - self._s[i]) / self._seg_len[i] * self._seg[i]

    def command(self, pose: Pose2D, t_s: float) -> Command | None:
        cfg = self.config
        p = np.array(pose[:2])
        stop = float(self._stops[self._next_stop])
        self._progress = min(max(self._progress, self._project(p)), stop)
        to_stop = float(np.linalg.norm(self._point_at(stop) - p))
        last = self._next_stop == len(self._stops) - 1
        if to_stop < (cfg.goal_tolerance_m if last else cfg.corner_tolerance_m):
            if last:
                return None
            self._next_stop += 1  # a corner: turn on the spot towards the next segment, then go on
            self._progress, self._aligning = stop, True
            stop = float(self._stops[self._next_stop])
            to_stop = float(np.linalg.norm(self._point_at(stop) - p))
        target = self._point_at(min(self._progress + cfg.lookahead_m, stop))
        d = target - p
        alpha = wrap_angle(math.atan2(d[1], d[0]) - pose[2])
        if self._aligning and abs(alpha) < cfg.align_rad:
            self._aligning = False
        if self._aligning or abs(alpha) > cfg.turn_in_place_rad:
            return Command(0.0, float(np.clip(3.0 * alpha, -cfg.max_angular_speed, cfg.max_angular_speed)))
        v = cfg.speed * min(1.0, max(to_stop / cfg.slow_down_m, 0.15))
        omega = 2.0 * v * math.sin(alpha) / max(float(np.hypot(*d)), 1e-6)
        if abs(omega) > cfg.max_angular_speed:  # keep the curvature, lower the speed
            v *= cfg.max_angular_speed / abs(omega)
            omega = math.copysign(cfg.max_angular_speed, omega)
        return Command(v, omega)


# ---------------------------------------------------------------------------------------------- simple moves
class LookAround:
    """Turn in place by `angle_rad` (signed: + = counter-clockwise) at `speed` rad/s."""

    def __init__(self, angle_rad: float = 2.0 * math.pi, speed: float = 0.8) -> None:
        if not (isinstance(angle_rad, (int, float)) and math.isfinite(angle_rad) and angle_rad != 0.0):
            raise ConfigError(f"angle_rad must be a finite non-zero number, got {angle_rad!r}")
        _positive(speed, "speed", 10.0)
        self.angle_rad, self.speed = float(angle_rad), float(speed)
        self._last_yaw: float | None = None
        self.turned = 0.0  # signed rotation so far, rad

    def command(self, pose: Pose2D, t_s: float) -> Command | None:
        yaw = pose[2]
        if self._last_yaw is not None:
            self.turned += wrap_angle(yaw - self._last_yaw)
        self._last_yaw = yaw
        if abs(self.turned) >= abs(self.angle_rad) - 1e-9:
            return None
        return Command(0.0, math.copysign(self.speed, self.angle_rad))


class TurnTo:
    """Turn in place to the world heading `yaw` (rad), at most `speed` rad/s; done within `tolerance_rad`.

    Proportional control with a small minimum speed, so it settles without creeping or overshooting.
    """

    def __init__(self, yaw: float, speed: float = 0.8, tolerance_rad: float = 0.01) -> None:
        if not (isinstance(yaw, (int, float)) and math.isfinite(yaw)):
            raise ConfigError(f"yaw must be a finite number, got {yaw!r}")
        _positive(speed, "speed", 10.0)
        _positive(tolerance_rad, "tolerance_rad", 1.0)
        self.yaw, self.speed, self.tolerance_rad = float(yaw), float(speed), float(tolerance_rad)

    def command(self, pose: Pose2D, t_s: float) -> Command | None:
        error = wrap_angle(self.yaw - pose[2])
        if abs(error) < self.tolerance_rad:
            return None
        return Command(0.0, math.copysign(min(max(3.0 * abs(error), 0.05), self.speed), error))


class BackAndForth:
    """Drive `distance_m` forward along the starting heading and back again, `repeats` times."""

    def __init__(
        self, distance_m: float = 1.0, speed: float = 0.3, repeats: int = 1, heading_gain: float = 2.0
    ):
        _positive(distance_m, "distance_m", 20.0)
        _positive(speed, "speed", 5.0)
        _positive(heading_gain, "heading_gain", 20.0)
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"repeats must be an integer >= 1, got {repeats!r}")
        self.distance_m, self.speed, self.repeats, self.gain = (
            float(distance_m),
            float(speed),
            repeats,
            heading_gain,
        )
        self._start: Pose2D | None = None
        self._legs_done = 0  # forward and back legs finished

    def command(self, pose: Pose2D, t_s: float) -> Command | None:
        if self._start is None:
            self._start = pose
        x0, y0, yaw0 = self._start
        along = (pose[0] - x0) * math.cos(yaw0) + (pose[1] - y0) * math.sin(yaw0)
        forward = self._legs_done % 2 == 0
        if (forward and along >= self.distance_m) or (not forward and along <= 0.0):
            self._legs_done += 1
            forward = not forward
        if self._legs_done >= 2 * self.repeats:
            return None
        remaining = self.distance_m - along if forward else along
        v = math.copysign(min(self.speed, max(remaining, 0.0) * 2.0 + 0.05), 1.0 if forward else -1.0)
        return Command(v, self.gain * wrap_angle(yaw0 - pose[2]))


# ---------------------------------------------------------------------------------------------- the arm
# The wrist camera 1.14 m high and 0.73 m ahead of base_link, looking forward 27 degrees down into the room.
CARRY_POSE = np.array([0.0, -0.2, 0.0, -1.8, 0.0, 2.7, 0.785])


@dataclass(frozen=True)
class ArmScan:
    """Wrist-camera viewpoints around `CARRY_POSE` (pan, tilt, roll offsets as in `TourConfig`), visited in
    a loop with minimum-jerk moves; pans stay within +-1.3 rad so the arm never swings back to the mast."""

    pans: tuple[float, ...] = (0.0, 0.7, 1.2, 0.5, -0.5, -1.2, -0.7)
    tilts: tuple[float, ...] = (0.0, 0.2, -0.2, 0.3, 0.0, -0.2, 0.2)
    rolls: tuple[float, ...] = (0.0, 0.0, 0.3, 0.0, -0.3, 0.0, 0.0)
    dwell_s: float = 1.5
    move_s: float = 2.0

    def __post_init__(self) -> None:
        if any(abs(p) > 1.3 for p in self.pans):
            raise ConfigError("ArmScan pans must stay within +-1.3 rad (the mast stands behind the arm)")
        q = CARRY_POSE[None] + (self._tour().viewpoints() - LOOKOUT_POSE[None])  # the tour validates
        lower, upper = joint_limits()
        bad = ~((q >= lower) & (q <= upper)).all(axis=1)
        if bad.any():
            raise ConfigError(
                f"arm viewpoints {np.flatnonzero(bad).tolist()} are outside the FR3 joint limits"
            )

    def _tour(self) -> TourConfig:
        return TourConfig(self.pans, self.tilts, self.rolls, self.dwell_s, self.move_s)

    def __call__(self, t_s: float) -> np.ndarray:
        """Joint targets (7,) at time `t_s` (s since the scan started)."""
        q = tour(np.array([max(float(t_s), 0.0)]), self._tour())[0]
        return q - LOOKOUT_POSE + CARRY_POSE


# Folded up beside the mast: every arm link within 0.32 m of the base axis (the base's own radius is 0.3 m),
# the wrist camera 1.18 m high looking straight ahead, 14 degrees down and level (no roll), outside the head
# camera's view. Found by a search over the FR3's joint space (reach, camera direction and roll, no
# self-contact, no occlusion of the head camera).
STOW_POSE = np.array([1.532, -0.823, 0.515, -1.983, -1.067, 1.062, 2.127])
COMPACT_REACH_M = (
    0.37  # every arm link of `CompactScan()` (default viewpoints) stays this close to the base axis
)


def _min_jerk(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk profile on [0, 1]: zero velocity and acceleration at both ends."""
    return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


@dataclass(frozen=True)
class CompactScan:
    """Wrist-camera viewpoints around `STOW_POSE`, visited in a loop with minimum-jerk moves.

    Each viewpoint offsets joints (1, 5, 6, 7) of the stow pose: joint 1 and 6 turn the camera right and
    left, joint 5 tilts it, joint 7 rolls it. The defaults look from 22 degrees right to 33 degrees left
    and from 33 degrees down to 10 degrees up, with +-0.3 rad of roll, and keep every link within
    `COMPACT_REACH_M` of the base axis, so the scan can run while the robot drives through a doorway
    (other offsets are checked against the joint limits only). The arm never swings towards the mast.
    """

    offsets: tuple[tuple[float, float, float, float], ...] = (
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 0.3, 0.5, 0.3),
        (-0.3, -0.3, 0.0, -0.3),
        (0.0, -0.3, 0.5, 0.0),
        (-0.3, 0.4, 0.1, 0.3),
        (-0.15, 0.0, 0.25, -0.3),
    )
    dwell_s: float = 1.0
    move_s: float = 2.0

    def __post_init__(self) -> None:
        try:
            offsets = np.array(self.offsets, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"CompactScan offsets must be rows of 4 numbers: {exc}") from exc
        if offsets.ndim != 2 or offsets.shape[1] != 4 or len(offsets) < 1 or not np.isfinite(offsets).all():
            raise ConfigError(
                f"CompactScan offsets must be N >= 1 rows of 4 finite numbers, got {self.offsets}"
            )
        if not (isinstance(self.dwell_s, (int, float)) and 0.0 <= self.dwell_s <= 60.0):
            raise ConfigError(f"dwell_s must be within [0, 60] s, got {self.dwell_s!r}")
        _positive(self.move_s, "move_s", 60.0)
        lower, upper = joint_limits()
        bad = ~((self.viewpoints() >= lower) & (self.viewpoints() <= upper)).all(axis=1)
        if bad.any():
            raise ConfigError(
                f"arm viewpoints {np.flatnonzero(bad).tolist()} are outside the FR3 joint limits"
            )

    def viewpoints(self) -> np.ndarray:
        """Joint vectors (V, 7) of the viewpoints."""
        views = np.repeat(STOW_POSE[None], len(self.offsets), axis=0)
        views[:, [0, 4, 5, 6]] += np.array(self.offsets, dtype=np.float64)
        return views

    def __call__(self, t_s: float) -> np.ndarray:
        """Joint targets (7,) at time `t_s` (s since the scan started): dwell, move, dwell, ... in a loop."""
        views = self.viewpoints()
        period = self.dwell_s + self.move_s
        t = max(float(t_s), 0.0)
        leg = math.floor(t / period)
        s = np.clip((t - leg * period - self.dwell_s) / self.move_s, 0.0, 1.0)
        start, end = views[leg % len(views)], views[(leg + 1) % len(views)]
        return start + _min_jerk(np.array(s)) * (end - start)


# ---------------------------------------------------------------------------------------------- running
class _ListSource:
    """A `BehaviourSource` over a fixed iterable of behaviours."""

    def __init__(self, behaviours: Iterable[Behaviour]) -> None:
        self._it: Iterator[Behaviour] = iter(behaviours)

    def next_behaviour(self, pose: Pose2D, t_s: float) -> Behaviour | None:
        return next(self._it, None)


class Script:
    """Behaviours in order, plus an optional arm motion `arm(t_s) -> q_target` running throughout.

    `behaviours` is an iterable (a list, or a generator: consumed lazily) or a `BehaviourSource`, asked for
    the next behaviour with the pose where the previous one ended. `index` counts the behaviours started
    before the running one; `skipped` lists the indices of those given up because the robot was stuck.
    """

    MAX_IDLE_BEHAVIOURS = (
        100  # behaviours in a row that finish without a single command: the source is broken
    )

    def __init__(
        self,
        behaviours: Iterable[Behaviour] | BehaviourSource,
        arm: Callable[[float], np.ndarray] | None = None,
        stuck_steps: int = 20,
    ) -> None:
        if isinstance(stuck_steps, bool) or not isinstance(stuck_steps, int) or stuck_steps < 1:
            raise ConfigError(f"stuck_steps must be an integer >= 1, got {stuck_steps!r}")
        if arm is not None and not callable(arm):
            raise ConfigError("arm must be a callable t_s -> joint targets, or None")
        if isinstance(behaviours, BehaviourSource):
            self.source: BehaviourSource = behaviours
        elif isinstance(behaviours, Iterable):
            self.source = _ListSource(behaviours)
        else:
            raise ConfigError("behaviours must be an iterable of behaviours or a BehaviourSource")
        self.arm = arm
        self.stuck_steps = stuck_steps
        self.index = 0  # the behaviour running now (or the next one)
        self.current: Behaviour | None = None
        self.skipped: list[int] = []  # behaviours given up because the robot was stuck
        self._stuck = 0
        self._exhausted = False

    @property
    def done(self) -> bool:
        """True when the source has no more behaviours and the last one has finished or been skipped."""
        return self._exhausted

    def command(self, pose: Pose2D, t_s: float, collided: bool = False) -> Command | None:
        """The command for now, or None when the script is done. `collided`: the last step was cut short."""
        self._stuck = self._stuck + 1 if collided else 0
        if self._stuck >= self.stuck_steps and self.current is not None:
            log.warning("behaviour %d (%s) is stuck against an obstacle: skipped", self.index, self._name())
            self.skipped.append(self.index)
            self._finish()
            self._stuck = 0
        for _ in range(self.MAX_IDLE_BEHAVIOURS):
            if self.current is None and not self._start_next(pose, t_s):
                return None
            cmd = self.current.command(pose, t_s)
            if cmd is not None:
                q = None if self.arm is None else self.arm(t_s)
                return Command(cmd.v, cmd.omega, q if q is not None else cmd.q_target)
            log.debug("behaviour %d (%s) done at t=%.2f s", self.index, self._name(), t_s)
            self._finish()
        log.error(
            "%d behaviours in a row finished without moving: stopping the script", self.MAX_IDLE_BEHAVIOURS
        )
        self._exhausted = True
        return None

    def _start_next(self, pose: Pose2D, t_s: float) -> bool:
        """Ask the source for the next behaviour; False (and done) when it has none."""
        if self._exhausted:
            return False
        self.current = self.source.next_behaviour(pose, t_s)
        if self.current is None:
            self._exhausted = True
        return self.current is not None

    def _finish(self) -> None:
        self.current = None
        self.index += 1

    def _name(self) -> str:
        return type(self.current).__name__


def run_script(
    sim: MobileFR3Sim, script: Script, dt: float = 0.1, max_steps: int = 10_000
) -> list[GroundTruth]:
    """Step `sim` with the script's commands until it is done or `max_steps` pass;
    returns the GroundTruth of every step."""
    if not (isinstance(dt, (int, float)) and 0.0 < dt <= 1.0):
        raise InvalidInputError(f"dt must be within (0, 1] s, got {dt!r}")
    out = []
    t0 = sim.stamp_ns
    collided = False
    for _ in range(max_steps):
        t_s = (sim.stamp_ns - t0) * 1e-9
        cmd = script.command(sim.pose2d, t_s, collided)
        if cmd is None:
            break
        gt = sim.step(cmd.v, cmd.omega, dt, q_target=cmd.q_target)
        collided = gt.collided
        out.append(gt)
    else:
        log.warning("script not done after %d steps", max_steps)
    return out
