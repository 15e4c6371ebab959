"""The in-process runner: the same components as the ROS graph, wired in one process on a simulated clock.

The stationary pipeline is the first slice of the product: a fixed FR3 tours its wrist camera over a
kitchen table; every frame (15 Hz) gets its camera pose from forward kinematics and enters the pose
history; a 1 Hz loop (the high-level policy's rate) nominates keyframes by visual novelty, clusters the
nominations as MemER does, promotes the representatives and draws the egocentric map.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np
from tqdm import tqdm

from spatial_memory.context import ContextConfig, KeyframeSelector, NoveltyNominator, SpatialContext
from spatial_memory.context.watermark import tile_images
from spatial_memory.errors import ConfigError
from spatial_memory.robot.description import CameraMount
from spatial_memory.sim.arm_motion import TourConfig, tour
from spatial_memory.sim.tabletop import EXO_CAMERA, WRIST_CAMERA, TabletopConfig, TabletopScene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StationaryDemoConfig:
    """Rates, duration and the component configs of the stationary demo."""

    duration_s: float = 60.0
    frame_rate_hz: float = 15.0  # camera / FK rate
    policy_rate_hz: float = 1.0  # keyframe nomination and map rate
    scene: TabletopConfig = field(default_factory=TabletopConfig)
    camera: CameraMount = field(default_factory=CameraMount)  # wrist camera mount on the arm
    tour: TourConfig = field(default_factory=TourConfig)
    context: ContextConfig = field(default_factory=ContextConfig)

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.frame_rate_hz <= 0 or self.policy_rate_hz <= 0:
            raise ConfigError("duration and rates must be positive")
        if self.policy_rate_hz > self.frame_rate_hz:
            raise ConfigError("the policy cannot run faster than the camera")


@dataclass
class DemoResult:
    """What a run produced: file paths and measured numbers."""

    out_dir: Path
    frames: int
    policy_ticks: int
    keyframe_ids: list[int]
    nominations: list[int]
    timings_ms: dict[str, float]
    wall_time_s: float
    files: dict[str, str]


def _side_by_side(images: list[np.ndarray], height: int) -> np.ndarray:
    """Scale RGB images to a common height and concatenate them left to right."""
    scaled = [
        cv2.resize(im, (round(im.shape[1] * height / im.shape[0]), height), interpolation=cv2.INTER_AREA)
        for im in images
    ]
    return np.concatenate(scaled, axis=1)


def _keyframe_sheet(images: list[np.ndarray], map_image: np.ndarray, height: int = 512) -> np.ndarray:
    """The watermarked keyframes in a grid (2 columns up to 4 keyframes, else 4) left of the map."""
    if not images:
        return map_image
    columns = 2 if len(images) <= 4 else 4
    rows = -(-len(images) // columns)
    grid = tile_images(images, tile_height=height // max(rows, 2), max_cols=columns)
    canvas = np.full((height, grid.shape[1], 3), 255, np.uint8)
    canvas[: grid.shape[0]] = grid
    return _side_by_side([canvas, map_image], height)


class StationaryPipeline:
    """Runs the stationary loop on the tabletop scene and writes what a person wants to look at."""

    def __init__(self, config: StationaryDemoConfig = StationaryDemoConfig()) -> None:
        self.config = config
        self.scene = TabletopScene(config.scene, config.camera)
        self.context = SpatialContext(config.context, kinematics=self.scene.kinematics)
        self.nominator = NoveltyNominator(config.context.selection)
        self.selector = KeyframeSelector(config.context.selection)

    def run(self, out_dir: Path, progress: bool = True) -> DemoResult:
        """Run the whole episode; returns the files written and the measured timings."""
        cfg = self.config
        out_dir = Path(out_dir)
        (out_dir / "maps").mkdir(parents=True, exist_ok=True)
        n_frames = int(round(cfg.duration_s * cfg.frame_rate_hz))
        tick_every = int(round(cfg.frame_rate_hz / cfg.policy_rate_hz))
        joints = tour(np.arange(n_frames) / cfg.frame_rate_hz, cfg.tour)
        timings: dict[str, list[float]] = {"fk_and_history": [], "render": [], "keyframes": [], "map": []}
        tick_frames: list[int] = []  # frame id of each policy tick, in tick order
        keyframe_ticks: list[int] = []  # keyframes as tick indices: MemER's merge distance is in policy steps
        nominated: list[int] = []  # frame ids the nominator put forward
        animation: list[np.ndarray] = []
        start = time.perf_counter()
        for i in tqdm(range(n_frames), desc="stationary demo", unit="frame", disable=not progress):
            stamp_ns = int(round(i * 1e9 / cfg.frame_rate_hz))
            q = self.scene.set_joints(joints[i])
            is_tick = i % tick_every == 0
            image = None
            if is_tick:
                t0 = time.perf_counter()
                image = self.scene.render(WRIST_CAMERA)
                timings["render"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            frame_id = self.context.add_frame(q, stamp_ns=stamp_ns, image=image)
            timings["fk_and_history"].append(time.perf_counter() - t0)
            if not is_tick:
                continue
            tick = len(tick_frames)
            tick_frames.append(frame_id)
            t0 = time.perf_counter()
            if self.nominator.observe(tick, image, keyframe_ticks):
                self.selector.nominate([tick])
                nominated.append(frame_id)
            keyframe_ticks = self.selector.keyframes()
            self.context.set_keyframes([tick_frames[t] for t in keyframe_ticks])
            timings["keyframes"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            map_image, _ = self.context.generate_map()
            timings["map"].append(time.perf_counter() - t0)
            cv2.imwrite(
                str(out_dir / "maps" / f"map_{tick:04d}.png"), cv2.cvtColor(map_image, cv2.COLOR_RGB2BGR)
            )
            exo = self.scene.render(EXO_CAMERA)
            animation.append(_side_by_side([image, exo, map_image], 320))
        wall = time.perf_counter() - start
        files = self._write_outputs(out_dir, animation)
        result = DemoResult(
            out_dir=out_dir,
            frames=n_frames,
            policy_ticks=len(tick_frames),
            keyframe_ids=[k.frame_id for k in self.context.keyframes],
            nominations=nominated,
            timings_ms={k: 1e3 * float(np.median(v)) for k, v in timings.items() if v},
            wall_time_s=wall,
            files=files,
        )
        self._write_summary(result)
        return result

    def _write_outputs(self, out_dir: Path, animation: list[np.ndarray]) -> dict[str, str]:
        map_image, styles = self.context.generate_map()
        pairs = [
            (im, st) for im, st in zip(self.context.keyframe_images(), styles, strict=True) if im is not None
        ]
        marked = self.context.watermark_keyframes([im for im, _ in pairs], [st for _, st in pairs])
        files = {
            "map": out_dir / "map_final.png",
            "keyframes": out_dir / "keyframes_and_map.png",
            "animation": out_dir / "demo.gif",
            "views": out_dir / "views_and_map.png",
            "maps": out_dir / "maps",
        }
        cv2.imwrite(str(files["map"]), cv2.cvtColor(map_image, cv2.COLOR_RGB2BGR))
        sheet = _keyframe_sheet(marked, map_image)
        cv2.imwrite(str(files["keyframes"]), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        imageio.mimsave(files["animation"], animation, duration=250, loop=0)
        if animation:  # the last frame at full colour (GIF frames have 256-colour palettes)
            cv2.imwrite(str(files["views"]), cv2.cvtColor(animation[-1], cv2.COLOR_RGB2BGR))
        return {k: str(v) for k, v in files.items()}

    def _write_summary(self, result: DemoResult) -> None:
        summary = asdict(result)
        summary["out_dir"] = str(result.out_dir)
        summary["config"] = asdict(self.config)
        (result.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        lines = [
            "# spatial_memory stationary demo",
            "",
            f"- {result.frames} frames at {self.config.frame_rate_hz:g} Hz "
            f"({self.config.duration_s:g} s simulated), {result.policy_ticks} policy ticks",
            f"- keyframes (frame ids): {result.keyframe_ids}",
            f"- wall time: {result.wall_time_s:.1f} s",
            "",
            "| stage | median ms |",
            "|---|---|",
            *[f"| {k} | {v:.3f} |" for k, v in result.timings_ms.items()],
        ]
        (result.out_dir / "summary.md").write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        self.scene.close()
