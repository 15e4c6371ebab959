"""`spatial-memory demo --task go-to-picture`: tour a house, be shown a picture, go there - no ROS.

The Mem-Nav episode (`eval.mem_nav.MemNavEpisode`: the live simulation at the live camera's size, the memory
fed as memory_node feeds it, the 1 Hz scripted policy, the A* goal follower) with a spatial context beside it
(keyframes nominated by novelty, the egocentric map), drawn frame by frame into an animation:

    head camera | map: keyframes, the memory's answer (disc), the true place (diamond), the planned path
                | the goal picture

Outputs in the output folder: `go_to_picture.gif`, `final.png` (the last frame), `goal.png` (the picture),
`summary.md` and `summary.json` (the result, distances, timings).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import imageio.v2 as imageio
import numpy as np

from spatial_memory.context import ContextConfig, NoveltyNominator, SpatialContext, bev
from spatial_memory.errors import ConfigError
from spatial_memory.eval.live_mem_rpe import odom_camera_pose
from spatial_memory.eval.mem_nav import GoalResult, MemNavConfig, MemNavEpisode, planar_pose
from spatial_memory.geometry import invert
from spatial_memory.memory.poses import planar_target
from spatial_memory.policy.memer import MemERKeyframes
from spatial_memory.sim.queries import QuerySample

log = logging.getLogger(__name__)

PANEL_PX = 320  # height of every panel of the animation
CONTEXT_EVERY = 5  # memory frames (5 Hz) per spatial-context frame: the policy's 1 Hz


@dataclass(frozen=True)
class GoToPictureDemoConfig:
    """The demo's episode (world, tour length, method) and the spatial context that draws the map."""

    nav: MemNavConfig = field(
        default_factory=lambda: MemNavConfig(
            seed=1000, explore_steps=250, budget_s=60.0, min_goal_distance_m=3.5
        )
    )
    method: str = "refined"
    context: ContextConfig = field(default_factory=ContextConfig)
    fps: float = 4.0  # the animation plays at 2.4x: every third frame of 5 per simulated second...
    gif_scale: float = 0.4  # ...at this size (the full-size last frame is final.png)

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and 0 < self.fps <= 60):
            raise ConfigError(f"fps must be in (0, 60], got {self.fps!r}")
        if not (isinstance(self.gif_scale, (int, float)) and 0.1 <= self.gif_scale <= 1.0):
            raise ConfigError(f"gif_scale must be in [0.1, 1], got {self.gif_scale!r}")


@dataclass
class GoToPictureDemoResult:
    out_dir: Path
    result: GoalResult
    tour_steps: int
    keyframes: int
    frames: int
    wall_time_s: float
    files: dict[str, str]


