"""How many PnP inliers should verify a refined answer? `refine.min_inliers` swept on validation worlds.

Live tours (`LiveMemoryRun`: sim_node's core and camera, the memory fed as memory_node feeds it, sim.yaml's
memory with every backend) of each world; every query the run samples (seen and never-seen places) is put to
the refined backend with the view store accepting any pose of >= 6 inliers, and to the model. Each threshold
is then replayed: an answer verified with at least that many inliers is kept, any other falls back to the
model's answer, as `backend: refined` does. Per threshold: seen queries verified, right (within 1 m and
10 deg), verified but wrong (and > 2 m off), never-seen places verified (a false "seen"), and the refined
answer's score within (1 m, 10 deg) with fallbacks. Validation worlds only: the test worlds choose nothing.

    MUJOCO_GL=egl python3 benchmarks/bench_refine_inliers.py        # houses 1000-1003, apartments 1000-1001
    MUJOCO_GL=egl python3 benchmarks/bench_refine_inliers.py --houses 1000 --apartments --steps 200

Writes `benchmarks/results/refine_inliers.json` and `.md` with the machine (about 5 min a world at T = 800).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import machine

from spatial_memory.config import load_config
from spatial_memory.errors import InvalidInputError
from spatial_memory.eval.live_mem_rpe import LiveMemoryRun, LiveRunConfig
from spatial_memory.memory.poses import planar_target
from spatial_memory.memory.service import REFINED, MemoryService
from spatial_memory.node_configs import MemoryNodeConfig
from spatial_memory.resources import share_path

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLDS = (6, 8, 10, 12, 15, 18, 20, 25, 30)
RECORD_MIN = 6  # the fewest inliers PnP can solve from (RefineConfig's floor)


def _errors(answer: Any, truth: np.ndarray) -> tuple[float, float]:
    """Position (m) and heading (deg) error of an answer against the true (x, y, yaw)."""
    yaw = math.atan2(math.sin(answer.yaw - truth[2]), math.cos(answer.yaw - truth[2]))
    return float(math.hypot(answer.x - truth[0], answer.y - truth[1])), abs(math.degrees(yaw))


class RecordingRun(LiveMemoryRun):
    """A live run that records, per sampled query, the refined answer (any inlier count) and the model's."""

    rows: list[dict[str, Any]]

    def _ask(self, step: int, T_world_base: np.ndarray, pictures: dict[str, list[Any]]) -> None:  # noqa: N803
        sample = self.sampler.sample(step, T_world_base)
        if sample is None:
            return
        query, truth = sample.query, planar_target(sample.query.T_base_query)
        try:
            refined, coarse = self.service.query(query.rgb, REFINED), self.service.query(query.rgb)
        except InvalidInputError:  # a picture with nothing to recognise: refused by every backend
            return
        err, yaw_err = _errors(refined, truth)
        coarse_err, coarse_yaw_err = _errors(coarse, truth)
        self.rows.append(
            {
                "seen": bool(query.seen), "verified": refined.note.startswith("refined"),
                "inliers": int(refined.inliers), "err_m": err, "err_deg": yaw_err,
                "coarse_err_m": coarse_err, "coarse_err_deg": coarse_yaw_err,
            }
        )  # fmt: skip


def record(preset: str, seed: int, steps: int) -> list[dict[str, Any]]:
    """One live tour of a world; its queries' rows."""
    node = load_config(MemoryNodeConfig, share_path("config/sim.yaml"), "memory_node")
    engine = dataclasses.replace(node.engine, threads=1)
    refine = dataclasses.replace(node.refine, min_inliers=RECORD_MIN)
    service = MemoryService.from_config(engine, node.serve_keyframes, refine)
    run = RecordingRun(LiveRunConfig(seed=seed, steps=steps, engine=engine, preset=preset), service=service)
    run.rows = []
    try:
        run.run()
    finally:
        run.close()
    return [{**r, "world": f"{preset} {seed}"} for r in run.rows]


