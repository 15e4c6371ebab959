"""BEV map geometry (egocentric, heading-up, gravity-aligned), outliers, overlaps, and a few pixel checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_memory.context import bev
from spatial_memory.context.config import MapConfig
from spatial_memory.context.palette import keyframe_color
from spatial_memory.geometry import make_pose, pose_from_xyz_rpy, yaw_pose

# optical frame (z forward, x right, y down) inside a REP-103 body frame (x forward, y left, z up)
T_BODY_OPTICAL = make_pose(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
CFG = MapConfig()
C = CFG.size_px / 2.0


def cam(x=0.0, y=0.0, z=1.0, yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
    """Camera looking along `yaw` (world), pitched down by `pitch`, rolled by `roll` about its axis."""
    return pose_from_xyz_rpy((x, y, z), (roll, pitch, yaw)) @ T_BODY_OPTICAL


def lay(keyframes, current, base=None, config=CFG):
    return bev.layout(np.array(keyframes).reshape(-1, 4, 4), current, base, config)


def px_bearing(p) -> float:
    """Bearing (rad, CCW from map-up, left positive) of a pixel position seen from the centre."""
    return math.atan2(-(p[0] - C), -(p[1] - C))


def test_ahead_is_up_and_left_is_left():
    ahead = lay([cam(1.0, 0.0)], cam())
    u, v = ahead.marker_px[0]
    assert u == pytest.approx(C, abs=1e-6) and v < C - 50
    assert v == pytest.approx(C - 1.0 * ahead.scale_px_per_m)
    left = lay([cam(0.0, 1.0)], cam())
    u, v = left.marker_px[0]
    assert u < C - 50 and v == pytest.approx(C, abs=1e-6)
    right_behind = lay([cam(-1.0, -1.0)], cam())
    u, v = right_behind.marker_px[0]
    assert u > C and v > C


def test_turning_the_robot_turns_the_map():
    kf = [cam(1.0, 0.0)]
    facing_left = lay(kf, cam(yaw=math.pi / 2))  # the keyframe is now on the robot's right
    u, v = facing_left.marker_px[0]
    assert u > C + 50 and v == pytest.approx(C, abs=1e-6)
    for yaw in np.linspace(-3.0, 3.0, 7):
        L = lay(kf, cam(yaw=yaw))
        expected = math.atan2(math.sin(-yaw), math.cos(-yaw))  # keyframe bearing relative to the heading
        assert px_bearing(L.marker_px[0]) == pytest.approx(expected, abs=1e-9)
        assert L.ego.heading_rad == pytest.approx(yaw)


def test_camera_roll_and_pitch_do_not_change_the_layout():
    rng = np.random.default_rng(3)
    kfs = [cam(*rng.normal(size=2) * 2, yaw=rng.uniform(-3, 3), pitch=rng.uniform(-1, 1)) for _ in range(12)]
    ref = lay(kfs, cam(0.3, -0.2, yaw=0.7))
    for pitch, roll in [(0.5, 0.0), (-0.6, 0.0), (0.0, 1.2), (1.2, -2.5), (0.3, math.pi)]:
        L = lay(kfs, cam(0.3, -0.2, z=0.4, yaw=0.7, pitch=pitch, roll=roll))
        np.testing.assert_allclose(L.marker_px, ref.marker_px, atol=1e-6)
        np.testing.assert_allclose(L.view_dir_px, ref.view_dir_px, atol=1e-9)
    # rolling/pitching the keyframes' cameras does not move their arrows either
    tilted = [
        k @ make_pose(pose_from_xyz_rpy((0, 0, 0), (0.0, 0.0, 0.9))[:3, :3]) for k in kfs
    ]  # roll about z_opt
    np.testing.assert_allclose(lay(tilted, cam(0.3, -0.2, yaw=0.7)).view_dir_px, ref.view_dir_px, atol=1e-9)


def test_camera_looking_straight_down_uses_image_up():
    # straight down, top of the image towards world +y
    down = make_pose(np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]), [0.0, 0.0, 1.0])
    assert np.allclose(-down[:3, 1], [0, 1, 0])
    L = lay([cam(0.0, 1.0)], down)
    assert L.ego.heading_source == "camera_image_up"
    assert L.ego.heading_rad == pytest.approx(math.pi / 2)
    u, v = L.marker_px[0]
    assert u == pytest.approx(C, abs=1e-6) and v < C - 50  # world +y is up on the map
    # tilted past the threshold: back to the viewing direction, and it agrees (no roll)
    L2 = lay([cam(0.0, 1.0)], cam(yaw=math.pi / 2, pitch=math.radians(75)))
    assert L2.ego.heading_source == "camera_forward"
    np.testing.assert_allclose(L2.marker_px, L.marker_px, atol=1e-6)


def test_base_pose_centres_and_orients_the_map():
    base = yaw_pose(2.0, 1.0, math.pi / 2)
    # the wrist camera looks backwards and sits off to the side: the base decides
    L = lay([cam(2.0, 2.0)], cam(2.5, 0.8, yaw=-2.0, pitch=0.8), base)
    assert L.ego.heading_source == "base"
    np.testing.assert_allclose(L.ego.origin_xy, [2.0, 1.0])
    u, v = L.marker_px[0]
    assert u == pytest.approx(C, abs=1e-6) and v < C - 50  # 1 m ahead of the base


def test_view_direction_arrows():
    L = lay([cam(1.0, 0.0, yaw=math.pi / 2), cam(-1.0, 0.0, yaw=0.0)], cam())
    np.testing.assert_allclose(L.view_dir_px[0], [-1.0, 0.0], atol=1e-9)  # looks left
    np.testing.assert_allclose(L.view_dir_px[1], [0.0, -1.0], atol=1e-9)  # looks forward (up)


def test_scale_from_farthest_inlier_with_margin_and_minimum_extent():
    close = lay([cam(0.1, 0.0)], cam())
    assert close.extent_m == pytest.approx(CFG.min_extent_m)
    far = lay([cam(3.0, 0.0), cam(0.0, 1.0)], cam())
    assert far.extent_m == pytest.approx(3.0 * (1 + CFG.scale_margin))
    r = np.hypot(*(far.marker_px[0] - C))
    assert r == pytest.approx(far.edge_radius_px / (1 + CFG.scale_margin))
    assert far.scale_bar_m in (0.5, 1.0, 2.0)
    assert far.scale_bar_px == pytest.approx(far.scale_bar_m * far.scale_px_per_m)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_outliers_sit_on_the_edge_at_their_true_bearing(seed):
    rng = np.random.default_rng(seed)
    near = [cam(*rng.uniform(-1.0, 1.0, size=2)) for _ in range(10)]
    bearings = rng.uniform(-math.pi, math.pi, size=2)
    far = [cam(25.0 * math.cos(b), 25.0 * math.sin(b)) for b in (bearings[0], bearings[0] + 2.0)]
    heading = rng.uniform(-3, 3)
    L = lay(near + far, cam(yaw=heading))
    assert L.outlier.tolist() == [False] * 10 + [True, True]
    assert L.extent_m < 2.0  # the outliers do not set the scale
    for i in (10, 11):
        world_bearing = bearings[0] + (0.0 if i == 10 else 2.0)
        expected = math.atan2(math.sin(world_bearing - heading), math.cos(world_bearing - heading))
        got = px_bearing(L.marker_px[i])
        assert abs(math.remainder(got - expected, 2 * math.pi)) < math.radians(1.0)
        assert np.hypot(*(L.marker_px[i] - C)) == pytest.approx(L.edge_radius_px, abs=1e-6)
        assert L.distance_m[i] == pytest.approx(25.0)
    assert np.all(np.hypot(*(L.marker_px[:10] - C).T) < L.edge_radius_px / (1 + CFG.scale_margin) + 1e-6)


def test_outlier_rule_is_mean_plus_k_sigma():
    d = np.array([1.0, 1.1, 0.9, 1.2, 1.0, 0.8, 6.0])
    L = lay([cam(x) for x in d], cam())
    thr = d.mean() + CFG.outlier_sigma * d.std()
    assert L.outlier_threshold_m == pytest.approx(thr)
    assert L.outlier.tolist() == [False] * 6 + [True]
    few = lay([cam(x) for x in (1.0, 1.0, 9.0)], cam())  # below outlier_min_keyframes: no test
    assert not few.outlier.any() and math.isinf(few.outlier_threshold_m)


@pytest.mark.parametrize("far", [1e3, 1e160, 1e300])
def test_the_outlier_test_cannot_overflow(far):
    """Distances squared overflow float64 beyond ~1e154 m: the far keyframe must still be the outlier, the
    scale set by the near ones (it was: threshold inf, the far keyframe an inlier, a '2e+299 m' scale bar)."""
    d = np.array([1.0, 1.1, 0.9, 1.2, 1.0, 0.8, far])
    L = lay([cam(x) for x in d], cam())
    assert L.outlier.tolist() == [False] * 6 + [True]
    unit = d / far  # the same rule, on distances that cannot overflow when squared
    assert L.outlier_threshold_m == pytest.approx((unit.mean() + CFG.outlier_sigma * unit.std()) * far)
    assert math.isfinite(L.outlier_threshold_m) and L.extent_m == pytest.approx(1.2 * (1 + CFG.scale_margin))
    assert L.scale_bar_m <= 1.0 and np.isfinite(L.marker_px).all()
    assert np.hypot(*(L.marker_px[:6] - C).T).max() > 0.5 * L.edge_radius_px  # the near ones spread out
    assert bev.render(L).shape == (CFG.size_px, CFG.size_px, 3)


def _assert_no_overlap(L: bev.MapLayout) -> None:
    p = L.marker_px
    d = np.linalg.norm(p[:, None] - p[None], axis=2) + np.eye(len(p)) * 1e9
    assert d.min() >= 2 * L.marker_radius_px, d.min()
    rc = np.hypot(*(p - C).T)
    assert np.all(rc <= L.edge_radius_px + 1e-6)
    assert np.all(rc >= L.robot_radius_px + L.marker_radius_px)


@pytest.mark.parametrize("seed", range(5))
def test_32_random_keyframes_never_overlap(seed):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(32, 2)) * rng.uniform(0.3, 3.0)
    L = lay([cam(x, y, yaw=rng.uniform(-3, 3)) for x, y in pts], cam(yaw=rng.uniform(-3, 3)))
    _assert_no_overlap(L)
    assert L.marker_radius_px == CFG.marker_radius_px
    # markers that did not need to move stay exactly on their true position
    assert np.allclose(L.marker_px[~L.moved], L.true_px[~L.moved])


def test_stacked_and_many_keyframes_never_overlap():
    same_spot = lay([cam(1.0, 0.5)] * 16 + [cam(0.0, 0.0)], cam())
    _assert_no_overlap(same_spot)
    assert same_spot.moved.sum() >= 16  # one may keep the spot; the one at the robot must move
    rng = np.random.default_rng(7)
    many = lay([cam(*rng.normal(size=2)) for _ in range(128)], cam())
    assert many.marker_radius_px < CFG.marker_radius_px  # shrunk to fit
    _assert_no_overlap(many)


def test_nice_lengths():
    assert [bev.nice_length(x) for x in (0.37, 1.0, 4.9, 5.0, 0.0123, 260.0)] == [
        0.2,
        1.0,
        2.0,
        5.0,
        0.01,
        200.0,
    ]


def test_rendered_markers_carry_their_colour_and_the_robot_glyph():
    L = lay([cam(1.0, 0.0), cam(0.0, 1.0), cam(-0.5, -0.8)], cam())
    img = bev.render(L, CFG)
    assert img.shape == (CFG.size_px, CFG.size_px, 3) and img.dtype == np.uint8
    r = L.marker_radius_px
    for i, number in enumerate(L.numbers):
        fill = keyframe_color(int(number)).rgb
        ring = [
            L.marker_px[i] + 0.75 * r * np.array([math.cos(a), math.sin(a)]) for a in np.linspace(0, 6, 12)
        ]
        hits = sum(tuple(img[int(round(p[1])), int(round(p[0]))]) == fill for p in ring)
        assert hits >= 8, (number, hits)
        text = keyframe_color(int(number)).text_rgb
        u, v = np.round(L.marker_px[i]).astype(int)
        patch = (
            img[v - int(r) + 2 : v + int(r) - 1, u - int(r) + 2 : u + int(r) - 1].reshape(-1, 3).astype(int)
        )
        ink = np.abs(patch - text).sum(axis=1) < np.abs(patch - fill).sum(axis=1)
        assert ink.sum() > 10  # the number is drawn in the contrast colour
    centre = img[int(C) - 4 : int(C) + 4, int(C) - 2 : int(C) + 3].reshape(-1, 3)
    assert (centre == bev.INK).all(axis=1).sum() > 10  # the robot triangle


def test_render_empty_and_outlier_layouts():
    empty = bev.layout(np.zeros((0, 4, 4)), None)
    assert empty.ego.heading_source == "default" and len(empty.marker_px) == 0
    img = bev.render(empty)
    assert img.shape == (512, 512, 3)
    kf = [cam(x, 0.1 * x) for x in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 30.0)]
    L = lay(kf, cam())
    assert L.outlier[-1]
    out = bev.render(L)
    m = np.round(L.marker_px[-1]).astype(int)
    halo = out[m[1] - int(L.marker_radius_px) - 4 : m[1] - int(L.marker_radius_px) - 1, m[0]].reshape(-1, 3)
    assert (np.abs(halo.astype(int) - bev.INK).sum(axis=1) < 60).any()  # the dark off-map halo


def test_smaller_map_config():
    cfg = MapConfig(size_px=256, marker_radius_px=10, min_marker_radius_px=6, edge_margin_px=24)
    rng = np.random.default_rng(1)
    L = lay([cam(*rng.normal(size=2)) for _ in range(16)], cam(), config=cfg)
    assert bev.render(L, cfg).shape == (256, 256, 3)
    p = L.marker_px
    d = np.linalg.norm(p[:, None] - p[None], axis=2) + np.eye(len(p)) * 1e9
    assert d.min() >= 2 * L.marker_radius_px


def test_nearest_free_point_is_exact():
    """The overlap resolver's search against a brute-force grid: valid, and never farther than the best
    grid point (grid step 0.5 px)."""
    rng = np.random.default_rng(5)
    c = np.array([100.0, 100.0])
    g = np.stack(np.meshgrid(np.arange(0, 200, 0.5), np.arange(0, 200, 0.5)), -1).reshape(-1, 2)
    rc = np.hypot(*(g - c).T)
    for _ in range(30):
        n = int(rng.integers(1, 20))
        placed = rng.normal(size=(n, 2)) * 30 + 100
        clearance = np.where(rng.random(n) < 0.2, 25.0, 20.0)
        a = rng.normal(size=2) * 30 + 100
        p = bev._nearest_free(a, placed, clearance, c, 10.0, 80.0)
        ok = (rc >= 10) & (rc <= 80) & (np.linalg.norm(g[:, None] - placed[None], axis=2) >= clearance).all(1)
        assert p is not None and ok.any()
        assert 10 - 1e-6 <= np.hypot(*(p - c)) <= 80 + 1e-6
        assert (np.linalg.norm(placed - p, axis=1) >= clearance - 1e-6).all()
        assert np.hypot(*(p - a)) <= np.hypot(*(g[ok] - a).T).min() + 1e-6


# -- memory answers drawn on the map ------------------------------------------------------------------


def test_map_pixel_puts_ahead_up_left_left_and_clamps_far_points_to_the_edge():
    L = lay([cam(2.0, 0.0)], cam(), base=yaw_pose(0.0, 0.0, 0.0))
    s = L.scale_px_per_m
    p, off = bev.map_pixel(L, np.array([1.0, 0.0, 100.0]), np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(p[0], [C, C - s])  # 1 m ahead: straight up
    np.testing.assert_allclose(p[1], [C - s, C])  # 1 m left: left
    np.testing.assert_allclose(p[2], [C, C - L.edge_radius_px])  # 100 m ahead: on the ring, still up
    assert off.tolist() == [False, False, True]


def test_draw_answers_marks_truth_and_answer_in_the_pair_colour():
    L = lay([cam(2.0, 0.0)], cam(), base=yaw_pose(0.0, 0.0, 0.0))
    base_img = bev.render(L)
    truth, answer = np.array([[1.0, 1.0, 0.0]]), np.array([[-1.0, -1.0, math.pi / 2]])
    img = bev.draw_answers(base_img, L, truth, answer, ["A"])
    assert img is not base_img and np.array_equal(base_img, bev.render(L))  # the input is not drawn on
    color = np.array(bev.ANSWER_COLORS[0])
    a_px = np.round(bev.map_pixel(L, answer[:, 0], answer[:, 1])[0][0]).astype(int)
    assert np.array_equal(
        img[a_px[1], a_px[0] + 3], color
    )  # inside the answer's disc (its centre has a tick)
    t_px = np.round(bev.map_pixel(L, truth[:, 0], truth[:, 1])[0][0]).astype(int)
    top = img[t_px[1] - 9 : t_px[1] - 6, t_px[0] - 1 : t_px[0] + 2].astype(int)  # the diamond's top corner
    assert (np.abs(top - color).sum(-1) < 60).any()
    assert not (
        np.abs(base_img[t_px[1] - 9 : t_px[1] - 6, t_px[0] - 1 : t_px[0] + 2].astype(int) - color).sum(-1)
        < 60
    ).any()
    with pytest.raises(ValueError, match="labels"):
        bev.draw_answers(base_img, L, truth, answer, ["A", "B"])
