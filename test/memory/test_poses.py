"""Planar pose conversions against 4x4 composition: increments, their integration, query targets, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import invert, yaw_pose
from spatial_memory.memory.poses import (
    integrate_increments,
    odometry_increments,
    planar_pose,
    planar_target,
    pose_errors,
    wrap_angle,
)
from spatial_memory.sim.queries import level_camera_pose


def _random_track(n: int, seed: int = 0) -> np.ndarray:
    """A planar base track (n, 4, 4) with random steps and turns, crossing +-180 deg of heading."""
    rng = np.random.default_rng(seed)
    x = y = 0.0
    yaw = 3.0
    out = []
    for _ in range(n):
        out.append(yaw_pose(x, y, yaw))
        step, side, turn = rng.uniform(-0.1, 0.3), rng.uniform(-0.05, 0.05), rng.uniform(-0.3, 0.3)
        x, y = (
            x + math.cos(yaw) * step - math.sin(yaw) * side,
            y + math.sin(yaw) * step + math.cos(yaw) * side,
        )
        yaw += turn
    return np.stack(out)


def test_increments_match_relative_transforms():
    track = _random_track(50)
    inc = odometry_increments(track)
    assert inc.shape == (50, 3)
    np.testing.assert_array_equal(inc[0], 0.0)
    for t in range(1, 50):
        rel = invert(track[t - 1]) @ track[t]
        np.testing.assert_allclose(rel, yaw_pose(*inc[t]), atol=1e-12)


def test_integrating_increments_reproduces_the_planar_track():
    track = _random_track(80, seed=3)
    start = planar_pose(track[0])
    poses = integrate_increments(odometry_increments(track), start=start)
    expected = planar_pose(track)
    np.testing.assert_allclose(poses[:, :2], expected[:, :2], atol=1e-9)
    np.testing.assert_allclose(wrap_angle(poses[:, 2] - expected[:, 2]), 0.0, atol=1e-9)


def test_single_pose_track_and_bad_shapes():
    np.testing.assert_array_equal(odometry_increments(np.eye(4)[None]), np.zeros((1, 3)))
    with pytest.raises(InvalidInputError):
        odometry_increments(np.eye(4))
    with pytest.raises(InvalidInputError):
        odometry_increments(np.full((3, 4, 4), np.nan))
    with pytest.raises(InvalidInputError):
        pose_errors(np.zeros((2, 3)), np.zeros((3, 3)))


@pytest.mark.parametrize("yaw", [0.0, 1.0, -2.5, math.pi - 1e-3])
@pytest.mark.parametrize("pitch_deg", [0.0, 20.0, -15.0, 65.0])
def test_planar_target_of_level_cameras(yaw, pitch_deg):
    T = level_camera_pose((1.5, -0.7, 1.2), yaw, math.radians(pitch_deg))
    np.testing.assert_allclose(planar_target(T), (1.5, -0.7, yaw), atol=1e-12)


def test_planar_target_composes_with_the_base_pose():
    """The target of T_base_query, from world poses: base and query cameras anywhere."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        bx, by, byaw, qx, qy, qyaw = rng.uniform(-5, 5, 6)
        T_world_base = yaw_pose(bx, by, byaw)
        T_world_query = level_camera_pose((qx, qy, 1.0), qyaw, rng.uniform(-0.5, 1.0))
        target = planar_target(invert(T_world_base) @ T_world_query)
        # Compose back: the base's planar pose times the target gives the query's planar pose in the world.
        world = yaw_pose(bx, by, byaw) @ yaw_pose(*target)
        np.testing.assert_allclose(world[:2, 3], (qx, qy), atol=1e-9)
        assert abs(wrap_angle(math.atan2(world[1, 0], world[0, 0]) - qyaw)) < 1e-9


def test_camera_looking_straight_down_keeps_its_heading():
    for yaw in (0.3, -2.0):
        down = planar_target(level_camera_pose((0, 0, 1), yaw, math.pi / 2))
        nearly = planar_target(level_camera_pose((0, 0, 1), yaw, math.pi / 2 - 1e-2))
        assert abs(wrap_angle(down[2] - yaw)) < 1e-9
        assert abs(wrap_angle(nearly[2] - yaw)) < 1e-9


def test_batched_targets():
    Ts = np.stack([level_camera_pose((i, 0, 1), 0.1 * i, 0.2) for i in range(5)])
    out = planar_target(Ts)
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out[:, 0], np.arange(5))


def test_pose_errors_wrap_headings():
    pred = np.array([[0.0, 0.0, math.radians(179.0)], [3.0, 4.0, 0.0], [0.0, 0.0, math.pi]])
    target = np.array([[0.0, 0.0, math.radians(-179.0)], [0.0, 0.0, 0.0], [0.0, 0.0, -math.pi]])
    position, heading = pose_errors(pred, target)
    np.testing.assert_allclose(position, (0.0, 5.0, 0.0))
    np.testing.assert_allclose(heading, (2.0, 0.0, 0.0), atol=1e-9)
    _, opposite = pose_errors(np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, math.pi]))
    assert opposite == pytest.approx(180.0)
    assert np.all(np.isnan(pose_errors(np.full(3, np.nan), np.zeros(3))))
