"""What a refined answer costs and what it gets right, per `refine.enough_inliers` and `refine.max_views`.

Live tours (`LiveMemoryRun`: sim_node's core and camera, the memory fed as memory_node feeds it, sim.yaml's
memory with every backend) of validation worlds; every query the run samples (seen and never-seen places)
is put to `backend: refined` once per setting, back to back, each from the same state of the view store
(the current view's features and the vote index not yet computed, as for the first query after a frame)
and the same RANSAC seed, and timed. Per setting: seen queries within (1 m, 10 deg) (with fallbacks to the
model's answer, as served), verified, verified but wrong, never-seen places verified, views tried and the
time per answer. Validation worlds only: the test worlds choose nothing.

    MUJOCO_GL=egl python3 benchmarks/bench_refine_cost.py     # houses 1000-1001, apartment 1000, T = 800

Writes `benchmarks/results/refine_cost.json` and `.md` with the machine (about 6 min a world on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from bench_refine_inliers import _errors
from machine import machine

from spatial_memory.config import load_config
from spatial_memory.errors import InvalidInputError
from spatial_memory.eval.live_mem_rpe import LiveMemoryRun, LiveRunConfig
from spatial_memory.memory.poses import planar_target
from spatial_memory.memory.service import REFINED, MemoryService
from spatial_memory.node_configs import MemoryNodeConfig
from spatial_memory.resources import share_path

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = ("0/0", "50/0", "30/0", "50/6", "50/4", "30/4")  # enough_inliers/max_views; 0 = off


class TimingRun(LiveMemoryRun):
    """A live run that asks each sampled query under every setting and records time and error."""

    rows: list[dict[str, Any]]
    settings: tuple[str, ...]

    def _ask(self, step: int, T_world_base: np.ndarray, pictures: dict[str, list[Any]]) -> None:  # noqa: N803
        sample = self.sampler.sample(step, T_world_base)
        if sample is None:
            return
        query, truth = sample.query, planar_target(sample.query.T_base_query)
        views, base = self.service.views, self.service.views.config
        fresh = (views._live_view, views._db)  # the store's lazy state before this query
        row: dict[str, Any] = {"seen": bool(query.seen)}
        try:
            coarse = self.service.query(query.rgb)
            for setting in self.settings:
                enough, most = _setting(setting)
                views.config = dataclasses.replace(base, enough_inliers=enough, max_views=most)
                views._live_view, views._db = fresh
                cv2.setRNGSeed(0)
                t0 = time.perf_counter()
                answer = self.service.query(query.rgb, REFINED)
                ms = 1e3 * (time.perf_counter() - t0)
                row[setting] = {
                    "ms": ms,
                    "verified": answer.note.startswith("refined"),
                    "err": _errors(answer, truth),
                    "tried": _tried(answer.note),
                }
        except InvalidInputError:  # a picture with nothing to recognise: refused by every backend
            return
        finally:
            views.config = base
        row["coarse_err"] = _errors(coarse, truth)
        self.rows.append(row)


def _setting(text: str) -> tuple[int, int]:
    """'ENOUGH/MAX_VIEWS' as integers."""
    enough, most = text.split("/")
    return int(enough), int(most)


def _tried(note: str) -> int:
    """Views tried, from the answer's note ('... (N tried) ...' or '... (N views tried)')."""
    for word in note.replace("(", " ").split(")"):
        parts = word.split()
        if len(parts) >= 2 and parts[-1] == "tried" and parts[-2].isdigit():
            return int(parts[-2])
        if len(parts) >= 3 and parts[-1] == "tried" and parts[-2] == "views" and parts[-3].isdigit():
            return int(parts[-3])
    return 0


