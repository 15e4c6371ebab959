"""Trajectory errors through `evo` (Grupp, "evo: Python package for the evaluation of odometry and SLAM").

Thin wrappers: evo associates the trajectories by time, aligns them (Umeyama) and computes the metrics; this
module only turns (stamps, T_world_cam) arrays into evo trajectories and evo's statistics into plain floats.
"""

from __future__ import annotations

import logging

import numpy as np
from evo.core import metrics, sync
from evo.core.geometry import GeometryException
from evo.core.trajectory import PoseTrajectory3D

from spatial_memory.errors import InvalidInputError

log = logging.getLogger(__name__)

ALIGNMENTS = ("se3", "sim3", "none")


def to_trajectory(stamps: np.ndarray, poses: np.ndarray, name: str = "") -> PoseTrajectory3D:
    """An evo trajectory from (N,) stamps and (N, 4, 4) T_world_cam poses (checked: finite, same length)."""
    stamps = np.asarray(stamps, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    if stamps.ndim != 1 or poses.shape != (len(stamps), 4, 4):
        raise InvalidInputError(f"need (N,) stamps and (N, 4, 4) poses, got {stamps.shape} and {poses.shape}")
    if len(stamps) < 2:
        raise InvalidInputError(f"need at least 2 poses to evaluate a trajectory, got {len(stamps)}")
    if not (np.all(np.isfinite(stamps)) and np.all(np.isfinite(poses))):
        raise InvalidInputError("stamps and poses must be finite")
    return PoseTrajectory3D(poses_se3=list(poses), timestamps=stamps, name=name)


def associated(
    stamps_est: np.ndarray,
    poses_est: np.ndarray,
    stamps_gt: np.ndarray,
    poses_gt: np.ndarray,
    max_diff: float,
) -> tuple[PoseTrajectory3D, PoseTrajectory3D]:
    """(reference, estimate) evo trajectories reduced to the pairs whose stamps are within max_diff."""
    gt = to_trajectory(stamps_gt, poses_gt, "ground truth")
    est = to_trajectory(stamps_est, poses_est, "estimate")
    try:
        ref, est = sync.associate_trajectories(gt, est, max_diff=max_diff)
    except sync.SyncException as err:
        raise InvalidInputError(f"estimate and ground truth do not overlap in time: {err}") from None
    return ref, est


def _align(est: PoseTrajectory3D, ref: PoseTrajectory3D, align: str) -> float:
    """Align `est` onto `ref` in place (se3, sim3 or none); the scale applied (1.0 unless sim3)."""
    if align not in ALIGNMENTS:
        raise InvalidInputError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    if align == "none":
        return 1.0
    if est.num_poses < 3:
        raise InvalidInputError(f"{align} alignment needs at least 3 associated poses, got {est.num_poses}")
    try:
        _, _, scale = est.align(ref, correct_scale=(align == "sim3"))
    except GeometryException as err:
        positions = est.positions_xyz
        if np.ptp(positions, axis=0).max() > 1e-9:
            raise InvalidInputError(f"{align} alignment failed: {err}") from None
        # A motionless estimate (one position) has no Umeyama solution; the best rigid or similarity
        # alignment of a single point is the shift onto the reference's centroid (rotation and scale are
        # irrelevant to the translation error), so a "zero motion" estimate can still be scored.
        shift = np.eye(4)
        shift[:3, 3] = ref.positions_xyz.mean(axis=0) - positions[0]
        est.transform(shift)
        scale = 1.0
    return float(scale)


def ate_rmse(
    stamps_est: np.ndarray,
    poses_est: np.ndarray,
    stamps_gt: np.ndarray,
    poses_gt: np.ndarray,
    align: str = "se3",
    max_diff: float = 0.02,
) -> dict[str, float]:
    """Absolute trajectory error (translation, metres) after alignment: rmse, mean, median, max, n, scale.

    `align` is "se3" for metric (RGB-D) estimates, "sim3" for scale-free (monocular) ones, "none" to compare
    in the ground truth's frame as is. Estimates and ground truth are paired by nearest stamp within max_diff.
    """
    ref, est = associated(stamps_est, poses_est, stamps_gt, poses_gt, max_diff)
    scale = _align(est, ref, align)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    stats = ape.get_all_statistics()
    return {
        "rmse": float(stats["rmse"]),
        "mean": float(stats["mean"]),
        "median": float(stats["median"]),
        "max": float(stats["max"]),
        "n": int(est.num_poses),
        "scale": scale,
    }


def aligned_positions(
    stamps_est: np.ndarray,
    poses_est: np.ndarray,
    stamps_gt: np.ndarray,
    poses_gt: np.ndarray,
    align: str = "se3",
    max_diff: float = 0.02,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stamps (n,), ground-truth positions (n, 3), estimated positions (n, 3)) of the associated poses, the
    estimate aligned as in `ate_rmse`: what to plot next to the ATE."""
    ref, est = associated(stamps_est, poses_est, stamps_gt, poses_gt, max_diff)
    _align(est, ref, align)
    return est.timestamps.copy(), ref.positions_xyz.copy(), est.positions_xyz.copy()


def rpe_per_second(
    stamps_est: np.ndarray,
    poses_est: np.ndarray,
    stamps_gt: np.ndarray,
    poses_gt: np.ndarray,
    align: str = "none",
    max_diff: float = 0.02,
    delta_s: float = 1.0,
) -> dict[str, float]:
    """Relative pose error (translation, metres) over steps of `delta_s` seconds: rmse, mean, n, delta_frames.

    evo's RPE counts its delta in frames, metres or degrees, not seconds, so the delta in frames is the one
    closest to `delta_s` at the associated trajectory's median frame interval; consecutive (not all) pairs.
    RPE is invariant to a rigid alignment; align="sim3" rescales a monocular estimate first (the associated
    copies are aligned, the inputs are left alone).
    """
    ref, est = associated(stamps_est, poses_est, stamps_gt, poses_gt, max_diff)
    _align(est, ref, align)
    step = float(np.median(np.diff(est.timestamps)))
    delta = max(1, round(delta_s / step)) if step > 0 else 1
    if delta >= est.num_poses:
        raise InvalidInputError(
            f"{delta_s} s ({delta} frames) is longer than the associated trajectory ({est.num_poses} poses)"
        )
    rpe = metrics.RPE(metrics.PoseRelation.translation_part, delta=delta, delta_unit=metrics.Unit.frames)
    rpe.process_data((ref, est))
    stats = rpe.get_all_statistics()
    return {
        "rmse": float(stats["rmse"]),
        "mean": float(stats["mean"]),
        "n": int(len(rpe.error)),
        "delta_frames": int(delta),
    }
