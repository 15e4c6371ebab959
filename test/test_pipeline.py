"""The stationary and mobile pipelines and the `spatial-memory demo` command, end to end on short episodes."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from spatial_memory.cli import main
from spatial_memory.errors import ConfigError
from spatial_memory.memory.engine_config import EngineConfig
from spatial_memory.pipeline import MobileDemoConfig, MobilePipeline, StationaryDemoConfig, StationaryPipeline
from spatial_memory.sim.tabletop import TabletopConfig


@pytest.mark.slow
def test_short_stationary_run_writes_maps_keyframes_and_summary(tmp_path):
    config = dataclasses.replace(
        StationaryDemoConfig(), duration_s=12.0, scene=TabletopConfig(width=128, height=96)
    )
    pipeline = StationaryPipeline(config)
    try:
        result = pipeline.run(tmp_path, progress=False)
    finally:
        pipeline.close()
    assert result.frames == 180
    assert result.policy_ticks == 12
    assert len(list((tmp_path / "maps").glob("map_*.png"))) == 12
    assert 1 <= len(result.keyframe_ids) <= config.context.selection.max_keyframes
    # every keyframe is a frame that was seen at a policy tick (those carry images)
    assert all(k % 15 == 0 for k in result.keyframe_ids)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 180 and summary["keyframe_ids"] == result.keyframe_ids
    for key in ("map", "keyframes", "animation"):
        assert (tmp_path / result.files[key].split("/")[-1]).stat().st_size > 1000


def test_cli_reports_bad_arguments_in_one_line(capsys, tmp_path):
    assert main(["demo", "--resolution", "big", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_short_mobile_run_asks_the_memory_about_places_it_saw(tmp_path):
    memory = EngineConfig(checkpoint="models/kinaema_indoor64.pt", threads=1)
    pipeline = MobilePipeline(MobileDemoConfig(steps=40, queries=3, memory=memory))
    try:
        result = pipeline.run(tmp_path, progress=False)
        assert pipeline.engine.steps == 40  # every step went into the memory
    finally:
        pipeline.close()
    assert 1 <= len(result.asked) <= 3
    assert [a.label for a in result.asked] == ["A", "B", "C"][: len(result.asked)]
    steps = [a.step for a in result.asked]
    assert steps == sorted(steps) and all(0 < s < 40 for s in steps)
    for a in result.asked:
        assert a.position_error_m == pytest.approx(math.dist(a.answer[:2], a.truth[:2]))
        assert 0.0 <= a.heading_error_deg <= 180.0 and a.sigma_m > 0 and 0 <= a.seen_probability <= 1
        assert math.hypot(*a.truth[:2]) < 12.0  # inside a 10 x 8 m house
    summary = json.loads((tmp_path / "mobile_summary.json").read_text())
    assert [e["label"] for e in summary["asked"]] == [a.label for a in result.asked]
    assert summary["config"]["memory"]["checkpoint"].endswith("kinaema_indoor64.pt")
    assert (tmp_path / "memory_answers.png").stat().st_size > 1000
    assert (tmp_path / "mobile_demo.gif").stat().st_size > 1000
    assert "| A |" in (tmp_path / "mobile_summary.md").read_text()


def test_mobile_demo_config_refuses_nonsense():
    for kwargs in ({"steps": 0}, {"queries": -1}, {"steps": 5, "policy_every": 5}, {"camera_px": 1.5}):
        with pytest.raises(ConfigError):
            MobileDemoConfig(**kwargs)


def test_mobile_demo_refuses_a_camera_the_memory_cannot_read():
    memory = EngineConfig(checkpoint="models/kinaema_indoor64.pt", resize="none", threads=1)  # reads 64x64
    with pytest.raises(ConfigError, match="64px"):
        MobilePipeline(MobileDemoConfig(camera_px=96, memory=memory))


@pytest.mark.slow
def test_cli_mobile_demo_prints_the_answers(capsys, tmp_path):
    assert main(["demo", "--world", "house", "--steps", "12", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mobile demo finished" in out and "answers" in out
    summary = json.loads((tmp_path / "mobile_summary.json").read_text())
    assert summary["steps"] == 12 and summary["config"]["seed"] == 1000
    assert np.isfinite([e["position_error_m"] for e in summary["asked"]]).all()
