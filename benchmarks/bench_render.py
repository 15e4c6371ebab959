"""RGB-D rendering speed of the mobile FR3's head camera at three image sizes, and whole episodes' steps/s.

One frame is an RGB image plus metric depth of one camera, as `MobileFR3Sim.render_rgbd` returns them
(two offscreen passes: a lit RGB one and MuJoCo's flat depth one). Next to it, in the same run: RGB
alone, depth alone, and a single-pass baseline that reads both buffers of one lit render through the raw
mujoco API (what a hand-written renderer would do). The robot drives a slow circle through a generated
multi-room world (the 'house' preset) and only the render calls are timed. Then whole world episodes
(T = 200 and 800 steps: the tour, both RGB-D cameras at 128x128, odometry; with and without queries, and
recorded to disk) are timed end to end. MUJOCO_GL=egl renders on the CPU (Mesa llvmpipe, which uses every
core: the run is not pinned). Target: at least 60 RGB-D frames/s at 128x128. Writes
`benchmarks/results/render.json` and `render.md` with the machine it ran on.

    MUJOCO_GL=egl python3 benchmarks/bench_render.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402 (MUJOCO_GL must be set before the import)
import numpy as np  # noqa: E402
from machine import machine  # noqa: E402

from spatial_memory.sim.mobile_robot import (  # noqa: E402
    HEAD_CAMERA,
    CameraConfig,
    MobileFR3Sim,
    MobileRobotConfig,
)
from spatial_memory.sim.planning import room_centres  # noqa: E402
from spatial_memory.sim.presets import world_preset  # noqa: E402
from spatial_memory.sim.queries import QueryConfig  # noqa: E402
from spatial_memory.sim.recorder import record_episode  # noqa: E402
from spatial_memory.sim.world_episode import (  # noqa: E402
    WorldEpisodeConfig,
    WorldEpisodeScene,
    dataset_robot,
)
from spatial_memory.sim.world_scene import build_world_spec  # noqa: E402
from spatial_memory.sim.worlds import generate_world  # noqa: E402

log = logging.getLogger("bench_render")
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = ((128, 128), (320, 240), (640, 480))
TARGET_FPS_128 = 60.0
EPISODE_WORLD = "house"  # 10 x 8 m, 4 rooms
EPISODE_LENGTHS = (200, 800)
EPISODE_PX = 128


def world_spec() -> tuple[mujoco.MjSpec, str, tuple[float, float]]:
    """The benchmark world: a generated multi-room world and the centre of its first room."""
    world = generate_world(world_preset(EPISODE_WORLD, seed=0))
    centre = tuple(float(v) for v in room_centres(world)[0])
    return (
        build_world_spec(world, texture_px=128),
        f"generated world ('{EPISODE_WORLD}' preset, seed 0)",
        centre,
    )


class SinglePass:
    """Baseline: one lit render, RGB and depth buffers read from it, depth made metric (raw mujoco API)."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int) -> None:
        self.model = model
        self.ctx = mujoco.GLContext(width, height)
        self.ctx.make_current()
        self.scene = mujoco.MjvScene(model, maxgeom=10000)
        self.mjr = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.mjr)
        self.mjr.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
        self.rect = mujoco.MjrRect(0, 0, width, height)
        self.opt, self.cam = mujoco.MjvOption(), mujoco.MjvCamera()
        self.cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self.rgb = np.empty((height, width, 3), np.uint8)
        self.depth = np.empty((height, width), np.float32)

    def render(self, data: mujoco.MjData, camera: int) -> tuple[np.ndarray, np.ndarray]:
        self.ctx.make_current()
        self.cam.fixedcamid = camera
        mujoco.mjv_updateScene(
            self.model, data, self.opt, None, self.cam, mujoco.mjtCatBit.mjCAT_ALL, self.scene
        )
        mujoco.mjr_render(self.rect, self.scene, self.mjr)
        mujoco.mjr_readPixels(self.rgb, self.depth, self.rect, self.mjr)
        extent = self.model.stat.extent
        near, far = self.model.vis.map.znear * extent, self.model.vis.map.zfar * extent
        c = -0.5 * (-(far + near) / (far - near)) - 0.5  # reversed-z perspective, as mujoco.Renderer
        d = -0.5 * (-(2.0 * far * near) / (far - near))
        metric = (d / (self.depth.astype(np.float64) + c)).astype(np.float32)
        return np.flipud(self.rgb).copy(), np.flipud(metric).copy()

    def close(self) -> None:
        self.ctx.make_current()
        self.mjr.free()
        self.ctx.free()


