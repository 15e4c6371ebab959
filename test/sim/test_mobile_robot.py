"""The mobile FR3: camera poses agree with base pose + FK, the base never enters walls, limits hold,
bad input changes nothing, and depth from one view reprojects onto the same surface in another view."""

from __future__ import annotations

import math
import warnings

import mujoco
import numpy as np
import pytest

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert, yaw_pose
from spatial_memory.robot.description import ARM_JOINTS, OPTICAL_FRAME
from spatial_memory.sim.arm_motion import LOOKOUT_POSE
from spatial_memory.sim.mobile_robot import (
    BASE_JOINTS,
    BASE_LINK,
    HEAD_CAMERA,
    HEAD_OPTICAL_FRAME,
    QUERY_CAMERA,
    WRIST_CAMERA,
    CameraConfig,
    MobileFR3Sim,
    MobileRobotConfig,
    add_mobile_fr3,
    box_room_spec,
)

ROOM = (4.0, 3.0)  # inner floor [0, 4] x [0, 3]
BOXES = ((3.2, 2.3, 0.3, 0.25, 0.8), (0.7, 0.6, 0.25, 0.3, 0.5), (2.0, 2.7, 0.4, 0.15, 1.2))
CAM = CameraConfig(width=96, height=72, fovy_deg=60.0, rate_hz=15.0)
CONFIG = MobileRobotConfig(head_camera=CAM, wrist_camera=CameraConfig(width=96, height=72, fovy_deg=58.0))


@pytest.fixture(scope="module")
def room() -> MobileFR3Sim:
    with MobileFR3Sim(box_room_spec(ROOM, boxes=BOXES), CONFIG) as sim:
        yield sim


@pytest.fixture(scope="module")
def open_floor() -> MobileFR3Sim:
    """A floor without walls: any base pose is free."""
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[50, 50, 0.1])
    with MobileFR3Sim(spec, CONFIG) as sim:
        yield sim


def _state(sim: MobileFR3Sim) -> tuple:
    gt = sim.ground_truth()
    return sim.pose2d, sim.q.tolist(), sim.stamp_ns, gt.T_world_base.tolist(), sim.collided


# ---------------------------------------------------------------------------------------------- frames
def test_camera_poses_equal_base_pose_composed_with_fk(open_floor):
    sim, rng = open_floor, np.random.default_rng(0)
    k = sim.kinematics
    for _ in range(25):
        x, y, yaw = rng.uniform(-20, 20), rng.uniform(-20, 20), rng.uniform(-4, 4)
        q = rng.uniform(k.lower, k.upper)
        gt = sim.reset(x, y, yaw, q)
        T_world_base = yaw_pose(x, y, yaw)
        wrist = T_world_base @ CONFIG.T_base_arm() @ k.forward(q, OPTICAL_FRAME)
        head = T_world_base @ CONFIG.T_base_head_optical()
        np.testing.assert_allclose(sim.T_world_base, T_world_base, atol=1e-9)
        np.testing.assert_allclose(sim.camera_pose(WRIST_CAMERA), wrist, atol=1e-9)
        np.testing.assert_allclose(sim.camera_pose(HEAD_CAMERA), head, atol=1e-9)
        np.testing.assert_allclose(gt.camera_poses[WRIST_CAMERA], wrist, atol=1e-9)
        np.testing.assert_allclose(gt.camera_poses[HEAD_CAMERA], head, atol=1e-9)
        np.testing.assert_allclose(T_world_base @ sim.T_base_camera(WRIST_CAMERA), wrist, atol=1e-9)
        np.testing.assert_array_equal(gt.q, q)


