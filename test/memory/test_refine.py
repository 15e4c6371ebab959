"""ViewStore: novelty-written, bounded RGB-D views, and PnP refinement checked on rendered MuJoCo views
of a simulated house (validation world 1000) with exact camera poses."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert
from spatial_memory.memory.pose_graph import lift, planar
from spatial_memory.memory.poses import planar_target, wrap_angle
from spatial_memory.memory.refine import LIVE_VIEW_ID, RefineConfig, ViewStore, drift_age_s, verified_sigmas
from spatial_memory.sim.live import LiveSim, LiveSimConfig, LiveWorldConfig


def _turned(T: np.ndarray, yaw_deg: float, right_m: float = 0.0, forward_m: float = 0.0) -> np.ndarray:
    """A level camera pose turned about the vertical by `yaw_deg` (left) and moved in its own frame."""
    a = math.radians(yaw_deg)
    R_optical = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    out = T.copy()
    out[:3, :3] = T[:3, :3] @ R_optical  # about the optical y axis (image down) = the world's vertical
    out[:3, 3] = T[:3, 3] + T[:3, :3] @ np.array([right_m, 0.0, forward_m])
    return out


@pytest.fixture(scope="module")
def house():
    """A turn in place in a house, frames every 0.2 s with depth and exact camera poses, and the sim."""
    sim = LiveSim(LiveSimConfig(world=LiveWorldConfig(preset="house", seed=1000)))
    frames = []
    while len(frames) < 25:
        sim.command_velocity(0.0, 0.6)  # a teleoperator holding the stick
        tick = sim.tick()
        frame = tick.camera("camera")
        if frame is not None and (not frames or tick.stamp_ns - frames[-1][4] >= 2e8):
            frames.append((frame.rgb, frame.depth, frame.K, frame.T_world_cam, tick.stamp_ns))
    yield sim, frames
    sim.close()


def _store(frames, **config) -> ViewStore:
    store = ViewStore(RefineConfig(**config))
    for frame in frames:
        store.add(*frame)
    return store


def _errors(T_est: np.ndarray, T_true: np.ndarray) -> tuple[float, float]:
    a, b = planar_target(T_est), planar_target(T_true)
    return float(np.hypot(*(a[:2] - b[:2]))), abs(math.degrees(wrap_angle(a[2] - b[2])))


def test_a_picture_near_a_stored_view_is_refined_to_centimetres(house):
    sim, frames = house
    store = _store(frames)
    assert 3 <= len(store) <= 25
    T_true = _turned(frames[10][3], 12.0, right_m=0.25, forward_m=0.1)  # a new pose between the views
    rgb, _ = sim.sim.render_view(T_true)
    coarse = _turned(T_true, -40.0, right_m=1.2)  # a coarse answer 1.2 m and 40 deg off
    for guess in (coarse, None):  # near the coarse answer, or by descriptor votes alone
        r = store.refine(rgb, guess)
        assert r.ok and r.inliers >= 25, r.reason
        pos_err, yaw_err = _errors(r.T_world_query, T_true)
        assert pos_err < 0.05 and yaw_err < 2.0
        assert abs(r.T_world_query[2, 3] - T_true[2, 3]) < 0.05  # the height is measured too


def test_several_guesses_each_bring_their_nearest_views(house):
    sim, frames = house
    store = _store(frames, vote_candidates=0, live_view=False)  # candidates only from the guesses
    T_true = _turned(frames[10][3], 12.0, right_m=0.25)
    rgb, _ = sim.sim.render_view(T_true)
    far = _turned(T_true, 0.0, right_m=30.0)  # a guess with no stored view within near_m
    assert not store.refine(rgb, far).ok and store.refine(rgb, far).tried == 0
    r = store.refine(rgb, [far, _turned(T_true, -30.0, right_m=0.8)])
    assert r.ok and _errors(r.T_world_query, T_true)[0] < 0.05


def test_the_latest_frame_verifies_a_picture_no_stored_view_shows(house):
    sim, frames = house
    store = _store(frames[:3], vote_candidates=0, near_candidates=0)  # stored views cannot verify it
    T_true = _turned(frames[20][3], 10.0, right_m=0.2, forward_m=-0.3)
    rgb, _ = sim.sim.render_view(T_true)
    assert not store.refine(rgb, None).ok  # the stored views look elsewhere
    live = frames[20]
    stamp = live[4]
    assert store.add(*live[:4], stamp) is True  # novel: stored; the latest frame is that view
    assert store.refine(rgb, None).view_id != LIVE_VIEW_ID
    store = _store(
        frames[:3], vote_candidates=0, near_candidates=0, new_view_move_m=50.0, new_view_turn_deg=179.0
    )
    assert store.add(*live[:4], stamp) is False and len(store) == 1  # not novel: not stored ...
    r = store.refine(rgb, None)  # ... but the robot sees the place now: measured against that frame
    assert r.ok and r.view_id == LIVE_VIEW_ID and "the current view" in r.reason and r.view_stamp_ns == stamp
    pos_err, yaw_err = _errors(r.T_world_query, T_true)
    assert pos_err < 0.05 and yaw_err < 2.0
    off = ViewStore(dataclasses.replace(store.config, live_view=False))
    off.restore(store.snapshot())
    assert not off.refine(rgb, None).ok  # the same store without the latest frame
    assert not store.refine(rgb, None, taken_before_ns=stamp).ok  # the kidnap check asks only older views
    snapshot = store.snapshot()
    store.reset()
    assert not store.refine(rgb, None).ok
    store.restore(snapshot)  # a snapshot keeps the latest frame (Mem-Nav restores between trials) ...
    assert store.refine(rgb, None).view_id == LIVE_VIEW_ID
    loaded = ViewStore(store.config)
    loaded.restore(ViewStore.unpack(store.pack(), "test"))  # ... a saved store does not: not "now" there
    assert not loaded.refine(rgb, None).ok


def test_a_picture_without_matches_is_not_verified(house):
    _, frames = house
    store = _store(frames)
    noise = np.random.default_rng(0).integers(0, 256, frames[0][0].shape, dtype=np.uint8)
    r = store.refine(noise, frames[3][3])
    assert not r.ok and r.T_world_query is None and "not verified" in r.reason


def test_a_picture_of_another_size_is_not_refined(house):
    _, frames = house
    r = _store(frames[:3]).refine(frames[0][0][:100, :120].copy(), None)
    assert not r.ok and "stored views 160x120" in r.reason
    assert not ViewStore().refine(frames[0][0]).ok  # empty store


def test_a_look_alike_place_that_verifies_too_makes_the_answer_ambiguous(house):
    """Two rooms that look the same (one frame stored at two poses 3 m apart): with `rival_ratio` the
    answer says it could be either (the rival's distance) and a loop closure on it is refused; with it off,
    the answer is as confident as ever; where only one place verifies, nothing changes."""
    _, frames = house
    rgb, depth, K, T, stamp = frames[5]
    config = {"enough_inliers": 0, "live_view": False}
    there = _turned(T, 0.0, right_m=3.0)
    twins = [(rgb, depth, K, T, stamp), (rgb, depth, K, there, stamp + 1)]
    guesses = [T, there]  # identical pictures share every descriptor: votes cannot pick; the guesses do
    ambiguous = _store(twins, rival_ratio=0.6, **config).refine(rgb, guesses)
    assert ambiguous.ok and ambiguous.rival_m == pytest.approx(3.0, abs=0.1) and "inliers" in ambiguous.rival
    assert _store(twins, **config).refine(rgb, guesses).rival_m == 0.0  # off by default
    looping = _store(twins, rival_ratio=0.6, loop_every=5, **config)
    closure = looping.close_loop(looping.refine(rgb, guesses), T, stamp + 30 * 10**9)
    assert not closure.accepted and "ambiguous" in closure.reason and looping.loop_closures == 0
    single = _store(frames, rival_ratio=0.6, **config).refine(frames[12][0], None)
    assert single.ok and single.rival_m == 0.0


def test_the_robots_own_search_yields_to_an_older_view_that_puts_the_picture_elsewhere(house):
    """A look-alike where the searching robot stands (the picture's twin 3 m from where an old view saw it):
    with `yield_ratio` the old view's answer wins and the reason says what yielded; off, or asked outside a
    search, the current view's answer stands. Views stored since the search began count as the search."""
    _, frames = house
    rgb, depth, K, T, stamp = frames[5]
    there = _turned(T, 0.0, right_m=3.0)
    wide = {"new_view_move_m": 50.0, "new_view_turn_deg": 179.0, "enough_inliers": 0}  # stores nothing more
    for ratio, expected in ((0.6, T), (0.0, there)):
        store = _store([frames[5]], yield_ratio=ratio, **wide)
        assert store.add(rgb, depth, K, there, stamp + 10**9) is False  # the twin: the current view only
        r = store.refine(rgb, None, searching_since_ns=stamp + 10**9)
        assert r.ok and _errors(r.T_world_query, expected)[0] < 0.05, r.reason
        assert ("seen while searching, verified it 3.0 m away" in r.reason) == (ratio > 0), r.reason
        assert (r.view_id == LIVE_VIEW_ID) == (ratio == 0)
        asked = store.refine(rgb, None)  # not searching: the most inliers, the current view first
        assert asked.view_id == LIVE_VIEW_ID and _errors(asked.T_world_query, there)[0] < 0.05
    later = (*frames[20][:4], stamp + 30 * 10**9)  # another wall, the latest frame 10 s after the twin
    twins = [frames[5], (rgb, depth, K, there, stamp + 20 * 10**9), later]  # the twin stored 20 s later
    guesses = [there, T]  # identical pictures share every descriptor: the guesses order the candidates
    store = _store(twins, enough_inliers=0, live_view=False, yield_ratio=0.6)
    for since, expected in ((stamp + 15 * 10**9, T), (stamp + 25 * 10**9, there), (None, there)):
        r = store.refine(rgb, guesses, searching_since_ns=since)  # searching before the twin was stored?
        assert r.ok and _errors(r.T_world_query, expected)[0] < 0.05, r.reason
    off = _store(twins, enough_inliers=0, live_view=False).refine(rgb, guesses, searching_since_ns=stamp)
    assert _errors(off.T_world_query, there)[0] < 0.05  # the rule off: the since stamp changes nothing


def test_standing_still_stores_one_view(house):
    _, frames = house
    store = ViewStore()
    rgb, depth, K, T, stamp = frames[0]
    stored = [store.add(rgb, depth, K, T, stamp + i) for i in range(100)]
    assert stored == [True] + [False] * 99 and len(store) == 1
    assert not store.is_novel(_turned(T, 10.0)) and store.is_novel(_turned(T, 25.0))


def test_the_store_is_bounded_and_forgets_the_most_redundant_view(house):
    _, frames = house
    rgb, depth, K, T, stamp = frames[5]
    store = ViewStore(RefineConfig(capacity=3))
    poses = [
        _turned(T, 0.0),
        _turned(T, 0.0, right_m=2.0),
        _turned(T, 0.0, right_m=2.4),
        _turned(T, 0.0, right_m=5.0),
    ]
    for i, pose in enumerate(poses):
        assert store.add(rgb, depth, K, pose, stamp + i)
    assert len(store) == 3
    kept = sorted(round(float(v.T_world_cam[:3, 3] @ T[:3, 0] - T[:3, 3] @ T[:3, 0]), 1) for v in store.views)
    assert kept == [0.0, 2.4, 5.0]  # of the two views 0.4 m apart, the older went
    assert store.nbytes > 0


def test_bad_frames_raise_and_store_nothing(house):
    _, frames = house
    rgb, depth, K, T, stamp = frames[0]
    store = ViewStore()
    bad = [
        (rgb, depth[:10], K, T),
        (rgb, depth.astype(np.uint16), K, T),
        (rgb, depth, np.eye(3) * 0, T),
        (rgb[..., 0], depth, K, T),
        (rgb, depth, K, T * 2),
        (rgb[:8, :8], depth[:8, :8], K, T),
    ]
    for args in bad:
        with pytest.raises(InvalidInputError):
            store.add(*args, stamp)
    assert len(store) == 0


def test_a_dark_frame_without_features_is_not_stored(house):
    _, frames = house
    rgb, depth, K, T, stamp = frames[0]
    assert not ViewStore().add(np.zeros_like(rgb), depth, K, T, stamp)
    far = np.full_like(depth, 50.0)  # every reading beyond max_depth_m: no 3-D points
    assert not ViewStore().add(rgb, far, K, T, stamp)


def test_an_implausible_pose_is_refused():
    store = ViewStore()
    T_view = np.eye(4)
    assert store._plausible(T_view, _turned(T_view, 120.0, right_m=1.0))  # any turn about the vertical
    tilted = T_view.copy()
    tilted[:3, :3] = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]) @ T_view[:3, :3]  # rolled 90 deg
    assert not store._plausible(T_view, tilted)
    raised = T_view.copy()
    raised[2, 3] = 0.5
    assert not store._plausible(T_view, raised)
    assert store._plausible(T_view, invert(invert(T_view)))


