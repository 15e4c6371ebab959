"""Wheel odometry: exact without noise, drift growing with distance as configured, reproducible by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert, yaw_pose
from spatial_memory.sim.odometry import WheelOdometry, WheelOdometryConfig

EXACT = WheelOdometryConfig(linear_noise=0.0, angular_noise=0.0, heading_noise=0.0, heading_bias=0.0)
STEP_NS = 50_000_000
SEEDS = 200  # runs per statistical test: a standard deviation comes within about 5% (1 sigma)


def _trajectory(n: int, seed: int = 0) -> list[np.ndarray]:
    """A wiggly planar trajectory of unicycle-like motion: (n, 4, 4) true base poses."""
    rng = np.random.default_rng(seed)
    x, y, yaw = 3.0, -1.0, 0.5
    poses = [yaw_pose(x, y, yaw)]
    for _ in range(n - 1):
        v, omega = rng.uniform(-0.1, 0.5), rng.uniform(-1.0, 1.0)
        yaw += omega * 0.05
        x, y = x + v * 0.05 * math.cos(yaw), y + v * 0.05 * math.sin(yaw)
        poses.append(yaw_pose(x, y, yaw))
    return poses


def _straight(distance: float, step: float = 0.02) -> list[np.ndarray]:
    return [yaw_pose(d, 0.0, 0.0) for d in np.arange(0.0, distance + step / 2, step)]


def _run(odom: WheelOdometry, poses: list[np.ndarray]) -> np.ndarray:
    for i, T in enumerate(poses):
        out = odom.update(T, i * STEP_NS)
    return out


def test_without_noise_odometry_is_the_ground_truth_in_the_odom_frame():
    poses = _trajectory(400)
    odom = WheelOdometry(EXACT)
    T_start_world = invert(poses[0])
    for i, T in enumerate(poses):
        out = odom.update(T, i * STEP_NS)
        np.testing.assert_allclose(out, T_start_world @ T, atol=1e-9)
    np.testing.assert_array_equal(WheelOdometry(EXACT).update(poses[5], 0), np.eye(4))
    assert odom.distance_m == pytest.approx(
        sum(np.linalg.norm(b[:2, 3] - a[:2, 3]) for a, b in zip(poses, poses[1:], strict=False))
    )


def test_twist_is_the_last_increment_over_its_duration_in_the_base_frame():
    poses = _trajectory(30)
    odom = WheelOdometry(EXACT)
    odom.update(poses[0], 0)
    np.testing.assert_array_equal(odom.twist, np.zeros(6))
    odom.update(poses[1], STEP_NS)
    odom.update(poses[2], 3 * STEP_NS)  # a longer gap: the rate divides by the real duration
    step = invert(poses[1]) @ poses[2]
    dt = 2 * STEP_NS * 1e-9
    np.testing.assert_allclose(odom.twist[:2], step[:2, 3] / dt, atol=1e-9)
    assert odom.twist[5] == pytest.approx(math.atan2(step[1, 0], step[0, 0]) / dt)
    np.testing.assert_array_equal(odom.twist[2:5], 0.0)


def test_same_seed_same_drift_other_seed_other_drift():
    poses = _trajectory(300)
    cfg = WheelOdometryConfig(seed=7)
    a, b = _run(WheelOdometry(cfg), poses), _run(WheelOdometry(cfg), poses)
    np.testing.assert_array_equal(a, b)
    c = _run(WheelOdometry(WheelOdometryConfig(seed=8)), poses)
    assert np.abs(a - c).max() > 1e-4
    odom = WheelOdometry(cfg)
    _run(odom, poses[:100])
    odom.reset()
    np.testing.assert_array_equal(_run(odom, poses), a)


def test_distance_error_grows_with_the_square_root_of_distance_as_configured():
    """Along-track error std after D metres is linear_noise * sqrt(D), whatever the step size."""
    sigma = 0.05
    for distance, step in ((2.0, 0.02), (8.0, 0.08)):
        poses = _straight(distance, step)
        errors = []
        for seed in range(SEEDS):
            cfg = WheelOdometryConfig(
                linear_noise=sigma, angular_noise=0.0, heading_noise=0.0, heading_bias=0.0, seed=seed
            )
            errors.append(_run(WheelOdometry(cfg), poses)[0, 3] - distance)
        expected = sigma * math.sqrt(distance)
        assert np.std(errors) == pytest.approx(expected, rel=0.15), distance
        assert abs(np.mean(errors)) < 4 * expected / math.sqrt(300)


def test_heading_noise_and_bias_bend_a_straight_drive_as_configured():
    distance, sigma_h, bias = 6.0, 0.01, 0.003
    poses = _straight(distance, 0.06)
    yaws = []
    for seed in range(SEEDS):
        cfg = WheelOdometryConfig(
            linear_noise=0.0, angular_noise=0.0, heading_noise=sigma_h, heading_bias=bias, seed=seed
        )
        out = _run(WheelOdometry(cfg), poses)
        yaws.append(math.atan2(out[1, 0], out[0, 0]))
    assert np.mean(yaws) == pytest.approx(bias * distance, abs=4 * sigma_h * math.sqrt(distance / SEEDS))
    assert np.std(yaws) == pytest.approx(sigma_h * math.sqrt(distance), rel=0.15)
    # bias alone: exact heading error, and the path curves left by about bias * D^2 / 2
    cfg = WheelOdometryConfig(linear_noise=0.0, angular_noise=0.0, heading_noise=0.0, heading_bias=bias)
    out = _run(WheelOdometry(cfg), poses)
    assert math.atan2(out[1, 0], out[0, 0]) == pytest.approx(bias * distance, abs=1e-12)
    assert out[1, 3] == pytest.approx(bias * distance**2 / 2, rel=0.02)


def test_rotation_error_grows_with_the_rotation():
    sigma_a = 0.03
    turns = [yaw_pose(0.0, 0.0, a) for a in np.linspace(0.0, 4 * math.pi, 100)]
    yaws = []
    for seed in range(SEEDS):
        cfg = WheelOdometryConfig(
            linear_noise=0.0, angular_noise=sigma_a, heading_noise=0.0, heading_bias=0.0, seed=seed
        )
        odom = WheelOdometry(cfg)
        _run(odom, turns)
        yaws.append(odom.pose2d[2] - 4 * math.pi)
    assert np.std(yaws) == pytest.approx(sigma_a * math.sqrt(4 * math.pi), rel=0.15)


@pytest.mark.parametrize(
    "pose, stamp",
    [
        (np.full((4, 4), np.nan), 2 * STEP_NS),
        (np.eye(3), 2 * STEP_NS),
        (yaw_pose(1.0, 0.0, 0.0) @ np.diag([1.0, 1.0, 1.0, 1.0]) * 2, 2 * STEP_NS),
        (np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]]), 2 * STEP_NS),  # tilted
        (yaw_pose(0.1, 0.0, 0.0, z=0.5), 2 * STEP_NS),  # base left the floor
        (yaw_pose(0.1, 0.0, 0.0), STEP_NS),  # duplicate stamp
        (yaw_pose(0.1, 0.0, 0.0), 0),  # stamp going back
        (yaw_pose(0.1, 0.0, 0.0), 2.5),  # not integer nanoseconds
    ],
)
def test_bad_updates_raise_and_change_nothing(pose, stamp):
    odom = WheelOdometry(WheelOdometryConfig(seed=3))
    odom.update(yaw_pose(0.0, 0.0, 0.0), 0)
    odom.update(yaw_pose(0.05, 0.0, 0.01), STEP_NS)
    before = (odom.T_odom_base, odom.stamp_ns, odom.distance_m)
    with pytest.raises(InvalidInputError):
        odom.update(pose, stamp)
    after = (odom.T_odom_base, odom.stamp_ns, odom.distance_m)
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1:] == before[1:]
    # the noise stream did not advance either: the next good update matches a fresh run
    fresh = WheelOdometry(WheelOdometryConfig(seed=3))
    for i, T in enumerate((yaw_pose(0.0, 0.0, 0.0), yaw_pose(0.05, 0.0, 0.01), yaw_pose(0.1, 0.0, 0.02))):
        expected = fresh.update(T, i * STEP_NS)
    np.testing.assert_array_equal(odom.update(yaw_pose(0.1, 0.0, 0.02), 2 * STEP_NS), expected)


@pytest.mark.parametrize(
    "kwargs", [{"linear_noise": -0.1}, {"angular_noise": float("nan")}, {"heading_bias": 2.0}, {"seed": -1}]
)
def test_config_is_validated(kwargs):
    with pytest.raises(ConfigError):
        WheelOdometryConfig(**kwargs)


def test_carried_moves_the_reference_not_the_odometry():
    odo = WheelOdometry(
        WheelOdometryConfig(linear_noise=0.0, angular_noise=0.0, heading_noise=0.0, heading_bias=0.0)
    )
    with pytest.raises(InvalidInputError):
        odo.carried(np.eye(4))  # nothing to move from yet
    odo.update(np.eye(4), 0)
    T = np.eye(4)
    T[0, 3] = 0.5
    odo.update(T, 100)
    far = np.eye(4)
    far[:2, 3] = (5.0, 3.0)
    odo.carried(far)
    np.testing.assert_allclose(odo.T_odom_base[:2, 3], (0.5, 0.0))  # the carry is not motion
    far2 = far.copy()
    far2[0, 3] += 0.2
    odo.update(far2, 200)
    np.testing.assert_allclose(odo.T_odom_base[:2, 3], (0.7, 0.0), atol=1e-12)  # motion after it counts
    lifted = far2.copy()
    lifted[2, 3] = 1.0
    with pytest.raises(InvalidInputError):
        odo.carried(lifted)
