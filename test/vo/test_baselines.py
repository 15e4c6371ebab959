"""OpenCV VO baselines: they track the real TUM clip, reject malformed input and survive blank frames."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.vo import baselines
from spatial_memory.vo.evaluation import ate_rmse
from spatial_memory.vo.tum import load_depth, load_rgb, read_tum

K = np.array([[535.4, 0, 320.1], [0, 539.2, 247.6], [0, 0, 1]])

RGBD = [baselines.OrbPnpVO, baselines.KltPnpVO]
if baselines.available_rgbd_odometry():
    RGBD.append(baselines.RgbdOdometryVO)
ALL = [*RGBD, baselines.MonoEssentialVO]


@pytest.fixture(scope="module")
def clip(tum_teddy) -> tuple:
    """Frames 4-40 of the teddy clip (the first with ground truth onwards), loaded once."""
    seq = read_tum(tum_teddy, start=4, max_frames=37)
    images = [load_rgb(seq, i) for i in range(len(seq))]
    depths = [load_depth(seq, i) for i in range(len(seq))]
    return seq, images, depths


def run(tracker: baselines.FrameToFrameVO, seq, images, depths) -> np.ndarray:
    return np.array([tracker.track(im, st, d) for im, d, st in zip(images, depths, seq.stamps, strict=True)])


@pytest.mark.parametrize("cls", RGBD, ids=lambda c: c.__name__)
def test_rgbd_baselines_track_the_clip(cls, clip) -> None:
    seq, images, depths = clip
    tracker = cls(seq.K)
    poses = run(tracker, seq, images, depths)
    assert poses.shape == (len(seq), 4, 4) and np.allclose(poses[0], np.eye(4))
    ate = ate_rmse(seq.stamps, poses, seq.gt_stamps, seq.gt_poses, align="se3")
    still = ate_rmse(seq.stamps, np.tile(np.eye(4), (len(seq), 1, 1)), seq.gt_stamps, seq.gt_poses)
    assert ate["n"] == len(seq)
    assert ate["rmse"] < 0.25 * still["rmse"], (tracker.name, ate["rmse"], still["rmse"])
    assert tracker.lost <= 2 and tracker.frames == len(seq)
    assert np.allclose(np.linalg.det(poses[:, :3, :3]), 1.0)


def test_mono_baseline_runs_without_depth(clip) -> None:
    seq, images, _ = clip
    tracker = baselines.MonoEssentialVO(seq.K)
    poses = np.array([tracker.track(im, st) for im, st in zip(images[:12], seq.stamps[:12], strict=True)])
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.all(np.isclose(steps, 1.0) | np.isclose(steps, 0.0))  # unit steps, or zero when lost
    assert np.sum(np.isclose(steps, 0.0)) == tracker.lost


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_bad_shapes_raise(cls) -> None:
    tracker = cls(K)
    image = np.zeros((48, 64, 3), np.uint8)
    depth = np.ones((48, 64), np.float32)
    for bad in (
        np.zeros((48, 64), np.uint8),
        np.zeros((48, 64, 3), np.float32),
        np.zeros((48, 64, 4), np.uint8),
    ):
        with pytest.raises(InvalidInputError, match="uint8 RGB"):
            tracker.track(bad, 0.0, depth)
    if cls.needs_depth:
        for bad_depth in (None, np.ones((24, 32), np.float32), np.ones((48, 64), np.uint16)):
            with pytest.raises(InvalidInputError, match="depth"):
                tracker.track(image, 0.0, bad_depth)
    tracker.track(image, 0.0, depth)
    with pytest.raises(InvalidInputError, match="size changed"):
        tracker.track(np.zeros((24, 32, 3), np.uint8), 0.1, np.ones((24, 32), np.float32))
    with pytest.raises(InvalidInputError, match="3x3"):
        cls(np.eye(4))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_grey_frames_are_lost_not_fatal(cls) -> None:
    tracker = cls(K)
    grey = np.full((240, 320, 3), 128, np.uint8)
    depth = np.zeros((240, 320), np.float32)  # no readings either
    poses = [tracker.track(grey, 0.1 * i, depth if cls.needs_depth else None) for i in range(3)]
    assert all(np.allclose(p, np.eye(4)) for p in poses)
    assert tracker.lost == 2 and tracker.frames == 3


def test_grey_frame_inside_real_motion_keeps_the_pose(clip) -> None:
    seq, images, depths = clip
    tracker = baselines.OrbPnpVO(seq.K)
    before = [tracker.track(images[i], seq.stamps[i], depths[i]) for i in range(3)][-1]
    grey = tracker.track(np.full_like(images[0], 128), seq.stamps[3], depths[3])
    assert tracker.lost == 1 and np.allclose(grey, before)
