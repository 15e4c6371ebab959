"""Mem-Nav on the live simulation core: every picture starts where the tour ended (the robot carried back,
odometry and memory restored), the oracle reaches seen pictures and says "not seen" for the others, scores
and the table; memory snapshots restore answers exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spatial_memory.errors import ConfigError
from spatial_memory.eval.mem_nav import MemNavConfig, MemNavEpisode, summarise, table
from spatial_memory.memory.engine import EngineConfig
from spatial_memory.memory.refine import RefineConfig
from spatial_memory.memory.service import MemoryService
from spatial_memory.sim import mobile_robot as mr
from spatial_memory.sim.live import LiveSimConfig, LiveWorldConfig

ENGINE = EngineConfig(checkpoint="models/kinaema_indoor64.pt", resize="crop", camera_height_m=1.45, threads=1)
SMALL = LiveSimConfig(
    world=LiveWorldConfig(texture_px=16),
    robot=mr.MobileRobotConfig(
        head_camera=mr.CameraConfig(width=96, height=72, fovy_deg=60.0, rate_hz=15.0),
        wrist_camera=mr.CameraConfig(width=16, height=16, fovy_deg=58.0, rate_hz=1.0),
    ),
)


def config(**kw) -> MemNavConfig:
    values = dict(
        seed=1000, explore_steps=60, seen_goals=2, unseen_goals=1, budget_s=25.0, engine=ENGINE, sim=SMALL,
        min_goal_distance_m=1.0,
    )  # fmt: skip
    return MemNavConfig(**{**values, **kw})


@pytest.fixture(scope="module")
def oracle_run():
    torch.set_num_threads(1)
    episode = MemNavEpisode(config(), ("oracle", "none"))  # one tour serves both methods
    try:
        goals = episode.tour()
        starts, results = [], []
        for i, goal in enumerate(goals):
            if i > 0:
                episode.back_to_start()
            starts.append(
                (episode.sim.sim.pose2d, episode.sim.odometry.T_odom_base.copy(), episode.sim.stamp_ns)
            )
            results.append(episode.go_to(i, goal))  # restores the start again for i > 0: same spot
        episode.back_to_start()
        starts.append((episode.sim.sim.pose2d, episode.sim.odometry.T_odom_base.copy(), episode.sim.stamp_ns))
        other = episode.go_to(0, goals[0], "none")  # another method, the same trial
        assert other.method == "none" and other.shortest_m == pytest.approx(results[0].shortest_m)
        return goals, starts, results
    finally:
        episode.close()


def test_every_picture_starts_where_the_tour_ended(oracle_run):
    goals, starts, _ = oracle_run
    assert len(goals) == 3 and sum(g.query.seen for g in goals) == 2
    (p0, odom0, t0), *rest = starts
    for p, odom, t in rest:  # the same place, odometry and clock: views are as old for every trial
        assert np.allclose(p, p0, atol=1e-6) and np.allclose(odom, odom0, atol=1e-9) and t == t0


def test_the_oracle_reaches_seen_pictures_and_says_not_seen_for_the_others(oracle_run):
    goals, _, results = oracle_run
    for goal, r in zip(goals, results, strict=True):
        if goal.query.seen:
            assert r.status == "arrived" and r.success and r.final_distance_m <= 1.0, r
            assert 0 < r.spl <= 1.0
        else:
            assert r.status == "not_seen" and r.success and math.isnan(r.spl)
    summary = summarise(results)
    assert summary["oracle"]["sr_pct"] == 100.0 and summary["oracle"]["not_seen_pct"] == 100.0
    assert "| oracle | 2 | 100.0 |" in table(summary)


def test_unknown_methods_and_bad_configs_are_refused():
    with pytest.raises(ConfigError):
        MemNavEpisode(config(), "telepathy")
    with pytest.raises(ConfigError):
        config(seen_goals=0, unseen_goals=0)
    with pytest.raises(ConfigError):
        config(budget_s=math.inf)


def test_a_memory_snapshot_restores_every_backend_exactly():
    torch.set_num_threads(1)
    service = MemoryService.from_config(ENGINE, serve_keyframes=True, refine=RefineConfig())
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    pose = np.eye(4)
    for k, f in enumerate(frames[:3]):
        pose[0, 3] = 0.2 * k
        service.update(f, T_world_base=pose.copy(), stamp_ns=(k + 1) * 200_000_000)
    snap = service.snapshot()
    before = {b: service.query(frames[0], b) for b in ("kinaema", "keyframes")}
    for k, f in enumerate(frames[3:], start=3):  # the memory moves on...
        pose[0, 3] = 0.2 * k
        service.update(f, T_world_base=pose.copy(), stamp_ns=(k + 1) * 200_000_000)
    moved = service.query(frames[0], "kinaema")
    service.restore(snap)  # ...and comes back
    assert service.steps == 3
    for backend, answer in before.items():
        again = service.query(frames[0], backend)
        assert (again.x, again.y, again.yaw, again.sigma_m) == (
            answer.x,
            answer.y,
            answer.yaw,
            answer.sigma_m,
        )
    assert (moved.x, moved.y) != (before["kinaema"].x, before["kinaema"].y)
    service.restore(snap)  # a snapshot serves more than one restore
    assert service.steps == 3