def test_names_are_the_urdf_names_and_attaching_is_silent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warnings to MUJOCO_LOG.TXT in the working directory
    spec = box_room_spec()
    add_mobile_fr3(spec, CONFIG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = spec.compile()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    joints = [model.joint(i).name for i in range(model.njnt)]
    assert joints == [*BASE_JOINTS, *ARM_JOINTS]
    bodies = {model.body(i).name for i in range(model.nbody)}
    assert {BASE_LINK, "base", "fr3_link0", "fr3_hand_tcp", OPTICAL_FRAME, HEAD_OPTICAL_FRAME} <= bodies
    assert {model.camera(i).name for i in range(model.ncam)} == {HEAD_CAMERA, WRIST_CAMERA, QUERY_CAMERA}
    with pytest.raises(ConfigError, match="only once"):
        add_mobile_fr3(spec, CONFIG)


def test_head_camera_looks_forward_and_slightly_down():
    T = CONFIG.T_base_head_optical()
    z, y = T[:3, 2], T[:3, 1]
    assert z[0] > 0.9 and -0.5 < z[2] < -0.1  # forward, 10..30 degrees down
    assert y[2] < 0  # image down points down
    assert T[0, 3] < CONFIG.arm_mount_xy[0]  # behind the arm


def test_model_built_with_another_config_is_refused():
    spec = box_room_spec()
    add_mobile_fr3(spec, CONFIG)
    other = MobileRobotConfig(head_camera_xyz=(-0.1, 0.0, 1.2), head_camera=CAM, wrist_camera=CAM)
    with pytest.raises(ConfigError, match="another config"):
        MobileFR3Sim(spec.compile(), other)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"footprint_radius_m": 0.0},
        {"max_linear_speed": float("nan")},
        {"head_camera_xyz": (-0.2, 0.0, 0.2)},  # below the top of the base
        {"arm_mount_xy": (0.5, 0.0)},  # off the base
        {"ground_clearance_m": 0.5},
        {"head_camera": "320x240"},
    ],
)
def test_config_is_validated(kwargs):
    with pytest.raises(ConfigError):
        MobileRobotConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"width": 8}, {"height": 64.0}, {"fovy_deg": 180.0}, {"rate_hz": 0.0}])
def test_camera_config_is_validated(kwargs):
    with pytest.raises(ConfigError):
        CameraConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- driving
def test_driving_straight_into_a_wall_stops_before_it(room):
    r, east = CONFIG.footprint_radius_m, ROOM[0]
    room.reset(1.5, 1.2, 0.0)
    stops = 0
    for _ in range(200):
        gt = room.step(0.5, 0.0, 0.05)
        assert gt.T_world_base[0, 3] + r <= east + 1e-9, "the base entered the wall"
        stops += gt.collided
    x = room.pose2d[0]
    assert stops > 100 and room.collided
    # it stopped within one collision sub-step of touching (the arm's hand, ahead of the base, touches first)
    assert not room.pose_is_free(x + CONFIG.max_substep_m, 1.2, 0.0)
    gt = room.step(-0.3, 0.0, 0.1)  # backing away is allowed
    assert not gt.collided and gt.v == pytest.approx(-0.3)
    assert room.pose2d[0] == pytest.approx(x - 0.03)


def test_base_alone_stops_at_its_footprint_radius():
    cfg = MobileRobotConfig(arm_contact_check=False, head_camera=CAM, wrist_camera=CAM)
    r, east = cfg.footprint_radius_m, ROOM[0]
    with MobileFR3Sim(box_room_spec(ROOM), cfg) as sim:
        sim.reset(2.0, 1.5, 0.0)
        for _ in range(100):
            sim.step(0.5, 0.0, 0.05)
        assert sim.collided and east - r - cfg.max_substep_m <= sim.pose2d[0] <= east - r


def test_arm_stops_before_it_enters_furniture(room):
    room.reset(1.5, 0.6, math.pi)  # facing box1 (top at 0.5 m), the hand above it
    reach_down = np.array([0.0, 1.3, 0.0, -0.8, 0.0, 1.5, 0.785])  # the hand 0.65 m ahead, 0.34 m high
    with pytest.raises(InvalidInputError, match="arm"):
        room.set_joints(reach_down)
    blocked = 0
    for _ in range(60):
        gt = room.step(0.0, 0.0, 0.1, q_target=reach_down)
        blocked += gt.arm_blocked
        assert room.pose_is_free(*room.pose2d)
    assert blocked > 0 and np.abs(room.q - reach_down).max() > 0.1


