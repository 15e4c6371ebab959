"""Planar relative poses for the memory: odometry increments in, (x, y, yaw) answers out, and their errors.

The memory works on the ground plane. It reads the base's motion as per-step increments (dx, dy, dyaw) and
answers a query with the query camera's planar pose (x, y, yaw) relative to the base now. Every model, the
training data and the Mem-RPE metric use the conversions here, so the conventions live in one place:

- Frames follow REP-103: base x forward, y left, z up; yaw is counter-clockwise about z, in radians,
  wrapped to [-pi, pi).
- An increment is the motion of step t in the base frame of step t-1: `T_prev_cur = inv(T_{t-1}) T_t`,
  reduced to its x, y translation and the heading change of the base's x axis. Step 0 has no previous step:
  its increment is zero.
- A query target is where the query camera's optical centre is in the base's x-y plane, and which way its
  optical axis (the optical frame's z) points, projected on the ground, relative to the base's x axis.

Pure numpy, no torch: the data pipeline and the metrics use it without a model.
"""

from __future__ import annotations

import numpy as np

from spatial_memory.errors import InvalidInputError

# A projected axis shorter than this (the optical axis within ~0.06 deg of vertical) has no usable heading.
VERTICAL_TOL = 1e-3


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Angles (rad) wrapped to [-pi, pi)."""
    return (np.asarray(angle, dtype=np.float64) + np.pi) % (2.0 * np.pi) - np.pi


def _check_poses(T: np.ndarray, name: str) -> np.ndarray:
    """`T` as float64 (..., 4, 4), finite; raises InvalidInputError otherwise."""
    T = np.asarray(T, dtype=np.float64)
    if T.ndim < 2 or T.shape[-2:] != (4, 4):
        raise InvalidInputError(f"{name} must be 4x4 matrices (..., 4, 4), got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return T


def _check_planar(p: np.ndarray, name: str) -> np.ndarray:
    """`p` as float64 (..., 3) planar poses (x, y, yaw); NaN is allowed (a missing answer)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim < 1 or p.shape[-1] != 3:
        raise InvalidInputError(f"{name} must be planar poses (..., 3) as (x, y, yaw), got shape {p.shape}")
    return p


def odometry_increments(T_odom_base: np.ndarray) -> np.ndarray:
    """Per-step planar motion (T, 3) = (dx m, dy m, dyaw rad) of an odometry track `T_odom_base` (T, 4, 4).

    Row t is step t's motion in the base frame of step t-1; row 0 is zero. The heading change is that of
    the base's x axis projected on the ground (exact for a planar base, which the wheel odometry is).
    """
    T = _check_poses(T_odom_base, "T_odom_base")
    if T.ndim != 3 or len(T) < 1:
        raise InvalidInputError(f"T_odom_base must be a (T, 4, 4) track with T >= 1, got shape {T.shape}")
    out = np.zeros((len(T), 3))
    if len(T) == 1:
        return out
    R_prev_t = np.swapaxes(T[:-1, :3, :3], 1, 2)  # inverse rotations of steps 0..T-2
    rel_t = np.einsum("nij,nj->ni", R_prev_t, T[1:, :3, 3] - T[:-1, :3, 3])
    rel_R = R_prev_t @ T[1:, :3, :3]
    out[1:, :2] = rel_t[:, :2]
    out[1:, 2] = np.arctan2(rel_R[:, 1, 0], rel_R[:, 0, 0])
    return out


def integrate_increments(increments: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Planar poses (T, 3) reached by chaining `increments` (T, 3) from `start` (x, y, yaw; default zero).

    The inverse of `odometry_increments` for a planar track: pose t = pose t-1 composed with increment t.
    """
    inc = _check_planar(increments, "increments")
    if inc.ndim != 2:
        raise InvalidInputError(f"increments must be (T, 3), got shape {inc.shape}")
    pose = np.zeros(3) if start is None else _check_planar(start, "start").reshape(3).copy()
    out = np.empty_like(inc)
    for t, (dx, dy, dyaw) in enumerate(inc):
        c, s = np.cos(pose[2]), np.sin(pose[2])
        pose = np.array([pose[0] + c * dx - s * dy, pose[1] + s * dx + c * dy, wrap_angle(pose[2] + dyaw)])
        out[t] = pose
    return out


def planar_pose(T: np.ndarray) -> np.ndarray:
    """(x, y, yaw) of body poses (..., 4, 4): position on the ground and the heading of the body's x axis."""
    T = _check_poses(T, "T")
    return np.stack([T[..., 0, 3], T[..., 1, 3], np.arctan2(T[..., 1, 0], T[..., 0, 0])], axis=-1)


def planar_target(T_base_query: np.ndarray) -> np.ndarray:
    """The answer to a query: (x m, y m, yaw rad) (..., 3) of query cameras `T_base_query` (..., 4, 4).

    `T_base_query` is the query's REP-103 optical frame (z forward, x right, y down) in the current base
    frame. x, y: the optical centre in the base's x-y plane (its height is dropped). yaw: the heading of the
    optical axis projected on the ground, counter-clockwise from the base's x axis; a level camera looking
    along the base's x axis has yaw 0.

    A camera looking straight down (or up) has no projected optical axis. Within `VERTICAL_TOL` of vertical
    the heading falls back to the image's up direction (minus the optical y axis) projected on the ground:
    for a roll-free camera pitching down this is the same heading the optical axis had before it reached
    vertical, so the answer is continuous through that pose. Query cameras are never steeper than
    `QueryConfig.max_source_pitch_deg` plus the jitter, so the fallback does not occur in recorded data.
    """
    T = _check_poses(T_base_query, "T_base_query")
    axis = T[..., :3, 2]
    up = -T[..., :3, 1]
    vertical = np.hypot(axis[..., 0], axis[..., 1]) < VERTICAL_TOL
    direction = np.where(vertical[..., None], up, axis)
    yaw = np.arctan2(direction[..., 1], direction[..., 0])
    return np.stack([T[..., 0, 3], T[..., 1, 3], yaw], axis=-1)


def pose_errors(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position error (m) and heading error (deg, in [0, 180]) of planar answers `pred` vs `target` (..., 3).

    The position error is the Euclidean x-y distance; the heading error is the absolute yaw difference
    wrapped, so 179 deg and -179 deg are 2 deg apart. A NaN in a prediction (no answer) gives NaN errors.
    """
    pred, target = _check_planar(pred, "pred"), _check_planar(target, "target")
    if pred.shape != target.shape:
        raise InvalidInputError(f"pred {pred.shape} and target {target.shape} must have the same shape")
    position = np.hypot(pred[..., 0] - target[..., 0], pred[..., 1] - target[..., 1])
    heading = np.abs(np.degrees(wrap_angle(pred[..., 2] - target[..., 2])))
    return position, heading
