"""VisualOdometry: the camera's motion turned into the body's (mount, axes, metric depth), losses bridged by
wheel odometry or the motion prior without a jump, the arm masked from joint angles, the covariance model,
bad input refused without a trace; end to end in the MuJoCo sim against ground truth."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert, make_pose, yaw_pose
from spatial_memory.resources import share_path
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.robot.silhouette import ArmSilhouette, urdf_primitives
from spatial_memory.sim.mobile_robot import HEAD_CAMERA, MobileFR3Sim, MobileRobotConfig, box_room_spec
from spatial_memory.vo.odometry import VisualOdometry, VisualOdometryConfig, load_static_mask

K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
# REP-103 optical frame on a body looking ahead: optical z = body x, x = body -y, y = body -z
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
T_BASE_CAM = make_pose(R_BODY_OPTICAL, np.array([0.2, 0.0, 1.0]))
WALL_M = 2.0
STEP_PX = 3.0  # the wall's texture moves this far left per frame: the camera moves right (body -y)


def _wall(shift_px: float) -> np.ndarray:
    """A textured fronto-parallel wall seen after the camera moved right by shift_px * WALL_M / fx."""
    rng = np.random.default_rng(7)
    base = cv2.resize(
        rng.integers(0, 255, (60, 80), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC
    )
    M = np.float32([[1, 0, -shift_px], [0, 1, 0]])
    img = cv2.warpAffine(base, M, (640, 480), borderMode=cv2.BORDER_REFLECT)
    return np.dstack([img, img, img])


DEPTH = np.full((480, 640), WALL_M, np.float32)


def _stamp(f: int) -> int:
    return 1_700_000_000_000_000_000 + f * 66_666_667  # 15 Hz on an absolute ROS clock


def test_a_sideways_camera_move_is_the_body_moving_right_in_metres():
    odo = VisualOdometry(K, 640, 480, T_BASE_CAM)
    for f in range(12):
        out = odo.step(_wall(STEP_PX * f), _stamp(f), depth=DEPTH)
        assert out.source == "visual", out.reason
    step_m = STEP_PX * WALL_M / K[0, 0]  # 0.012 m per frame
    np.testing.assert_allclose(out.T_odom_base[:3, 3], [0.0, -11 * step_m, 0.0], atol=2e-3)
    np.testing.assert_allclose(out.T_odom_base[:3, :3], np.eye(3), atol=5e-3)
    np.testing.assert_allclose(out.twist[:3], [0.0, -step_m * 15, 0.0], atol=0.03)
    assert odo.distance_m == pytest.approx(11 * step_m, rel=0.1)
    # the uncertainty grows with the path (isotropic in x, y, z), not with the number of frames
    sigma = math.sqrt(out.pose_covariance[0, 0])
    assert sigma == pytest.approx(odo.config.translation_drift * odo.distance_m, rel=0.05)
    assert out.pose_covariance[0, 0] == out.pose_covariance[1, 1] == out.pose_covariance[2, 2]


def test_the_chain_starts_at_the_wheel_pose_and_a_loss_is_bridged_by_the_wheel_increment():
    start = yaw_pose(3.0, -1.0, 0.5)
    odo = VisualOdometry(K, 640, 480, T_BASE_CAM)
    out = odo.step(_wall(0), _stamp(0), depth=DEPTH, T_odom_base_wheel=start)
    np.testing.assert_allclose(out.T_odom_base, start, atol=1e-12)
    for f in range(1, 4):
        out = odo.step(_wall(STEP_PX * f), _stamp(f), depth=DEPTH, T_odom_base_wheel=start)
    before, var_before = out.T_odom_base, out.pose_covariance[0, 0]
    grey = np.full((480, 640, 3), 128, np.uint8)
    moved = start @ yaw_pose(0.4, 0.0, 0.1)  # the wheels say: 0.4 m ahead and 0.1 rad left since frame 3
    lost = odo.step(grey, _stamp(4), depth=DEPTH, T_odom_base_wheel=moved)
    assert lost.source == "wheel" and lost.reason
    np.testing.assert_allclose(invert(before) @ lost.T_odom_base, yaw_pose(0.4, 0.0, 0.1), atol=1e-9)
    # a wheel-bridged step is trusted less than a measured one of the same length
    cfg = odo.config
    grown = math.sqrt(lost.pose_covariance[0, 0]) - math.sqrt(var_before)
    assert grown == pytest.approx(cfg.unmeasured_factor * cfg.translation_drift * 0.4, rel=1e-6)
    # the grey frame's patches cannot be tracked (one more wheel-bridged frame), then VO is back, and the
    # chain goes on from where the wheels left it, without a jump
    outs = [odo.step(_wall(STEP_PX * f), _stamp(f), depth=DEPTH, T_odom_base_wheel=moved) for f in (5, 6, 7)]
    assert [o.source for o in outs] == ["wheel", "visual", "visual"]
    np.testing.assert_allclose(outs[0].T_odom_base, lost.T_odom_base, atol=1e-9)  # the wheels stood still
    for a, b in zip([lost, *outs[:-1]], outs, strict=True):
        assert np.linalg.norm((invert(a.T_odom_base) @ b.T_odom_base)[:3, 3]) < 0.03
    assert odo.counts["wheel"] == 2 and odo.counts["losses"] == 2


def test_the_wheel_increment_is_handed_to_patch_vo_as_the_camera_motion():
    """The body turning 0.1 rad left and moving 5 cm ahead between frames, by the wheels: PatchVO gets the
    camera's motion T_cam_base (wheel_prev^-1 wheel) T_base_cam; monocular, only its rotation; with
    `wheel_prior` off, nothing."""
    start, moved = yaw_pose(1.0, 2.0, 0.3), yaw_pose(1.0, 2.0, 0.3) @ yaw_pose(0.05, 0.0, 0.1)
    expected = invert(T_BASE_CAM) @ yaw_pose(0.05, 0.0, 0.1) @ T_BASE_CAM
    for config, want in (
        (VisualOdometryConfig(), expected),
        (
            VisualOdometryConfig(use_depth=False),
            np.vstack([np.column_stack([expected[:3, :3], [np.nan] * 3]), [0, 0, 0, 1]]),
        ),
        (VisualOdometryConfig(wheel_prior=False), None),
    ):
        odo = VisualOdometry(K, 640, 480, T_BASE_CAM, config)
        given = []
        track = odo.vo.track
        odo.vo.track = (  # records the prior each frame is tracked with (defaults bind this loop's lists)
            lambda *a, motion_prior=None, _given=given, _track=track, **k: (
                _given.append(motion_prior),
                _track(*a, **k),
            )[1]
        )
        odo.step(_wall(0), _stamp(0), depth=DEPTH, T_odom_base_wheel=start)
        odo.step(_wall(STEP_PX), _stamp(1), depth=DEPTH, T_odom_base_wheel=moved)
        assert given[0] is None  # no increment before the second wheel pose
        if want is None:
            assert given[1] is None
        else:
            np.testing.assert_allclose(given[1], want, atol=1e-12)
    # the camera's motion is the body's seen from the camera: 0.1 rad about the body's up axis is 0.1 rad
    # about the optical frame's -y
    np.testing.assert_allclose(expected[:3, :3] @ [0.0, -1.0, 0.0], [0.0, -1.0, 0.0], atol=1e-12)


def test_without_wheel_odometry_a_loss_follows_the_motion_prior_and_says_so():
    odo = VisualOdometry(K, 640, 480, T_BASE_CAM)
    for f in range(4):
        out = odo.step(_wall(STEP_PX * f), _stamp(f), depth=DEPTH)
    lost = odo.step(np.full((480, 640, 3), 128, np.uint8), _stamp(4), depth=DEPTH)
    assert lost.source == "prior"
    step = invert(out.T_odom_base) @ lost.T_odom_base
    assert np.linalg.norm(step[:3, 3]) < 0.02  # the damped constant-velocity guess: about half a step
    assert math.sqrt(lost.pose_covariance[0, 0]) >= 0.05  # the prior may be a whole step off
    assert odo.status()["source"] == "prior" and odo.status()["losses"] == 1


def test_bad_input_is_refused_and_leaves_no_trace():
    odo = VisualOdometry(K, 640, 480, T_BASE_CAM)
    first = odo.step(_wall(0), _stamp(0), depth=DEPTH)
    bad = [
        lambda: odo.step(_wall(3)[:240], _stamp(1)),
        lambda: odo.step(_wall(3), _stamp(0)),  # not after the last stamp
        lambda: odo.step(_wall(3), _stamp(1), depth=np.ones((240, 320), np.float32)),
        lambda: odo.step(_wall(3), _stamp(1), T_odom_base_wheel=np.full((4, 4), np.nan)),
    ]
    for call in bad:
        with pytest.raises(InvalidInputError):
            call()
    assert odo.last is first and odo.vo.frames == 1 and sum(odo.counts.values()) == 1
    with pytest.raises(InvalidInputError):
        VisualOdometry(K, 640, 480, np.eye(4) * 2)
    with pytest.raises(ConfigError):
        VisualOdometryConfig(unmeasured_factor=0.5)
    with pytest.raises(ConfigError):
        VisualOdometryConfig(translation_drift=-1.0)


def test_a_static_mask_is_read_from_an_image_file(tmp_path):
    path = tmp_path / "mask.png"
    image = np.zeros((480, 640), np.uint8)
    image[400:] = 255  # the robot's own bumper at the bottom of the view
    cv2.imwrite(str(path), image)
    mask = load_static_mask(str(path), 640, 480)
    assert mask.dtype == bool and mask[400:].all() and not mask[:400].any()
    odo = VisualOdometry(K, 640, 480, T_BASE_CAM, VisualOdometryConfig(static_mask=str(path)))
    assert odo.step(_wall(0), _stamp(0)).masked_fraction == pytest.approx(80 / 480)
    assert all(p.uv[1] < 400 for p in odo.vo._patches)
    with pytest.raises(InvalidInputError, match="320x240"):
        load_static_mask(str(path), 320, 240)
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_static_mask(str(tmp_path / "missing.png"), 640, 480)


@pytest.fixture(scope="module")
def drive():
    """A mobile FR3 driving and turning in a box room at 15 Hz, the arm swinging in the head camera's view:
    (true body poses, RGB, depth, joint angles, camera config)."""
    config = MobileRobotConfig()
    sim = MobileFR3Sim(box_room_spec((5.0, 4.0)), config)
    try:
        sim.reset(1.5, 2.0, 0.0)
        poses, rgb, depth, joints = [], [], [], []
        q0 = np.array([0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8])
        for t in range(45):
            q = q0 + np.array([0.6 * math.sin(t / 6), 0.3 * math.sin(t / 9), 0, 0, 0, 0, 0])
            if t:
                sim.step(0.3, 0.25, 1 / 15, q_target=q)
            else:
                sim.set_joints(q)
            poses.append(sim.T_world_base.copy())
            rgb.append(sim.render(HEAD_CAMERA))
            depth.append(sim.render_depth(HEAD_CAMERA))
            joints.append(sim.q.copy())
        return poses, rgb, depth, joints, config
    finally:
        sim.close()


def test_in_the_sim_the_body_follows_the_ground_truth_with_the_arm_masked(drive):
    poses, rgb, depth, joints, config = drive
    cam = config.head_camera
    K_head = cam.intrinsics()
    T_base_cam = config.T_base_head_optical()
    silhouette = ArmSilhouette(FR3Kinematics(), urdf_primitives(share_path("urdf/fr3.urdf")))
    odo = VisualOdometry(
        K_head,
        cam.width,
        cam.height,
        T_base_cam,
        silhouette=silhouette,
        T_cam_arm=invert(T_base_cam) @ config.T_base_arm(),
    )
    out = [odo.step(rgb[t], _stamp(t), depth=depth[t], joints=joints[t]) for t in range(len(rgb))]
    assert np.mean([o.masked_fraction for o in out]) > 0.01  # the arm was in view
    true = [invert(poses[0]) @ T for T in poses]
    err = [np.linalg.norm(o.T_odom_base[:3, 3] - T[:3, 3]) for o, T in zip(out, true, strict=True)]
    travelled = sum(np.linalg.norm(true[t][:3, 3] - true[t - 1][:3, 3]) for t in range(1, len(true)))
    assert travelled > 0.7
    assert max(err) < 0.06 * travelled, (max(err), travelled, odo.counts)
    yaw_true = math.atan2(true[-1][1, 0], true[-1][0, 0])
    yaw_est = math.atan2(out[-1].T_odom_base[1, 0], out[-1].T_odom_base[0, 0])
    assert abs(yaw_est - yaw_true) < 0.05
