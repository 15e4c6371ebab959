"""MemoryService: one running memory serving the model, keyframe retrieval and refined answers, fed as
memory_node feeds it (frames with base poses, RGB-D views with camera poses), on the shipped model and a
simulated house (validation world 1000)."""

from __future__ import annotations

import dataclasses
import math
import threading
import time

import numpy as np
import pytest
import torch

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert
from spatial_memory.memory.engine import DROPPED_LATE, RESET_AND_USED, EngineConfig, MemoryEngine
from spatial_memory.memory.poses import planar_target, wrap_angle
from spatial_memory.memory.refine import RefineConfig, ViewStore, verified_sigmas
from spatial_memory.memory.service import KEYFRAMES, REFINED, MemoryService
from spatial_memory.sim.live import LiveSim, LiveSimConfig, LiveWorldConfig

CHECKPOINT = "models/kinaema_indoor64.pt"


@pytest.fixture(scope="module")
def drive():
    """A short drive in a house: per frame (rgb, depth, K, T_world_base, T_world_cam, stamp), and the sim."""
    sim = LiveSim(LiveSimConfig(world=LiveWorldConfig(preset="house", seed=1000)))
    frames = []
    while len(frames) < 30:
        sim.command_velocity(0.15, 0.4)
        tick = sim.tick()
        f = tick.camera("camera")
        if f is not None and (not frames or tick.stamp_ns - frames[-1][-1] >= 2e8):
            frames.append((f.rgb, f.depth, f.K, tick.T_world_base, f.T_world_cam, tick.stamp_ns))
    yield sim, frames
    sim.close()


@pytest.fixture(scope="module")
def service() -> MemoryService:
    torch.set_num_threads(1)
    engine = EngineConfig(checkpoint=CHECKPOINT, camera_height_m=1.45)
    return MemoryService.from_config(engine, serve_keyframes=True, refine=RefineConfig())


def _feed(service: MemoryService, frames, views: bool = True) -> None:
    for rgb, depth, K, T_base, T_cam, stamp in frames:
        service.update(rgb, T_world_base=T_base, stamp_ns=stamp)
        if views:
            service.add_view(rgb, depth, K, T_cam, stamp)


def test_one_memory_serves_three_backends(service):
    assert service.backends == ("kinaema", KEYFRAMES, REFINED) and service.backend == "kinaema"
    only = MemoryService.from_config(EngineConfig(checkpoint=CHECKPOINT), refine=RefineConfig(enabled=False))
    assert only.backends == ("kinaema",) and only.views is None and only.keyframes is None
    with pytest.raises(ConfigError):
        MemoryService(only.engine, keyframes=only.engine)  # a 'keyframes' engine that is not one


def test_refined_answers_are_measured_and_relative_to_the_base_now(service, drive):
    sim, frames = drive
    service.reset()
    _feed(service, frames)
    assert service.steps == len(frames) and service.keyframes.steps == len(frames)
    assert service.status()["views"] >= 3
    T_now = frames[-1][3]  # the base at the newest frame: answers are relative to it
    T_true = frames[8][4].copy()
    T_true[:3, 3] += 0.2 * T_true[:3, 0]  # 20 cm right of an earlier view
    rgb, _ = sim.sim.render_view(T_true)
    truth = planar_target(invert(T_now) @ T_true)
    answers = {b: service.query(rgb, b) for b in service.backends}
    refined = answers[REFINED]
    assert refined.backend == REFINED and refined.inliers >= 25 and "refined" in refined.note
    assert math.hypot(refined.x - truth[0], refined.y - truth[1]) < 0.05
    assert abs(math.degrees(wrap_angle(refined.yaw - truth[2]))) < 2.0
    fresh, _ = verified_sigmas(RefineConfig(), 0.0)
    oldest, _ = verified_sigmas(RefineConfig(), (frames[-1][-1] - frames[0][-1]) * 1e-9)
    assert fresh <= refined.sigma_m <= oldest and refined.seen_probability >= 0.99  # grows with view age
    assert "s old" in refined.note
    assert answers["kinaema"].inliers == -1 and answers[KEYFRAMES].backend == KEYFRAMES
    default = service.query(rgb, "")  # "" = the configured model
    assert np.array_equal(default.T_base_query, answers["kinaema"].T_base_query)


