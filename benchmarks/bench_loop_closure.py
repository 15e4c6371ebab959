"""Loop closures against ground truth: how many are wrong, and which chi-square gate refuses them.

Live runs (`LiveMemoryRun`: sim_node's core and camera, the memory fed as memory_node feeds it, sim.yaml's
memory) of validation worlds. Every loop-closure attempt that PnP matched against a view at least
`refine.loop_min_age_s` old is scored against the simulator's truth: PnP's planar pose of the camera now
in the old view's frame against the true one. A closure is wrong when that is more than 0.3 m or 5 deg off
(a look-alike place, or a match on repeated furniture). By default the chi-square gate is off in these
runs (`refine.loop_max_chi2` a billion: every attempt's chi-square is computed, none refused by it), so the
table shows, for each gate, the right closures it would refuse and the wrong ones it would let through,
from the same attempts; `--max-chi2 16.3` runs as shipped instead. Validation worlds only.

    MUJOCO_GL=egl python3 benchmarks/bench_loop_closure.py   # 6 runs, two at a time: ~12 min on 2 cores
    MUJOCO_GL=egl python3 benchmarks/bench_loop_closure.py --max-chi2 16.3 --out .../loop_closure_gated.json

Writes `benchmarks/results/loop_closure.json` and `.md` with the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import machine

from spatial_memory.config import load_config
from spatial_memory.eval.live_mem_rpe import LiveMemoryRun, LiveRunConfig, odom_camera_pose, score
from spatial_memory.memory.pose_graph import ClosureResult, planar
from spatial_memory.memory.service import MemoryService
from spatial_memory.node_configs import MemoryNodeConfig, SimNodeConfig
from spatial_memory.resources import share_path

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = (
    ("house", 1000, "tour"), ("house", 1000, "teleop"), ("house", 1001, "revisit"),
    ("apartment", 1000, "tour"), ("apartment", 1000, "revisit"), ("apartment", 1001, "tour"),
)  # fmt: skip
WRONG_M, WRONG_DEG = 0.3, 5.0
GATES = (7.8, 11.3, 16.3, 25.0, 50.0)  # chi-square, 3 dof: 5 %, 1 %, 0.1 %, ...
UNGATED = 1_000_000_000


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Planar pose (x, y, heading) of camera pose `b` in the frame of camera pose `a` (both 4x4)."""
    pa, pb = planar(a), planar(b)
    c, s = math.cos(pa[2]), math.sin(pa[2])
    dx, dy = pb[0] - pa[0], pb[1] - pa[1]
    turn = (pb[2] - pa[2] + math.pi) % (2 * math.pi) - math.pi
    return np.array([c * dx + s * dy, -s * dx + c * dy, turn])


class ClosureRun(LiveMemoryRun):
    """A live run that keeps each frame's true camera pose and scores every verified closure attempt."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.truth: dict[int, np.ndarray] = {}
        self.odometry_path: dict[int, float] = {}
        self._path, self._last_xy = 0.0, None
        self.attempts: list[dict[str, Any]] = []
        store = self.service.views
        close = store.close_loop

        def scored(found: Any, T_world_now: np.ndarray, stamp_ns: int) -> ClosureResult:  # noqa: N803
            view = next((v for v in store.views if v.view_id == found.view_id), None)
            result = close(found, T_world_now, stamp_ns)
            if view is not None and found.T_view_query is not None:
                self._score(view.stamp_ns, found, stamp_ns, result)
            return result

        store.close_loop = scored

    def feed(self, tick: Any, frame: Any) -> None:
        xy = odom_camera_pose(tick, frame)[:2, 3]
        if self._last_xy is not None:
            self._path += float(np.hypot(*(xy - self._last_xy)))
        self._last_xy = xy
        self.truth[tick.stamp_ns] = frame.T_world_cam.copy()
        self.odometry_path[tick.stamp_ns] = self._path
        super().feed(tick, frame)

    def _score(self, view_ns: int, found: Any, now_ns: int, result: ClosureResult) -> None:
        view, now = self.truth.get(view_ns), self.truth.get(now_ns)
        if view is None or now is None:
            return
        true = _relative(view, now)
        measured = _relative(view, view @ found.T_view_query)
        turn = abs((true[2] - measured[2] + math.pi) % (2 * math.pi) - math.pi)
        self.attempts.append({
            "age_s": (now_ns - view_ns) * 1e-9,
            "path_m": self.odometry_path[now_ns] - self.odometry_path.get(view_ns, 0.0),
            "inliers": int(found.inliers),
            "accepted": bool(result.accepted),
            "reason": result.reason,
            "correction_m": result.correction_m,
            "chi2": result.chi2,
            "error_m": float(np.hypot(*(true[:2] - measured[:2]))),
            "error_deg": math.degrees(turn),
        })  # fmt: skip


def wrong(attempt: dict[str, Any]) -> bool:
    return attempt["error_m"] > WRONG_M or attempt["error_deg"] > WRONG_DEG


def record(preset: str, seed: int, scenario: str, max_chi2: float, steps: int) -> dict[str, Any]:
    """One live run; its closure attempts and its refined answers' scores."""
    torch.set_num_threads(1)
    params = share_path("config/sim.yaml")
    node = load_config(MemoryNodeConfig, params, "memory_node")
    sim = load_config(SimNodeConfig, params, "sim_node").sim
    engine = dataclasses.replace(node.engine, threads=1)
    refine = dataclasses.replace(node.refine, loop_max_chi2=max_chi2)
    service = MemoryService.from_config(engine, node.serve_keyframes, refine)
    config = LiveRunConfig(
        scenario=scenario, preset=preset, seed=seed, steps=steps, update_rate_hz=node.update_rate_hz,
        engine=engine, sim=sim,
    )  # fmt: skip
    run = ClosureRun(config, service=service, backends=("refined",))
    try:
        answers = run.run()
    finally:
        run.close()
    scores = score(answers).to_dict()
    return {
        "run": f"{preset} {seed} {scenario}",
        "attempts": run.attempts,
        "refined_1m10deg_pct": scores["mem_rpe"]["within_1m_10deg_pct"],
        "median_position_m": scores["mem_rpe"]["median_position_m"],
        "sigma_coverage_pct": scores["sigma_coverage_pct"],
    }


