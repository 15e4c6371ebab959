"""SE(3) helpers on 4x4 float64 matrices, on top of scipy's rotations.

Poses are named `T_a_b`: the transform that maps points in frame b into frame a. Quaternion order is
converted here and nowhere else: ROS uses (x, y, z, w), MuJoCo uses (w, x, y, z).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from spatial_memory.errors import InvalidInputError

RIGID_TOL = 1e-6


def make_pose(rotation: np.ndarray | None = None, translation: np.ndarray | None = None) -> np.ndarray:
    """Build a 4x4 pose from a 3x3 rotation and a 3-vector (identity where omitted)."""
    T = np.eye(4)
    if rotation is not None:
        T[:3, :3] = rotation
    if translation is not None:
        T[:3, 3] = translation
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (cheaper and exacter than a general matrix inverse)."""
    R = T[:3, :3]
    Ti = np.eye(4)
    Ti[:3, :3] = R.T
    Ti[:3, 3] = -R.T @ T[:3, 3]
    return Ti


def check_pose(T: np.ndarray, name: str = "pose", tol: float = RIGID_TOL) -> np.ndarray:
    """Return `T` as float64 4x4 if it is a finite rigid transform, else raise `InvalidInputError`."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise InvalidInputError(f"{name} must be a 4x4 matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0), atol=tol):
        raise InvalidInputError(f"{name} last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > tol or np.linalg.det(R) < 0:
        raise InvalidInputError(f"{name} rotation is not orthonormal with det +1 (error {err:.2e})")
    return T


def quat_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a ROS-order (x, y, z, w) quaternion; it need not be unit length but not zero."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise InvalidInputError(f"quaternion {q.tolist()} is zero or not finite")
    return Rotation.from_quat(q / n).as_matrix()


def matrix_to_quat_xyzw(R: np.ndarray) -> np.ndarray:
    """ROS-order (x, y, z, w) unit quaternion of a rotation matrix, with w >= 0."""
    q = Rotation.from_matrix(R).as_quat()
    return -q if q[3] < 0 else q


def quat_wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    """MuJoCo (w, x, y, z) to ROS (x, y, z, w)."""
    q = np.asarray(q, dtype=np.float64)
    return np.array([q[1], q[2], q[3], q[0]])


def quat_xyzw_to_wxyz(q: np.ndarray) -> np.ndarray:
    """ROS (x, y, z, w) to MuJoCo (w, x, y, z)."""
    q = np.asarray(q, dtype=np.float64)
    return np.array([q[3], q[0], q[1], q[2]])


def pose_from_xyz_quat(xyz: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """4x4 pose from a translation and a ROS-order quaternion."""
    return make_pose(quat_xyzw_to_matrix(quat_xyzw), np.asarray(xyz, dtype=np.float64))


def pose_to_xyz_quat(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(translation, ROS-order quaternion) of a 4x4 pose."""
    return T[:3, 3].copy(), matrix_to_quat_xyzw(T[:3, :3])


def pose_from_xyz_rpy(xyz: tuple[float, float, float], rpy: tuple[float, float, float]) -> np.ndarray:
    """4x4 pose from URDF-style xyz and fixed-axis roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    return make_pose(Rotation.from_euler("xyz", rpy).as_matrix(), np.asarray(xyz, dtype=np.float64))


def planar_heading(direction: np.ndarray) -> float | None:
    """Yaw (rad, CCW from world x) of a 3-D direction projected on the ground plane; None if vertical."""
    dx, dy = float(direction[0]), float(direction[1])
    if np.hypot(dx, dy) < 1e-9:
        return None
    return float(np.arctan2(dy, dx))


def yaw_pose(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """Planar pose: position (x, y, z), rotated by `yaw` about world z."""
    return make_pose(Rotation.from_euler("z", yaw).as_matrix(), np.array([x, y, z]))


def wrap_angle(angle: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def finite_float(value: object, name: str) -> float:
    """`value` as a finite float, or InvalidInputError naming `name` (bools are refused, not read as 0/1)."""
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(out):
        raise InvalidInputError(f"{name} must be finite, got {out}")
    return out
