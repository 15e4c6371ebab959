"""Parity of our rotation and pose helpers (`spatial_memory.geometry`, on scipy) with `tf_transformations`.

ROS 2 nodes written in Python often use `tf_transformations` (transforms3d underneath) for quaternions,
matrices and Euler angles; ours go through scipy. On random inputs (hypothesis) the two must agree to
`TOL` in every conversion a node meets: quaternion -> matrix -> quaternion, fixed-axis roll/pitch/yaw
(tf's default 'sxyz', our URDF rpy) -> matrix or quaternion and back, composition and inverse, and the
Pose/Transform messages of `msgs/conversions.py`. Skipped where tf_transformations is not importable.

Differences, asserted below so that a change on either side shows up:
- a quaternion and its negative are the same rotation; both sides return w >= 0, so they agree in sign
  except when w is (numerically) zero, where either sign may come out; compared up to sign there;
- a zero or non-finite quaternion: tf_transformations returns the identity (zero) or NaNs (NaN); we raise
  `InvalidInputError`;
- matrices that are not rigid (scaled, sheared): tf_transformations decomposes them and returns the
  rotation part; our message builders refuse them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import (
    invert,
    matrix_to_quat_xyzw,
    pose_from_xyz_quat,
    pose_from_xyz_rpy,
    pose_to_xyz_quat,
    quat_xyzw_to_matrix,
    yaw_pose,
)
from spatial_memory.msgs import conversions as conv

TOL = 1e-12  # both in float64: rotations differ by <= 1.1e-15, 100 m poses by <= 1.3e-13 m (README)
W_AMBIGUOUS = 1e-9  # |w| below this: the quaternion's sign is not defined by "w >= 0"
PARITY = settings(max_examples=300, deadline=None, derandomize=True)

unit = st.floats(-1.0, 1.0, allow_nan=False)
quaternions = st.tuples(unit, unit, unit, unit).map(np.array).filter(lambda q: np.linalg.norm(q) > 1e-3)
unit_quaternions = quaternions.map(lambda q: q / np.linalg.norm(q))
translations = st.tuples(*[st.floats(-100.0, 100.0, allow_nan=False)] * 3).map(np.array)
angle = st.floats(-math.pi, math.pi, allow_nan=False)
pitch = st.floats(-math.pi / 2, math.pi / 2, allow_nan=False)
rpys = st.tuples(angle, pitch, angle)
# Euler angles are unique (modulo 2 pi) only away from gimbal lock, pitch = +-90 deg: the round trip keeps
# 1e-3 rad off it.
rpys_unique = st.tuples(angle, st.floats(-math.pi / 2 + 1e-3, math.pi / 2 - 1e-3), angle)


@pytest.fixture(scope="module")
def tft() -> Any:
    """The tf_transformations module, or the test is skipped.

    In a fixture, not at module level: launch_testing's pytest plugin (active wherever ROS 2 is sourced)
    imports every test module of the folder outside pytest's skip handling, so a module-level skip
    would fail the collection of its neighbours.
    """
    return pytest.importorskip("tf_transformations")


@pytest.fixture(scope="module")
def rclpy_factory() -> conv.RclpyFactory:
    """Builds rclpy messages (geometry_msgs), or the test is skipped where they are not importable."""
    pytest.importorskip("geometry_msgs.msg")
    return conv.RclpyFactory()


def tf_pose(tft: Any, xyz: Any, q_xyzw: Any) -> np.ndarray:
    """tf_transformations' 4x4 of a translation and a quaternion, as tf users write it."""
    return tft.concatenate_matrices(tft.translation_matrix(xyz), tft.quaternion_matrix(q_xyzw))


def assert_same_rotation_quaternion(ours: np.ndarray, theirs: Any) -> None:
    """Equal to TOL once both have w >= 0; up to sign only where w is too close to zero to pick one.

    Ours always has w >= 0 and so has tf's `quaternion_from_matrix`; tf's `quaternion_from_euler`,
    `quaternion_multiply` and `quaternion_inverse` return whichever sign their formula gives.
    """
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape == (4,)
    assert abs(np.linalg.norm(ours) - 1.0) < TOL and abs(np.linalg.norm(theirs) - 1.0) < TOL
    assert ours[3] >= 0.0
    if abs(theirs[3]) < W_AMBIGUOUS:
        assert min(np.abs(ours - theirs).max(), np.abs(ours + theirs).max()) < TOL
    else:
        np.testing.assert_allclose(ours, theirs if theirs[3] > 0 else -theirs, rtol=0, atol=TOL)