def test_the_reported_uncertainty_grows_with_the_age_of_the_view():
    cfg = RefineConfig()
    assert verified_sigmas(cfg, 0.0) == (cfg.sigma_m, math.radians(cfg.sigma_yaw_deg))
    ages = [0.0, 10.0, 60.0, 300.0]
    positions, headings = zip(*(verified_sigmas(cfg, a) for a in ages), strict=True)
    assert list(positions) == sorted(positions) and list(headings) == sorted(headings)
    assert positions[-1] == pytest.approx(math.hypot(cfg.sigma_m, 300 * cfg.drift_m_per_s))
    assert verified_sigmas(cfg, -5.0) == verified_sigmas(cfg, 0.0)  # a view from the future: no drift


def test_a_loop_closure_shortens_the_drift_the_sigma_counts_but_not_all_of_it():
    cfg = RefineConfig(loop_residual_drift=0.3)
    now, view = int(100e9), 0
    assert drift_age_s(cfg, now, view) == pytest.approx(100.0)  # no closure: the view's age
    assert drift_age_s(cfg, now, view, int(80e9)) == pytest.approx(20.0 + 0.3 * 80.0)  # closed 20 s ago
    assert drift_age_s(RefineConfig(loop_residual_drift=1.0), now, view, int(80e9)) == pytest.approx(100.0)
    with pytest.raises(ConfigError):
        RefineConfig(loop_residual_drift=1.5)


