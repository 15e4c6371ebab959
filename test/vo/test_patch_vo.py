"""PatchVO: exact SE(3) maps, analytic Jacobians, bundle adjustment on synthetic scenes, masks, bad input,
tracking loss, and a real TUM RGB-D clip when the shared data is there."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.vo.evaluation import ate_rmse
from spatial_memory.vo.patch_vo import PatchVO, PatchVOConfig, _Patch, se3_exp, se3_log
from spatial_memory.vo.tum import load_depth, load_rgb, read_tum, read_tum_trajectory

K = np.array([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])


def test_se3_exp_and_log_are_inverse():
    rng = np.random.default_rng(0)
    for scale in (1e-12, 1e-3, 0.3, 0.8):
        xi = rng.normal(0, scale, 6)
        xi[3:] *= min(1.0, 3.0 / np.linalg.norm(xi[3:]))  # rotations below pi: the log is unique there
        T = se3_exp(xi)
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(se3_log(T), xi, atol=1e-9)


def _vo_with_poses(poses, **config) -> PatchVO:
    vo = PatchVO(K, 640, 480, PatchVOConfig(**config))
    for f, T in enumerate(poses):
        vo._T_cw[f] = T.copy()
        vo._stamps[f] = float(f)
    return vo


def test_jacobians_match_finite_differences():
    rng = np.random.default_rng(1)
    vo = _vo_with_poses([se3_exp(rng.normal(0, 0.1, 6)) for _ in range(3)])
    patch = _Patch(0, np.array([300.0, 200.0]), 0.4, None)
    patch.obs[2] = np.array([310.0, 190.0])
    patch.obs_inv_depth[2] = 0.35  # the depth row is exercised too
    r, Jj, Ji, Jd, *_ = vo._residuals([patch])
    eps = 1e-7

    def moved(frame, delta):
        saved = vo._T_cw[frame].copy()
        vo._T_cw[frame] = se3_exp(delta) @ saved
        out = vo._residuals([patch])[0][0]
        vo._T_cw[frame] = saved
        return out

    for a in range(6):
        d = np.zeros(6)
        d[a] = eps
        np.testing.assert_allclose((moved(2, d) - r[0]) / eps, Jj[0][:, a], rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose((moved(0, d) - r[0]) / eps, Ji[0][:, a], rtol=1e-4, atol=1e-2)
    patch.inv_depth += eps
    numeric = (vo._residuals([patch])[0][0] - r[0]) / eps
    np.testing.assert_allclose(numeric, Jd[0], rtol=1e-4, atol=1e-2)


def _synthetic(rng, with_depth: bool):
    """Five true camera poses, 200 points, their tracks; the free poses and the depths perturbed."""
    true = [se3_exp(np.array([-0.1 * f, 0.02 * f, 0.0, 0.0, 0.02 * f, 0.0])) for f in range(5)]
    pts = np.column_stack([rng.uniform(-2, 2, 200), rng.uniform(-1.5, 1.5, 200), rng.uniform(2, 6, 200)])

    def project(T, X):
        Xc = T[:3, :3] @ X + T[:3, 3]
        return np.array([K[0, 0] * Xc[0] / Xc[2] + K[0, 2], K[1, 1] * Xc[1] / Xc[2] + K[1, 2]]), Xc[2]

    vo = _vo_with_poses(true, inv_depth_sigma=0.002)
    for idx, X in enumerate(pts):
        src = idx % 3
        uv, z = project(true[src], X)
        patch = _Patch(
            src, uv, (1.0 / z) * (1.0 + 0.2 * rng.standard_normal()), 1.0 / z if with_depth else None
        )
        for f in range(src, 5):
            patch.obs[f], zf = project(true[f], X)
            if with_depth and f != src:
                patch.obs_inv_depth[f] = 1.0 / zf
        vo._patches.append(patch)
    for f in range(1, 5):
        vo._T_cw[f] = se3_exp(rng.normal(0, 0.02, 6)) @ vo._T_cw[f]
    return vo, true


def test_bundle_adjustment_recovers_poses_with_depth_and_shape_without():
    vo, true = _synthetic(np.random.default_rng(2), with_depth=True)
    col = {f: f - 1 for f in range(1, 5)}
    errors = [vo._gn_step(vo._patches, 0, 0, col) for _ in range(8)]
    assert errors[0] > 1.0 and errors[-1] < 1e-6  # px
    for f in range(5):
        np.testing.assert_allclose(vo._T_cw[f], true[f], atol=1e-6)
    # without depth the reprojection still converges, but the scale is free: poses only up to scale
    vo, true = _synthetic(np.random.default_rng(2), with_depth=False)
    errors = [vo._gn_step(vo._patches, 0, 0, col) for _ in range(10)]
    assert errors[-1] < 1e-4
    t_est = np.array([np.linalg.inv(T)[:3, 3] for T in list(vo._T_cw.values())[1:]])
    t_true = np.array([np.linalg.inv(T)[:3, 3] for T in true[1:]])
    cos = np.sum(t_est * t_true, axis=1) / (np.linalg.norm(t_est, axis=1) * np.linalg.norm(t_true, axis=1))
    assert cos.min() > 0.999  # the directions are right


def _textured(seed: int, shift: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(
        rng.integers(0, 255, (60, 80), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC
    )
    img = np.roll(base, shift, axis=1)
    return np.dstack([img, img, img])


def test_no_patch_is_born_in_the_mask_and_tracks_into_it_die():
    vo = PatchVO(K, 640, 480)
    mask = np.zeros((480, 640), bool)
    mask[:, :320] = True  # the left half: "the arm"
    vo.track(_textured(0), 0.0, mask=mask)
    assert vo._patches and all(p.uv[0] >= 320 for p in vo._patches)
    assert vo.status.new_patches == len(vo._patches)
    # everything moves 40 px left: the tracks that land in the mask are dropped
    mask2 = np.zeros((480, 640), bool)
    mask2[:, :400] = True
    vo.track(_textured(0, shift=-40), 0.1, mask=mask2)
    for p in vo._patches:
        for f, q in p.obs.items():
            if f == 1:
                assert q[0] >= 400 - 1


def test_bad_input_is_refused_and_changes_nothing():
    vo = PatchVO(K, 640, 480)
    vo.track(_textured(1), 1.0)
    before = (len(vo._T_cw), len(vo._patches))
    bad = [
        lambda: vo.track(_textured(1)[:240], 2.0),  # wrong size for the intrinsics
        lambda: vo.track(_textured(1).astype(np.float32), 2.0),
        lambda: vo.track(_textured(1), 0.5),  # time going backwards
        lambda: vo.track(_textured(1), math.nan),
        lambda: vo.track(_textured(1), 2.0, depth=np.zeros((240, 320), np.float32)),  # depth of another size
        lambda: vo.track(_textured(1), 2.0, mask=np.zeros((10, 10), bool)),
    ]
    for call in bad:
        with pytest.raises(InvalidInputError):
            call()
    assert (len(vo._T_cw), len(vo._patches)) == before
    with pytest.raises(InvalidInputError):
        PatchVO(np.eye(2), 640, 480)
    with pytest.raises(ConfigError):
        PatchVOConfig(window=1)


def test_a_constant_image_is_a_reported_loss_and_the_chain_stays_continuous():
    vo = PatchVO(K, 640, 480)
    assert vo.track(_textured(3), 0.0) is not None
    assert vo.track(_textured(3, shift=-2), 0.1) is not None
    grey = np.full((480, 640, 3), 128, np.uint8)
    assert vo.track(grey, 0.2) is None
    assert vo.status.lost and "tracks" in vo.status.reason and vo.status.losses == 1
    stamps, poses = vo.trajectory()
    assert len(stamps) == 3 and np.all(np.isfinite(poses))
    # the lost frame keeps the motion prior's pose: no jump
    assert np.linalg.norm(poses[2][:3, 3] - poses[1][:3, 3]) < 0.05


def test_rgbd_on_the_real_teddy_clip_beats_standing_still(tum_teddy):
    """Frames 4-43 of TUM fr3/teddy at 15 Hz, RGB-D: the trajectory tracks the ground truth far better
    than 'no motion', with no tracking loss (evo, SE(3) alignment)."""
    seq = read_tum(tum_teddy, start=4, stride=2, max_frames=20)
    vo = PatchVO(seq.K, seq.width, seq.height)
    for i in range(len(seq)):
        assert vo.track(load_rgb(seq, i), float(seq.stamps[i]), depth=load_depth(seq, i)) is not None
    stamps, poses = vo.trajectory()
    ours = ate_rmse(stamps, poses, seq.gt_stamps, seq.gt_poses, align="se3")["rmse"]
    used = seq.gt_poses[[int(np.argmin(abs(seq.gt_stamps - t))) for t in stamps], :3, 3]
    still = float(np.sqrt(np.mean(np.sum((used - used.mean(0)) ** 2, axis=1))))  # best constant position
    assert ours < 0.02 and ours < still / 5, (ours, still)


def test_a_camera_standing_still_does_not_fill_the_window_and_every_frame_keeps_a_pose():
    vo = PatchVO(K, 640, 480)
    for f in range(8):
        assert vo.track(_textured(4), 0.1 * f) is not None
    assert len(vo._keyframes) < 8 and vo._removed  # keyframes with no motion across them left the graph
    stamps, poses = vo.trajectory()
    assert len(stamps) == 8
    np.testing.assert_allclose(poses, np.tile(np.eye(4), (8, 1, 1)), atol=1e-3)


def test_cli_writes_a_tum_trajectory_that_evo_reads(tum_teddy, tmp_path, capsys):
    from spatial_memory.cli import main

    out = tmp_path / "traj.txt"
    args = ["vo", "--tum", str(tum_teddy), "--depth", "--stride", "4", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert "RGB-D (metric)" in capsys.readouterr().out
    stamps, poses = read_tum_trajectory(out)
    seq = read_tum(tum_teddy, stride=4)
    assert len(stamps) == len(seq) and np.all(np.diff(stamps) > 0)
    assert ate_rmse(stamps, poses, seq.gt_stamps, seq.gt_poses, align="se3")["rmse"] < 0.05


def test_cli_reports_a_missing_folder_in_one_line(tmp_path):
    from spatial_memory.cli import main

    assert main(["vo", "--tum", str(tmp_path / "nope"), "--out", str(tmp_path / "t.txt")]) == 2
    assert not (tmp_path / "t.txt").exists()


def test_without_the_trajectory_the_state_stays_bounded_and_the_poses_are_the_same():
    kept = PatchVO(K, 640, 480)
    bounded = PatchVO(K, 640, 480, PatchVOConfig(keep_trajectory=False))
    for f in range(40):
        image = _textured(4, shift=-3 * f)
        a, b = kept.track(image, 0.1 * f), bounded.track(image, 0.1 * f)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(kept.pose, bounded.pose)
    cfg = bounded.config
    assert kept.frames == bounded.frames == 40 and len(kept._T_cw) == 40
    assert len(bounded._T_cw) <= cfg.window + cfg.patch_lifetime + 1
    assert len(bounded._keyframes) <= max(cfg.window, 4)
    assert len(bounded.trajectory()[0]) == len(bounded._T_cw)


def test_pixel_values_scale_with_the_image_width():
    cfg = PatchVOConfig()
    half = cfg.at_width(320)
    assert (half.lk_window_px, half.min_spacing_px, half.reference_width_px) == (11, 4, 0)
    assert half.huber_px == cfg.huber_px / 2 and half.outlier_px == cfg.outlier_px / 2
    assert half.inv_depth_sigma == cfg.inv_depth_sigma * 2  # weighed against half as many pixels
    assert cfg.at_width(160).lk_window_px == 5 and cfg.at_width(1280).lk_window_px == 41
    assert cfg.at_width(640) == dataclasses.replace(cfg, reference_width_px=0)
    assert half.at_width(100) is half  # already in pixels: unchanged
    assert PatchVO(K * [[0.5], [0.5], [1]], 320, 240).config == half
    with pytest.raises(ConfigError):
        PatchVOConfig(reference_width_px=-1)


def test_lk_starts_at_the_predicted_pixel_so_fast_steady_motion_keeps_its_tracks():
    """A wall sliding ever faster, up to 30 px a frame, at 160x120 (a 5 px LK window): starting LK where the
    motion prior puts each patch keeps tracking; starting it at the old pixel loses the wall."""
    K_small = np.array([[125.0, 0.0, 80.0], [0.0, 125.0, 60.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(5)
    wall = cv2.resize(
        rng.integers(0, 255, (40, 600), dtype=np.uint8), (3000, 120), interpolation=cv2.INTER_CUBIC
    )
    depth = np.full((120, 160), 2.0, np.float32)
    lost = {}
    for predict in (True, False):
        vo = PatchVO(K_small, 160, 120, PatchVOConfig(lk_predict=predict))
        x = v = 0
        for f in range(40):
            vo.track(np.ascontiguousarray(wall[:, x : x + 160]), 0.1 * f, depth=depth)
            v = min(v + 1, 30)
            x += v
        lost[predict] = vo.lost
    assert lost[True] == 0 and lost[False] >= 3, lost


def _sliding_wall(jump_px: int, frames: int, still: int = 2) -> list[np.ndarray]:
    """160x120 views of a textured wall 2 m ahead that stands for `still` frames, then slides `jump_px`
    left every frame (the camera moving right)."""
    rng = np.random.default_rng(5)
    wall = cv2.resize(
        rng.integers(0, 255, (40, 600), dtype=np.uint8), (3000, 120), interpolation=cv2.INTER_CUBIC
    )
    xs = [max(0, f - still + 1) * jump_px for f in range(frames)]
    return [np.ascontiguousarray(wall[:, x : x + 160]) for x in xs]


K160 = np.array([[125.0, 0.0, 80.0], [0.0, 125.0, 60.0], [0.0, 0.0, 1.0]])
DEPTH160 = np.full((120, 160), 2.0, np.float32)


def test_a_wall_jumping_24_px_a_frame_is_tracked_and_a_motion_prior_gives_it_in_metres():
    """Tracks are checked back from where the prediction puts them (a backward search started at the found
    pixel could not reach back 24 px with a 5 px window: every track failed and the frame was lost), and a
    motion prior (the wheels') starts LK at the right place from the first moving frame."""
    views = _sliding_wall(24, 12)
    step_m = 24 * 2.0 / K160[0, 0]
    for prior in (False, True):
        vo = PatchVO(K160, 160, 120)
        for f, view in enumerate(views):
            moved = np.eye(4)
            moved[0, 3] = step_m if f >= 2 else 0.0  # the camera's motion since the previous frame
            assert vo.track(view, 0.1 * f, depth=DEPTH160, motion_prior=moved if prior else None) is not None
        x = vo.pose[0, 3]
        assert x == pytest.approx(10 * step_m, rel=0.02), (prior, x)


def test_a_bad_motion_prior_is_refused_and_changes_nothing():
    vo = PatchVO(K160, 160, 120)
    vo.track(_sliding_wall(0, 1)[0], 0.0, depth=DEPTH160)
    rotated = np.eye(4)
    rotated[:3, :3] = [[0, 1, 0], [1, 0, 0], [0, 0, 1]]  # a reflection, not a rotation
    half_nan = np.eye(4)
    half_nan[0, 3] = np.nan
    for bad in (np.eye(3), rotated, half_nan, np.full((4, 4), np.inf)):
        with pytest.raises(InvalidInputError, match="motion_prior"):
            vo.track(_sliding_wall(0, 1)[0], 0.1, depth=DEPTH160, motion_prior=bad)
    assert vo.frames == 1
    rotation_only = np.eye(4)
    rotation_only[:3, 3] = np.nan  # NaN translation: only the rotation is known (monocular wheels)
    assert vo.track(_sliding_wall(0, 1)[0], 0.1, depth=DEPTH160, motion_prior=rotation_only) is not None


def test_the_rotation_fit_of_a_wide_lk_recovers_a_turn_the_velocity_model_knows_nothing_of():
    """Two views 6 degrees apart about the camera's y axis (pure rotation, an image warped by K R K^-1): the
    wide LK from the old pixels and the Wahba fit give the rotation within a tenth of a degree."""
    rng = np.random.default_rng(3)
    scene = cv2.resize(
        rng.integers(0, 255, (60, 80), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_CUBIC
    )
    K_scene = np.array([[125.0, 0.0, 159.5], [0.0, 125.0, 119.5], [0.0, 0.0, 1.0]])
    R = cv2.Rodrigues(np.array([0.0, np.radians(6.0), 0.0]))[0]  # this camera <- the previous one

    def view(R_cam: np.ndarray) -> np.ndarray:  # the 160x120 centre of the scene seen after rotating
        H = K_scene @ R_cam @ np.linalg.inv(K_scene)
        return cv2.warpPerspective(scene, H, (320, 240))[60:180, 80:240]

    vo = PatchVO(K160, 160, 120)
    vo.track(view(np.eye(3)), 0.0, depth=DEPTH160)
    vo._images[1] = view(R)
    pts = np.array([p.uv for p in vo._patches], dtype=np.float32).reshape(-1, 1, 2)
    found = vo._rotation_from_flow(1, pts)
    angle = math.degrees(math.acos(np.clip((np.trace(found @ R.T) - 1) / 2, -1, 1)))
    assert angle < 0.1, angle


def test_the_motion_prior_terms_are_the_gradient_of_their_cost():
    """_add_prior_terms adds J^T W r and J^T W J of r = (the translation between consecutive keyframes) -
    (the prior's): b against finite differences of 0.5 |r|^2 / sigma^2 over each free pose."""
    rng = np.random.default_rng(4)
    vo = _vo_with_poses([se3_exp(rng.normal(0, 0.1, 6)) for _ in range(3)], prior_sigma_m=0.01)
    vo._keyframes = [0, 1, 2]
    vo._priors = {1: se3_exp(rng.normal(0, 0.1, 6)), 2: se3_exp(rng.normal(0, 0.1, 6))}
    col = {1: 0, 2: 1}

    def cost() -> float:
        total = 0.0
        for a, c in ((0, 1), (1, 2)):
            t = (vo._T_cw[a] @ np.linalg.inv(vo._T_cw[c]))[:3, 3]
            total += 0.5 * np.sum((t - vo._priors[c][:3, 3]) ** 2) / 0.01**2
        return total

    H, b = np.zeros((12, 12)), np.zeros(12)
    vo._add_prior_terms(H, b, 0, col)
    eps = 1e-7
    for f, c in col.items():
        for a in range(6):
            d = np.zeros(6)
            d[a] = eps
            saved = vo._T_cw[f].copy()
            vo._T_cw[f] = se3_exp(d) @ saved
            up = cost()
            vo._T_cw[f] = se3_exp(-d) @ saved
            down = cost()
            vo._T_cw[f] = saved
            assert (up - down) / (2 * eps) == pytest.approx(b[6 * c + a], rel=1e-4, abs=1e-3)
    np.testing.assert_allclose(H, H.T, atol=1e-9)


def test_a_loss_starts_the_window_at_the_lost_frame():
    vo = PatchVO(K160, 160, 120)
    views = _sliding_wall(2, 5)
    for f, view in enumerate(views):
        vo.track(view, 0.1 * f, depth=DEPTH160)
    assert len(vo._keyframes) > 1
    assert vo.track(np.full((120, 160), 128, np.uint8), 0.5, depth=DEPTH160) is None
    assert vo._keyframes == [5]
