"""The stationary pipeline and the `spatial-memory demo` command, end to end on a short episode."""

from __future__ import annotations

import dataclasses
import json

import pytest

from spatial_memory.cli import main
from spatial_memory.pipeline import StationaryDemoConfig, StationaryPipeline
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
    assert main(["demo", "--resolution", "big", "--out", str(tmp_path)]) == 1
