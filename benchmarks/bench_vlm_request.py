"""VLM request building speed: `policy.vlm.build_messages` with every image resized and JPEG/base64 encoded.

A realistic observation: 8 recent camera frames (640x480, and the same frames at 160x120), 8 watermarked
keyframes and the 512x512 BEV map drawn by `SpatialContext` for those keyframes, the task text, and (in
one row) a goal picture. The frames are the TUM RGB-D teddy clip's real camera images when the clip is
beside the checkout (`../shared/data`, or `--images DIR`), else synthetic textured images (the result
says which: JPEG time depends on image content). Pinned to one CPU core; the median (p10-p90) over
repeats of one `build_messages` call. Target (issue 12): under 100 ms. Writes
`benchmarks/results/vlm_request.json` and `vlm_request.md` with the machine it ran on.

    PYTHONPATH=src/spatial_memory python3 benchmarks/bench_vlm_request.py
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
from machine import machine

from spatial_memory.context import ContextConfig, SpatialContext
from spatial_memory.geometry import make_pose, pose_from_xyz_rpy
from spatial_memory.policy.interface import Frame, KeyframeView, Observation, Task
from spatial_memory.policy.vlm import VLMConfig, build_messages

TARGET_MS = 100.0
RESULTS = Path(__file__).resolve().parent / "results"
TUM = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbd_dataset_freiburg3_teddy_frames000-099"
T_BODY_OPTICAL = make_pose(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
N_RECENT = 8
N_KEYFRAMES = 8


def load_frames(folder: Path, n: int) -> tuple[list[np.ndarray], str]:
    """`n` RGB 640x480 frames spread over the clip in `folder` (its rgb/ PNGs), or synthetic ones."""
    files = sorted((folder / "rgb").glob("*.png")) if (folder / "rgb").is_dir() else []
    if len(files) >= n:
        picks = [files[round(i * (len(files) - 1) / (n - 1))] for i in range(n)]
        frames = [cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in picks]
        return frames, f"TUM RGB-D freiburg3_teddy ({folder.name}), real camera images"
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(n):  # smooth shapes plus fine texture: JPEG cost between a flat and a noise image
        base = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (640, 480), cv2.INTER_CUBIC)
        grain = rng.normal(0.0, 12.0, base.shape)
        frames.append(np.clip(base + grain, 0, 255).astype(np.uint8))
    return frames, "synthetic (smooth colour fields plus grain; the TUM clip was not found)"


def keyframe_map(images: list[np.ndarray]) -> tuple[np.ndarray, list[KeyframeView]]:
    """The BEV map and watermarked keyframe views for keyframes spread around the robot."""
    rng = np.random.default_rng(1)
    ctx = SpatialContext(ContextConfig())
    for img in images:
        x, y = rng.normal(scale=2.0, size=2)
        pose = pose_from_xyz_rpy((x, y, 0.5), (0.0, 0.3, rng.uniform(-np.pi, np.pi))) @ T_BODY_OPTICAL
        ctx.promote_to_keyframe(ctx.add_frame(T_world_cam=pose, image=img))
    ctx.add_frame(T_world_cam=pose_from_xyz_rpy((0.0, 0.0, 0.5), (0.0, 0.3, 0.0)) @ T_BODY_OPTICAL)
    map_rgb, styles = ctx.generate_map()
    marked = ctx.watermark_keyframes(images, styles)
    views = [
        KeyframeView(
            number=s.number,
            frame_id=s.frame_id,
            image=m,
            position=tuple(rng.uniform(-4.0, 4.0, size=2)),
            color=s.rgb,
        )
        for s, m in zip(styles, marked, strict=True)
    ]
    return map_rgb, views


def observation(frames: list[np.ndarray], size: tuple[int, int], goal: bool) -> Observation:
    """8 recent frames at `size` (w, h), 8 watermarked 640x480 keyframes, the map, maybe a goal picture."""
    recent_imgs = [
        cv2.resize(f, size, interpolation=cv2.INTER_AREA) if f.shape[1] != size[0] else f for f in frames
    ]
    map_rgb, views = keyframe_map([f.copy() for f in frames[::-1]])
    recent = tuple(Frame(frame_id=100 + i, stamp_ns=i, image=img) for i, img in enumerate(recent_imgs))
    task = Task(text="go to where this picture was taken", goal_image=frames[3] if goal else None)
    return Observation(stamp_ns=10**9, task=task, recent=recent, keyframes=tuple(views), map_image=map_rgb)


def time_interleaved(cases: list[tuple[Observation, VLMConfig]], repeats: int) -> list[dict]:
    """Milliseconds per `build_messages` call for each case (median, p10, p90), images sent and payload
    size. The calls go round-robin over the cases, so a busy spell on the shared machine hits all alike."""
    last = [build_messages(obs, cfg) for obs, cfg in cases]  # warm-up
    times: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):
        for i, (obs, cfg) in enumerate(cases):
            t0 = time.perf_counter()
            last[i] = build_messages(obs, cfg)
            times[i].append((time.perf_counter() - t0) * 1e3)
    out = []
    for messages, t in zip(last, times, strict=True):
        parts = messages[1]["content"]
        out.append(
            {
                "median_ms": float(np.median(t)),
                "p10_ms": float(np.percentile(t, 10)),
                "p90_ms": float(np.percentile(t, 90)),
                "images": sum(p["type"] == "image_url" for p in parts),
                "payload_kb": len(json.dumps(messages)) / 1024.0,
                "repeats": repeats,
            }
        )
    return out


CASES = (  # (recent frame size, image_px, goal picture)
    ((640, 480), 384, True),
    ((640, 480), 384, False),
    ((160, 120), 384, False),
    ((640, 480), 256, False),
    ((640, 480), 512, False),
)


def run(images: Path, repeats: int) -> dict:
    info = machine(opencv=cv2.__version__, numpy=np.__version__)  # before the runs: the load we start on
    frames, source = load_frames(images, N_RECENT)
    cases = [(observation(frames, size, goal), VLMConfig(image_px=px)) for size, px, goal in CASES]
    timed = time_interleaved(cases, repeats)
    rows = [
        {
            "recent_px": f"{size[0]}x{size[1]}",
            "image_px": px,
            "goal_picture": goal,
            "jpeg_quality": cfg.jpeg_quality,
            **t,
        }
        for (size, px, goal), (_obs, cfg), t in zip(CASES, cases, timed, strict=True)
    ]
    return {
        "machine": info,
        "frames": source,
        "target_ms": TARGET_MS,
        "keyframes": N_KEYFRAMES,
        "recent": N_RECENT,
        "map_px": 512,
        "results": rows,
    }


def table(report: dict) -> str:
    lines = [
        "| recent frames | image_px | goal picture | images | median ms (p10-p90) | payload KB |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['recent_px']} | {r['image_px']} | {'yes' if r['goal_picture'] else 'no'} | {r['images']} "
            f"| {r['median_ms']:.1f} ({r['p10_ms']:.1f}-{r['p90_ms']:.1f}) | {r['payload_kb']:.0f} |"
        )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    m = report["machine"]
    worst = max(r["median_ms"] for r in report["results"] if r["image_px"] == VLMConfig().image_px)
    verdict = "meets" if worst < report["target_ms"] else "MISSES"
    return "\n".join(
        [
            "# VLM request building benchmark",
            "",
            "`benchmarks/bench_vlm_request.py`: one core, `policy.vlm.build_messages` (every image resized",
            "to `image_px` on its longest side, JPEG-encoded at quality "
            f"{report['results'][0]['jpeg_quality']}, base64 data URLs, the prompt text);",
            f"milliseconds per call, median (p10-p90) of {report['results'][0]['repeats']} calls per case,",
            "the cases interleaved round-robin.",
            "",
            f"- machine: {m['cpu']}, {m['cores']} cores (run pinned to {m['pinned_to']}), {m['platform']}",
            f"- python {m['python']}, numpy {m['numpy']}, opencv {m['opencv']}; run {m['date_utc']}, "
            f"load average {m['load_average_at_start']} at the start (the machine is shared)",
            f"- observation: {report['recent']} recent frames, {report['keyframes']} watermarked keyframes "
            f"(640x480), the {report['map_px']}x{report['map_px']} BEV map `SpatialContext` drew for them, "
            "the task text; frames: " + report["frames"],
            "",
            table(report),
            "",
            f"Target: building a request under {report['target_ms']:.0f} ms: {worst:.1f} ms at the default "
            f"image_px ({VLMConfig().image_px}), slowest case, {verdict} it.",
            "",
            "`images`: goal picture + map + keyframes + recent frames. `payload KB`: the messages as JSON,",
            "what goes over the wire before HTTP framing. The request is built in the policy's request",
            "thread, not in `decide`, so this cost never lands on the 1 Hz loop; it adds to the answer's",
            "latency only.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=TUM, help="a TUM RGB-D sequence folder (rgb/*.png)")
    parser.add_argument("--repeats", type=int, default=50, help="calls per case")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for vlm_request.json and .md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    cv2.setNumThreads(1)
    report = run(args.images, args.repeats)
    print(table(report))
    print(f"\nframes: {report['frames']}")
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "vlm_request.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "vlm_request.md").write_text(markdown(report))
        print(f"wrote {args.out / 'vlm_request.json'} and {args.out / 'vlm_request.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
