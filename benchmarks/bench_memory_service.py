"""What memory_node spends per camera frame and per answer, serving the model, keyframe retrieval and
refined answers from one `MemoryService`, on one thread.

The live simulation (sim_node's core, its 160x120 head camera, wheel odometry) tours a validation house
(world 1000 by default, never a test world) and every frame memory_node would take (5 Hz) goes to
`MemoryService.update` and `add_view` exactly as the node passes them; each is timed. Every 25 steps a
picture of a place seen earlier (`QuerySampler`) is asked of each backend, timed. The simulation's own
time is not counted.

    MUJOCO_GL=egl python3 benchmarks/bench_memory_service.py            # 400 steps, about 2 min
    MUJOCO_GL=egl python3 benchmarks/bench_memory_service.py --steps 800 --seed 1001

Writes `benchmarks/results/memory_service_cost.json` and `.md` with the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine

from spatial_memory.config import load_config
from spatial_memory.errors import InvalidInputError
from spatial_memory.eval.live_mem_rpe import LiveMemoryRun, LiveRunConfig, odom_camera_pose
from spatial_memory.memory.service import MemoryService
from spatial_memory.node_configs import MemoryNodeConfig
from spatial_memory.resources import share_path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="memory steps (frames taken at 5 Hz)")
    parser.add_argument("--seed", type=int, default=1000, help="house world seed (validation: 1000-1007)")
    parser.add_argument("--out", type=Path, default=RESULTS / "memory_service_cost.json")
    parser.add_argument(
        "--no-jump-check",
        action="store_true",
        help="turn sim.yaml's view jump check off (its cost, by difference)",
    )
    parser.add_argument(
        "--jump-flow-inliers",
        type=int,
        help="override sim.yaml's engine.jump_flow_inliers (0: SIFT judges every pair, as before the flow)",
    )
    parser.add_argument(
        "--no-trace",
        action="store_true",
        help="encoder and model update eagerly (`memory.traced`: what the traces save, by difference)",
    )
    parser.add_argument(
        "--loop-every",
        type=int,
        help="override sim.yaml's refine.loop_every (loop closure every N frames; 0: off)",
    )
    parser.add_argument(
        "--loop-max-chi2",
        type=float,
        help="override sim.yaml's refine.loop_max_chi2 (the loop closures' drift gate; 0: off)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    node = load_config(MemoryNodeConfig, share_path("config/sim.yaml"), "memory_node")
    engine = dataclasses.replace(node.engine, threads=1)
    if args.no_jump_check:
        engine = dataclasses.replace(engine, jump_check=False)
    if args.no_trace:
        engine = dataclasses.replace(engine, trace=False)
    if args.jump_flow_inliers is not None:
        engine = dataclasses.replace(engine, jump_flow_inliers=args.jump_flow_inliers)
    refine = node.refine
    if args.loop_every is not None:
        refine = dataclasses.replace(refine, loop_every=args.loop_every)
    if args.loop_max_chi2 is not None:
        refine = dataclasses.replace(refine, loop_max_chi2=args.loop_max_chi2)
    service = MemoryService.from_config(engine, node.serve_keyframes, refine)
    run = LiveMemoryRun(LiveRunConfig(seed=args.seed, steps=args.steps, engine=engine), service=service)
    jump_ms = time_view_jump_check(service)
    update_ms, view_ms, stored, looked = [], [], [], []
    query_ms: dict[str, list[float]] = {b: [] for b in service.backends}
    for tick, frame in run.taken_frames():  # as LiveMemoryRun.feed, each half timed
        t0 = time.perf_counter()
        service.update(frame.rgb, T_world_base=tick.odometry.T_odom_base, stamp_ns=tick.stamp_ns)
        t1 = time.perf_counter()
        T_odom_cam = odom_camera_pose(tick, frame)  # noqa: N806 - the project's pose naming
        stored.append(service.add_view(frame.rgb, frame.depth, frame.K, T_odom_cam, tick.stamp_ns))
        t2 = time.perf_counter()
        looked.append(bool(refine.loop_every) and len(stored) % max(refine.loop_every, 1) == 0)
        run.frames_fed += 1  # as feed() counts: taken_frames stops at the run's steps
        update_ms.append(1e3 * (t1 - t0))
        view_ms.append(1e3 * (t2 - t1))
        step = service.steps - 1
        run.sampler.observe(step, frame.T_world_cam, frame.depth, frame.K)
        if step and step % 25 == 0 and (sample := run.sampler.sample(step, tick.T_world_base)) is not None:
            for backend in service.backends:
                t0 = time.perf_counter()
                try:
                    service.query(sample.query.rgb, backend)
                except InvalidInputError:  # a picture of a bare wall: refused, not timed
                    continue
                query_ms[backend].append(1e3 * (time.perf_counter() - t0))
    run.close()
    frame_ms = np.add(update_ms, view_ms)
    stored_, looked_ = np.array(stored), np.array(looked)

    def stats(values: list[float] | np.ndarray) -> dict[str, float]:
        a = np.asarray(values, float)
        return {
            "p50": float(np.median(a)),
            "p95": float(np.percentile(a, 95)),
            "mean": float(np.mean(a)),
            "n": int(a.size),
        }

    report = {
        "steps": args.steps,
        "seed": args.seed,
        "backends": list(service.backends),
        "update_ms": stats(update_ms),
        "add_view_ms_stored": stats(np.array(view_ms)[stored_ & ~looked_]),
        "add_view_ms_not_stored": stats(np.array(view_ms)[~stored_ & ~looked_]),
        "add_view_ms_loop_check": stats(np.array(view_ms)[looked_]) if looked_.any() else None,
        "loop_closures": service.status().get("loop_closures", 0),
        "frame_ms": stats(frame_ms),
        "jump_check_ms": stats(jump_ms) if jump_ms else None,
        "query_ms": {b: stats(v) for b, v in query_ms.items() if v},
        "views": len(service.views) if service.views is not None else 0,
        "view_bytes": service.views.nbytes if service.views is not None else 0,
        "machine": machine(torch=torch.__version__),
    }
    flag = " --no-jump-check" if args.no_jump_check else ""
    if args.jump_flow_inliers is not None:
        flag += f" --jump-flow-inliers {args.jump_flow_inliers}"
    if args.no_trace:
        flag += " --no-trace"
    if args.loop_every is not None:
        flag += f" --loop-every {args.loop_every}"
    if args.loop_max_chi2 is not None:
        flag += f" --loop-max-chi2 {args.loop_max_chi2:g}"
    lines = [
        f"# memory_node's cost per frame and answer (house world {args.seed}, {args.steps} steps, 1 thread)",
        "",
        f"`MUJOCO_GL=egl python3 benchmarks/bench_memory_service.py{flag}`: sim.yaml's memory_node, view "
        f"jump check {'on' if engine.jump_check else 'off'}"
        + (f" (flow gate {engine.jump_flow_inliers})" if engine.jump_check else "")
        + f", encoder and model update {'traced' if service.engine._traced is not None else 'eager'}"
        + (
            f", loop closure every {refine.loop_every} frames (chi-square gate {refine.loop_max_chi2:g})"
            if refine.loop_every
            else ", no loop closure"
        )
        + ".",
        "",
        "| what | p50 ms | p95 ms | mean ms | n |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {label} | {s['p50']:.1f} | {s['p95']:.1f} | {s['mean']:.1f} | {s['n']} |"
            for label, s in [
                ("update (every backend)", report["update_ms"]),
                *([("... of it the view jump check", report["jump_check_ms"])] if jump_ms else []),
                ("add_view, the frame becomes a view", report["add_view_ms_stored"]),
                ("add_view, not novel", report["add_view_ms_not_stored"]),
                *(
                    [("add_view with a loop closure check", report["add_view_ms_loop_check"])]
                    if looked_.any()
                    else []
                ),
                ("whole frame", report["frame_ms"]),
                *((f"query {b}", s) for b, s in report["query_ms"].items()),
            ]
        ),
        "",
        f"{report['views']} views, {report['view_bytes'] / 1e6:.1f} MB, "
        f"{report['loop_closures']} loop closures.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


def time_view_jump_check(service: MemoryService) -> list[float]:
    """Time the engine's view jump check (`engine.jump_check`) inside each update: one entry per frame, its
    features plus, from the second frame on, the match; empty when the check is off."""
    check = service.engine._jump
    if check is None:
        return []
    spent: list[float] = []
    features, jumped = check.features, check.jumped

    def timed_features(image):  # noqa: ANN001, ANN202 - ViewJumpCheck.features
        t0 = time.perf_counter()
        out = features(image)
        spent.append(1e3 * (time.perf_counter() - t0))
        return out

    def timed_jumped(last, now, increment):  # noqa: ANN001, ANN202 - ViewJumpCheck.jumped
        t0 = time.perf_counter()
        out = jumped(last, now, increment)
        spent[-1] += 1e3 * (time.perf_counter() - t0)
        return out

    check.features, check.jumped = timed_features, timed_jumped
    return spent


if __name__ == "__main__":
    main()
