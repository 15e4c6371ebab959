"""The in-process runner: the same components as the ROS graph, wired in one process on a simulated clock.

The stationary pipeline is the first slice of the product: a fixed FR3 tours its wrist camera over a
kitchen table; every frame (15 Hz) gets its camera pose from forward kinematics and enters the pose
history; a 1 Hz loop (the high-level policy's rate) nominates keyframes by visual novelty, clusters the
nominations as MemER does, promotes the representatives and draws the egocentric map.

The mobile pipeline adds the memory: the mobile FR3 tours a generated house (never seen in training);
each step's head-camera image and wheel odometry update the `MemoryEngine` (as `memory_node` does) and
the spatial context (as `spatial_context_node` does); at the end the robot asks the memory where the
pictures of places it saw were taken, and the map shows each answer next to the true place.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np
from tqdm import tqdm

from spatial_memory.atomic import check_output_dir
from spatial_memory.config import check_finite
from spatial_memory.context import ContextConfig, KeyframeSelector, NoveltyNominator, SpatialContext, bev
from spatial_memory.context.watermark import tile_images
from spatial_memory.errors import ConfigError
from spatial_memory.geometry import wrap_angle
from spatial_memory.memory.engine_config import EngineConfig
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
        check_finite(self, ("duration_s", "frame_rate_hz", "policy_rate_hz"))  # nan slipped past `<= 0`
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


def prepare_out_dir(out_dir: Path, own: tuple[str, ...]) -> Path:
    """The demo's output folder, checked (a file in the way, read-only) and cleared of the outputs of an
    earlier run of the same demo: `own` are the names the demo writes (file names, or folder names whose
    whole content it writes, such as `maps`). Anything else in the folder is left alone.

    The CLI hands the demos a new or empty folder (a non-empty `--out` is refused unless `--overwrite`,
    which replaces it whole: `atomic.replaced_dir`); this clearing is for library callers that run twice
    into one folder: the old run's per-tick maps left beside the new ones read as one run (5 maps, the
    summary says 2). Only the demo's own names are removed, so a folder holding other things keeps them.
    """
    out_dir = check_output_dir(Path(out_dir), "demo output folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in own:
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    return out_dir


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

    # everything run() writes into its output folder (cleared at the start of a run, `prepare_out_dir`)
    OUTPUTS = (
        "maps",
        "map_final.png",
        "keyframes_and_map.png",
        "demo.gif",
        "views_and_map.png",
        "summary.json",
        "summary.md",
    )

    def __init__(self, config: StationaryDemoConfig = StationaryDemoConfig()) -> None:
        self.config = config
        self.scene = TabletopScene(config.scene, config.camera)
        self.context = SpatialContext(config.context, kinematics=self.scene.kinematics)
        self.nominator = NoveltyNominator(config.context.selection)
        self.selector = KeyframeSelector(config.context.selection)

    def run(self, out_dir: Path, progress: bool = True) -> DemoResult:
        """Run the whole episode; returns the files written and the measured timings."""
        cfg = self.config
        out_dir = prepare_out_dir(out_dir, self.OUTPUTS)
        (out_dir / "maps").mkdir()
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


# ---------------------------------------------------------------------------------------------------------
# the mobile pipeline: tour a house, feed the memory, then ask it where pictures of places were taken


@dataclass(frozen=True)
class MobileDemoConfig:
    """World, length and rates of the mobile demo, the memory engine and the spatial context.

    The defaults match the shipped memory's training data (house preset, 64x64 head camera, 5 steps/s,
    noisy wheel odometry) on a world seed outside its training seeds (0-31).
    """

    world: str = "house"  # sim.presets name
    seed: int = 1000  # world seed; the shipped memory trained on seeds 0-31
    steps: int = 200  # 5 steps per simulated second
    camera_px: int = 64  # head camera width = height; the shipped memory reads 64x64
    policy_every: int = 5  # steps between policy ticks (keyframes, map): 1 Hz at 5 steps/s
    queries: int = 6  # pictures the robot asks about at the end
    memory: EngineConfig = field(
        default_factory=lambda: EngineConfig(checkpoint="models/kinaema_indoor64.pt")
    )
    context: ContextConfig = field(default_factory=ContextConfig)

    def __post_init__(self) -> None:
        for name in ("steps", "camera_px", "policy_every", "queries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MobileDemoConfig.{name} must be a positive integer, got {value!r}")
        if self.steps < 2 * self.policy_every:
            raise ConfigError(
                f"steps {self.steps} must cover at least two policy ticks ({self.policy_every})"
            )


@dataclass(frozen=True)
class AskedPlace:
    """One picture the robot asked about: the truth and the memory's answer, in the robot's frame now."""

    label: str
    step: int  # the step whose query sampler drew the picture
    truth: tuple[float, float, float]  # (x ahead m, y left m, yaw rad), from the ground-truth poses
    answer: tuple[float, float, float]  # what the memory said
    sigma_m: float
    seen_probability: float

    @property
    def position_error_m(self) -> float:
        return math.hypot(self.answer[0] - self.truth[0], self.answer[1] - self.truth[1])

    @property
    def heading_error_deg(self) -> float:
        return abs(math.degrees(wrap_angle(self.answer[2] - self.truth[2])))


@dataclass
class MobileDemoResult:
    """What the mobile run produced: the asked places, timings and files."""

    out_dir: Path
    steps: int
    keyframe_ids: list[int]
    asked: list[AskedPlace]
    timings_ms: dict[str, float]
    wall_time_s: float
    files: dict[str, str]


@dataclass(frozen=True)
class _Picture:
    step: int
    rgb: np.ndarray
    T_world_query: np.ndarray


class MobilePipeline:
    """Tours a house with the mobile FR3, feeding the memory and the spatial context, then queries it."""

    # everything run() writes into its output folder (cleared at the start of a run, `prepare_out_dir`)
    OUTPUTS = (
        "memory_answers.png",
        "keyframe_map.png",
        "mobile_demo.gif",
        "mobile_summary.json",
        "mobile_summary.md",
    )

    def __init__(self, config: MobileDemoConfig = MobileDemoConfig()) -> None:
        from spatial_memory.memory.engine import MemoryEngine  # torch: only for this pipeline
        from spatial_memory.sim.presets import world_preset
        from spatial_memory.sim.queries import QueryConfig
        from spatial_memory.sim.world_episode import WorldEpisodeConfig, WorldEpisodeScene, dataset_robot

        self.config = config
        self.engine = MemoryEngine(config.memory)
        if self.engine.image_size != config.camera_px and config.memory.resize == "none":
            raise ConfigError(
                f"the memory reads {self.engine.image_size}px images but the camera gives "
                f"{config.camera_px}px: set camera_px to match or memory.resize to 'crop'/'stretch'"
            )
        episode = WorldEpisodeConfig(  # as the training data: a query drawn every 5 steps
            world=world_preset(config.world, config.seed),
            robot=dataset_robot(config.camera_px, config.camera_px),
            queries=QueryConfig(every_n_steps=5),
        )
        self.scene = WorldEpisodeScene(episode, config.steps)
        self.context = SpatialContext(config.context)
        self.nominator = NoveltyNominator(config.context.selection)
        self.selector = KeyframeSelector(config.context.selection)
        self._asked_pictures: list[_Picture] = []

    def run(self, out_dir: Path, progress: bool = True) -> MobileDemoResult:
        """Run the tour, ask the memory at the end, and write the map with its answers."""
        cfg = self.config
        out_dir = prepare_out_dir(out_dir, self.OUTPUTS)
        timings: dict[str, list[float]] = {"sim_and_render": [], "memory_update": [], "context": []}
        pictures: list[_Picture] = []
        tick_frames: list[int] = []
        keyframe_ticks: list[int] = []
        animation: list[np.ndarray] = []
        start = time.perf_counter()
        for t in tqdm(range(cfg.steps), desc="mobile demo", unit="step", disable=not progress):
            t0 = time.perf_counter()
            rec = self.scene.step(t)
            head = rec.cameras[0]
            timings["sim_and_render"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            self.engine.update(head.rgb, T_world_base=rec.odometry.T_odom_base, stamp_ns=rec.stamp_ns)
            timings["memory_update"].append(time.perf_counter() - t0)
            if rec.query is not None and rec.query.seen:
                pictures.append(_Picture(t, rec.query.rgb, rec.T_world_base @ rec.query.T_base_query))
            t0 = time.perf_counter()
            # the map lives in the odometry frame, as on the robot (the memory never sees ground truth)
            T_odom_cam = rec.odometry.T_odom_base @ np.linalg.inv(rec.T_world_base) @ head.T_world_cam
            frame_id = self.context.add_frame(
                T_world_cam=T_odom_cam,
                T_world_base=rec.odometry.T_odom_base,
                stamp_ns=rec.stamp_ns,
                image=head.rgb,
            )
            if t % cfg.policy_every == 0:
                tick = len(tick_frames)
                tick_frames.append(frame_id)
                if self.nominator.observe(tick, head.rgb, keyframe_ticks):
                    self.selector.nominate([tick])
                keyframe_ticks = self.selector.keyframes()
                self.context.set_keyframes([tick_frames[k] for k in keyframe_ticks])
                map_image, _ = self.context.generate_map()
                animation.append(_side_by_side([head.rgb, map_image], 320))
            timings["context"].append(time.perf_counter() - t0)
        asked, query_ms = self._ask(pictures, rec.T_world_base)
        wall = time.perf_counter() - start
        timings_ms = {k: 1e3 * float(np.median(v)) for k, v in timings.items() if v}
        timings_ms["memory_query"] = query_ms
        files = self._write_outputs(out_dir, asked, animation)
        result = MobileDemoResult(
            out_dir=out_dir,
            steps=cfg.steps,
            keyframe_ids=[k.frame_id for k in self.context.keyframes],
            asked=asked,
            timings_ms=timings_ms,
            wall_time_s=wall,
            files=files,
        )
        self._write_summary(result)
        return result

    def _chosen(self, pictures: list[_Picture]) -> list[_Picture]:
        """Up to `queries` pictures of places spread apart (farthest-point order from the oldest, on the true
        places; the answers play no part in the choice), returned oldest first."""
        if len(pictures) <= self.config.queries:
            return pictures
        xy = np.array([p.T_world_query[:2, 3] for p in pictures])
        picked = [0]
        gap = np.linalg.norm(xy - xy[0], axis=1)
        while len(picked) < self.config.queries:
            nxt = int(np.argmax(gap))
            picked.append(nxt)
            gap = np.minimum(gap, np.linalg.norm(xy - xy[nxt], axis=1))
        return [pictures[i] for i in sorted(picked)]

    def _ask(self, pictures: list[_Picture], T_world_base_now: np.ndarray) -> tuple[list[AskedPlace], float]:
        """Ask the memory where each chosen picture was taken; the truth is relative to the true pose now."""
        from spatial_memory.memory.poses import planar_target

        asked, times = [], []
        T_base_world = np.linalg.inv(T_world_base_now)
        self._asked_pictures = self._chosen(pictures)
        for i, pic in enumerate(self._asked_pictures):
            t0 = time.perf_counter()
            answer = self.engine.query(pic.rgb)
            times.append(time.perf_counter() - t0)
            truth = planar_target(T_base_world @ pic.T_world_query)
            asked.append(
                AskedPlace(
                    label=chr(ord("A") + i),
                    step=pic.step,
                    truth=tuple(float(v) for v in truth),
                    answer=(answer.x, answer.y, answer.yaw),
                    sigma_m=answer.sigma_m,
                    seen_probability=answer.seen_probability,
                )
            )
        return asked, (1e3 * float(np.median(times)) if times else math.nan)

    def answer_map(self, asked: list[AskedPlace]) -> np.ndarray:
        """The egocentric map frame (robot centred, heading up, range rings), zoomed out to hold every true
        place and answer, with the memory's answers next to the true places (the keyframes are on the
        keyframe map: both on one map hid the answers)."""
        cfg = self.config.context.map
        points = [a.truth[:2] for a in asked] + [a.answer[:2] for a in asked]
        reach = max([math.hypot(*p) for p in points] + [cfg.min_extent_m])
        map_cfg = dataclasses.replace(cfg, min_extent_m=reach * (1.0 + cfg.scale_margin))
        latest = self.context.history.latest()
        lay = bev.layout(np.zeros((0, 4, 4)), latest.T_world_cam, latest.T_world_base, map_cfg)
        image = bev.render(lay, map_cfg)
        if not asked:
            return image
        return bev.draw_answers(
            image,
            lay,
            np.array([a.truth for a in asked]),
            np.array([a.answer for a in asked]),
            [a.label for a in asked],
        )

    def _write_outputs(
        self, out_dir: Path, asked: list[AskedPlace], animation: list[np.ndarray]
    ) -> dict[str, str]:
        files = {
            "answers": out_dir / "memory_answers.png",
            "map": out_dir / "keyframe_map.png",
            "animation": out_dir / "mobile_demo.gif",
        }
        keyframe_map, _ = self.context.generate_map()
        cv2.imwrite(str(files["map"]), cv2.cvtColor(keyframe_map, cv2.COLOR_RGB2BGR))
        map_image = self.answer_map(asked)
        chosen = {p.step: p for p in self._asked_pictures}
        tiles = []
        for a in asked:
            tile = cv2.resize(chosen[a.step].rgb, (128, 128), interpolation=cv2.INTER_NEAREST)
            tile = cv2.copyMakeBorder(tile, 0, 36, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            cv2.putText(
                tile,
                a.label,
                (4, 18),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.6,
                bev.ANSWER_COLORS[(ord(a.label) - ord("A")) % len(bev.ANSWER_COLORS)],
                2,
                cv2.LINE_AA,
            )
            text = f"{a.position_error_m:.2f} m, {a.heading_error_deg:.0f} deg"
            cv2.putText(tile, text, (4, 150), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (33, 37, 41), 1, cv2.LINE_AA)
            tiles.append(tile)
        sheet = _keyframe_sheet(tiles, map_image) if tiles else map_image
        cv2.imwrite(str(files["answers"]), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        if animation:
            imageio.mimsave(files["animation"], animation, duration=200, loop=0)
        return {k: str(v) for k, v in files.items()}

    def _write_summary(self, result: MobileDemoResult) -> None:
        summary = asdict(result)
        summary["out_dir"] = str(result.out_dir)
        summary["config"] = asdict(self.config)
        for entry, a in zip(summary["asked"], result.asked, strict=True):
            entry["position_error_m"], entry["heading_error_deg"] = a.position_error_m, a.heading_error_deg
        (result.out_dir / "mobile_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        cfg = self.config
        lines = [
            "# spatial_memory mobile demo",
            "",
            f"- {cfg.world} world, seed {cfg.seed}, {result.steps} steps at 5 Hz; "
            f"memory: {self.engine.backend} ({cfg.memory.checkpoint})",
            f"- keyframes (frame ids): {result.keyframe_ids}",
            f"- wall time: {result.wall_time_s:.1f} s",
            "",
            "| picture | taken at step | true x, y (m), yaw (deg) | memory x, y (m), yaw (deg) "
            "| error m | error deg |",
            "|---|---:|---|---|---:|---:|",
            *[
                f"| {a.label} | {a.step} | {_fmt(a.truth)} | {_fmt(a.answer)} | {a.position_error_m:.2f} "
                f"| {a.heading_error_deg:.0f} |"
                for a in result.asked
            ],
            "",
            "| stage | median ms |",
            "|---|---|",
            *[f"| {k} | {v:.3f} |" for k, v in result.timings_ms.items()],
        ]
        (result.out_dir / "mobile_summary.md").write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        self.scene.close()


def _fmt(pose: tuple[float, float, float]) -> str:
    return f"{pose[0]:+.2f}, {pose[1]:+.2f}, {math.degrees(pose[2]):+.0f}"