def test_driving_into_furniture_and_along_walls_never_penetrates(room):
    room.reset(1.6, 1.4, 0.9)
    rng = np.random.default_rng(1)
    collisions = 0
    for _ in range(300):
        gt = room.step(rng.uniform(-0.2, 0.5), rng.uniform(-1.0, 1.0), 0.1)
        collisions += gt.collided
        assert room.pose_is_free(*room.pose2d)
    assert collisions > 0  # the random walk did hit something, and every pose it kept is free


def test_is_free_callable_is_respected_without_contacts():
    r = 0.3
    cfg = MobileRobotConfig(contact_check=False, head_camera=CAM, wrist_camera=CAM)
    calls = []

    def is_free(x: float, y: float) -> bool:
        calls.append((x, y))
        return 1.0 <= x <= 2.0 and r <= y <= 3 - r

    with MobileFR3Sim(box_room_spec(ROOM), cfg, is_free=is_free) as sim:
        sim.reset(1.5, 1.5, math.pi)
        for _ in range(50):
            sim.step(0.5, 0.0, 0.05)
        assert sim.collided and 1.0 <= sim.pose2d[0] <= 1.0 + cfg.max_substep_m
        with pytest.raises(InvalidInputError, match="not free"):
            sim.reset(0.5, 1.5, 0.0)
    assert calls


def test_velocity_commands_are_clipped_to_the_limits(open_floor):
    sim = open_floor
    sim.reset(0.0, 0.0, 0.0)
    gt = sim.step(10.0, 0.0, 0.1)
    assert gt.v == CONFIG.max_linear_speed and not gt.collided
    assert sim.pose2d[0] == pytest.approx(CONFIG.max_linear_speed * 0.1, abs=1e-12)
    gt = sim.step(0.0, -10.0, 0.1)
    assert gt.omega == -CONFIG.max_angular_speed
    assert sim.pose2d[2] == pytest.approx(-CONFIG.max_angular_speed * 0.1, abs=1e-12)
    gt = sim.step(-10.0, 10.0, 0.2)
    assert (gt.v, gt.omega) == (-CONFIG.max_linear_speed, CONFIG.max_angular_speed)


def test_unicycle_circle_returns_to_its_start(open_floor):
    sim = open_floor
    sim.reset(1.0, 2.0, 0.3)
    v, omega, dt = 0.4, 0.8, 0.05
    steps = round(2 * math.pi / omega / dt)
    for _ in range(steps - 1):
        sim.step(v, omega, dt)
    sim.step(v, omega, 2 * math.pi / omega - (steps - 1) * dt)
    x, y, yaw = sim.pose2d
    assert (x, y) == pytest.approx((1.0, 2.0), abs=1e-9)
    assert math.remainder(yaw - 0.3, 2 * math.pi) == pytest.approx(0.0, abs=1e-9)
    sim.reset(0.0, 0.0, 0.0)
    sim.step(0.4, 0.8, 0.5)  # one arc of radius 0.5
    assert sim.pose2d[:2] == pytest.approx((0.5 * math.sin(0.4), 0.5 * (1 - math.cos(0.4))), abs=1e-12)