def test_the_loop_closure_gates_reach_the_pose_graph():
    cfg = RefineConfig(
        loop_every=5, loop_max_chi2=3.0, loop_max_correction_m=0.7, loop_max_correction_deg=9.0
    )
    graph = ViewStore(cfg)._graph
    assert (graph.max_chi2, graph.max_correction_m, graph.max_correction_deg) == (3.0, 0.7, 9.0)
    assert ViewStore(RefineConfig())._graph is None  # off by default


def test_config_is_checked():
    for bad in (
        {"capacity": 0},
        {"min_inliers": 3},
        {"near_candidates": -1},
        {"ratio": 1.5},
        {"sigma_m": 0.0},
        {"drift_m_per_s": -0.1},
        {"min_depth_m": 5.0, "max_depth_m": 1.0},
        {"seen_probability": 2.0},
        {"enough_inliers": 5},  # below min_inliers: a search that ends before anything can verify
        {"enough_inliers": True},
        {"max_views": -1},
        {"loop_max_chi2": -1.0},
        {"rival_ratio": 1.5},
        {"rival_m": 0.0},
        {"yield_ratio": -0.1},
        {"yield_ratio": True},
        {"loop_max_chi2": math.inf},
    ):
        with pytest.raises(ConfigError):
            RefineConfig(**bad)


