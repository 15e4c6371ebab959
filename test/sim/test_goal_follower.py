"""GoalFollower, the simulated motion layer: plans round walls, snaps goals out of obstacles, stops on stale,
reached and unreachable goals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.sim.goal_follower import STOP, GoalFollower, GoalFollowerConfig
from spatial_memory.sim.planning import OccupancyGrid

RES = 0.05
S = 1_000_000_000


def room_with_wall() -> OccupancyGrid:
    """6 x 4 m; a wall at x = 3 m with a doorway at y in [3, 3.6]; a closed box (walls all round) at
    x, y in [4.5, 5.5] x [0.5, 1.5] whose inside is free but unreachable."""
    occ = np.zeros((round(4 / RES), round(6 / RES)), bool)
    occ[[0, -1], :] = True
    occ[:, [0, -1]] = True
    wall_x = round(3 / RES)
    occ[: round(3 / RES), wall_x - 2 : wall_x + 2] = True
    occ[round(3.6 / RES) :, wall_x - 2 : wall_x + 2] = True
    box = (slice(round(0.5 / RES), round(1.5 / RES)), slice(round(4.5 / RES), round(5.5 / RES)))
    occ[box] = True
    occ[round(0.6 / RES) : round(1.4 / RES), round(4.6 / RES) : round(5.4 / RES)] = False
    return OccupancyGrid(occ, (0.0, 0.0), RES)


def drive(follower: GoalFollower, pose: list[float], goal, seconds: float, dt: float = 0.05, explore=False):
    """Unicycle kinematics under the follower's commands; the goal is re-sent every second (as at 1 Hz)."""
    t_ns, path = 0, [tuple(pose[:2])]
    for k in range(round(seconds / dt)):
        if k % round(1 / dt) == 0 and goal is not None:
            follower.set_goal(goal, t_ns, np.array(pose[:2]), explore=explore)
        cmd = follower.command(tuple(pose), t_ns)
        pose[2] += cmd.omega * dt
        pose[0] += cmd.v * math.cos(pose[2]) * dt
        pose[1] += cmd.v * math.sin(pose[2]) * dt
        t_ns += round(dt * S)
        path.append(tuple(pose[:2]))
    return np.array(path)


def test_reaches_a_goal_behind_the_wall_through_the_doorway():
    grid = room_with_wall()
    follower = GoalFollower(grid)
    pose = [1.0, 1.0, 0.0]
    path = drive(follower, pose, (5.0, 3.0), 40.0)
    assert follower.status == "reached"
    assert math.hypot(pose[0] - 5.0, pose[1] - 3.0) <= follower.config.goal_tolerance_m + 0.05
    crossing = path[np.argmin(np.abs(path[:, 0] - 3.0))]
    assert 3.0 <= crossing[1] <= 3.6  # it went through the doorway, not the wall


def test_a_goal_inside_an_obstacle_is_moved_to_the_nearest_free_cell():
    grid = room_with_wall()
    follower = GoalFollower(grid)
    follower.set_goal((3.0, 1.0), 0, np.array([1.0, 1.0]))  # inside the wall
    assert follower.status == "driving" and follower.goal is not None
    assert grid.is_free(*follower.goal)
    assert np.linalg.norm(follower.goal - np.array([3.0, 1.0])) <= 0.2  # just beside the wall
    assert follower.plan(np.array([1.0, 1.0]), follower.goal) is not None  # and reachable


def test_unreachable_goals_stop_the_robot():
    grid = room_with_wall()
    follower = GoalFollower(grid, GoalFollowerConfig(snap_m=0.3))
    follower.set_goal((5.0, 1.0), 0, np.array([1.0, 1.0]))  # inside the closed box
    assert follower.status == "unreachable" and follower.command((1.0, 1.0, 0.0), 0) == STOP
    follower.set_goal((50.0, 50.0), 0, np.array([1.0, 1.0]))  # off the map, far from any free cell
    assert follower.status == "unreachable"


def test_exploration_goals_snap_further():
    grid = room_with_wall()
    follower = GoalFollower(grid, GoalFollowerConfig(snap_m=0.3, explore_snap_m=3.0))
    follower.set_goal((1.0, 6.0), 0, np.array([1.0, 1.0]))  # 2 m off the map's top edge
    assert follower.status == "unreachable"
    follower.set_goal((1.0, 6.0), 0, np.array([1.0, 1.0]), explore=True)
    assert follower.status == "driving" and grid.is_free(*follower.goal)