def test_an_ambiguous_verification_widens_the_answers_sigma_and_says_so(service, drive, monkeypatch):
    """A look-alike place that verified too (`Refinement.rival_m`, from `refine.rival_ratio`): the answer
    keeps the best match's pose, its sigma covers the rival's place and the note names it."""
    sim, frames = drive
    service.reset()
    _feed(service, frames)
    rgb, _ = sim.sim.render_view(frames[8][4])
    plain = service.query(rgb, REFINED)
    found = ViewStore.refine

    def with_rival(self, *args, **kwargs):
        return dataclasses.replace(found(self, *args, **kwargs), rival_m=3.0, rival="view 99 (40 inliers)")

    monkeypatch.setattr(ViewStore, "refine", with_rival)
    ambiguous = service.query(rgb, REFINED)
    assert plain.backend == ambiguous.backend == REFINED and plain.sigma_m < 0.5
    assert ambiguous.sigma_m == pytest.approx(math.hypot(plain.sigma_m, 3.0), rel=0.05)
    assert ambiguous.confidence < plain.confidence and "ambiguous: view 99 (40 inliers)" in ambiguous.note
    np.testing.assert_allclose(ambiguous.T_base_query, plain.T_base_query, atol=0.01)  # the same match


def test_a_refined_query_hands_the_askers_search_start_to_the_view_store(service, drive, monkeypatch):
    """`searching_since_ns` reaches `ViewStore.refine` (the look-alike rule, `refine.yield_ratio`, reads
    it) for refined answers; without it the store hears None."""
    sim, frames = drive
    service.reset()
    _feed(service, frames)
    rgb, _ = sim.sim.render_view(frames[8][4])
    heard = []
    found = ViewStore.refine

    def listening(self, *args, **kwargs):
        heard.append(kwargs.get("searching_since_ns"))
        return found(self, *args, **kwargs)

    monkeypatch.setattr(ViewStore, "refine", listening)
    since = frames[3][5]
    assert service.query(rgb, REFINED, searching_since_ns=since).backend == REFINED
    assert service.query(rgb, REFINED).backend == REFINED
    assert heard == [since, None]


def test_refinement_falls_back_to_the_model_and_says_why(service, drive):
    _, frames = drive
    service.reset()
    _feed(service, frames[:5], views=False)
    answer = service.query(frames[2][0], REFINED)
    assert answer.backend == "kinaema" and "no stored RGB-D views" in answer.note
    assert service.status()["refine_fallbacks"] >= 1


def test_unknown_backends_and_bad_frames_change_nothing(service, drive):
    _, frames = drive
    service.reset()
    assert not service.add_view(*frames[0][:3], frames[0][4], frames[0][5])  # no frame taken yet
    _feed(service, frames[:4])
    with pytest.raises(InvalidInputError, match="serves the backends"):
        service.query(frames[0][0], "gru")
    before = (service.steps, service.keyframes.steps, len(service.views))
    with pytest.raises(InvalidInputError):
        service.update(frames[5][0], T_world_base=np.full((4, 4), np.nan), stamp_ns=frames[5][5])
    with pytest.raises(InvalidInputError):
        service.add_view(frames[5][0], frames[5][1][:5], frames[5][2], frames[5][4], frames[5][5])
    assert (service.steps, service.keyframes.steps, len(service.views)) == before


def test_time_jumps_reset_every_backend_and_late_frames_touch_none(service, drive):
    _, frames = drive
    service.reset()
    _feed(service, frames[:10])
    assert len(service.views) >= 1
    rgb, _, _, T_base, _, stamp = frames[10]
    late = service.update(rgb, T_world_base=T_base, stamp_ns=frames[9][5] - 10**8)
    assert late == DROPPED_LATE and service.keyframes.steps == 10
    jump = service.update(rgb, T_world_base=T_base, stamp_ns=frames[0][5])  # 1.8 s back: a restart
    assert jump == RESET_AND_USED
    assert service.steps == 1 and service.keyframes.steps == 1 and len(service.views) == 0


def test_an_injected_engine_serves_alone(drive):
    engine = MemoryEngine(EngineConfig(checkpoint=CHECKPOINT))
    service = MemoryService(engine)
    _, frames = drive
    _feed(service, frames[:2])  # add_view without a store: nothing kept, no error
    assert service.backends == ("kinaema",) and service.query(frames[0][0]).backend == "kinaema"


