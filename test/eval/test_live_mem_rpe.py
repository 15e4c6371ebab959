"""Live Mem-RPE: the scores (AUROC, detection at a false-alarm rate, calibration, kidnap) and short live runs
of the scenarios on the live simulation core with the shipped memory."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spatial_memory.errors import ConfigError
from spatial_memory.eval.live_mem_rpe import (
    SCENARIOS,
    LiveAnswers,
    LiveMemoryRun,
    LiveRunConfig,
    auroc,
    detection_at_false_alarm,
    kidnap_spot,
    live_table,
    plot_reliability,
    reliability,
    score,
)
from spatial_memory.memory.engine import EngineConfig, MemoryEngine
from spatial_memory.sim import mobile_robot as mr
from spatial_memory.sim.live import LiveSim, LiveSimConfig, LiveWorldConfig
from spatial_memory.sim.world_tour import WorldTour

CHECKPOINT = "models/kinaema_indoor64.pt"
SMALL = LiveSimConfig(
    world=LiveWorldConfig(texture_px=16),
    robot=mr.MobileRobotConfig(
        head_camera=mr.CameraConfig(width=64, height=48, fovy_deg=60.0, rate_hz=15.0),
        wrist_camera=mr.CameraConfig(width=16, height=16, fovy_deg=58.0, rate_hz=1.0),
    ),
)


# ---------------------------------------------------------------------------------------------- scores
def test_auroc_known_values():
    assert auroc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, True, False, False])) == 1.0
    assert auroc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([True, True, False, False])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5  # a tie counts half
    assert math.isnan(auroc(np.array([0.5]), np.array([True])))


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=2, max_size=40))
def test_auroc_is_symmetric_under_negating_the_scores(pairs):
    scores, labels = (np.array(v) for v in zip(*pairs, strict=True))
    labels = labels.astype(bool)
    a, b = auroc(scores, labels), auroc(-scores, labels)
    if math.isnan(a):
        assert labels.all() or not labels.any()
    else:
        assert a + b == pytest.approx(1.0)


def test_detection_at_false_alarm_uses_the_seen_queries_to_set_the_threshold():
    seen = np.array([True] * 10 + [False] * 4)
    prob = np.array([0.9] * 9 + [0.2] + [0.1, 0.1, 0.5, 0.95])
    # at most 10 % of seen flagged: the threshold is the 10th percentile of the seen (0.2): flag p < 0.2
    assert detection_at_false_alarm(prob, seen) == 50.0


def _answers(n: int, err: float, sigma: float, kidnap_from: int | None = None) -> LiveAnswers:
    a = LiveAnswers()
    for i in range(n):
        truth = np.array([float(i), 0.0, 0.0])
        a.target.append(truth)
        a.pred.append(truth + [err, 0.0, 0.0])
        a.seen.append(i % 4 != 3)
        a.seen_prob.append(0.9 if i % 4 != 3 else 0.1)
        a.sigma.append(sigma)
        a.pred_swapped.append(truth + [err + 1.5, 0.0, 0.0])
        a.true_shift.append(2.0)
        a.swapped_seen.append(i % 2 == 0)
        a.after_kidnap.append(kidnap_from is not None and i >= kidnap_from)
    return a


def test_score_pose_calibration_detection_and_picture_control():
    s = score(_answers(20, err=0.3, sigma=0.5))
    assert s.mem_rpe.seen_count == 15 and s.mem_rpe.unseen_count == 5
    assert s.mem_rpe.within_1m_10deg_pct == 100.0 and s.mem_rpe.median_position_m == pytest.approx(0.3)
    assert s.sigma_coverage_pct == 100.0  # 0.3 m off, sigma 0.5 m
    assert score(_answers(20, err=0.3, sigma=0.2)).sigma_coverage_pct == 0.0
    assert s.seen_auroc == 1.0 and s.unseen_detected_at_10pct_fa == 100.0
    assert s.answer_shift_m == pytest.approx(1.5)
    assert s.true_shift_m == pytest.approx(2.0)  # the two pictures' places: what a right answer moves
    assert s.seen_pair_shift_m == pytest.approx(1.5)  # over the pairs whose other picture was of a seen place
    no_pairs = _answers(20, err=0.3, sigma=0.5)
    no_pairs.swapped_seen[:] = [False] * 20  # every other picture of a never-seen place: no truth to move by
    assert math.isnan(score(no_pairs).true_shift_m) and math.isnan(score(no_pairs).seen_pair_shift_m)
    unknown = _answers(20, err=0.3, sigma=0.5)
    unknown.true_shift.clear()  # a harness that does not know where its pictures were taken
    assert math.isnan(score(unknown).true_shift_m)
    assert math.isnan(s.kidnap_confident_wrong_pct)  # no kidnap in this run


def test_score_puts_answers_after_a_kidnap_apart():
    s = score(_answers(20, err=3.0, sigma=0.5, kidnap_from=8))
    assert s.mem_rpe.seen_count == 6  # queries 0..7 only: after the kidnap the pose is not scored
    assert s.kidnap_confident_wrong_pct == 100.0  # sure (sigma 0.5, seen 0.9) and 3 m off
    assert "kidnap" in live_table({"x": s})


def test_run_config_is_checked():
    with pytest.raises(ConfigError, match="unknown scenario"):
        LiveRunConfig(scenario="moonwalk")
    with pytest.raises(ConfigError):
        LiveRunConfig(steps=0)
    with pytest.raises(ConfigError):
        LiveRunConfig(update_rate_hz=30.0)  # faster than the camera


# ---------------------------------------------------------------------------------------------- live runs
@pytest.fixture(scope="module")
def engine() -> MemoryEngine:
    torch.set_num_threads(1)
    return MemoryEngine(EngineConfig(checkpoint=CHECKPOINT, resize="crop", camera_height_m=1.45))


def _run(engine: MemoryEngine, scenario: str, steps: int = 30) -> tuple[LiveMemoryRun, LiveAnswers]:
    cfg = LiveRunConfig(scenario=scenario, seed=1000, steps=steps, engine=engine.config, sim=SMALL)
    run = LiveMemoryRun(cfg, engine=engine)
    try:
        return run, run.run()
    finally:
        run.close()


def test_a_live_tour_feeds_the_memory_at_its_rate_and_asks_with_truth(engine):
    run, answers = _run(engine, "tour")
    assert engine.steps == 30  # the memory took 30 frames of the 15 Hz camera at 5 Hz
    assert run.sim.stamp_ns == pytest.approx(30 / 5.0 * 1e9, rel=0.05)
    n = len(answers.seen)
    # a query every 5 memory steps; a seen one needs a view 4 s (20 steps) old, so early draws may find none
    assert 2 <= n <= 6 and any(answers.seen)
    assert len(answers.blank_confidence) == 2 * n  # a black and a grey picture at every query...
    assert all(answers.blank_refused) and not any(answers.blank_confidence)  # ...refused: nothing to see
    assert all(np.isfinite(p).all() for p in answers.pred)
    assert not any(answers.after_kidnap)
    # the picture control knows how far apart the two pictures' places are (none before the first query)
    assert len(answers.true_shift) == n and math.isnan(answers.true_shift[0])
    assert len(answers.swapped_seen) == n and not answers.swapped_seen[0]
    assert all(np.isfinite(answers.true_shift[1:])) and min(answers.true_shift[1:]) >= 0.0


@pytest.mark.parametrize("scenario", ["tour", "kidnap", "teleop"])
def test_tour_scenarios_start_where_the_recorded_tours_start(engine, scenario):
    """The tour-driven scenarios put the robot at the tour's own start pose before the first frame, as the
    recorded episodes start (the offline rows are the same tour); teleop starts where the sim starts it."""
    cfg = LiveRunConfig(scenario=scenario, seed=1000, steps=5, engine=engine.config, sim=SMALL)
    run = LiveMemoryRun(cfg, engine=engine)
    try:
        room_centre = run.sim.world.rooms[0].center
        expected = WorldTour(run.sim.world, seed=1000).start_pose() if scenario != "teleop" else None
        x, y, yaw = run.sim.sim.pose2d
        if expected is None:
            np.testing.assert_allclose((x, y), room_centre, atol=1e-9)
        else:
            np.testing.assert_allclose((x, y, yaw), expected, atol=1e-9)
            assert math.hypot(x - room_centre[0], y - room_centre[1]) > 0.1  # a real move on this seed
        first = next(run.taken_frames())[0]
        np.testing.assert_allclose(first.odometry.T_odom_base[:2, 3], 0.0, atol=0.05)  # odom starts there
    finally:
        run.close()


def test_the_standstill_scenario_stands_still_on_top_of_its_steps(engine):
    run, _ = _run(engine, "standstill", steps=20)
    assert engine.steps == 20 + 300  # 60 s of standing still at 5 Hz come on top
    assert SCENARIOS["standstill"].extra_s == 60.0


def test_the_kidnap_scenario_carries_the_robot_half_way(engine):
    run, answers = _run(engine, "kidnap", steps=30)
    assert run.kidnapped_at_step is not None and 13 <= run.kidnapped_at_step <= 17
    assert any(answers.after_kidnap) or not answers.seen  # queries after it are marked


def test_the_kidnap_spot_is_free_far_and_the_same_for_a_seed():
    """Both harnesses draw the kidnap's target here (the ROS scorer with its own world copy): 3 m or more
    from the robot, free for the base, the same draw for the same seed and start."""
    with LiveSim(SMALL) as sim:
        grid = WorldTour(sim.world, seed=1000).grid
        x0, y0, _ = sim.sim.pose2d
        spot = kidnap_spot(sim, grid, np.random.default_rng(1099), (x0, y0))
        assert spot is not None
        x, y, yaw = spot
        assert math.hypot(x - x0, y - y0) >= 3.0 and sim.sim.pose_is_free(x, y, 0.0)
        assert -math.pi <= yaw <= math.pi
        assert kidnap_spot(sim, grid, np.random.default_rng(1099), (x0, y0)) == spot
        sim.teleport(x, y, yaw)  # a spot the sim takes
        np.testing.assert_allclose(sim.sim.pose2d, spot, atol=1e-9)


def test_revisit_asks_only_about_places_left_long_ago():
    assert SCENARIOS["revisit"].min_age_steps(200, 5.0) == 100  # half of T
    assert SCENARIOS["revisit"].min_age_steps(800, 5.0) == 400
    assert SCENARIOS["tour"].min_age_steps(800, 5.0) == 20  # 4 s, as the offline recorder


def test_reliability_bins_by_confidence(tmp_path):
    a = LiveAnswers()
    rng = np.random.default_rng(0)
    for i in range(40):  # sure answers are right, unsure ones wrong
        sigma = 0.2 if i < 20 else 3.0
        a.target.append(np.zeros(3))
        a.pred.append(np.array([0.3 if i < 20 else 2.5, 0.0, 0.0]))
        a.sigma.append(sigma + 0.01 * rng.random())
        a.seen.append(True)
        a.after_kidnap.append(False)
    bins = reliability(a, bins=4)
    assert [b["n"] for b in bins] == [10, 10, 10, 10]
    assert [b["within_1m_pct"] for b in bins] == [0.0, 0.0, 100.0, 100.0]  # accuracy rises with confidence
    assert bins[0]["confidence"] < bins[-1]["confidence"]
    plot_reliability({"run": bins}, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_a_refused_query_picture_is_scored_as_a_miss():
    a = _answers(8, err=0.1, sigma=0.5)
    a.pred[0], a.sigma[0], a.refused = np.full(3, np.nan), math.inf, [True] + [False] * 7
    s = score(a)
    assert s.refused_pct == 12.5
    assert s.mem_rpe.within_1m_10deg_pct == pytest.approx(100 * 5 / 6)  # 6 seen, the refused one missed


def test_cli_prints_and_writes_the_live_table(tmp_path, capsys):
    from spatial_memory.cli import main

    out = tmp_path / "live.json"
    args = [
        "eval",
        "mem-rpe-live",
        "--seeds",
        "1000",
        "--length",
        "25",
        "--scenarios",
        "tour",
        "--no-offline",
    ]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| live tour kinaema |" in printed
    report = json.loads(out.read_text())
    assert report["length"] == 25 and list(report["rows"]) == ["live tour kinaema"]
    assert out.with_suffix(".md").is_file()
    assert main(["eval", "mem-rpe-live", "--seeds", "1000", "--length", "5", "--scenarios", "moonwalk",
                 "--no-offline", "--out", str(out)]) == 2  # fmt: skip


def test_the_revisit_scenario_gets_an_offline_row_asking_as_old_views(tmp_path):
    """Offline rows: the dataset tour's queries, and for revisit the same tours asked only about views as
    old as the live scenario's (T/2): the like-for-like offline reference of that live row."""
    from spatial_memory.eval.live_mem_rpe import compare_offline_live

    report = compare_offline_live(
        engine=EngineConfig(checkpoint=CHECKPOINT, resize="crop", camera_height_m=1.45, threads=1),
        update_rate_hz=5.0, seeds=[1000], length=60, scenarios=["revisit"], preset="room",
        cache=tmp_path / "episodes", out=tmp_path / "live.json", progress=False,
    )  # fmt: skip
    assert list(report["rows"]) == ["offline kinaema", "offline revisit kinaema", "live revisit kinaema"]
    from spatial_memory.memory.data import EpisodeArrays

    ep = EpisodeArrays.load(tmp_path / "episodes" / "room_64x64_T60_age30" / "val" / "seed_01000" / "compact")
    seen_steps = ep.query_step[np.asarray(ep.query_seen, bool)]
    assert seen_steps.size and (seen_steps >= 30).all()  # T/2 = 30 steps: only views that old are asked
    assert report["rows"]["offline revisit kinaema"]["mem_rpe"]["seen_count"] == seen_steps.size
    assert "offline revisit" in (tmp_path / "live.md").read_text()


def test_query_world_xy_puts_each_query_in_the_world_with_its_base_pose():
    from types import SimpleNamespace

    from spatial_memory.eval.live_mem_rpe import query_world_xy
    from spatial_memory.geometry import make_pose

    yaw = math.pi / 2
    bases = np.stack([make_pose(np.eye(3), [1.0, 2.0, 0.0]), make_pose(np.eye(3), [0.0, 0.0, 0.0])])
    bases[0, :2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    ep = SimpleNamespace(
        T_world_base=bases,
        query_step=np.array([0, 1]),
        query_target=np.array([[1.0, 0.0, 0.0], [3.0, 4.0, 0.0]]),
    )
    xy = query_world_xy(ep, np.array([0, 1]))
    np.testing.assert_allclose(xy, [[1.0, 3.0], [3.0, 4.0]], atol=1e-12)  # 1 m ahead of a base facing +y
