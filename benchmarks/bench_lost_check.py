"""Can the memory's own answers tell a kidnap from a look-alike place? The lost check (`memory.lost`) swept.

Live runs (`LiveMemoryRun`, sim_node's core and camera, the memory fed as memory_node feeds it) of the tour,
teleop, revisit and kidnap scenarios on validation worlds record every input of the lost check (the robot's
motion, where the memory puts the current view, its seen probability and sigma) with the check unable to
fire. Every setting of a grid then replays those inputs: a run without a kidnap that the setting would have
reset is a false reset; a kidnap run reset after the kidnap is noticed (before it: a false reset too).

    MUJOCO_GL=egl python3 benchmarks/bench_lost_check.py                 # worlds 1000-1003, about 7 min
    MUJOCO_GL=egl python3 benchmarks/bench_lost_check.py --seeds 1000 1001 --steps 200

Writes `benchmarks/results/lost_check.json` and `.md` with the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
from machine import machine

from spatial_memory.config import load_config
from spatial_memory.eval.live_mem_rpe import LiveMemoryRun, LiveRunConfig
from spatial_memory.memory.lost import LostMonitor
from spatial_memory.memory.service import MemoryService
from spatial_memory.node_configs import MemoryNodeConfig
from spatial_memory.resources import share_path

RESULTS = Path(__file__).resolve().parent / "results"
GRID = {
    "distance_m": (2.0, 3.0, 4.0),
    "min_seen": (0.8, 0.85, 0.9, 0.95),
    "votes_of_window": ((3, 3), (4, 4), (4, 5), (5, 5), (5, 6), (6, 8)),
}


class Recorder(LostMonitor):
    """A lost check that records what it is given and never fires."""

    def __init__(self) -> None:
        super().__init__(distance_m=1e9, min_seen=1.0, window=1, votes=1)
        self.inputs: list[tuple[list[float], list[float], float, float]] = []

    def observe(self, increment, answer_xy, seen_probability, sigma_m):  # noqa: ANN001 - LostMonitor's
        self.inputs.append(
            ([float(v) for v in increment], [float(v) for v in answer_xy], seen_probability, sigma_m)
        )
        return None


def record(scenario: str, seed: int, steps: int, service: MemoryService, engine_config) -> dict:  # noqa: ANN001
    recorder = Recorder()
    service.engine._lost = recorder  # the engine's check, swapped for one that only records
    run = LiveMemoryRun(
        LiveRunConfig(scenario=scenario, seed=seed, steps=steps, engine=engine_config), service=service
    )
    try:
        run.run()
    finally:
        run.close()
    kidnap = run.kidnapped_at_step if scenario == "kidnap" else None
    return {"scenario": scenario, "seed": seed, "kidnap_step": kidnap, "inputs": recorder.inputs}


def first_reset(inputs: list, distance_m: float, min_seen: float, votes: int, window: int) -> int | None:
    """The step at which a check with these settings would have reset the memory (inputs start at step 1)."""
    monitor = LostMonitor(distance_m, min_seen, window, votes)
    for step, (increment, answer, seen, sigma) in enumerate(inputs, start=1):
        monitor.observe(np.array(increment), tuple(answer), seen, sigma)
        if monitor.lost:
            return step
    return None


def sweep(runs: list[dict]) -> list[dict]:
    rows = []
    for distance, seen, (votes, window) in itertools.product(*GRID.values()):
        false, noticed, delays = 0, 0, []
        for run in runs:
            step, kidnap = first_reset(run["inputs"], distance, seen, votes, window), run["kidnap_step"]
            if step is not None and (kidnap is None or step < kidnap):
                false += 1
            elif step is not None:
                noticed += 1
                delays.append(step - kidnap)
        rows.append(
            {"distance_m": distance, "min_seen": seen, "votes": votes, "window": window,
             "false_resets": false, "kidnaps_noticed": noticed, "delays_steps": delays}
        )  # fmt: skip
    return sorted(rows, key=lambda r: (r["false_resets"], -r["kidnaps_noticed"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1000, 1001, 1002, 1003], help="VALIDATION worlds"
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--scenarios", nargs="+", default=["tour", "teleop", "revisit", "kidnap"])
    args = parser.parse_args()
    node = load_config(MemoryNodeConfig, share_path("config/sim.yaml"), "memory_node")
    engine_config = dataclasses.replace(node.engine, lost_check=True)
    service = MemoryService.from_config(engine_config)
    runs = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            runs.append(record(scenario, seed, args.steps, service, engine_config))
            print(f"{scenario} seed {seed}: {len(runs[-1]['inputs'])} checks", flush=True)
    rows = sweep(runs)
    kidnaps = sum(r["kidnap_step"] is not None for r in runs)
    report = {"seeds": args.seeds, "steps": args.steps, "scenarios": args.scenarios, "runs": len(runs),
              "kidnap_runs": kidnaps, "grid": rows, "machine": machine()}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lost_check.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# The lost check swept: kidnaps noticed against normal runs reset",
        "",
        "`MUJOCO_GL=egl python3 benchmarks/bench_lost_check.py`: validation worlds "
        f"{args.seeds}, T = {args.steps}, scenarios {', '.join(args.scenarios)} ({len(runs)} live runs, "
        f"{kidnaps} with a kidnap), the shipped model and sim.yaml's engine. False resets: runs the setting "
        "would have reset without a kidnap (or before it). Noticed: kidnap runs reset after the kidnap "
        "(delay in memory steps, 5 a second).",
        "",
        "| distance m | min seen | votes / window | false resets | kidnaps noticed | delays (steps) |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        delays = ", ".join(map(str, r["delays_steps"])) or "-"
        lines.append(
            f"| {r['distance_m']:g} | {r['min_seen']:g} | {r['votes']} / {r['window']} | "
            f"{r['false_resets']} | {r['kidnaps_noticed']} of {kidnaps} | {delays} |"
        )
    lines += ["", f"Machine: {report['machine']}"]
    (RESULTS / "lost_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