def test_one_encoding_per_frame_feeds_both_engines_and_changes_no_answer(drive):
    """The keyframes engine reads the same encoder: the service encodes each frame once for both, and its
    retrieval answers are those of a keyframes engine that encodes for itself."""
    _, frames = drive
    shared = MemoryService.from_config(
        EngineConfig(checkpoint=CHECKPOINT), serve_keyframes=True, refine=RefineConfig()
    )
    alone = MemoryEngine(EngineConfig(checkpoint=CHECKPOINT, backend=KEYFRAMES))
    assert shared._share_tokens
    calls = []
    shared.keyframes.encoder.register_forward_hook(lambda *_: calls.append(1))
    for rgb, depth, K, T_base, T_cam, stamp in frames[:12]:
        shared.update(rgb, T_world_base=T_base, stamp_ns=stamp)
        shared.add_view(rgb, depth, K, T_cam, stamp)
        alone.update(rgb, T_world_base=T_base, stamp_ns=stamp)
    shared.query(frames[5][0], REFINED)  # the model's answer and retrieval's, as guesses: one encoding
    assert calls == []  # the keyframes engine never ran its encoder on a frame or a refined query
    for rgb in (frames[3][0], frames[10][0]):
        a, b = shared.query(rgb, KEYFRAMES), alone.query(rgb)
        assert np.allclose(a.T_base_query, b.T_base_query, atol=1e-5) and a.confidence == pytest.approx(
            b.confidence, abs=1e-6
        )
    other = MemoryEngine(EngineConfig(checkpoint=CHECKPOINT, backend=KEYFRAMES, resize="stretch"))
    assert not MemoryService(shared.engine, keyframes=other)._share_tokens  # another resize: its own


def _replay(service: MemoryService, frames, shift_m: float, start_ns: int) -> list[int]:
    """The same views again, later, with the odometry's poses moved `shift_m` along x (0: where they were
    taken). Returns the service's kidnap resets after each frame."""
    shift = np.eye(4)
    shift[0, 3] = shift_m
    resets = []
    for k, (rgb, depth, K, T_base, T_cam, _) in enumerate(frames):
        stamp = start_ns + k * 200_000_000
        service.update(rgb, T_world_base=shift @ T_base, stamp_ns=stamp)
        service.add_view(rgb, depth, K, shift @ T_cam, stamp)
        resets.append(service.status()["kidnap_resets"])
    return resets


@pytest.mark.parametrize("shift_m, reset", [(3.0, True), (0.0, False)], ids=["carried-3-m", "came-back"])
def test_the_kidnap_check_resets_a_memory_whose_odometry_no_longer_matches_what_it_sees(
    drive, shift_m, reset
):
    """Views seen again much later: where the odometry says they were taken (a revisit), the memory stays;
    3 m from it (the robot was carried off and the odometry never knew), two verified matches in a row
    reset every backend, so old places are no longer answered 3 m off."""
    _, frames = drive
    cfg = RefineConfig(kidnap_every=1, kidnap_min_age_s=1.0, kidnap_votes=2)
    service = MemoryService.from_config(EngineConfig(checkpoint=CHECKPOINT), serve_keyframes=True, refine=cfg)
    _feed(service, frames[:20])
    assert len(service.views) >= 3
    resets = _replay(service, frames[:8], shift_m, frames[19][5] + 10**9)
    if reset:
        assert resets[-1] == 1, resets
        assert service.steps < 8 and len(service.views) < 8  # started again after the reset
    else:
        assert resets == [0] * 8
        assert service.steps == 28


@pytest.mark.parametrize("loop_every", [1, 0], ids=["loop-closure", "none"])
def test_loop_closure_takes_the_odometry_drift_out_of_refined_answers(drive, loop_every):
    """The robot comes back to where it started, its odometry 0.5 m off by then: with loop closure the
    frames seeing the start again correct the stored views, and a picture of a place seen only on the first
    pass (so no view stored on the way back matches it) is answered right relative to the robot now. (The
    drive is short: the odometry's sigmas are set for one that drifts 0.5 m in it.)"""
    sim, frames = drive
    cfg = RefineConfig(loop_every=loop_every, loop_min_age_s=1.0, live_view=False, loop_odom_m_per_sqrt_m=0.5)
    service = MemoryService.from_config(EngineConfig(checkpoint=CHECKPOINT), refine=cfg)
    _feed(service, frames[:20])
    _replay(service, frames[:8], 0.5, frames[19][5] + 10**9)  # back at the start, the odometry 0.5 m off
    assert service.status()["loop_closures"] >= (1 if loop_every else 0)
    T_pic = frames[19][4]  # seen on the first pass only
    rgb, _ = sim.sim.render_view(T_pic)
    answer = service.query(rgb, REFINED)
    assert answer.backend == REFINED, answer.note
    truth = invert(frames[7][3]) @ T_pic  # the robot now is where frame 7 was taken
    error = float(np.linalg.norm(answer.T_base_query[:2, 3] - truth[:2, 3]))
    assert error < 0.15 if loop_every else error > 0.35, (error, answer.note)


