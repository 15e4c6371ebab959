"""The live simulation core of sim_node: commands, the cmd_vel timeout, bad commands, camera rates, pacing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from spatial_memory.config import from_dict
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert
from spatial_memory.sim import mobile_robot as mr
from spatial_memory.sim.episode import HEAD_CAMERA, WRIST_CAMERA
from spatial_memory.sim.exploration import STOW_POSE
from spatial_memory.sim.live import (
    LiveSim,
    LiveSimConfig,
    LiveWorldConfig,
    Pacer,
)
from spatial_memory.sim.odometry import WheelOdometryConfig
from spatial_memory.sim.presets import WORLD_PRESETS

JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
SMALL_ROBOT = mr.MobileRobotConfig(
    head_camera=mr.CameraConfig(width=32, height=24, fovy_deg=60.0, rate_hz=15.0),
    wrist_camera=mr.CameraConfig(width=24, height=16, fovy_deg=58.0, rate_hz=5.0),
)
EXACT = WheelOdometryConfig(linear_noise=0.0, angular_noise=0.0, heading_noise=0.0, heading_bias=0.0)


def small_config(**kwargs) -> LiveSimConfig:
    values = {
        "world": LiveWorldConfig(preset="room", texture_px=16),
        "robot": SMALL_ROBOT,
        "odometry": EXACT,
        **kwargs,
    }
    return LiveSimConfig(**values)


@pytest.fixture(scope="module")
def shared() -> LiveSim:
    with LiveSim(small_config()) as sim:
        yield sim


@pytest.fixture
def sim() -> LiveSim:
    with LiveSim(small_config()) as sim:
        yield sim


def ticks(sim: LiveSim, n: int) -> list:
    return [sim.tick() for _ in range(n)]


# ----------------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: LiveWorldConfig(preset="castle"), "preset must be one of"),
        (lambda: LiveWorldConfig(seed=-1), "seed"),
        (lambda: LiveWorldConfig(texture_px=4), "texture_px"),
        (lambda: LiveWorldConfig(preset="room", num_rooms=5), "too many rooms"),
        (lambda: LiveWorldConfig(preset="room", start_room=1).world_config(), "start_room 1 does not exist"),
        (lambda: small_config(rate_hz=0.0), "rate_hz"),
        (lambda: small_config(rate_hz=10.0), "head_camera.rate_hz 15 is above the simulation rate_hz 10"),
        (lambda: small_config(cmd_vel_timeout_s=0.0), "cmd_vel_timeout_s"),
        (lambda: small_config(cmd_vel_timeout_s=math.nan), "cmd_vel_timeout_s"),
        (lambda: LiveSimConfig(world=LiveWorldConfig(preset="room", start_room=2)), "start_room"),
        (lambda: LiveWorldConfig(start_xy=(1.0,)), "start_xy must be two numbers"),
        (lambda: LiveWorldConfig(start_xy=(1.0, math.nan)), "start_xy"),
        (lambda: small_config(arm_start="up"), "arm_start must be one of"),
    ],
)
def test_bad_configs_are_refused_with_a_clear_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_the_robot_starts_at_a_given_place_or_refuses_one_in_collision():
    """start_at_xy: where a saved memory left the robot (a restart), with its heading."""
    room = LiveWorldConfig(preset="room", texture_px=16)
    with LiveSim(small_config(world=room)) as sim:
        cx, cy = sim.world.rooms[0].center
    there = dataclasses.replace(room, start_at_xy=True, start_xy=(cx + 0.1, cy - 0.1), start_yaw=1.0)
    with LiveSim(small_config(world=there)) as sim:
        np.testing.assert_allclose(sim.sim.pose2d, (cx + 0.1, cy - 0.1, 1.0), atol=1e-9)
        np.testing.assert_allclose(sim.T_world_odom, sim.tick().T_world_base, atol=1e-9)  # odom starts there
    wall = dataclasses.replace(room, start_at_xy=True, start_xy=(cx + 0.4, cy - 0.3))  # furniture there
    with pytest.raises(ConfigError, match=r"cannot start at \("):
        LiveSim(small_config(world=wall))


@pytest.mark.parametrize(("arm_start", "in_view"), [("stowed", False), ("home", True)])
def test_the_arm_starts_stowed_out_of_the_head_cameras_view_or_at_home_in_it(arm_start, in_view):
    """Stowed (the default, as the memory's training tours drive) the head camera's picture shows the place,
    not the arm: its lower middle equals the same view rendered with the robot hidden. At home the arm
    fills part of it."""
    robot = dataclasses.replace(
        SMALL_ROBOT, head_camera=mr.CameraConfig(width=80, height=60, fovy_deg=60.0, rate_hz=15.0)
    )
    with LiveSim(small_config(robot=robot, arm_start=arm_start)) as sim:
        expected = STOW_POSE if arm_start == "stowed" else sim.sim.kinematics.home
        np.testing.assert_allclose(sim.tick().q, expected)
        seen = sim.sim.render(mr.HEAD_CAMERA)
        hidden, _ = sim.sim.render_view(sim.sim.camera_pose(mr.HEAD_CAMERA), hide_robot=True)
    changed = np.abs(seen.astype(int) - hidden.astype(int)).max(axis=2) > 8
    lower_middle = changed[30:, 27:53]  # where the arm reaches forward at home
    assert (lower_middle.mean() > 0.05) == in_view, lower_middle.mean()


def test_config_builds_from_a_nested_dict_like_ros_parameters():
    cfg = from_dict(LiveSimConfig, {"rate_hz": 20, "world": {"preset": "house", "seed": 3}})
    assert cfg.rate_hz == 20.0 and cfg.world.world_config().num_rooms == 4
    assert cfg.dt_ns == 50_000_000
    overrides = LiveWorldConfig(preset="house", width_m=12.0, num_rooms=5).world_config()
    assert (overrides.width_m, overrides.depth_m, overrides.num_rooms) == (12.0, 8.0, 5)


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(WORLD_PRESETS))
def test_every_preset_builds_a_world_the_robot_starts_and_drives_in(preset):
    cfg = small_config(world=LiveWorldConfig(preset=preset, texture_px=16))
    with LiveSim(cfg) as sim:
        assert len(sim.world.rooms) >= cfg.world.world_config().num_rooms
        start = sim.sim.pose2d
        sim.command_velocity(0.5, 0.0)
        out = ticks(sim, 6)
        assert not any(t.collided for t in out)
        assert math.hypot(sim.sim.pose2d[0] - start[0], sim.sim.pose2d[1] - start[1]) > 0.05


# ----------------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------------


def test_velocity_commands_move_the_base_and_the_odometry(sim):
    start = sim.tick()
    np.testing.assert_allclose(start.T_world_base, sim.T_world_odom, atol=1e-9)  # standing still
    sim.command_velocity(0.3, 0.6)
    out = ticks(sim, 9)
    assert all(t.driving for t in out) and not any(t.collided for t in out)
    last = out[-1]
    assert last.stamp_ns == 10 * sim.config.dt_ns
    D = invert(start.T_world_base) @ last.T_world_base
    yaw = math.atan2(D[1, 0], D[0, 0])
    assert yaw == pytest.approx(0.6 * 9 / 30, abs=1e-6)
    assert math.hypot(D[0, 3], D[1, 3]) == pytest.approx(0.3 * 9 / 30, rel=1e-2)
    # exact odometry = the true motion seen from the odometry origin (the true start pose)
    np.testing.assert_allclose(
        invert(sim.T_world_odom) @ last.T_world_base, last.odometry.T_odom_base, atol=1e-9
    )
    np.testing.assert_allclose(last.odometry.twist, [0.3, 0.0, 0.0, 0.0, 0.0, 0.6], atol=0.01)
    assert last.command == pytest.approx((0.3, 0.6))
    assert last.joint_names == JOINTS and last.q.shape == (7,)


def test_commands_are_clipped_to_the_robot_limits(sim):
    sim.command_velocity(5.0, -5.0)
    t = sim.tick()
    assert t.command == pytest.approx((SMALL_ROBOT.max_linear_speed, -SMALL_ROBOT.max_angular_speed))


def test_the_base_stops_when_no_velocity_command_comes_within_the_timeout(sim):
    sim.command_velocity(0.2, 0.0)
    steps = round(sim.config.cmd_vel_timeout_s * sim.config.rate_hz)  # 15 steps of 1/30 s = 0.5 s
    moving = ticks(sim, steps)
    assert all(t.driving and t.command[0] == pytest.approx(0.2) for t in moving)
    assert not any(t.stopped_by_timeout for t in moving)
    stopped = ticks(sim, 5)
    assert [t.stopped_by_timeout for t in stopped] == [True, False, False, False, False]
    assert all(not t.driving and t.command == (0.0, 0.0) for t in stopped)
    np.testing.assert_array_equal(stopped[0].T_world_base, stopped[-1].T_world_base)
    np.testing.assert_array_equal(moving[-1].T_world_base, stopped[0].T_world_base)
    sim.command_velocity(0.2, 0.0)  # a new command drives again
    assert sim.tick().driving


def test_repeated_commands_keep_the_base_moving(sim):
    for _ in range(40):  # 1.3 s, refreshed every 0.2 s
        if sim.stamp_ns % (6 * sim.config.dt_ns) == 0:
            sim.command_velocity(0.1, 0.0)
        assert sim.tick().driving


def test_stop_drops_the_command(sim):
    sim.command_velocity(0.3, 0.0)
    sim.stop()
    t = sim.tick()
    assert not t.driving and t.command == (0.0, 0.0) and not t.stopped_by_timeout


@pytest.mark.parametrize(
    ("v", "omega"), [(math.nan, 0.0), (0.0, math.inf), ("fast", 0.0), (True, 0.0), (None, 0.0)]
)
def test_bad_velocity_commands_are_refused_and_change_nothing(sim, v, omega):
    sim.command_velocity(0.2, 0.1)
    with pytest.raises(InvalidInputError, match="velocity"):
        sim.command_velocity(v, omega)
    assert sim.tick().command == pytest.approx((0.2, 0.1))


def test_joint_commands_move_the_arm_towards_the_target_by_name(sim):
    home = sim.tick().q
    target = home + np.array([0.3, -0.2, 0.0, 0.1, 0.0, 0.2, -0.3])
    order = [6, 0, 3, 1, 5, 2, 4]
    got = sim.command_joints([JOINTS[i] for i in order], target[order])
    np.testing.assert_allclose(got, target)
    first = sim.tick()
    step = SMALL_ROBOT.max_joint_speed / sim.config.rate_hz
    np.testing.assert_allclose(np.abs(first.q - home), np.minimum(np.abs(target - home), step), atol=1e-12)
    out = ticks(sim, 15)  # 0.3 rad at 1 rad/s: there after 9 steps
    np.testing.assert_allclose(out[-1].q, target, atol=1e-12)
    assert not any(t.arm_blocked for t in out)
    np.testing.assert_allclose(sim.q_target, target)


@pytest.mark.parametrize(
    ("names", "positions", "match"),
    [
        (JOINTS[:6], [0.0] * 6, "missing"),
        ((*JOINTS, "fr3_finger_joint1"), [0.0] * 8, "unknown"),
        ((*JOINTS[:6], "fr3_joint1"), [0.0] * 7, "repeated"),
        (("a", "b", "c", "d", "e", "f", "g"), [0.0] * 7, "unknown"),
        ((), [0.0] * 7, "0 names but 7 positions"),
        (JOINTS, [0.0] * 6, "7 names but 6 positions"),
        (JOINTS, [0.0, math.nan, 0.0, -2.0, 0.0, 2.0, 0.0], "fr3_joint2 is nan"),
        (JOINTS, [0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0], "fr3_joint4 .* outside its limits"),
        (JOINTS, ["x"] * 7, "must be numbers"),
    ],
)
def test_bad_joint_commands_are_refused_and_change_nothing(sim, names, positions, match):
    good = sim.command_joints(JOINTS, sim.tick().q)
    with pytest.raises(InvalidInputError, match=match):
        sim.command_joints(names, positions)
    np.testing.assert_array_equal(sim.q_target, good)


# ----------------------------------------------------------------------------------------------------
# cameras, frames
# ----------------------------------------------------------------------------------------------------


def test_cameras_come_at_their_rates_with_ground_truth_poses(shared):
    out = ticks(shared, 60)  # 2 s at 30 Hz
    head = [t for t in out if any(c.name == HEAD_CAMERA for c in t.cameras)]
    wrist = [t for t in out if any(c.name == WRIST_CAMERA for c in t.cameras)]
    assert len(head) in (29, 30) and len(wrist) in (9, 10)  # 15 Hz and 5 Hz
    gaps = np.diff([t.stamp_ns for t in head])
    assert set(gaps.tolist()) == {2 * shared.config.dt_ns}
    for tick in (head[-1], wrist[-1]):
        for cam in tick.cameras:
            cfg = SMALL_ROBOT.camera(mr.HEAD_CAMERA if cam.name == HEAD_CAMERA else mr.WRIST_CAMERA)
            assert cam.rgb.shape == (cfg.height, cfg.width, 3) and cam.rgb.dtype == np.uint8
            assert cam.depth.shape == (cfg.height, cfg.width) and cam.depth.dtype == np.float32
            np.testing.assert_allclose(cam.K, shared.intrinsics(cam.name))
    cam = head[-1].camera(HEAD_CAMERA)
    assert cam.frame_id == mr.HEAD_OPTICAL_FRAME
    np.testing.assert_allclose(
        cam.T_world_cam, head[-1].T_world_base @ shared.sim.T_base_camera(mr.HEAD_CAMERA), atol=1e-9
    )
    assert cam.rgb.std() > 3  # it sees the room
    assert wrist[-1].camera(WRIST_CAMERA).frame_id == mr.WRIST_OPTICAL_FRAME


def test_static_edges_compose_to_the_camera_and_arm_mounts(shared):
    edges = {(e.parent, e.child): e.T_parent_child for e in shared.static_edges()}
    assert set(edges) == {
        (mr.BASE_LINK, mr.ARM_ROOT),
        (mr.BASE_LINK, mr.HEAD_CAMERA_LINK),
        (mr.HEAD_CAMERA_LINK, mr.HEAD_OPTICAL_FRAME),
    }
    np.testing.assert_allclose(edges[(mr.BASE_LINK, mr.ARM_ROOT)], SMALL_ROBOT.T_base_arm())
    np.testing.assert_allclose(
        edges[(mr.BASE_LINK, mr.HEAD_CAMERA_LINK)] @ edges[(mr.HEAD_CAMERA_LINK, mr.HEAD_OPTICAL_FRAME)],
        shared.sim.T_base_camera(mr.HEAD_CAMERA),
        atol=1e-12,
    )


def test_noisy_odometry_drifts_from_the_truth_reproducibly():
    noisy = small_config(odometry=WheelOdometryConfig(linear_noise=0.05, heading_bias=0.05, seed=4))
    runs = []
    for _ in range(2):
        with LiveSim(noisy) as sim:
            sim.command_velocity(0.4, 0.3)
            last = ticks(sim, 12)[-1]
            runs.append((last, invert(sim.T_world_odom) @ last.T_world_base))
    (a, truth), (b, _) = runs
    np.testing.assert_array_equal(a.odometry.T_odom_base, b.odometry.T_odom_base)
    error = np.linalg.norm(a.odometry.T_odom_base[:2, 3] - truth[:2, 3])
    assert 1e-5 < error < 0.05


def test_the_default_cameras_are_small_enough_for_real_time():
    cfg = LiveSimConfig()
    assert cfg.robot.head_camera.width * cfg.robot.head_camera.height <= 160 * 120
    assert cfg.robot.wrist_camera.rate_hz < cfg.robot.head_camera.rate_hz <= 15.0
    assert cfg.robot.head_camera.rate_hz <= cfg.rate_hz


# ----------------------------------------------------------------------------------------------------
# pacing
# ----------------------------------------------------------------------------------------------------

DT = 10_000_000  # 10 ms


def test_pacer_runs_the_steps_that_wall_time_has_reached():
    pacer = Pacer(DT)
    assert pacer.due(5_000_000_000) == 1  # the first call runs one step and anchors
    assert pacer.due(5_004_000_000) == 0
    assert pacer.due(5_010_000_000) == 1
    assert pacer.due(5_030_500_000) == 2  # a late timer catches up
    assert pacer.steps == 4 and pacer.lag_ns == 0
    assert pacer.period_s == pytest.approx(0.01)


def test_pacer_scales_with_the_real_time_factor():
    pacer = Pacer(DT, real_time_factor=2.0)
    pacer.due(0)
    assert pacer.due(10_000_000) == 2 and pacer.period_s == pytest.approx(0.005)


def test_pacer_drops_what_it_cannot_catch_up_and_reports_the_lag():
    pacer = Pacer(DT, max_burst=3)
    pacer.due(0)
    assert pacer.due(100_000_000) == 3  # 10 steps due: 3 run, 7 dropped
    assert pacer.lag_ns == 7 * DT
    assert pacer.due(110_000_000) == 1  # back on schedule after the drop
    assert pacer.lag_ns == 7 * DT


@pytest.mark.parametrize(
    "kwargs",
    [{"dt_ns": 0}, {"dt_ns": 1.5}, {"dt_ns": DT, "real_time_factor": 0.0}, {"dt_ns": DT, "max_burst": 0}],
)
def test_pacer_refuses_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        Pacer(**kwargs)


def test_teleport_is_a_kidnap_the_odometry_does_not_see(sim):
    sim.command_velocity(0.3, 0.0)
    before = ticks(sim, 10)[-1]
    x, y, _ = sim.sim.pose2d
    target = next(
        (x + dx, y + dy)
        for dx, dy in ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0), (1.0, 1.0))
        if sim.sim.pose_is_free(x + dx, y + dy, 0.5)
    )
    stamp = sim.stamp_ns
    sim.teleport(*target, 0.5)
    assert sim.stamp_ns == stamp and not sim.tick().driving  # time goes on; the command was dropped
    after = sim.tick()
    np.testing.assert_allclose(after.T_world_base[:2, 3], target, atol=1e-9)  # really moved...
    np.testing.assert_allclose(after.odometry.T_odom_base, before.odometry.T_odom_base, atol=1e-9)  # unseen


def test_teleport_into_a_wall_is_refused_and_changes_nothing(sim):
    pose = sim.sim.pose2d
    x, y, _ = pose
    blocked = next(x + 0.1 * k for k in range(1, 200) if not sim.sim.pose_is_free(x + 0.1 * k, y, 0.0))
    with pytest.raises(InvalidInputError):
        sim.teleport(blocked, y, 0.0)  # into the wall ahead
    assert sim.sim.pose2d == pose
