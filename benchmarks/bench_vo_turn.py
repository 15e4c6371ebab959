"""Turn in place: vo_node's odometry (`VisualOdometry`) against the wheel odometry, in-process, on the sim.

The mobile FR3 turns in place at 0.6 rad/s for a full turn in generated houses (`spatial_memory.eval.vo_turn`:
the graph's sim, 160x120 RGB-D head camera at 15 Hz, the arm at home and masked). The recorded frames are
tracked four ways: with each frame's wheel pose (as vo_node runs with `use_wheel_odometry`) or without it
(vision alone), given every frame (15 Hz) or with frames dropped (each next frame 1-3 frames after the last,
seeded: what a busy vo_node does). Score: heading error at the end per full turn of the truth, the largest
heading error on the way, tracking losses; the wheel odometry over the same frames side by side.

World seeds: the VO was tuned on 0-5 (`--seeds`); 10-15 (`--eval-seeds`) were not looked at while tuning.
`--before FILE` adds the rows of an earlier run's JSON (the same script run on older code) to the tables.

    MUJOCO_GL=egl python3 benchmarks/bench_vo_turn.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from machine import machine

from spatial_memory.eval.vo_turn import TurnScenario, delivered, record_turn, run_vo, wheel_result

log = logging.getLogger("bench_vo_turn")
RESULTS = Path(__file__).resolve().parent / "results"
TUNE_SEEDS = (0, 1, 2, 3, 4, 5)
EVAL_SEEDS = (10, 11, 12, 13, 14, 15)
OMEGA = 0.6
MAX_GAP = 3
CONDITIONS = {  # name -> (use the wheel pose, max gap between the frames given)
    "VO + wheel pose, every frame": (True, 1),
    "VO + wheel pose, frames dropped": (True, MAX_GAP),
    "VO alone, every frame": (False, 1),
    "VO alone, frames dropped": (False, MAX_GAP),
}


def run_world(seed: int, omega: float, turns: float) -> list[dict]:
    """Record one world's turn, then the wheel odometry and every VO condition on it."""
    scenario = TurnScenario(seed=seed, omega=omega, turns=turns)
    rec = record_turn(scenario)
    rows = [{"seed": seed, "condition": "wheel odometry", **asdict(wheel_result(rec))}]
    for name, (use_wheel, gap) in CONDITIONS.items():
        frames = delivered(len(rec.stamps_ns), gap, seed=seed)
        result = run_vo(rec, frames=frames, use_wheel=use_wheel)
        rows.append({"seed": seed, "condition": name, **asdict(result)})
        log.info(
            "world %d %-32s %5.2f deg/turn (max %5.2f), %d lost, %d frames, %.1f ms/frame",
            seed,
            name,
            result.heading_error_deg_per_turn,
            result.max_heading_error_deg,
            result.losses,
            result.frames,
            result.ms_per_frame,
        )
    return rows


def _cell(rows: list[dict], seed: int, condition: str) -> str:
    row = next((r for r in rows if r["seed"] == seed and r["condition"] == condition), None)
    if row is None:
        return "-"
    lost = f", {row['losses']} lost" if condition != "wheel odometry" else ""
    return f"{row['heading_error_deg_per_turn']:+.2f} (max {row['max_heading_error_deg']:.2f}{lost})"


def table(rows: list[dict], seeds: tuple[int, ...], before: list[dict]) -> list[str]:
    """Per condition, a row per world: heading error per turn (max on the way, losses), now and before."""
    conditions = ["wheel odometry", *CONDITIONS]
    head = "| condition | " + " | ".join(f"world {s}" for s in seeds) + " | mean abs | worst abs | lost |"
    lines = [head, "|---|" + "---:|" * (len(seeds) + 3)]
    for code, data in (("", rows), ("before: ", before)):
        for cond in conditions:
            if code and cond == "wheel odometry":
                continue
            sel = [r for r in data if r["condition"] == cond and r["seed"] in seeds]
            if not sel:
                continue
            errs = [abs(r["heading_error_deg_per_turn"]) for r in sel]
            lost = sum(r["losses"] for r in sel)
            lines.append(
                f"| {code}{cond} | "
                + " | ".join(_cell(data, s, cond) for s in seeds)
                + f" | {np.mean(errs):.2f} | {max(errs):.2f} | {lost if cond != 'wheel odometry' else '-'} |"
            )
    return lines


def markdown(report: dict, before: dict | None = None) -> str:
    m = report["machine"]
    rows = report["rows"]
    earlier = (before or {}).get("rows", [])
    ms = [r["ms_per_frame"] for r in rows if r["condition"] != "wheel odometry"]
    text = [
        "# Turn in place: VO heading against the wheel odometry",
        "",
        "`MUJOCO_GL=egl python3 benchmarks/bench_vo_turn.py`: the mobile FR3 turns in place at "
        f"{report['omega']} rad/s for {report['turns']} turn(s) in generated houses (the live graph's sim: "
        "160x120 RGB-D head camera at 15 Hz, the arm at home and masked, the wheel odometry with its 2 % "
        "noise). `VisualOdometry` (vo_node's core) tracks the recorded frames with each frame's wheel pose "
        "(vo_node's "
        "`use_wheel_odometry`) or without (vision alone), every frame or with frames dropped (each next "
        f"frame 1-{MAX_GAP} frames after the last, seeded). Cells: heading error at the end per full turn of "
        "the truth in degrees (positive: turned too far), the largest heading error on the way, tracking "
        "losses.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; python {m['python']}, opencv "
        f"{report['opencv']}; run {m['date_utc']}, load average {m['load_average_at_start']} at the start",
        f"- VO time: {np.median(ms):.1f} ms a frame (median over the runs; the machine was shared)",
        *(
            [
                "- before: the same script on the code before the turn-in-place fix "
                f"({before.get('code', '?')}), run {before['machine']['date_utc']}"
            ]
            if before
            else []
        ),
        "",
        "## Worlds not looked at while tuning",
        "",
        *table(rows, tuple(report["eval_seeds"]), earlier),
        "",
        "## Worlds tuned on",
        "",
        *table(rows, tuple(report["tune_seeds"]), earlier),
        "",
    ]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=list(TUNE_SEEDS), help="worlds tuned on")
    parser.add_argument("--eval-seeds", type=int, nargs="*", default=list(EVAL_SEEDS), help="held-out worlds")
    parser.add_argument("--omega", type=float, default=OMEGA, help="rad/s")
    parser.add_argument("--turns", type=float, default=1.0)
    parser.add_argument("--before", type=Path, help="an earlier run's JSON whose rows join the tables")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for vo_turn_in_place.json/.md")
    parser.add_argument("--name", default="vo_turn_in_place", help="file name (no extension)")
    parser.add_argument("--code", default="", help="what code this is (recorded in the JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("spatial_memory").setLevel(logging.ERROR)  # a loss logs a warning per frame
    os.environ.setdefault("MUJOCO_GL", "egl")
    info = machine()
    rows = []
    for seed in [*args.eval_seeds, *args.seeds]:
        rows.extend(run_world(seed, args.omega, args.turns))
    report = {
        "machine": info,
        "opencv": cv2.__version__,
        "code": args.code,
        "omega": args.omega,
        "turns": args.turns,
        "tune_seeds": args.seeds,
        "eval_seeds": args.eval_seeds,
        "rows": rows,
    }
    before = json.loads(args.before.read_text()) if args.before else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report, before)
    (args.out / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