def _panel(image: np.ndarray, title: str) -> np.ndarray:
    """An RGB panel PANEL_PX high with a title bar."""
    h, w = image.shape[:2]
    out = cv2.resize(image, (round(w * PANEL_PX / h), PANEL_PX), interpolation=cv2.INTER_NEAREST)
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (255, 255, 255), -1)
    cv2.putText(out, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    return out


class GoToPictureDemo:
    """Runs one go-to-picture episode and draws it (see the module docstring)."""

    def __init__(self, config: GoToPictureDemoConfig | None = None) -> None:
        self.config = cfg = config or GoToPictureDemoConfig()
        self.episode = MemNavEpisode(dataclasses.replace(cfg.nav, seen_goals=1, unseen_goals=0), cfg.method)
        self.context = SpatialContext(cfg.context)
        self.nominator = NoveltyNominator(cfg.context.selection)
        self.keyframes = MemERKeyframes(cfg.context.selection)
        self.frames: list[np.ndarray] = []
        self._taken = 0
        self._ticks: dict[int, int] = {}  # policy tick -> context frame id
        self.episode.on_tour_frame = self._on_tour_frame
        self.episode.on_goal_frame = self._on_goal_frame

    # -- the spatial context at the policy's rate ---------------------------------------------------
    def _context_frame(self, tick: Any, frame: Any) -> None:
        self._taken += 1
        if self._taken % CONTEXT_EVERY:
            return
        T_odom_cam = odom_camera_pose(tick, frame)  # noqa: N806 - the project's pose naming
        fid = self.context.add_frame(
            T_world_cam=T_odom_cam,
            T_world_base=tick.odometry.T_odom_base,
            stamp_ns=tick.stamp_ns,
            image=frame.rgb,
        )
        policy_tick = len(self._ticks)
        self._ticks[policy_tick] = fid
        if self.nominator.observe(fid, frame.rgb, [k.frame_id for k in self.context.keyframes]):
            self.keyframes.selector.nominate([policy_tick])
            self.context.set_keyframes([self._ticks[t] for t in self.keyframes.keyframes()])

    def _on_tour_frame(self, tick: Any, frame: Any) -> None:
        self._context_frame(tick, frame)

    def _on_goal_frame(self, tick: Any, frame: Any, goal: QuerySample) -> None:
        self._context_frame(tick, frame)
        self.frames.append(self._draw(tick, frame, goal))

    # -- drawing ------------------------------------------------------------------------------------
    def _draw(self, tick: Any, frame: Any, goal: QuerySample) -> np.ndarray:
        map_rgb, _ = self.context.generate_map()
        lay = self.context.map_layout()
        T_base_world = invert(tick.T_world_base)  # noqa: N806
        truth = planar_target(T_base_world @ goal.T_world_query)
        path = self.episode.follower._path
        if path is not None:  # the planned path, from the world into the base frame now
            pts = np.c_[path.path, np.zeros(len(path.path)), np.ones(len(path.path))] @ T_base_world.T
            px, _ = bev.map_pixel(lay, pts[:, 0], pts[:, 1])
            cv2.polylines(map_rgb, [np.round(px).astype(np.int32)], False, (60, 60, 60), 2, cv2.LINE_AA)
        reading = self.episode.reading
        if reading is not None:
            odom_now = planar_pose(tick.odometry.T_odom_base)
            answer = reading.relative_to(odom_now)
            map_rgb = bev.draw_answers(map_rgb, lay, truth[None], np.array([answer]), ["goal"])
        decision = self.episode.decision
        status = (
            decision.subtask or decision.reason if decision is not None else "tour done: asking the memory"
        )
        head = _panel(frame.rgb, f"head camera   t = {tick.stamp_ns * 1e-9:.0f} s")
        mid = _panel(map_rgb, f"map: {status}"[:48])
        pic = _panel(goal.query.rgb, "go to where this was taken")
        return np.concatenate([head, mid, pic], axis=1)

    # -- the run ------------------------------------------------------------------------------------
    def run(self, out_dir: Path) -> GoToPictureDemoResult:
        started = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)
        goals = self.episode.tour()
        tour_steps = self.episode.run.engine.steps
        if not goals:
            raise ConfigError("the tour was too short to draw a picture of a seen place: raise explore_steps")
        goal = goals[0]
        log.info("tour done (%d memory steps); going to the picture", tour_steps)
        result = self.episode.go_to(0, goal)
        files = self._write(out_dir, goal, result)
        return GoToPictureDemoResult(
            out_dir=out_dir,
            result=result,
            tour_steps=tour_steps,
            keyframes=len(self.context.keyframes),
            frames=len(self.frames),
            wall_time_s=time.perf_counter() - started,
            files=files,
        )

    def _write(self, out_dir: Path, goal: QuerySample, result: GoalResult) -> dict[str, str]:
        files = {
            "animation": out_dir / "go_to_picture.gif",
            "final": out_dir / "final.png",
            "goal": out_dir / "goal.png",
            "summary": out_dir / "summary.md",
        }
        if self.frames:
            scale = self.config.gif_scale
            small = [
                cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                for f in self.frames[::3]
            ]
            imageio.mimsave(files["animation"], small, duration=1.0 / self.config.fps, loop=0)
            imageio.imwrite(files["final"], self.frames[-1])
        imageio.imwrite(files["goal"], goal.query.rgb)
        summary = {**result.to_dict(), "method": self.config.method, "frames": len(self.frames)}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
        nav = self.config.nav
        verdict = "success" if result.success else "failure"
        lines = [
            "# Go to a picture",
            "",
            f"World {nav.preset} seed {nav.seed}; tour of {nav.explore_steps} memory steps; memory backend "
            f"`{self.config.method}`.",
            "",
            f"- result: **{result.status}** ({result.reason})",
            f"- head camera to the picture's camera at the end: {result.final_distance_m:.2f} m "
            f"(success needs <= {nav.success_m:g} m): {verdict}",
            f"- shortest path {result.shortest_m:.1f} m, travelled {result.travelled_m:.1f} m, "
            f"SPL {result.spl:.2f}"
            if not math.isnan(result.spl)
            else "- SPL: -",
            f"- {result.time_s:.0f} s of simulated time; policy decision {result.decide_ms:.1f} ms, "
            f"memory answer {result.ask_ms:.0f} ms (medians)",
        ]
        files["summary"].write_text("\n".join(lines) + "\n")
        return {k: str(v) for k, v in files.items()}

    def close(self) -> None:
        self.episode.close()
