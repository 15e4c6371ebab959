"""Drive the simulated base to a goal pose on the world's occupancy grid: the motion layer under the policy.

On a robot, nav2 takes the policy's `goal_pose` and plans on its map. In simulation `GoalFollower` plays that
part with the simulator's own occupancy grid: the memory says where, the planner says how. It plans with A*
(`sim.planning.plan_path`) from the robot to the goal and follows the path with pure pursuit
(`sim.exploration.FollowPath`); it replans when the goal moves by more than `replan_m`, and when the robot has
made no progress for `stuck_s`, after backing up for `backup_s` (a base wedged against furniture frees
itself, as nav2's recovery behaviours do).

A goal inside an obstacle or outside the map (memory answers are not exact; exploration goals are blind) is
moved to the nearest free cell the robot can reach, within `snap_m`; further away it is unreachable. Without a
fresh goal the follower stops: a goal older than `stale_s` (the policy is gone or slow) gives a zero command,
as does a reached or unreachable one. Poses are in the grid's (world) frame; the caller localises the robot
(in simulation, the ground truth: nav2 with a good map localisation).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import wrap_angle
from spatial_memory.sim.exploration import Command, FollowPath, PurePursuitConfig
from spatial_memory.sim.planning import OccupancyGrid, plan_path

log = logging.getLogger(__name__)

STOP = Command(0.0, 0.0)


@dataclass(frozen=True)
class GoalFollowerConfig:
    """How the simulated motion layer follows goals (see the module docstring)."""

    goal_tolerance_m: float = field(
        default=0.25, metadata={"help": "reached: the base is this close to the (snapped) goal"}
    )
    replan_m: float = field(default=0.3, metadata={"help": "a goal that moved further is planned again"})
    snap_m: float = field(
        default=1.5,
        metadata={"help": "a goal in an obstacle moves to the nearest reachable free cell within this"},
    )
    explore_snap_m: float = field(
        default=4.0,
        metadata={"help": "... for exploration goals (blind guesses: any reachable cell towards them)"},
    )
    stale_s: float = field(default=3.0, metadata={"help": "a goal older than this stops the robot"})
    align_rad: float = field(
        default=0.15, metadata={"help": "at the goal, turn until the heading is this close"}
    )
    stuck_s: float = field(default=4.0, metadata={"help": "no progress for this long: plan again"})
    backup_s: float = field(default=1.5, metadata={"help": "stuck: back up this long, then plan again"})
    backup_speed: float = field(default=0.15, metadata={"help": "... at this speed (m/s)"})
    pursuit: PurePursuitConfig = field(default_factory=lambda: PurePursuitConfig(speed=0.5))

    def __post_init__(self) -> None:
        for name in (
            "goal_tolerance_m",
            "replan_m",
            "snap_m",
            "explore_snap_m",
            "stale_s",
            "stuck_s",
            "align_rad",
            "backup_s",
            "backup_speed",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigError(f"goal follower {name} must be a positive finite number, got {value!r}")


class GoalFollower:
    """Goal in, velocity commands out, on an occupancy grid (see the module docstring)."""

    def __init__(self, grid: OccupancyGrid, config: GoalFollowerConfig | None = None) -> None:
        self.grid = grid
        self.config = config or GoalFollowerConfig()
        self._nearest: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # label -> (distance, indices)
        self.clear()

    def clear(self, status: str = "idle") -> None:
        """Drop the goal: the next commands are zero."""
        self.goal: np.ndarray | None = None  # the snapped goal (x, y), world frame
        self.requested: np.ndarray | None = None
        self.goal_stamp_ns: int | None = None
        self.goal_yaw: float | None = None
        self.status = status
        self._path: FollowPath | None = None
        self._progress_ns: int | None = None
        self._best_left = math.inf
        self._best_error = math.inf
        self._backup_until_ns: int | None = None
        self._snap_m = self.config.snap_m

    def set_goal(
        self,
        xy: tuple[float, float] | np.ndarray,
        stamp_ns: int,
        robot_xy: np.ndarray,
        explore: bool = False,
        yaw: float | None = None,
    ) -> None:
        """A new goal (world frame) at time `stamp_ns`; replans only when it moved by more than `replan_m`.
        `explore`: a blind exploration goal, snapped within `explore_snap_m` rather than `snap_m`. `yaw`:
        the heading to turn to on arrival (as nav2 does with a goal's orientation); None: any."""
        goal = np.asarray(xy, dtype=np.float64).reshape(2)
        if not np.isfinite(goal).all() or (yaw is not None and not math.isfinite(yaw)):
            raise InvalidInputError(f"goal must be finite (x, y[, yaw]), got {goal.tolist()}, {yaw}")
        self.goal_stamp_ns = int(stamp_ns)
        self.goal_yaw = yaw
        self._snap_m = self.config.explore_snap_m if explore else self.config.snap_m
        same = self.requested is not None and np.linalg.norm(goal - self.requested) <= self.config.replan_m
        if same and self.status != "unreachable":
            return
        self.requested = goal
        self._plan(np.asarray(robot_xy, dtype=np.float64), stamp_ns)

    def command(self, pose: tuple[float, float, float], now_ns: int) -> Command:
        """The velocity command for the base at `pose` (world frame) at time `now_ns`."""
        if self.goal is None or self._path is None:
            return STOP
        if self.goal_stamp_ns is not None and (now_ns - self.goal_stamp_ns) * 1e-9 > self.config.stale_s:
            self.clear("stale")
            return STOP
        left = math.hypot(self.goal[0] - pose[0], self.goal[1] - pose[1])
        if left <= self.config.goal_tolerance_m or self.status == "aligning":
            return self._align(pose, now_ns)
        if self._backup_until_ns is not None:  # recovering: back up a little, then plan again
            if now_ns < self._backup_until_ns:
                self.status = "recovering"
                return Command(-self.config.backup_speed, 0.0)
            self._backup_until_ns = None
            self._plan(np.array(pose[:2]), now_ns)
            if self._path is None:
                return STOP
        if left < self._best_left - 0.05:
            self._best_left, self._progress_ns = left, now_ns
        elif self._progress_ns is not None and (now_ns - self._progress_ns) * 1e-9 > self.config.stuck_s:
            log.debug(
                "goal follower: no progress for %.1f s: backing up, then planning again", self.config.stuck_s
            )
            self._backup_until_ns = now_ns + round(self.config.backup_s * 1e9)
            self._progress_ns = self._backup_until_ns
            self.status = "recovering"
            return Command(-self.config.backup_speed, 0.0)
        cmd = self._path.command(pose, now_ns * 1e-9)
        if cmd is None:
            return self._align(pose, now_ns)
        self.status = "driving"
        return cmd

    def _align(self, pose: tuple[float, float, float], now_ns: int) -> Command:
        """At the goal: turn on the spot to the goal's heading, if it has one; then reached. A turn that
        makes no progress for `stuck_s` (the base is wedged against something) ends as reached too."""
        error = 0.0 if self.goal_yaw is None else wrap_angle(self.goal_yaw - pose[2])
        if self.status != "aligning" or abs(error) < self._best_error - 0.05:
            self._best_error, self._progress_ns = abs(error), now_ns
        stuck = self._progress_ns is not None and (now_ns - self._progress_ns) * 1e-9 > self.config.stuck_s
        if abs(error) <= self.config.align_rad or stuck:
            if stuck:
                log.debug("goal follower: cannot turn to the goal's heading (%.2f rad off)", error)
            self.status = "reached"
            return STOP
        self.status = "aligning"
        limit = self.config.pursuit.max_angular_speed
        return Command(0.0, float(np.clip(2.0 * error, -limit, limit)))

    # ------------------------------------------------------------------------------------------ planning
    def plan(self, start_xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray | None:
        """The path (N, 2) this follower would drive from `start_xy` to `goal_xy` (both snapped to reachable
        free cells), or None when there is none. Leaves the current goal alone."""
        start = self._reachable(np.asarray(start_xy, dtype=np.float64), None)
        if start is None:
            return None
        goal = self._reachable(np.asarray(goal_xy, dtype=np.float64), self._label(start))
        if goal is None:
            return None
        try:
            return plan_path(self.grid, start, goal)
        except InvalidInputError:
            return None

    def _plan(self, robot_xy: np.ndarray, now_ns: int) -> None:
        start = self._reachable(robot_xy, None)
        if start is None:
            self._unreachable(f"the robot at ({robot_xy[0]:.2f}, {robot_xy[1]:.2f}) is off the free map")
            return
        goal = self._reachable(self.requested, self._label(start))
        if goal is None:
            x, y = self.requested
            self._unreachable(f"no free cell reachable within {self._snap_m:g} m of ({x:.2f}, {y:.2f})")
            return
        try:
            path = plan_path(self.grid, start, goal)
        except InvalidInputError as exc:
            self._unreachable(str(exc))
            return
        self.goal, self._path, self.status = goal, FollowPath(path, self.config.pursuit), "driving"
        self._progress_ns, self._best_left = now_ns, math.inf

    def _unreachable(self, why: str) -> None:
        log.debug("goal follower: %s", why)
        self.goal, self._path, self.status = None, None, "unreachable"

    def _label(self, xy: np.ndarray) -> int:
        cell = self.grid.world_to_cell(np.asarray(xy)[None])[0]
        return int(self.grid.labels[cell[1], cell[0]])

    def _reachable(self, xy: np.ndarray, label: int | None) -> np.ndarray | None:
        """`xy` if free (in region `label`), else the centre of the nearest such cell within `snap_m`."""
        grid = self.grid
        cell = grid.world_to_cell(np.asarray(xy, dtype=np.float64)[None])[0]
        inside = bool(grid.in_bounds(cell[None])[0])
        if inside:
            here = int(grid.labels[cell[1], cell[0]])
            if here > 0 and (label is None or here == label):
                return np.asarray(xy, dtype=np.float64)
        if label is None:  # the robot: any free region (the largest if it is off the map)
            label = grid.largest_component if not inside else self._nearest_label(cell)
            if label <= 0:
                return None
        dist, idx = self._nearest_cells(label)
        c = np.clip(cell, 0, np.array(grid.shape[::-1]) - 1)
        iy, ix = idx[0][c[1], c[0]], idx[1][c[1], c[0]]
        snapped = grid.cell_to_world(np.array([ix, iy]))
        if np.linalg.norm(snapped - xy) > self._snap_m:
            return None
        return snapped

    def _nearest_label(self, cell: np.ndarray) -> int:
        """The free region whose cell is nearest `cell` (for a robot standing on an inflated margin)."""
        labels = self.grid.labels
        _, idx = ndimage.distance_transform_edt(labels == 0, return_indices=True)
        return int(labels[idx[0][cell[1], cell[0]], idx[1][cell[1], cell[0]]])

    def _nearest_cells(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """For every cell, the nearest cell of free region `label` (cached per region)."""
        if label not in self._nearest:
            self._nearest[label] = ndimage.distance_transform_edt(
                self.grid.labels != label, return_indices=True
            )
        return self._nearest[label]
