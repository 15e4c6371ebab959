"""The lost check: votes of the memory's answers about the current frame; the engine's reset on a kidnap."""

from __future__ import annotations

import copy
import math

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_memory.errors import ConfigError
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.engine import RESET_AND_USED, USED, EngineConfig, MemoryEngine
from spatial_memory.memory.interface import QueryOutput
from spatial_memory.memory.lost import LostMonitor, ViewJumpCheck
from spatial_memory.memory.registry import build_model, save_checkpoint

SMALL_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)
SMALL_KINAEMA = {"slots": 8, "dim": 32, "heads": 2, "correction_hidden": 32, "query_hidden": 32}
STEP = np.array([0.35, 0.0, 0.0])  # one vote per step (>= 0.3 m)


def monitor() -> LostMonitor:
    return LostMonitor(distance_m=2.0, min_seen=0.8, window=5, votes=4)


def test_answers_far_from_the_robot_frame_after_frame_mean_lost():
    m = monitor()
    verdicts = [m.observe(STEP, (3.5, 1.0), 0.95, 0.3).inconsistent for _ in range(3)]
    assert verdicts == [True, True, True] and not m.lost
    m.observe(STEP, (3.5, 1.0), 0.95, 0.3)
    assert m.lost
    m.reset()
    assert not m.lost


def test_answers_where_the_robot_is_are_consistent():
    m = monitor()
    for _ in range(20):
        vote = m.observe(STEP, (0.5, -0.2), 0.95, 0.3)  # the robot is at (0.35, 0) of the last frame
        assert not vote.inconsistent
    assert not m.lost


def test_one_inconsistent_answer_among_consistent_ones_is_not_lost():
    """A look-alike place now and then (one wrong match in a window) must not reset the memory."""
    m = monitor()
    for k in range(30):
        far = k % 3 == 0
        m.observe(STEP, (4.0, 0.0) if far else (0.3, 0.0), 0.95, 0.3)
        assert not m.lost


def test_no_vote_when_unsure_unseen_or_standing_still():
    m = monitor()
    assert m.observe(STEP, (5.0, 0.0), 0.5, 0.3) is None  # not sure it saw the place
    assert m.observe(STEP, (5.0, 0.0), 0.95, 3.0).inconsistent is False  # 5 m off, but sigma 3 m admits it
    for _ in range(50):  # standing in front of a look-alike: one vote, not fifty
        assert m.observe(np.zeros(3), (5.0, 0.0), 0.95, 0.3) is None
    assert not m.lost
    turned = m.observe(np.array([0.0, 0.0, math.radians(25)]), (5.0, 0.0), 0.95, 0.3)
    assert turned is not None and turned.inconsistent  # a turn of 20 deg or more is a new view


@given(
    steps=st.lists(
        st.tuples(
            st.floats(-0.5, 0.5),
            st.floats(-0.2, 0.2),
            st.floats(-0.6, 0.6),
            st.floats(-1.9, 1.9),
            st.floats(-1.9, 1.9),
            st.floats(0.0, 1.0),
            st.floats(0.01, 5.0),
        ),
        max_size=60,
    )
)
@settings(max_examples=60, deadline=None)
def test_answers_within_the_distance_never_mean_lost(steps):
    """Whatever the motion, seen probability and sigma: an answer less than distance_m (2 m) from where the
    robot is is never evidence of a kidnap."""
    m = monitor()
    for dx, dy, dyaw, ex, ey, seen, sigma in steps:
        scale = min(1.0, 1.99 / max(math.hypot(ex, ey), 1e-9))  # the answer's offset kept under 2 m
        answer = (dx + ex * scale, dy + ey * scale)
        vote = m.observe(np.array([dx, dy, dyaw]), answer, seen, sigma)
        assert vote is None or not vote.inconsistent
    assert not m.lost