def test_arm_moves_towards_its_target_within_the_joint_speed(open_floor):
    sim = open_floor
    sim.reset(0.0, 0.0, 0.0)
    start = sim.q
    target = LOOKOUT_POSE
    gt = sim.step(0.0, 0.0, 0.1, q_target=target)
    assert np.abs(gt.q - start).max() <= CONFIG.max_joint_speed * 0.1 + 1e-12
    for _ in range(100):
        gt = sim.step(0.0, 0.0, 0.1, q_target=target)
    np.testing.assert_allclose(gt.q, target, atol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.step(float("nan"), 0.0, 0.1),
        lambda s: s.step(0.1, float("inf"), 0.1),
        lambda s: s.step(0.1, 0.0, 0.0),
        lambda s: s.step(0.1, 0.0, float("nan")),
        lambda s: s.step("fast", 0.0, 0.1),
        lambda s: s.step(0.1, 0.0, 0.1, q_target=np.zeros(6)),
        lambda s: s.step(0.1, 0.0, 0.1, q_target=[0, 0, 0, float("nan"), 0, 0, 0]),
        lambda s: s.step(0.1, 0.0, 0.1, q_target=[0, 0, 0, 0, 0, 0, 0]),  # joint 4 outside its limits
        lambda s: s.reset(float("nan"), 0.0, 0.0),
        lambda s: s.reset(1.0, 1.0, float("inf")),
        lambda s: s.reset(1.0, 1.0, 0.0, q=np.ones(8)),
        lambda s: s.reset(-0.05, 1.0, 0.0),  # inside the west wall
        lambda s: s.set_joints(np.zeros(3)),
        lambda s: s.render("kitchen_camera"),
        lambda s: s.camera_pose("base_link"),
    ],
)
def test_bad_input_raises_and_leaves_the_state_unchanged(room, call):
    room.reset(2.0, 1.5, 0.4)
    room.step(0.2, 0.1, 0.1, q_target=LOOKOUT_POSE)
    before = _state(room)
    poses = {name: room.camera_pose(name) for name in (HEAD_CAMERA, WRIST_CAMERA)}
    with pytest.raises(InvalidInputError):
        call(room)
    assert _state(room) == before
    for name, T in poses.items():
        np.testing.assert_array_equal(room.camera_pose(name), T)


def test_cameras_are_due_at_their_rates():
    cfg = MobileRobotConfig(head_camera=CameraConfig(rate_hz=10.0), wrist_camera=CameraConfig(rate_hz=5.0))
    with MobileFR3Sim(box_room_spec(), cfg) as sim:
        ticks = {HEAD_CAMERA: 0, WRIST_CAMERA: 0}
        for i in range(100):  # 1 s at 100 Hz
            for name in sim.cameras_due(i * 10_000_000, (i + 1) * 10_000_000):
                ticks[name] += 1
    assert ticks == {HEAD_CAMERA: 10, WRIST_CAMERA: 5}


# ---------------------------------------------------------------------------------------------- cameras
def test_camera_info_and_image_shapes(room):
    room.reset(2.0, 1.5, 0.0)
    for name, frame in ((HEAD_CAMERA, HEAD_OPTICAL_FRAME), (WRIST_CAMERA, OPTICAL_FRAME)):
        info = room.camera_info(name)
        K = room.intrinsics(name)
        assert info["frame_id"] == frame and info["distortion_model"] == "plumb_bob"
        assert info["D"] == [0.0] * 5 and info["K"] == K.ravel().tolist()
        np.testing.assert_array_equal(np.reshape(info["P"], (3, 4)), np.hstack([K, np.zeros((3, 1))]))
        np.testing.assert_allclose(K, CONFIG.camera(name).intrinsics())
        rgb, depth = room.render_rgbd(name)
        assert rgb.shape == (info["height"], info["width"], 3) and rgb.dtype == np.uint8
        assert depth.shape == (info["height"], info["width"]) and depth.dtype == np.float32
        assert np.isfinite(depth).all() and depth.min() > 0 and rgb.std() > 5