def close(a: Any, b: Any, atol: float = TOL) -> None:
    """Element-wise equal to `atol` (absolute: every value here is of order 1, or a translation)."""
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=0, atol=atol)


def close_angles(a: Any, b: Any, atol: float = 1e-9) -> None:
    """Angles equal modulo 2 pi (pi and -pi are one yaw); atan2 of products: ~1e-13 off near the ends."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    assert np.abs((diff + math.pi) % (2.0 * math.pi) - math.pi).max() < atol


# ----------------------------------------------------------------------------------------------------
# Quaternion <-> matrix
# ----------------------------------------------------------------------------------------------------


@PARITY
@given(quaternions)
def test_quaternion_to_matrix_normalises_like_tf(tft, q):
    close(quat_xyzw_to_matrix(q), tft.quaternion_matrix(q)[:3, :3])


@PARITY
@given(unit_quaternions)
def test_matrix_to_quaternion_matches_tf(tft, q):
    R = tft.quaternion_matrix(q)
    assert_same_rotation_quaternion(matrix_to_quat_xyzw(R[:3, :3]), tft.quaternion_from_matrix(R))


@PARITY
@given(translations, unit_quaternions)
def test_pose_from_and_to_translation_and_quaternion(tft, xyz, q):
    T = pose_from_xyz_quat(xyz, q)
    close(T, tf_pose(tft, xyz, q), atol=TOL * 100)  # translations up to 100 m
    ours_xyz, ours_q = pose_to_xyz_quat(T)
    close(ours_xyz, tft.translation_from_matrix(T))
    assert_same_rotation_quaternion(ours_q, tft.quaternion_from_matrix(T))


# ----------------------------------------------------------------------------------------------------
# Euler angles: URDF rpy = tf's static-axes 'sxyz'
# ----------------------------------------------------------------------------------------------------


@PARITY
@given(translations, rpys)
def test_rpy_pose_is_tf_euler_matrix_sxyz(tft, xyz, rpy):
    T = pose_from_xyz_rpy(tuple(xyz), rpy)
    close(T[:3, :3], tft.euler_matrix(*rpy, axes="sxyz")[:3, :3])
    close(T[:3, :3], tft.euler_matrix(*rpy)[:3, :3])  # 'sxyz' is tf's default, as it is URDF's
    close(T[:3, 3], xyz, atol=0.0)


@PARITY
@given(rpys)
def test_rpy_to_quaternion_matches_tf(tft, rpy):
    ours = matrix_to_quat_xyzw(pose_from_xyz_rpy((0.0, 0.0, 0.0), rpy)[:3, :3])
    assert_same_rotation_quaternion(ours, tft.quaternion_from_euler(*rpy))


@PARITY
@given(rpys_unique)
def test_tf_euler_angles_of_our_matrices_are_the_rpy_we_built_them_from(tft, rpy):
    R = pose_from_xyz_rpy((0.0, 0.0, 0.0), rpy)
    close_angles(tft.euler_from_matrix(R), rpy)
    close_angles(Rotation.from_matrix(R[:3, :3]).as_euler("xyz"), rpy)  # what our code would call


@PARITY
@given(unit_quaternions)
def test_tf_euler_angles_rebuild_the_rotation_through_our_rpy(tft, q):
    # Any rotation, gimbal lock included: tf's angles may differ from scipy's there, the rotation may not.
    rebuilt = pose_from_xyz_rpy((0.0, 0.0, 0.0), tft.euler_from_quaternion(q))
    close(rebuilt[:3, :3], quat_xyzw_to_matrix(q), atol=1e-9)


@PARITY
@given(translations, angle)
def test_planar_yaw_pose_is_a_rotation_about_z(tft, xyz, yaw):
    T = yaw_pose(xyz[0], xyz[1], yaw, xyz[2])
    close(T, tft.concatenate_matrices(tft.translation_matrix(xyz), tft.euler_matrix(0.0, 0.0, yaw)))


# ----------------------------------------------------------------------------------------------------
# Composition and inverse
# ----------------------------------------------------------------------------------------------------


@PARITY
@given(unit_quaternions, unit_quaternions)
def test_composing_rotations_is_tf_quaternion_multiply(tft, q1, q2):
    ours = matrix_to_quat_xyzw(quat_xyzw_to_matrix(q1) @ quat_xyzw_to_matrix(q2))
    assert_same_rotation_quaternion(ours, tft.quaternion_multiply(q1, q2))


@PARITY
@given(translations, unit_quaternions, translations, unit_quaternions)
def test_composing_poses_is_tf_concatenate_matrices(tft, t1, q1, t2, q2):
    ours = pose_from_xyz_quat(t1, q1) @ pose_from_xyz_quat(t2, q2)
    close(ours, tft.concatenate_matrices(tf_pose(tft, t1, q1), tf_pose(tft, t2, q2)), atol=TOL * 300)


@PARITY
@given(translations, unit_quaternions)
def test_inverse_pose_is_tf_inverse_matrix(tft, xyz, q):
    T = pose_from_xyz_quat(xyz, q)
    close(invert(T), tft.inverse_matrix(T), atol=TOL * 100)
    close(invert(T) @ T, np.eye(4), atol=TOL * 100)


@PARITY
@given(unit_quaternions)
def test_inverse_rotation_is_tf_quaternion_inverse(tft, q):
    ours = matrix_to_quat_xyzw(invert(pose_from_xyz_quat(np.zeros(3), q))[:3, :3])
    assert_same_rotation_quaternion(ours, tft.quaternion_inverse(q))


# ----------------------------------------------------------------------------------------------------
# Messages: what a node publishes and reads
# ----------------------------------------------------------------------------------------------------


@PARITY
@given(translations, unit_quaternions)
def test_transform_messages_agree_with_tf(tft, rclpy_factory, xyz, q):
    msg = conv.matrix_to_transform(tf_pose(tft, xyz, q), factory=rclpy_factory)
    t, r = msg.translation, msg.rotation
    close([t.x, t.y, t.z], xyz, atol=TOL * 100)
    assert_same_rotation_quaternion([r.x, r.y, r.z, r.w], tft.quaternion_from_matrix(tf_pose(tft, xyz, q)))
    close(conv.msg_to_matrix(msg), tf_pose(tft, [t.x, t.y, t.z], [r.x, r.y, r.z, r.w]), atol=TOL * 100)


# ----------------------------------------------------------------------------------------------------
# Where tf_transformations answers and we refuse
# ----------------------------------------------------------------------------------------------------


def test_zero_and_nan_quaternions_are_refused_by_ours_only(tft):
    close(tft.quaternion_matrix([0.0, 0.0, 0.0, 0.0]), np.eye(4), atol=0.0)
    assert np.isnan(tft.quaternion_matrix([np.nan, 0.0, 0.0, 1.0])).any()
    for q in ([0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 0.0, 1.0], [np.inf, 0.0, 0.0, 1.0]):
        with pytest.raises(InvalidInputError, match="zero or not finite"):
            quat_xyzw_to_matrix(np.array(q))


@pytest.mark.parametrize("bad", ["scaled", "sheared"])
def test_non_rigid_matrices_are_refused_by_ours_and_decomposed_by_tf(tft, bad):
    q = np.array([0.1, -0.2, 0.3, 0.9]) / np.linalg.norm([0.1, -0.2, 0.3, 0.9])
    T = tf_pose(tft, [1.0, 2.0, 3.0], q)
    if bad == "scaled":
        M = T @ tft.scale_matrix(2.0)
    else:
        M = T @ tft.shear_matrix(0.3, [1, 0, 0], [0, 0, 0], [0, 1, 0])
    theirs = np.asarray(tft.quaternion_from_matrix(M))
    assert abs(np.linalg.norm(theirs) - 1.0) < TOL  # a quaternion comes out ...
    if bad == "scaled":
        assert_same_rotation_quaternion(q, theirs)  # ... the right one when only scaled
    with pytest.raises(InvalidInputError, match="not orthonormal"):
        conv.matrix_to_transform(M, factory=conv.RclpyFactory())