def gate_table(attempts: list[dict[str, Any]], accepted_before_gate: list[bool]) -> list[dict[str, Any]]:
    """Per chi-square gate: the closures the other gates passed, right ones refused, wrong ones let in."""
    passed = [a for a, ok in zip(attempts, accepted_before_gate, strict=True) if ok]
    rows = []
    for gate in (*GATES, math.inf):
        kept = [a for a in passed if a["chi2"] <= gate]
        rows.append({
            "gate": gate,
            "accepted": len(kept),
            "right_refused": sum(not wrong(a) and a["chi2"] > gate for a in passed),
            "wrong_accepted": sum(wrong(a) for a in kept),
        })  # fmt: skip
    return rows


def _gate(value: float) -> str:
    return "off" if math.isinf(value) else f"{value:g}"


def report_lines(runs: list[dict[str, Any]], max_chi2: float, steps: int) -> list[str]:
    attempts = [a for r in runs for a in r["attempts"]]
    gated = max_chi2 < UNGATED
    passed = [a["accepted"] or "chi-square" in a["reason"] for a in attempts]
    command = "MUJOCO_GL=egl python3 benchmarks/bench_loop_closure.py" + (
        f" --max-chi2 {max_chi2:g}" if gated else ""
    )
    lines = [
        f"# Loop closures against ground truth (T = {steps}, validation worlds)",
        "",
        f"`{command}`: sim.yaml's memory, `refine.loop_max_chi2` "
        + (f"{max_chi2:g}" if gated else "off (every attempt's chi-square computed, none refused)")
        + f". A closure is wrong when PnP's planar pose of the camera in the old view's frame is more than "
        f"{WRONG_M} m or {WRONG_DEG:g} deg off the truth.",
        "",
        "| run | attempts matched (PnP) | accepted | accepted but wrong | "
        "largest chi-square of a right closure | chi-square of the wrong ones | "
        "refined within 1 m, 10 deg % | median m | 1-sigma cover % |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in runs:
        acc = [a for a in r["attempts"] if a["accepted"]]
        right = [a["chi2"] for a in r["attempts"] if not wrong(a) and math.isfinite(a["chi2"])]
        bad = [a["chi2"] for a in r["attempts"] if wrong(a) and math.isfinite(a["chi2"])]
        lines.append(
            f"| {r['run']} | {len(r['attempts'])} | {len(acc)} | {sum(wrong(a) for a in acc)} | "
            f"{max(right, default=math.nan):.1f} | {', '.join(f'{c:.0f}' for c in sorted(bad)) or '-'} | "
            f"{r['refined_1m10deg_pct']:.1f} | {r['median_position_m']:.2f} | {r['sigma_coverage_pct']:.1f} |"
        )
    if not gated:
        lines += [
            "",
            "Every gate on the same attempts (those the other gates passed: inliers, size, moved since the "
            "last closure):",
            "",
            "| chi-square gate | accepted | right ones refused | wrong ones accepted |",
            "|---:|---:|---:|---:|",
            *(
                f"| {_gate(t['gate'])} | {t['accepted']} | {t['right_refused']} | {t['wrong_accepted']} |"
                for t in gate_table(attempts, passed)
            ),
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-chi2", type=float, default=UNGATED, help="refine.loop_max_chi2 (default: off)")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one process each, one thread)")
    parser.add_argument("--out", type=Path, default=RESULTS / "loop_closure.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(record, *run, args.max_chi2, args.steps) for run in RUNS]
        runs = []
        for future in futures:
            runs.append(future.result())
            print(f"{runs[-1]['run']}: {len(runs[-1]['attempts'])} closure attempts matched", flush=True)
    lines = report_lines(runs, args.max_chi2, args.steps)
    info = machine(torch=torch.__version__)
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"max_chi2": args.max_chi2, "steps": args.steps, "runs": runs}, indent=1))
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