def test_only_views_taken_before_a_time_are_asked_when_told(house):
    """The kidnap check asks only old views: a picture of a place seen only lately is not verified against
    those, and with no view old enough nothing is tried; the frame just stored does not take the votes of
    a check of that same frame."""
    sim, frames = house
    store = _store(frames)
    T_true = _turned(frames[20][3], 5.0, forward_m=0.1)  # near a late view of the turn
    rgb, _ = sim.sim.render_view(T_true)
    assert store.refine(rgb).ok  # any view may answer
    nothing = store.refine(rgb, taken_before_ns=frames[0][4])
    assert not nothing.ok and nothing.tried == 0 and "old enough" in nothing.reason
    early = store.refine(rgb, taken_before_ns=frames[8][4])  # the turn's first third: other walls
    assert not early.ok or early.view_stamp_ns < frames[8][4]
    rgb_last, depth_last, K, T_last, stamp = frames[-1]
    store = _store(frames[:-1])
    assert store.add(rgb_last, depth_last, K, _turned(T_last, 0.0, right_m=1.0), stamp)  # stored: novel
    again = store.refine(rgb_last, taken_before_ns=stamp)  # the same picture, asked of the older views
    assert again.ok and again.view_stamp_ns < stamp, again.reason


def test_enough_inliers_ends_the_search_at_a_clear_verification(house):
    """With every stored view a candidate, a view verified with enough_inliers ends the search: fewer views
    are matched, and the answer is as precise."""
    sim, frames = house
    T_true = _turned(frames[10][3], 12.0, right_m=0.25, forward_m=0.1)
    rgb, _ = sim.sim.render_view(T_true)
    common = {"vote_candidates": 25, "near_candidates": 25, "live_view": False}
    every = _store(frames, enough_inliers=0, **common).refine(rgb, T_true)
    early = _store(frames, enough_inliers=12, **common).refine(rgb, T_true)
    assert every.ok and early.ok and early.inliers >= 12
    assert early.tried < every.tried
    assert _errors(early.T_world_query, T_true)[0] < 0.05


def test_max_views_caps_the_views_matched(house):
    sim, frames = house
    T_true = _turned(frames[10][3], 12.0, right_m=0.25)
    rgb, _ = sim.sim.render_view(T_true)
    store = _store(frames, max_views=1, enough_inliers=0, vote_candidates=25, live_view=False)
    r = store.refine(rgb, T_true)
    assert r.tried == 1 and r.ok  # the most-voted candidate shows the place


