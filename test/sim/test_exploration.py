"""Scripted exploration: pure pursuit follows paths, turns and back-and-forth drives do what they say, the arm
scan stays within the limits, and a stuck behaviour is skipped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.sim.exploration import (
    CARRY_POSE,
    ArmScan,
    BackAndForth,
    FollowPath,
    LookAround,
    PurePursuitConfig,
    Script,
    run_script,
)
from spatial_memory.sim.mobile_robot import (
    WRIST_CAMERA,
    CameraConfig,
    MobileFR3Sim,
    MobileRobotConfig,
    box_room_spec,
)

ROOM = (5.0, 4.0)
BOXES = ((2.5, 2.0, 0.4, 0.4, 0.7),)  # a block in the middle of the room
CAM = CameraConfig(width=64, height=48)
CONFIG = MobileRobotConfig(head_camera=CAM, wrist_camera=CAM)
# Around the block, 0.8 m clear of it and of the walls (a hand-written plan).
LOOP = np.array([[1.0, 1.0], [4.0, 1.0], [4.0, 3.0], [1.0, 3.0], [1.0, 1.5]])


@pytest.fixture(scope="module")
def sim() -> MobileFR3Sim:
    with MobileFR3Sim(box_room_spec(ROOM, boxes=BOXES), CONFIG) as s:
        yield s


def _cross_track(path: np.ndarray, xy: np.ndarray) -> float:
    """Distance from `xy` to the polyline `path`."""
    a, b = path[:-1], path[1:]
    t = np.clip(np.einsum("ij,ij->i", xy - a, b - a) / np.einsum("ij,ij->i", b - a, b - a), 0, 1)
    return float(np.linalg.norm(a + t[:, None] * (b - a) - xy, axis=1).min())


def test_pure_pursuit_follows_a_path_around_an_obstacle(sim):
    sim.reset(1.0, 1.0, 0.0, q=CARRY_POSE)
    steps = run_script(sim, Script([FollowPath(LOOP)]), dt=0.1, max_steps=600)
    xy = np.array([gt.T_world_base[:2, 3] for gt in steps])
    assert np.linalg.norm(xy[-1] - LOOP[-1]) < PurePursuitConfig().goal_tolerance_m
    assert max(_cross_track(LOOP, p) for p in xy) < 0.05  # it stops and turns at corners: no cutting
    assert not any(gt.collided for gt in steps)
    assert all(
        abs(gt.v) <= CONFIG.max_linear_speed and abs(gt.omega) <= CONFIG.max_angular_speed for gt in steps
    )
    assert len(steps) < 450  # 9.5 m at up to 0.4 m/s, slowing into corners, plus turns


def test_look_around_turns_in_place_by_the_angle(sim):
    sim.reset(1.5, 1.5, 0.3)
    look = LookAround(2 * math.pi, speed=0.8)
    steps = run_script(sim, Script([look]), dt=0.1)
    assert look.turned == pytest.approx(2 * math.pi, abs=0.8 * 0.1)
    assert np.allclose([gt.T_world_base[:2, 3] for gt in steps], [1.5, 1.5], atol=1e-12)
    sim.reset(1.5, 1.5, 0.3)
    look = LookAround(-math.pi / 2, speed=0.5)
    run_script(sim, Script([look]), dt=0.05)
    assert look.turned == pytest.approx(-math.pi / 2, abs=0.5 * 0.05)


def test_back_and_forth_returns_to_its_start(sim):
    sim.reset(1.0, 0.8, 0.0)
    steps = run_script(sim, Script([BackAndForth(distance_m=1.5, speed=0.3, repeats=2)]), dt=0.1)
    x = np.array([gt.T_world_base[0, 3] for gt in steps])
    assert x.max() == pytest.approx(2.5, abs=0.05)
    assert x[-1] == pytest.approx(1.0, abs=0.05) and x.min() > 1.0 - 0.05
    assert sum(np.diff(np.sign(np.diff(x))) < 0) >= 2  # two turnarounds at the far end


def test_arm_scan_moves_the_wrist_camera_within_the_limits(sim):
    scan = ArmScan()
    k = FR3Kinematics()
    times = np.arange(0.0, 25.0, 0.1)
    Q = np.array([scan(t) for t in times])
    k.check_joints_batch(Q)  # raises if any is outside the FR3 limits
    directions = np.array([k.camera_pose(q)[:3, 2] for q in Q[::10]])
    assert np.ptp(np.degrees(np.arctan2(directions[:, 1], directions[:, 0]))) > 90  # pans left and right
    assert (directions[:, 2] < -0.2).all() and (directions[:, 2] > -0.7).all()  # looks out, slightly down
    with MobileFR3Sim(box_room_spec((8.0, 8.0)), CONFIG) as big:
        big.reset(4.0, 4.0, 0.0, q=CARRY_POSE)
        steps = run_script(big, Script([LookAround(math.pi, 0.3)], arm=scan), dt=0.1)
    assert not any(gt.arm_blocked for gt in steps)
    speeds = np.abs(np.diff([gt.q for gt in steps], axis=0)).max() / 0.1
    assert speeds <= CONFIG.max_joint_speed + 1e-9
    yaws = np.unwrap([math.atan2(*gt.camera_poses[WRIST_CAMERA][1::-1, 2]) for gt in steps])
    assert np.ptp(yaws) > math.pi  # the base turned half a turn, the arm panned on top of it


def test_arm_scan_near_a_wall_is_blocked_not_pushed_through(sim):
    sim.reset(2.5, 3.5, 0.0, q=CARRY_POSE)  # 0.5 m from the north wall: panning left would hit it
    steps = run_script(sim, Script([LookAround(1.2, 0.1)], arm=ArmScan()), dt=0.1, max_steps=150)
    assert any(gt.arm_blocked for gt in steps)
    assert sim.pose_is_free(*sim.pose2d)


def test_a_stuck_behaviour_is_skipped_and_the_script_goes_on(sim):
    sim.reset(1.0, 1.0, 0.0)
    through_the_block = FollowPath([[1.0, 1.0], [2.5, 2.0], [4.0, 3.0]])
    script = Script([through_the_block, LookAround(math.pi / 2)], stuck_steps=5)
    steps = run_script(sim, script, dt=0.1, max_steps=400)
    assert script.skipped == [0] and script.done
    assert any(gt.collided for gt in steps) and not steps[-1].collided


def test_follows_a_planned_path_through_a_generated_world():
    worlds = pytest.importorskip("spatial_memory.sim.worlds")
    world_scene = pytest.importorskip("spatial_memory.sim.world_scene")
    planning = pytest.importorskip("spatial_memory.sim.planning")
    config = worlds.WorldConfig(
        seed=5, width_m=10.0, depth_m=7.0, num_rooms=3, robot_radius_m=0.45, door_width_m=1.2
    )
    world = worlds.generate_world(config)
    grid = planning.OccupancyGrid.from_world(world, resolution_m=0.05)  # inflated by the radius: base + hand
    centres = planning.room_centres(world)
    cfg = MobileRobotConfig(head_camera=CAM, wrist_camera=CAM)
    with MobileFR3Sim(world_scene.build_world_spec(world, texture_px=32), cfg, is_free=grid.is_free) as s:
        for start, goal in ((0, 1), (1, 2)):  # through doorways, around furniture
            path = planning.plan_path(grid, centres[start], centres[goal])
            s.reset(*centres[start], math.atan2(*(path[1] - path[0])[::-1]), q=CARRY_POSE)
            steps = run_script(s, Script([FollowPath(path)]), dt=0.1, max_steps=1500)
            assert np.linalg.norm(steps[-1].T_world_base[:2, 3] - centres[goal]) < 0.1
            assert not any(gt.collided or gt.arm_blocked for gt in steps)
            assert all(grid.is_free(*gt.T_world_base[:2, 3]) for gt in steps)
        assert s.render(WRIST_CAMERA).std() > 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: FollowPath([]),
        lambda: FollowPath([[0.0, 0.0], [np.nan, 1.0]]),
        lambda: FollowPath([[0.0, 0.0, 0.0]]),
    ],
)
def test_bad_paths_are_refused(make):
    with pytest.raises(InvalidInputError):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: PurePursuitConfig(lookahead_m=0.0),
        lambda: LookAround(0.0),
        lambda: BackAndForth(repeats=0),
        lambda: ArmScan(pans=(2.0,), tilts=(0.0,), rolls=(0.0,)),
        lambda: ArmScan(pans=(0.0,), tilts=(3.0,), rolls=(0.0,)),  # beyond the joint limits
        lambda: Script([], stuck_steps=0),
    ],
)
def test_bad_configs_are_refused(make):
    with pytest.raises(ConfigError):
        make()
