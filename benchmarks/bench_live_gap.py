"""Why did the live tour score below the recorded one? The live sim changed one thing at a time.

The offline benchmark replays recorded tours (a 64x64 render, textures of 128 px, the arm stowed, the robot
starting at the tour's own start pose). Live, `sim_node`'s core differs in several ways at once: a 160x120
camera cropped and resized to the model's 64x64, textures of 64 px, wheel odometry integrated at 30 Hz, and
(before this check) the arm at the FR3's home pose in the lower middle of the head camera's picture and the
robot starting in the centre of room 0. This script runs the live tour (harness a: `LiveMemoryRun`, the
memory fed as memory_node feeds it) on the same worlds with one of those differences changed at a time,
and the offline rows of the same worlds, so each variant's cost can be read off one table.

    MUJOCO_GL=egl python3 benchmarks/bench_live_gap.py                  # worlds 1000-1003, about 25 min
    MUJOCO_GL=egl python3 benchmarks/bench_live_gap.py --variants shipped arm_home

Writes `benchmarks/results/live_gap.json` and `.md` with the machine. Validation worlds by default: this is
a diagnosis, not a score.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from machine import machine

from spatial_memory.config import load_config
from spatial_memory.eval.live_mem_rpe import SCENARIOS, Scenario, TourDriver, run_scenarios
from spatial_memory.memory.evaluate import episodes_for
from spatial_memory.memory.registry import build_model, load_checkpoint
from spatial_memory.node_configs import MemoryNodeConfig, SimNodeConfig
from spatial_memory.resources import share_path
from spatial_memory.sim.live import LiveSimConfig
from spatial_memory.sim.odometry import WheelOdometryConfig

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ("kinaema", "keyframes")


class CentreStartTour(TourDriver):
    """The tour, but from wherever the sim starts the robot (the centre of room 0), as before the fix."""

    def start_pose(self) -> None:
        return None


SCENARIOS["tour_from_centre"] = Scenario(
    "tour_from_centre", "the tour from the centre of room 0", lambda sim, seed, T: CentreStartTour(sim, seed)
)


def _camera(base: LiveSimConfig, px: int) -> LiveSimConfig:
    robot = base.robot
    head = dataclasses.replace(robot.head_camera, width=px, height=px)
    return dataclasses.replace(base, robot=dataclasses.replace(robot, head_camera=head))


def variants(base: LiveSimConfig) -> dict[str, tuple[str, LiveSimConfig, str]]:
    """name -> (what changed, sim config, scenario)."""
    exact = WheelOdometryConfig(0.0, 0.0, 0.0, 0.0)
    textures = dataclasses.replace(base, world=dataclasses.replace(base.world, texture_px=128))
    home = dataclasses.replace(base, arm_start="home")
    return {
        "shipped": ("the live sim as shipped: arm stowed, tour from its start", base, "tour"),
        "arm_home": ("the arm at home, in the head camera's view", home, "tour"),
        "centre_start": ("the tour from the centre of room 0", base, "tour_from_centre"),
        "before": ("both: the live sim before the fix", home, "tour_from_centre"),
        "camera_64": ("a 64x64 head camera (no crop, no resize)", _camera(base, 64), "tour"),
        "textures_128": ("textures of 128 px, as the recordings", textures, "tour"),
        "exact_odometry": ("wheel odometry without noise", dataclasses.replace(base, odometry=exact), "tour"),
    }


def offline_rows(engine, seeds: list[int], steps: int, cache: Path, preset: str) -> dict[str, dict]:  # noqa: ANN001
    from spatial_memory.eval.live_mem_rpe import offline_answers, score
    from spatial_memory.memory.evaluate import head_camera_offset

    ckpt = load_checkpoint(engine.checkpoint)
    episodes = episodes_for(seeds, steps, preset, (64, 64), [], cache, False)
    rows = {}
    for backend in BACKENDS:
        model = ckpt.model
        if backend == "keyframes":
            offset = head_camera_offset(episodes[0])
            model = build_model("keyframes", None, ckpt.encoder.config, camera_offset=offset).eval()
        rows[backend] = score(offline_answers(model, ckpt.encoder, episodes, steps)).mem_rpe
    return rows


def _cells(m) -> str:  # noqa: ANN001
    return (
        f"{m.within_1m_10deg_pct:.1f} / {m.within_1m_90deg_pct:.1f} / {m.within_2m_90deg_pct:.1f} "
        f"| {m.median_heading_deg:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002, 1003])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--preset", default="house", help="world preset: house, apartment, room")
    parser.add_argument("--variants", nargs="+", default=None, help="default: all")
    parser.add_argument("--cache", type=Path, default=Path("outputs/eval_episodes"))
    parser.add_argument("--out", type=Path, default=RESULTS / "live_gap.json")
    args = parser.parse_args()
    node = load_config(MemoryNodeConfig, share_path("config/sim.yaml"), "memory_node")
    engine = dataclasses.replace(node.engine, threads=node.engine.threads or 1)
    base = load_config(SimNodeConfig, share_path("config/sim.yaml"), "sim_node").sim
    table = variants(base)
    names = args.variants or list(table)
    rows: dict[str, dict] = {
        "offline (recorded tours)": offline_rows(engine, args.seeds, args.steps, args.cache, args.preset)
    }
    for name in names:
        what, sim, scenario = table[name]
        result = run_scenarios(
            [scenario],
            args.seeds,
            args.steps,
            engine,
            args.preset,
            node.update_rate_hz,
            sim,
            backends=BACKENDS,
        )[scenario]
        rows[f"live, {what}"] = {b: result[b][0].mem_rpe for b in BACKENDS}
        print(name, {b: _cells(rows[f"live, {what}"][b]) for b in BACKENDS}, flush=True)
    lines = [
        f"# Live tour against the recorded tour, one difference at a time ({args.preset} worlds "
        f"{args.seeds}, T = {args.steps})",
        "",
        "`MUJOCO_GL=egl python3 benchmarks/bench_live_gap.py`. Model: the shipped one "
        f"(`{engine.checkpoint}`). % of seen queries within (1 m, 10 deg) / (1 m, 90 deg) / (2 m, 90 deg) "
        "| median heading error (deg).",
        "",
        "| run | Kinaema | heading | retrieval (same encoder) | heading |",
        "|---|---|---:|---|---:|",
        *(f"| {label} | {_cells(r['kinaema'])} | {_cells(r['keyframes'])} |" for label, r in rows.items()),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()),
        "",
    ]
    report = {
        "seeds": args.seeds,
        "steps": args.steps,
        "checkpoint": engine.checkpoint,
        "rows": {k: {b: dataclasses.asdict(m) for b, m in v.items()} for k, v in rows.items()},
        "machine": machine(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