def test_kidnap_check_settings_are_checked():
    for bad in (
        {"kidnap_every": -1},
        {"kidnap_votes": 0},
        {"kidnap_votes": 4, "kidnap_window": 3},
        {"kidnap_min_age_s": 0.0},
        {"kidnap_distance_m": -1},
        {"kidnap_min_inliers": 0},
    ):
        with pytest.raises(ConfigError):
            RefineConfig(**bad)


def test_a_query_waiting_for_a_frame_says_how_long_it_waited(drive):
    """An answer asked while a frame is folded in waits for it (one call at a time); the status says how
    long the recent answers waited."""
    _, frames = drive
    engine = EngineConfig(checkpoint=CHECKPOINT)
    service = MemoryService.from_config(engine, refine=RefineConfig(enabled=False))
    _feed(service, frames[:3], views=False)
    assert service.status()["query_lock_wait_ms"]["n"] == 0
    service.query(frames[0][0])
    quick = service.status()["query_lock_wait_ms"]
    assert quick["n"] == 1 and quick["wall_max"] < 50.0
    held, asked = threading.Event(), threading.Event()

    def hold() -> None:
        with service._lock:  # a frame being folded in, made long
            held.set()
            asked.wait(5.0)
            time.sleep(0.2)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5.0)
    asked.set()
    service.query(frames[1][0])
    holder.join()
    waited = service.status()["query_lock_wait_ms"]
    assert waited["n"] == 2 and waited["wall_max"] >= 150.0


def test_frames_are_folded_in_while_a_refined_answer_is_matched(drive, monkeypatch):
    """The matching and PnP of a refined answer run outside the service's lock: frames keep coming in
    meanwhile, and the answer stays relative to the base at the frame it started from (its stamp)."""
    sim, frames = drive
    service = MemoryService.from_config(
        EngineConfig(checkpoint=CHECKPOINT, camera_height_m=1.45), refine=RefineConfig()
    )
    _feed(service, frames[:-3])
    T_then, stamp_then = frames[-4][3], frames[-4][-1]
    T_true = frames[5][4]
    rgb, _ = sim.sim.render_view(T_true)
    matching, done = threading.Event(), threading.Event()
    real_refine = type(service.views).refine

    def slow_refine(store, *args, **kwargs):  # the reader's refine, made long
        matching.set()
        done.wait(10.0)
        return real_refine(store, *args, **kwargs)

    monkeypatch.setattr(type(service.views), "refine", slow_refine)
    answers = []
    asker = threading.Thread(target=lambda: answers.append(service.query(rgb, REFINED)))
    asker.start()
    assert matching.wait(10.0)
    _feed(service, frames[-3:])  # would wait for the answer if it held the lock
    assert service.steps == len(frames)
    done.set()
    asker.join(10.0)
    (answer,) = answers
    assert answer.backend == REFINED and answer.stamp_ns == stamp_then
    truth = planar_target(invert(T_then) @ T_true)  # relative to the base when it was asked
    assert math.hypot(answer.x - truth[0], answer.y - truth[1]) < 0.05
    assert service.status()["refined"] == 1 and service.status()["refine_fallbacks"] == 0


def test_answers_do_not_wait_for_a_frame_being_encoded(drive, monkeypatch):
    """A frame is checked and encoded before the service is locked: an answer asked meanwhile comes back
    without waiting for it."""
    _, frames = drive
    service = MemoryService.from_config(
        EngineConfig(checkpoint=CHECKPOINT), refine=RefineConfig(enabled=False)
    )
    _feed(service, frames[:3], views=False)
    encoding, go_on = threading.Event(), threading.Event()
    real_prepare = service.engine.prepare

    def slow_prepare(image):
        encoding.set()
        go_on.wait(10.0)
        return real_prepare(image)

    monkeypatch.setattr(service.engine, "prepare", slow_prepare)
    rgb, _, _, T_base, _, stamp = frames[3]
    feeder = threading.Thread(target=lambda: service.update(rgb, T_world_base=T_base, stamp_ns=stamp))
    feeder.start()
    assert encoding.wait(10.0)
    t0 = time.perf_counter()
    answer = service.query(frames[0][0])  # while the frame is being encoded
    assert time.perf_counter() - t0 < 2.0 and answer.steps == 3
    go_on.set()
    feeder.join(10.0)
    assert service.steps == 4
