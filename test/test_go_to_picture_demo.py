"""The go-to-picture demo end to end on a small live camera: a tour, one picture, the animation, the files
and a summary that agrees with the result."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest
import torch

from spatial_memory.errors import ConfigError
from spatial_memory.eval.mem_nav import MemNavConfig
from spatial_memory.go_to_picture_demo import GoToPictureDemo, GoToPictureDemoConfig
from spatial_memory.memory.engine import EngineConfig
from spatial_memory.sim import mobile_robot as mr
from spatial_memory.sim.live import LiveSimConfig, LiveWorldConfig

SMALL = LiveSimConfig(
    world=LiveWorldConfig(texture_px=16),
    robot=mr.MobileRobotConfig(
        head_camera=mr.CameraConfig(width=96, height=72, fovy_deg=60.0, rate_hz=15.0),
        wrist_camera=mr.CameraConfig(width=16, height=16, fovy_deg=58.0, rate_hz=1.0),
    ),
)
ENGINE = EngineConfig(checkpoint="models/kinaema_indoor64.pt", resize="crop", camera_height_m=1.45, threads=1)


def test_the_demo_goes_to_a_picture_and_writes_what_it_saw(tmp_path):
    torch.set_num_threads(1)
    nav = MemNavConfig(
        seed=1000, explore_steps=80, budget_s=20.0, min_goal_distance_m=1.0, engine=ENGINE, sim=SMALL
    )
    demo = GoToPictureDemo(GoToPictureDemoConfig(nav=nav, method="kinaema"))
    try:
        out = demo.run(tmp_path / "demo")
    finally:
        demo.close()
    assert out.tour_steps == 80 and out.frames > 0
    files = {k: tmp_path / "demo" / v.split("/")[-1] for k, v in out.files.items()}
    assert all(p.is_file() for p in files.values()), out.files
    gif = imageio.mimread(files["animation"])
    assert len(gif) == len(range(0, out.frames, 3))  # every third frame
    final = imageio.imread(files["final"])
    assert final.shape[0] == 320 and final.shape[1] > 3 * 300  # three panels side by side
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["status"] == out.result.status and summary["success"] == out.result.success
    assert out.result.status in ("arrived", "not_seen", "gave_up")


def test_bad_demo_settings_are_refused():
    with pytest.raises(ConfigError):
        GoToPictureDemoConfig(fps=0)
    with pytest.raises(ConfigError):
        GoToPictureDemoConfig(gif_scale=5.0)
