"""evo wrappers: identical, rigidly moved and scaled trajectories under each alignment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spatial_memory.errors import InvalidInputError
from spatial_memory.vo.evaluation import aligned_positions, ate_rmse, rpe_per_second


def spiral(n: int = 90, hz: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """A camera on a 3D spiral turning as it goes (non-degenerate for Umeyama)."""
    t = np.arange(n) / hz
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, 3] = np.column_stack((np.cos(t), np.sin(t), 0.3 * t))
    poses[:, :3, :3] = Rotation.from_euler("zyx", np.column_stack((t, 0.2 * t, 0.1 * t))).as_matrix()
    return 1000.0 + t, poses


def moved(poses: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The trajectory in another world frame (and with positions scaled)."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [0.3, -0.5, 1.1]).as_matrix()
    T[:3, 3] = [2.0, -1.0, 0.5]
    out = T @ poses
    out[:, :3, 3] *= scale
    return out


def test_identical_is_zero() -> None:
    stamps, poses = spiral()
    for align in ("se3", "sim3", "none"):
        ate = ate_rmse(stamps, poses, stamps, poses, align=align)
        assert ate["rmse"] < 1e-9 and ate["n"] == len(stamps)
        assert ate["scale"] == pytest.approx(1.0)
    rpe = rpe_per_second(stamps, poses, stamps, poses)
    assert rpe["rmse"] < 1e-9 and rpe["delta_frames"] == 30 and rpe["n"] == 2
    assert all(isinstance(v, float) for k, v in ate.items() if k != "n")


def test_rigid_copy_needs_se3() -> None:
    stamps, gt = spiral()
    est = moved(gt)
    assert ate_rmse(stamps, est, stamps, gt, align="se3")["rmse"] < 1e-6
    assert ate_rmse(stamps, est, stamps, gt, align="none")["rmse"] > 0.5
    assert rpe_per_second(stamps, est, stamps, gt)["rmse"] < 1e-6  # relative error ignores the world frame


def test_scaled_copy_needs_sim3() -> None:
    stamps, gt = spiral()
    est = moved(gt, scale=0.1)
    assert ate_rmse(stamps, est, stamps, gt, align="se3")["rmse"] > 0.1
    sim3 = ate_rmse(stamps, est, stamps, gt, align="sim3")
    assert sim3["rmse"] < 1e-6 and sim3["scale"] == pytest.approx(10.0)
    assert rpe_per_second(stamps, est, stamps, gt, align="sim3")["rmse"] < 1e-6


def test_aligned_positions_are_what_the_ate_measured() -> None:
    stamps, gt = spiral()
    est = moved(gt, scale=0.1)
    est[:, :3, 3] += np.random.default_rng(0).normal(0.0, 0.002, (len(stamps), 3))
    times, ref_xyz, est_xyz = aligned_positions(stamps, est, stamps, gt, align="sim3")
    np.testing.assert_array_equal(times, stamps)
    np.testing.assert_allclose(ref_xyz, gt[:, :3, 3])
    rmse = float(np.sqrt(np.mean(np.sum((est_xyz - ref_xyz) ** 2, axis=1))))
    assert rmse == pytest.approx(ate_rmse(stamps, est, stamps, gt, align="sim3")["rmse"], rel=1e-9)
    assert 0.005 < rmse < 0.05  # the noise, scaled back up by the alignment


def test_association_by_time() -> None:
    stamps, gt = spiral(n=300, hz=100.0)  # ground truth at 100 Hz, estimate at every third stamp + 5 ms
    est_stamps = stamps[::3] + 0.005
    ate = ate_rmse(est_stamps, moved(gt[::3]), stamps, gt)
    assert ate["n"] == 100 and ate["rmse"] < 1e-6
    with pytest.raises(InvalidInputError, match="overlap"):  # 5 ms off, 4 ms allowed: nothing pairs
        ate_rmse(est_stamps, gt[::3], stamps, gt, max_diff=0.004)


def test_zero_motion_is_scored() -> None:
    stamps, gt = spiral()
    still = np.tile(np.eye(4), (len(stamps), 1, 1))
    spread = np.sqrt(np.mean(np.sum((gt[:, :3, 3] - gt[:, :3, 3].mean(0)) ** 2, axis=1)))
    assert ate_rmse(stamps, still, stamps, gt)["rmse"] == pytest.approx(spread)


def test_bad_inputs() -> None:
    stamps, poses = spiral()
    with pytest.raises(InvalidInputError, match="align"):
        ate_rmse(stamps, poses, stamps, poses, align="affine")
    with pytest.raises(InvalidInputError, match=r"\(N, 4, 4\)"):
        ate_rmse(stamps, poses[:, :3], stamps, poses)
    with pytest.raises(InvalidInputError, match="overlap"):
        ate_rmse(stamps + 100.0, poses, stamps, poses)
    with pytest.raises(InvalidInputError, match="longer than"):
        rpe_per_second(stamps[:10], poses[:10], stamps, poses)
