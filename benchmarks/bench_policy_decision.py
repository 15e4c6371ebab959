"""Scripted policy decision time: `ScriptedPolicy.decide` on one 1 Hz tick, the work it really does.

Cases, each over the same stream of real camera frames (the TUM RGB-D teddy clip beside the checkout, or
`--images DIR`; 640x480 and the live sim camera's 160x120):

- `nominate`: no task, novelty nominations only (what policy_node does between tasks);
- `go-to-picture, memory far`: a confident answer 3 m away (the goal moved to now, median of answers);
- `go-to-picture, memory near`: the answer 1.5 m away, so the view matcher (SIFT + RANSAC) runs too;
- `no memory`: the no-memory baseline, the view matcher every tick.

Pinned to one core; median, p95 and max over the ticks. Target (issue 12): under 50 ms. Writes
`benchmarks/results/policy_decision.json` and `.md` with the machine.

    PYTHONPATH=src/spatial_memory python3 benchmarks/bench_policy_decision.py
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

from spatial_memory.policy.interface import GOAL_PICTURE, Frame, MemoryReading, Observation, Pose2D, Task
from spatial_memory.policy.scripted import ScriptedPolicy, ScriptedPolicyConfig

TARGET_MS = 50.0
RESULTS = Path(__file__).resolve().parent / "results"
TUM = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbd_dataset_freiburg3_teddy_frames000-099"


def load_frames(folder: Path) -> list[np.ndarray]:
    files = sorted((folder / "rgb").glob("*.png"))
    if not files:
        raise SystemExit(f"no rgb/*.png under {folder}: pass --images")
    return [cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files]


def run_case(
    frames: list[np.ndarray], goal: np.ndarray | None, config: ScriptedPolicyConfig, answer_m: float | None
) -> list[float]:
    """Decision times (ms) of one policy over the frame stream, one frame per tick."""
    policy = ScriptedPolicy(config)
    task = Task(goal_image=goal) if goal is not None else Task(text="observe")
    recent: list[Frame] = []
    times = []
    for k, image in enumerate(frames):
        stamp = (k + 1) * 1_000_000_000
        recent = (recent + [Frame(k, stamp, image)])[-8:]
        answers = {}
        if answer_m is not None:
            pose = Pose2D(answer_m, 0.3, 0.2)
            answers[GOAL_PICTURE] = MemoryReading(GOAL_PICTURE, stamp, pose, 0.2, 0.95, 0.8, "refined")
        obs = Observation(stamp, task, tuple(recent), answers=answers, odom_base=Pose2D(0.0, 0.0, 0.0))
        t0 = time.perf_counter()
        decision = policy.decide(obs)
        times.append((time.perf_counter() - t0) * 1e3)
        if decision.status.done:  # a new task: keep timing the same situation
            policy.reset()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=TUM)
    parser.add_argument("--out", type=Path, default=RESULTS / "policy_decision.json")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    info = machine(opencv=cv2.__version__, numpy=np.__version__)
    full = load_frames(args.images)
    rows = {}
    for label, size in (("640x480", None), ("160x120", (160, 120))):
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if size else f for f in full]
        goal = frames[len(frames) // 2]
        never = ScriptedPolicyConfig(arrive_m=0.01, match_near_m=0.01)  # keep going: time the steady state
        cases = {
            "nominate": (None, ScriptedPolicyConfig(), None),
            "go-to-picture, memory far": (goal, never, 3.0),
            "go-to-picture, memory near (view matcher)": (goal, ScriptedPolicyConfig(arrive_m=0.01), 1.5),
            "no memory (view matcher)": (
                goal,
                ScriptedPolicyConfig(use_memory=False, match_min_inliers=10**6),
                None,
            ),
        }
        for name, (g, cfg, answer_m) in cases.items():
            t = np.array(run_case(frames, g, cfg, answer_m)[1:])  # the first tick builds SIFT for the goal
            rows[f"{name} ({label})"] = {
                "ticks": int(len(t)),
                "median_ms": float(np.median(t)),
                "p95_ms": float(np.percentile(t, 95)),
                "max_ms": float(t.max()),
            }
    report = {"target_ms": TARGET_MS, "rows": rows, "machine": info, "images": str(args.images.name)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    lines = [
        "# Scripted policy: decision time per 1 Hz tick",
        "",
        f"`python3 benchmarks/bench_policy_decision.py`; frames of {report['images']}; one core. "
        f"Target < {TARGET_MS:g} ms.",
        "",
        "| case | ticks | median ms | p95 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['ticks']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | {r['max_ms']:.2f} |"
        )
    m = info
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (pinned to {m['pinned_to']}), {m['platform']}, "
        f"load average {m['load_average_at_start']} at the start (shared machine), {m['date_utc']}",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