def record(preset: str, seed: int, steps: int, settings: tuple[str, ...]) -> list[dict[str, Any]]:
    """One live tour of a world; its queries' rows."""
    node = load_config(MemoryNodeConfig, share_path("config/sim.yaml"), "memory_node")
    engine = dataclasses.replace(node.engine, threads=1)
    service = MemoryService.from_config(engine, node.serve_keyframes, node.refine)
    run = TimingRun(LiveRunConfig(seed=seed, steps=steps, engine=engine, preset=preset), service=service)
    run.rows, run.settings = [], settings
    try:
        run.run()
    finally:
        run.close()
    return [{**r, "world": f"{preset} {seed}"} for r in run.rows]


def summarise(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    seen, unseen = [r for r in rows if r["seen"]], [r for r in rows if not r["seen"]]

    def right(err: tuple[float, float]) -> bool:
        return err[0] < 1.0 and err[1] < 10.0

    verified = [r for r in seen if r[key]["verified"]]
    served = [r[key]["err"] if r[key]["verified"] else r["coarse_err"] for r in seen]
    ms = np.array([r[key]["ms"] for r in rows])
    n = max(1, len(seen))
    return {
        "enough_inliers": _setting(key)[0],
        "max_views": _setting(key)[1],
        "refined_1m10deg_pct": 100.0 * sum(right(e) for e in served) / n,
        "verified_pct": 100.0 * len(verified) / n,
        "verified_wrong": sum(not right(r[key]["err"]) for r in verified),
        "median_err_m": float(np.median([e[0] for e in served])) if served else math.nan,
        "unseen_verified": sum(r[key]["verified"] for r in unseen),
        "tried_mean": float(np.mean([r[key]["tried"] for r in rows])),
        "ms_p50": float(np.median(ms)),
        "ms_p95": float(np.percentile(ms, 95)),
        "ms_mean": float(np.mean(ms)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--houses", type=int, nargs="*", default=[1000, 1001], help="VALIDATION worlds")
    parser.add_argument("--apartments", type=int, nargs="*", default=[1000], help="VALIDATION worlds")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument(
        "--settings", nargs="+", default=list(SETTINGS), help="ENOUGH_INLIERS/MAX_VIEWS pairs (0: off)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "refine_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = tuple(args.settings)
    rows: list[dict[str, Any]] = []
    worlds = [("house", s) for s in args.houses] + [("apartment", s) for s in args.apartments]
    for preset, seed in worlds:
        rows += record(preset, seed, args.steps, settings)
        print(f"{preset} {seed}: {len(rows)} queries so far", flush=True)
    table = [summarise(rows, setting) for setting in settings]
    report = {"worlds": [f"{p} {s}" for p, s in worlds], "steps": args.steps, "rows": rows, "table": table,
              "machine": machine(torch=torch.__version__)}  # fmt: skip
    seen = sum(r["seen"] for r in rows)
    lines = [
        f"# A refined answer's cost against what it gets right (T = {args.steps})",
        "",
        "Per `refine.enough_inliers` (a view verified with this many inliers ends the search) and "
        "`refine.max_views` (at most this many views matched); 0 = off.",
        "",
        f"`MUJOCO_GL=egl python3 benchmarks/bench_refine_cost.py`: live tours of validation worlds "
        f"{', '.join(report['worlds'])}; each of {len(rows)} queries ({seen} of seen places) asked under "
        "every setting from the same state (the current view's features and the vote index not computed "
        "yet, RANSAC seeded alike), one thread. Within (1 m, 10 deg): the answer as served (a failed "
        "verification falls back to the model's). Time: the whole refined answer (the model's and "
        "retrieval's guesses included).",
        "",
        "| enough_inliers | max_views | within 1 m, 10 deg % | verified % | verified but wrong | "
        "median error m | never-seen verified | views tried | ms p50 | ms p95 | ms mean |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {t['enough_inliers'] or 'off'} | {t['max_views'] or 'all'} | "
            f"{t['refined_1m10deg_pct']:.1f} | {t['verified_pct']:.1f} | "
            f"{t['verified_wrong']} | {t['median_err_m']:.2f} | {t['unseen_verified']} | "
            f"{t['tried_mean']:.1f} | {t['ms_p50']:.1f} | {t['ms_p95']:.1f} | {t['ms_mean']:.1f} |"
            for t in table
        ),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