def frames_per_second(render: Callable[[], object], sim: MobileFR3Sim, frames: int, repeats: int) -> dict:
    """Median (min, max) over `repeats` runs of frames/s; the robot moves between frames, untimed."""
    render()  # warm-up (first use builds the GL context and uploads textures)
    runs = []
    for _ in range(repeats):
        elapsed = 0.0
        for _ in range(frames):
            sim.step(0.3, 0.25, 1 / 15)
            start = time.perf_counter()
            render()
            elapsed += time.perf_counter() - start
        runs.append(frames / elapsed)
    return {
        "median_fps": statistics.median(runs),
        "min_fps": min(runs),
        "max_fps": max(runs),
        "repeats": repeats,
    }


def depth_disagreement(sim: MobileFR3Sim, single: SinglePass, cam_id: int, frames: int = 20) -> dict:
    """How far the single pass's metric depth is from `render_depth` (which the multi-view reprojection
    tests check to sub-pixel accuracy), over `frames` views along the drive."""
    wrong, median = [], []
    for _ in range(frames):
        sim.step(0.3, 0.25, 1 / 15)
        d = np.abs(sim.render_depth(HEAD_CAMERA) - single.render(sim.data, cam_id)[1])
        wrong.append(float((d > 0.01).mean()))
        median.append(float(np.median(d)))
    return {
        "fraction_off_by_more_than_1cm": statistics.mean(wrong),
        "median_abs_m": statistics.median(median),
    }


def gl_renderer() -> str:
    """The OpenGL renderer string of the current context (llvmpipe = CPU rendering)."""
    try:
        from OpenGL import GL

        return " / ".join(GL.glGetString(n).decode() for n in (GL.GL_RENDERER, GL.GL_VERSION))
    except Exception as exc:  # noqa: BLE001 (a missing PyOpenGL only loses this line of the report)
        return f"unknown ({exc})"


def run_size(
    spec_maker: Callable, start: tuple[float, float], width: int, height: int, repeats: int
) -> tuple:
    """The four cases at one image size, plus how far the single-pass depth is from render_depth."""
    cam = CameraConfig(width=width, height=height, fovy_deg=60.0)
    cfg = MobileRobotConfig(head_camera=cam, wrist_camera=cam)
    frames = max(20, int(40 * (320 * 240) / (width * height) ** 0.9))
    with MobileFR3Sim(spec_maker()[0], cfg) as sim:
        sim.reset(*start, 0.0)
        cam_id = sim._camera_id(HEAD_CAMERA)
        single = SinglePass(sim.model, width, height)
        try:
            rows = [
                (
                    "render_rgbd (RGB pass + depth pass)",
                    frames_per_second(lambda: sim.render_rgbd(HEAD_CAMERA), sim, frames, repeats),
                ),
                (
                    "render (RGB only)",
                    frames_per_second(lambda: sim.render(HEAD_CAMERA), sim, frames, repeats),
                ),
                (
                    "render_depth (depth only)",
                    frames_per_second(lambda: sim.render_depth(HEAD_CAMERA), sim, frames, repeats),
                ),
                (
                    "single lit pass, both buffers (raw API)",
                    frames_per_second(lambda: single.render(sim.data, cam_id), sim, frames, repeats),
                ),
            ]
            depth_diff = depth_disagreement(sim, single, cam_id)
            renderer = gl_renderer()
        finally:
            single.close()
    return rows, depth_diff, renderer, frames


def episode_rates(lengths: tuple[int, ...] = EPISODE_LENGTHS) -> list[dict]:
    """Steps/s of whole world episodes (tour, both RGB-D cameras, odometry), with and without queries,
    and of recording them to a bag plus compact arrays."""
    rows = []
    for steps in lengths:
        for case, queries, record in (
            ("scene, no queries", None, False),
            ("scene, a query every 25 steps", QueryConfig(), False),
            ("recorded to bag + compact, queries", QueryConfig(), True),
        ):
            config = WorldEpisodeConfig(
                world=world_preset(EPISODE_WORLD, 0),
                robot=dataset_robot(EPISODE_PX, EPISODE_PX),
                queries=queries,
            )
            start = time.perf_counter()
            with WorldEpisodeScene(config, steps) as scene:
                if record:
                    with tempfile.TemporaryDirectory() as tmp:
                        record_episode(scene, Path(tmp) / "episode", steps, progress=False)
                else:
                    for t in range(steps):
                        scene.step(t)
            wall = time.perf_counter() - start
            rows.append({"steps": steps, "case": case, "wall_s": wall, "steps_per_s": steps / wall})
            log.info("episode T=%d %s: %.1f steps/s", steps, case, steps / wall)
    return rows