def test_the_current_view_is_tried_first(house):
    """A picture of what the camera sees now is verified against the latest frame before any stored view:
    with enough_inliers, nothing else is matched."""
    sim, frames = house
    store = _store(frames, enough_inliers=12)
    assert not store.add(*frames[-1])  # the same frame again: not novel, so the latest frame is not stored
    rgb, _ = sim.sim.render_view(frames[-1][3])
    r = store.refine(rgb, frames[-1][3])
    assert r.ok and r.tried == 1 and r.view_id == LIVE_VIEW_ID


def test_a_reader_refines_as_the_store_and_hands_back_only_what_still_holds(house):
    """`reader()` answers as the store itself while the store takes new frames; `adopt` keeps the
    reader's features of the latest frame only while that frame is still the latest."""
    sim, frames = house
    store = _store(frames[:-2], enough_inliers=12)
    assert not store.add(*frames[-3])  # the latest frame, not stored (not novel)
    rgb, _ = sim.sim.render_view(frames[-3][3])
    reader = store.reader()
    assert store.refine(rgb, frames[-3][3]).T_world_query is not None  # computes the store's own live view
    store._live_view = None  # as if the store had not computed it
    r = reader.refine(rgb, frames[-3][3])
    assert r.ok and r.view_id == LIVE_VIEW_ID
    before = len(store)
    store.add(*frames[-1])  # a new frame meanwhile: the reader's views and latest frame are not the store's
    assert len(reader) == before and reader._live is not store._live
    store.adopt(reader)
    assert store._live_view is not reader._live_view  # the reader's latest frame is not the store's any more
    fresh = store.reader()
    fresh.refine(rgb, frames[-3][3])
    store.adopt(fresh)
    assert store._live_view is fresh._live_view is not None  # the same frame: kept


def _drifted(T: np.ndarray, k: int) -> np.ndarray:
    """Camera pose `T` as an odometry `k` frames into its drift puts it: 3 cm and 0.5 deg more each frame."""
    p = planar(T)
    return lift(p, p + np.array([0.03 * k, 0.0, math.radians(0.5 * k)])) @ T


def test_a_loop_closure_moves_drifted_views_to_where_they_are_relative_to_now(house):
    """Views stored with a drifting odometry: a refined answer against an old view carries the drift
    between it and now, until the camera sees an old view again; `close_loop` then moves the views so the
    answer is right relative to the camera now, and counts the view's drift from the closure."""
    sim, frames = house
    config = RefineConfig(loop_every=1, loop_min_age_s=1.0, live_view=False, loop_odom_m_per_sqrt_m=0.3)
    store = ViewStore(config)
    for k, (rgb, depth, K, T, stamp) in enumerate(frames):
        store.add(rgb, depth, K, _drifted(T, k), stamp)
    T_true_now = frames[2][3]  # back where frame 2 was taken; the odometry says 0.75 m and 12.5 deg away
    T_odom_now = _drifted(T_true_now, len(frames))
    rgb_now, depth_now = sim.sim.render_view(T_true_now)
    stamp = frames[-1][4] + int(5e9)
    store.add(rgb_now, depth_now, frames[2][2], T_odom_now, stamp)
    T_pic = _turned(frames[6][3], 5.0, forward_m=0.1)  # a picture of a place seen early on
    pic, _ = sim.sim.render_view(T_pic)

    def answer_error() -> tuple[float, float, int]:
        r = store.refine(pic, None)
        assert r.ok, r.reason
        pos, yaw = _errors(invert(T_odom_now) @ r.T_world_query, invert(T_true_now) @ T_pic)
        return pos, yaw, r.drift_from_ns

    before = answer_error()
    assert before[0] > 0.3 and before[2] < frames[-1][4]  # the drift since the view, counted from its stamp
    found = store.refine(rgb_now, None, taken_before_ns=stamp - int(1e9))
    assert found.ok and found.inliers >= config.loop_min_inliers, found.reason
    result = store.close_loop(found, T_odom_now, stamp)
    assert result.accepted and store.loop_closures == 1, result.reason
    pos, yaw, drift_from = answer_error()
    assert pos < 0.1 and yaw < 2.0, (before, pos, yaw)
    assert frames[-1][4] < drift_from <= stamp  # the drift now counts from (close to) the closure
    assert store.close_loop(found, T_odom_now, stamp + 1).accepted is False  # the camera has not moved
    reset_copy = ViewStore(config)
    reset_copy.restore(store.snapshot())
    assert reset_copy.loop_closures == 1  # a snapshot keeps the graph