@pytest.mark.parametrize(
    "kwargs",
    [
        {"distance_m": 0.0},
        {"distance_m": math.inf},
        {"min_seen": 1.5},
        {"votes": 6},
        {"votes": 0},
        {"window": 2.5},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ConfigError):
        LostMonitor(**{"distance_m": 2.0, "min_seen": 0.8, "window": 5, "votes": 4, **kwargs})
    with pytest.raises(ConfigError):
        EngineConfig(**{f"lost_{k}": v for k, v in kwargs.items()})


# -- the engine: a memory that keeps placing the current view far away restarts ----------------------------


def _small_checkpoint(tmp_path) -> str:
    """A small untrained Kinaema with its encoder, saved as a checkpoint (seeded)."""
    torch.manual_seed(0)
    path = tmp_path / "kinaema.pt"
    encoder = ImageEncoder(SMALL_ENCODER)
    save_checkpoint(path, build_model("kinaema", SMALL_KINAEMA, encoder_config=SMALL_ENCODER), encoder)
    return str(path)


@pytest.fixture
def engine_factory(tmp_path):
    path = _small_checkpoint(tmp_path)

    def make(answer_xy: tuple[float, float], **kw) -> MemoryEngine:
        """An engine whose model answers every query at `answer_xy` (in the last frame's base frame), sure
        it saw the place, sigma 0.3 m: the memory's answers are what this test controls."""
        engine = MemoryEngine(EngineConfig(checkpoint=path, resize="none", **{"lost_check": True, **kw}))

        def query(state, tokens):
            b = tokens.shape[0]
            pose = torch.tensor([[answer_xy[0], answer_xy[1], 0.0, 1.0]]).expand(b, 4)
            return QueryOutput(pose, torch.full((b,), math.log(0.3)), torch.full((b,), 5.0))

        engine.model.query = query
        return engine

    return make


def _drive(engine: MemoryEngine, frames: int) -> list[str]:
    """Frames 0.35 m apart along x, 0.2 s apart."""
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    results = []
    for k in range(frames):
        T = np.eye(4)
        T[0, 3] = 0.35 * k
        results.append(engine.update(image, T_world_base=T, stamp_ns=(k + 1) * 200_000_000))
    return results


def test_the_engine_restarts_a_memory_that_was_carried_away(engine_factory):
    engine = engine_factory((4.0, 0.0))  # every view recognised 4 m from where the robot is
    results = _drive(engine, 8)
    # frame 0 starts the memory; frames 1-4 vote; the 4th inconsistent vote (frame 4) restarts it
    assert results[:4] == [USED] * 4 and results[4] == RESET_AND_USED
    # after the reset the votes start again: frames 5-7 give three, not yet four
    assert engine.counters["lost_resets"] == 1 and engine.steps == 4  # frames 4-7 in the new memory
    assert engine.status()["lost_resets"] == engine.counters["lost_resets"]


def test_the_engine_keeps_a_memory_that_places_the_view_where_the_robot_is(engine_factory):
    engine = engine_factory((0.4, 0.1))
    assert _drive(engine, 12) == [USED] * 12
    assert engine.counters["lost_resets"] == 0 and engine.steps == 12


def test_lost_check_off_never_restarts(engine_factory):
    engine = engine_factory((4.0, 0.0), lost_check=False)
    assert _drive(engine, 12) == [USED] * 12


# -- the view jump check: the scene changed between two frames while the robot stood still -----------------

STILL = np.array([0.02, 0.0, math.radians(2.0)])


def _scene(seed: int, width: int = 400, height: int = 300) -> np.ndarray:
    """A textured RGB scene (smoothed noise: blobs SIFT finds), wider than the camera's view of it."""
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _view(scene: np.ndarray, x: int, y: int = 80) -> np.ndarray:
    """The camera's 160x120 view of `scene` with its corner at (x, y): a small turn shifts x."""
    return np.ascontiguousarray(scene[y : y + 120, x : x + 160])


def jump_check(**kw) -> ViewJumpCheck:
    return ViewJumpCheck(
        **{"min_features": 50, "min_inliers": 8, "max_motion_m": 0.25, "max_turn_deg": 15.0, **kw}
    )


def test_the_same_scene_moved_a_little_is_no_jump():
    check, scene = jump_check(), _scene(1)
    last, now = check.features(_view(scene, 100)), check.features(_view(scene, 108))
    assert len(last) >= 50 and len(now) >= 50
    assert check.inliers(last, now) >= 40
    assert not check.jumped(last, now, STILL)


def test_another_scene_while_the_odometry_stood_still_is_a_jump():
    check = jump_check()
    last, now = check.features(_view(_scene(1), 100)), check.features(_view(_scene(2), 100))
    assert check.inliers(last, now) < 8
    assert check.jumped(last, now, STILL)


@pytest.mark.parametrize("increment", [(0.5, 0.0, 0.0), (0.0, 0.0, math.radians(40.0))])
def test_another_scene_after_a_real_move_or_turn_is_no_jump(increment):
    check = jump_check()
    last, now = check.features(_view(_scene(1), 100)), check.features(_view(_scene(2), 100))
    assert not check.jumped(last, now, np.array(increment))


def test_frames_that_show_nothing_are_no_jump():
    """A covered lens or a blank wall: too few features to tell, so no verdict (nothing is reset)."""
    check = jump_check()
    blank, textured = np.zeros((120, 160, 3), np.uint8), check.features(_view(_scene(1), 100))
    assert len(check.features(blank)) == 0
    assert not check.jumped(textured, check.features(blank), STILL)
    assert not check.jumped(check.features(blank), textured, STILL)


def test_a_wide_camera_is_read_at_the_check_width():
    """A 640x480 picture of the same view gives about the features of the 160x120 one (thresholds hold)."""
    check = jump_check()
    small = _view(_scene(1), 100)
    big = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC)
    assert abs(len(check.features(big)) - len(check.features(small))) <= 0.25 * len(check.features(small))
    assert not check.jumped(check.features(small), check.features(big), STILL)