def test_a_stale_goal_stops_the_robot():
    grid = room_with_wall()
    follower = GoalFollower(grid, GoalFollowerConfig(stale_s=2.0))
    follower.set_goal((2.0, 2.0), 0, np.array([1.0, 1.0]))
    assert follower.command((1.0, 1.0, 0.0), 1 * S) != STOP
    assert follower.command((1.0, 1.0, 0.0), 3 * S) == STOP and follower.status == "stale"
    assert follower.command((1.0, 1.0, 0.0), 4 * S) == STOP  # stays stopped until a new goal


def test_no_goal_no_motion_and_bad_goals_are_refused():
    follower = GoalFollower(room_with_wall())
    assert follower.command((1.0, 1.0, 0.0), 0) == STOP and follower.status == "idle"
    with pytest.raises(InvalidInputError):
        follower.set_goal((float("nan"), 1.0), 0, np.array([1.0, 1.0]))
    with pytest.raises(ConfigError):
        GoalFollowerConfig(stale_s=0.0)


def test_small_goal_moves_do_not_replan_but_large_ones_do():
    follower = GoalFollower(room_with_wall())
    follower.set_goal((2.0, 2.0), 0, np.array([1.0, 1.0]))
    first = follower.goal.copy()
    follower.set_goal((2.1, 2.0), S, np.array([1.0, 1.0]))
    assert np.array_equal(follower.goal, first)
    follower.set_goal((2.0, 3.0), 2 * S, np.array([1.0, 1.0]))
    assert follower.goal[1] == pytest.approx(3.0)


def test_plan_reports_the_path_it_would_drive():
    follower = GoalFollower(room_with_wall(), GoalFollowerConfig(snap_m=0.3))
    path = follower.plan(np.array([1.0, 1.0]), np.array([5.0, 3.0]))
    assert path is not None and np.allclose(path[0], [1.0, 1.0]) and np.allclose(path[-1], [5.0, 3.0])
    assert follower.plan(np.array([1.0, 1.0]), np.array([5.0, 1.0])) is None  # the closed box
    outside = GoalFollower(room_with_wall()).plan(np.array([1.0, 1.0]), np.array([5.0, 1.0]))
    assert outside is not None and np.linalg.norm(outside[-1] - [5.0, 1.0]) <= 1.5  # snapped beside it


def test_with_a_heading_it_turns_to_it_on_arrival():
    follower = GoalFollower(room_with_wall())
    pose = [1.0, 1.0, 0.0]
    t_ns = 0
    follower.set_goal((2.0, 1.0), t_ns, np.array(pose[:2]), yaw=math.pi / 2)
    for _ in range(400):
        cmd = follower.command(tuple(pose), t_ns)
        pose[2] += cmd.omega * 0.05
        pose[0] += cmd.v * math.cos(pose[2]) * 0.05
        pose[1] += cmd.v * math.sin(pose[2]) * 0.05
        t_ns += 50_000_000
        if t_ns % S == 0:
            follower.set_goal((2.0, 1.0), t_ns, np.array(pose[:2]), yaw=math.pi / 2)
    assert follower.status == "reached"
    assert abs(pose[2] - math.pi / 2) <= follower.config.align_rad + 0.02


def test_a_wedged_base_backs_up_then_plans_again():
    follower = GoalFollower(room_with_wall(), GoalFollowerConfig(stuck_s=1.0, backup_s=0.5))
    follower.set_goal((2.5, 1.0), 0, np.array([1.0, 1.0]))
    assert follower.command((1.0, 1.0, 0.0), 0).v > 0  # drives off
    wedged = [follower.command((1.0, 1.0, 0.0), k * 100_000_000) for k in range(1, 14)]  # it never moves
    backing = [c for c in wedged if c.v < 0]
    assert backing and follower.status in ("recovering", "driving")
    assert all(c.omega == 0 for c in backing)  # straight back
    assert follower.command((0.9, 1.0, 0.0), 20 * 100_000_000).v > 0  # then it plans again and drives