def _backproject(depth: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """World points (N, 3) of integer pixels uv (N, 2) with their rendered depth."""
    z = depth[uv[:, 1], uv[:, 0]].astype(np.float64)
    rays = np.linalg.inv(K) @ np.vstack([uv.T, np.ones(len(uv))])
    return (T_world_cam[:3, :3] @ (rays * z) + T_world_cam[:3, 3:4]).T


def _check_reprojection(
    a: tuple[np.ndarray, np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray, np.ndarray], robot_xy: list
) -> None:
    """Pixels of view a land in view b within a pixel of where b sees the same surface point."""
    (depth_a, K_a, T_a), (depth_b, K_b, T_b) = a, b
    h, w = depth_a.shape
    vv, uu = np.mgrid[2 : h - 2 : 3, 2 : w - 2 : 3]
    uv = np.column_stack([uu.ravel(), vv.ravel()])
    P = _backproject(depth_a, K_a, T_a, uv)
    far_from_robot = np.all([np.hypot(*(P[:, :2] - xy).T) > 1.2 for xy in robot_xy], axis=0)
    p_b = (invert(T_b) @ np.column_stack([P, np.ones(len(P))]).T)[:3]
    uv_b = (K_b @ p_b)[:2] / p_b[2]
    hb, wb = depth_b.shape
    inside = (p_b[2] > 0.1) & (uv_b[0] > 1) & (uv_b[0] < wb - 2) & (uv_b[1] > 1) & (uv_b[1] < hb - 2)
    keep = far_from_robot & inside
    found, occluded, rel_errors = 0, 0, []
    inv_depth_b = 1.0 / depth_b.astype(np.float64)
    for (u, v), z in zip(uv_b.T[keep], p_b[2][keep], strict=True):
        iu, iv = round(u), round(v)
        window = depth_b[iv - 1 : iv + 2, iu - 1 : iu + 2]  # the surface B sees around the prediction
        tol = 0.005 + 0.005 * z
        if window.min() - tol <= z <= window.max() + tol:
            found += 1
            rel_errors += _subpixel_error(inv_depth_b, u, v, z)
        elif depth_b[iv, iu] < z:
            occluded += 1  # something nearer hides the point in view b
    checked = int(keep.sum())
    assert checked > 100, "too few pixels of view a are visible in view b"
    assert found >= 0.97 * (checked - occluded), f"{found} of {checked - occluded} reprojected points found"
    # Sub-pixel: on smooth surfaces the depth B renders at the predicted (u, v) is the predicted depth. A
    # half-pixel error in the principal point makes this about 2e-3; the right conventions give about 1e-7.
    assert len(rel_errors) > 50 and np.median(rel_errors) < 1e-5, np.median(rel_errors)


def _subpixel_error(inv_depth: np.ndarray, u: float, v: float, z: float) -> list[float]:
    """Relative error of depth `z` against the bilinearly interpolated inverse depth at (u, v) (exact on
    planes); empty at a depth edge."""
    i, j = int(u), int(v)
    c = inv_depth[j : j + 2, i : i + 2]
    if np.ptp(1.0 / c) > 0.05:
        return []
    fu, fv = u - i, v - j
    interpolated = (1 - fv) * ((1 - fu) * c[0, 0] + fu * c[0, 1]) + fv * ((1 - fu) * c[1, 0] + fu * c[1, 1])
    return [abs(1.0 / interpolated - z) / z]


def test_depth_reprojects_between_views(room):
    """Back-project depth in one view, reproject into another (other base pose, or the other camera)."""
    room.reset(1.4, 1.2, 0.35, q=LOOKOUT_POSE)
    a = (room.render_depth(HEAD_CAMERA), room.intrinsics(HEAD_CAMERA), room.camera_pose(HEAD_CAMERA))
    wrist = (room.render_depth(WRIST_CAMERA), room.intrinsics(WRIST_CAMERA), room.camera_pose(WRIST_CAMERA))
    xy_a = room.pose2d[:2]
    room.reset(2.1, 1.0, 0.7, q=LOOKOUT_POSE)
    b = (room.render_depth(HEAD_CAMERA), room.intrinsics(HEAD_CAMERA), room.camera_pose(HEAD_CAMERA))
    _check_reprojection(a, b, [xy_a, room.pose2d[:2]])
    _check_reprojection(b, a, [xy_a, room.pose2d[:2]])
    _check_reprojection(wrist, a, [(-100.0, -100.0)])  # same instant: the arm may stay in