def replay(rows: list[dict[str, Any]], threshold: int) -> dict[str, float]:
    """What `min_inliers = threshold` would have answered."""
    seen, unseen = [r for r in rows if r["seen"]], [r for r in rows if not r["seen"]]
    kept = [r for r in seen if r["verified"] and r["inliers"] >= threshold]
    right = [r for r in kept if r["err_m"] < 1.0 and r["err_deg"] < 10.0]
    fallback_right = [
        r for r in seen
        if not (r["verified"] and r["inliers"] >= threshold) and r["coarse_err_m"] < 1.0
        and r["coarse_err_deg"] < 10.0
    ]  # fmt: skip
    n = max(1, len(seen))
    return {
        "min_inliers": threshold,
        "verified_pct": 100.0 * len(kept) / n,
        "verified_right_pct": 100.0 * len(right) / n,
        "verified_wrong": len(kept) - len(right),
        "verified_far": sum(r["err_m"] >= 2.0 for r in kept),
        "unseen_verified": sum(r["verified"] and r["inliers"] >= threshold for r in unseen),
        "refined_1m10deg_pct": 100.0 * (len(right) + len(fallback_right)) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--houses", type=int, nargs="*", default=[1000, 1001, 1002, 1003], help="VALIDATION")
    parser.add_argument("--apartments", type=int, nargs="*", default=[1000, 1001], help="VALIDATION")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--out", type=Path, default=RESULTS / "refine_inliers.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    worlds = [("house", s) for s in args.houses] + [("apartment", s) for s in args.apartments]
    rows: list[dict[str, Any]] = []
    for preset, seed in worlds:
        rows += record(preset, seed, args.steps)
        print(f"{preset} {seed}: {sum(r['world'] == f'{preset} {seed}' for r in rows)} queries", flush=True)
    table = [replay(rows, t) for t in THRESHOLDS]
    per_world = {w: [replay([r for r in rows if r["world"] == w], t) for t in THRESHOLDS] for w in
                 dict.fromkeys(r["world"] for r in rows)}  # fmt: skip
    shipped = load_config(MemoryNodeConfig, share_path("config/sim.yaml"), "memory_node").refine.min_inliers
    report = {"worlds": [f"{p} {s}" for p, s in worlds], "steps": args.steps, "rows": rows, "table": table,
              "per_world": per_world, "shipped_min_inliers": shipped,
              "machine": machine(torch=torch.__version__)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report, args)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    seen = sum(r["seen"] for r in report["rows"])
    unseen = len(report["rows"]) - seen
    lines = [
        "# Refined answers: PnP inliers needed to verify, swept on validation worlds",
        "",
        f"`MUJOCO_GL=egl python3 benchmarks/bench_refine_inliers.py --steps {args.steps}`: live tours of "
        f"{', '.join(report['worlds'])} (T = {args.steps}), sim.yaml's memory; {seen} seen queries, {unseen} "
        "never-seen places. Right: within 1 m and 10 deg. With fallbacks: verified answers kept, the rest "
        f"the model's answer, as `backend: refined` answers. sim.yaml ships `min_inliers: "
        f"{report['shipped_min_inliers']}` (bold).",
        "",
        "| min inliers | seen verified % | verified and right % | verified, wrong (> 2 m) | never-seen "
        "verified | refined within (1 m, 10 deg) % |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["table"]:
        cells = [
            str(r["min_inliers"]), f"{r['verified_pct']:.1f}", f"{r['verified_right_pct']:.1f}",
            f"{r['verified_wrong']} ({r['verified_far']})", f"{r['unseen_verified']} of {unseen}",
            f"{r['refined_1m10deg_pct']:.1f}",
        ]  # fmt: skip
        if r["min_inliers"] == report["shipped_min_inliers"]:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per world, refined within (1 m, 10 deg) % at each threshold:", ""]
    lines.append("| world | " + " | ".join(str(t) for t in THRESHOLDS) + " |")
    lines.append("|---|" + "---:|" * len(THRESHOLDS))
    for world, table in report["per_world"].items():
        lines.append(f"| {world} | " + " | ".join(f"{r['refined_1m10deg_pct']:.1f}" for r in table) + " |")
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