def run(repeats: int, episodes: bool = True) -> dict:
    info = machine(mujoco=mujoco.__version__, numpy=np.__version__)
    _, scene, start = world_spec()
    results, diffs, renderer = [], {}, ""
    for width, height in SIZES:
        rows, diff, renderer, frames = run_size(world_spec, start, width, height, repeats)
        diffs[f"{width}x{height}"] = diff
        for case, t in rows:
            results.append({"size": f"{width}x{height}", "case": case, "frames": frames, **t})
        log.info("%dx%d done", width, height)
    info["gl_renderer"] = renderer
    return {
        "machine": info,
        "scene": scene,
        "camera": "head_camera, fovy 60 deg, robot driving a circle at 0.3 m/s",
        "target_rgbd_fps_128": TARGET_FPS_128,
        "single_pass_depth_vs_render_depth": diffs,
        "results": results,
        "episode": {
            "world": f"{EPISODE_WORLD} preset, seed 0",
            "cameras": f"head and wrist RGB-D at {EPISODE_PX}x{EPISODE_PX}, 5 steps per sim second",
            "wall time includes": "building the world and the robot, the whole tour, every render",
            "results": episode_rates() if episodes else [],
        },
    }


def table(report: dict) -> str:
    lines = ["| size | case | median fps | min fps | max fps |", "|---|---|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(
            f"| {r['size']} | {r['case']} | {r['median_fps']:.1f} | {r['min_fps']:.1f} | {r['max_fps']:.1f} |"
        )
    return "\n".join(lines)


def episode_table(report: dict) -> str:
    lines = ["| T (steps) | case | wall s | steps/s |", "|---:|---|---:|---:|"]
    for r in report["episode"]["results"]:
        lines.append(f"| {r['steps']} | {r['case']} | {r['wall_s']:.1f} | {r['steps_per_s']:.1f} |")
    return "\n".join(lines)


def headline(report: dict) -> float:
    """RGB-D frames/s of render_rgbd at 128x128."""
    return next(
        r["median_fps"]
        for r in report["results"]
        if r["size"] == "128x128" and r["case"].startswith("render_rgbd")
    )


def markdown(report: dict) -> str:
    m = report["machine"]
    fps = headline(report)
    verdict = "meets" if fps >= report["target_rgbd_fps_128"] else "MISSES"
    diffs = ", ".join(
        f"{k}: {100 * v['fraction_off_by_more_than_1cm']:.0f}% of pixels "
        f"(median {1000 * v['median_abs_m']:.1f} mm)"
        for k, v in report["single_pass_depth_vs_render_depth"].items()
    )
    return "\n".join(
        [
            "# RGB-D rendering benchmark (mobile FR3 head camera)",
            "",
            "`MUJOCO_GL=egl python3 benchmarks/bench_render.py`: median of repeats, frames per second of",
            "the render calls alone (the robot moves between frames, untimed). Not pinned: llvmpipe uses",
            "every core.",
            "",
            f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}",
            f"- GL: {m['gl_renderer']}",
            f"- python {m['python']}, mujoco {m['mujoco']}, numpy {m['numpy']}; run {m['date_utc']}, "
            f"load average {m['load_average_at_start']} at the start",
            f"- scene: {report['scene']}; {report['camera']}",
            "",
            table(report),
            "",
            f"Target: at least {report['target_rgbd_fps_128']:.0f} RGB-D frames/s at 128x128: "
            f"{fps:.1f}, {verdict} it.",
            "",
            f"Whole episodes ({report['episode']['world']}; {report['episode']['cameras']}; wall time "
            f"includes {report['episode']['wall time includes']}):",
            "",
            episode_table(report),
            "",
            "`render_rgbd` renders twice: a lit, textured RGB pass and MuJoCo's flat depth pass. The",
            "single-pass baseline beats it on speed (see the table), but the depth it reads back from the",
            "lit pass is less exact: against `render_depth` (which the multi-view reprojection tests check",
            f"to sub-pixel accuracy) it is off by more than 1 cm on {diffs}.",
            "We keep the second pass for exact depth; where millimetres of depth error are acceptable, a",
            "single pass would be the faster choice.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per case; the median is reported")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for render.json and render.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--no-episodes", action="store_true", help="render rates only, no whole episodes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("spatial_memory").setLevel(logging.WARNING)
    report = run(args.repeats, episodes=not args.no_episodes)
    print(table(report))
    print()
    print(episode_table(report))
    print(f"\ntarget: >= {TARGET_FPS_128:.0f} RGB-D frames/s at 128x128; measured {headline(report):.1f}")
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "render.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "render.md").write_text(markdown(report))
        print(f"wrote {args.out / 'render.json'} and {args.out / 'render.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