@settings(max_examples=15, deadline=None)
@given(dx=st.integers(-12, 12), dy=st.integers(-6, 6), seed=st.integers(0, 1000))
def test_no_small_camera_motion_is_a_jump(dx, dy, seed):
    check, scene = jump_check(), _scene(seed)
    assert not check.jumped(
        check.features(_view(scene, 100)), check.features(_view(scene, 100 + dx, 80 + dy)), STILL
    )


def test_the_flow_clears_the_same_scene_without_sift():
    check, scene = jump_check(flow_inliers=30), _scene(1)
    last, now = check.features(_view(scene, 100)), check.features(_view(scene, 106, 82))
    assert check.flow_inliers_between(last, now) >= 30
    assert not check.jumped(last, now, STILL)
    assert not last.sift_computed and not now.sift_computed  # the cheap witness settled it


def test_another_scene_is_left_to_sift_by_the_flow():
    check = jump_check(flow_inliers=30)
    last, now = check.features(_view(_scene(1), 100)), check.features(_view(_scene(2), 100))
    assert check.flow_inliers_between(last, now) < 30
    assert check.jumped(last, now, STILL) and last.sift_computed and now.sift_computed


@settings(max_examples=15, deadline=None)
@given(
    a=st.integers(0, 1000),
    b=st.integers(0, 1000),
    dx=st.integers(-20, 20),
    flow=st.sampled_from([10, 30, 50]),
)
def test_the_flow_never_fires_where_sift_would_not(a, b, dx, flow):
    """The flow only clears pairs: with it on, the check fires on a subset of SIFT's pairs."""
    sift_only, with_flow = jump_check(), jump_check(flow_inliers=flow)
    views = [_view(_scene(a), 100), _view(_scene(b), 100 + dx)]
    fired = [c.jumped(c.features(views[0]), c.features(views[1]), STILL) for c in (sift_only, with_flow)]
    assert fired[1] <= fired[0]


@pytest.mark.parametrize(
    "kwargs",
    [{"flow_inliers": -1}, {"flow_inliers": 2.5}, {"flow_inliers": True}, {"min_features": 3},
     {"min_inliers": 2.5}, {"min_inliers": True}, {"max_motion_m": -0.1},
     {"max_turn_deg": math.inf}],
)  # fmt: skip
def test_bad_view_jump_settings_are_refused(kwargs):
    with pytest.raises(ConfigError):
        jump_check(**kwargs)
    with pytest.raises(ConfigError):
        EngineConfig(**{f"jump_{k}": v for k, v in kwargs.items()})
    with pytest.raises(ConfigError):
        EngineConfig(jump_check="yes")


@pytest.fixture
def jump_engine(tmp_path):
    path = _small_checkpoint(tmp_path)
    return lambda **kw: MemoryEngine(EngineConfig(checkpoint=path, resize="crop", **kw))


def _feed(engine: MemoryEngine, views: list[np.ndarray]) -> list[str]:
    """The views 0.2 s apart, the robot creeping forward 2 cm a frame."""
    results = []
    for k, view in enumerate(views):
        T = np.eye(4)
        T[0, 3] = 0.02 * k
        results.append(engine.update(view, T_world_base=T, stamp_ns=(k + 1) * 200_000_000))
    return results


def test_the_engine_restarts_when_the_view_jumps(jump_engine):
    engine = jump_engine(jump_check=True)
    a, b = _scene(1), _scene(2)
    results = _feed(
        engine, [_view(a, 100 + 4 * k) for k in range(4)] + [_view(b, 100 + 4 * k) for k in range(3)]
    )
    assert results == [USED] * 4 + [RESET_AND_USED] + [USED] * 2
    assert engine.counters["lost_resets"] == 1 and engine.steps == 3  # the new scene's frames


def test_a_dark_frame_between_two_scenes_resets_nothing(jump_engine):
    """A covered lens, then the same scene: too few features to judge either pair, so no reset."""
    engine = jump_engine(jump_check=True)
    a = _scene(1)
    dark = np.full((120, 160, 3), 3, np.uint8)
    results = _feed(engine, [_view(a, 100), _view(a, 104), dark, _view(a, 108), _view(a, 112)])
    assert results == [USED] * 5 and engine.counters["lost_resets"] == 0


def test_the_view_jump_check_off_never_restarts(jump_engine):
    engine = jump_engine()  # jump_check defaults off
    a, b = _scene(1), _scene(2)
    assert _feed(engine, [_view(a, 100), _view(a, 104), _view(b, 100), _view(b, 104)]) == [USED] * 4
    assert engine.counters["lost_resets"] == 0


def test_a_frames_features_copy_deeply_and_keep_their_sift():
    """An engine's snapshot deep-copies the last frame's features (OpenCV's detector cannot be copied)."""
    check = jump_check(flow_inliers=30)
    view = check.features(_view(_scene(1), 100))
    count = len(view)  # computes SIFT
    twin = copy.deepcopy(view)
    assert twin.sift_computed and len(twin) == count and twin.grey is not view.grey
    assert np.array_equal(twin.corners, view.corners) and twin.sift()[1] is not view.sift()[1]
    assert check.inliers(view, twin) >= 40
