"""Does the view jump between two frames when, and only when, the robot is carried off? The check swept.

Live runs (`LiveMemoryRun`: sim_node's core and camera, the memory fed as memory_node feeds it) of every
scenario record, for each frame, how many SIFT matches with the frame before agree on one homography, the
fewer features of the two, how many optical-flow tracks agree on one, and the odometry's increment between
them (`memory.lost.ViewJumpCheck`'s inputs), with the check unable to fire. Every setting of a grid then
replays them: a run without a kidnap that the setting would have reset is a false reset; a kidnap run
reset at the kidnap's first frame is noticed (reset elsewhere: a false reset). A second table puts the
flow in front of sim.yaml's SIFT setting: what it changes, and how many pairs still need SIFT.

    MUJOCO_GL=egl python3 benchmarks/bench_view_jump.py                          # validation worlds 1000-1003
    MUJOCO_GL=egl python3 benchmarks/bench_view_jump.py --seeds 2000 2001 2002 2003 --name test

Writes `benchmarks/results/view_jump[_NAME].json` and `.md` with the machine.
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
from spatial_memory.eval.live_mem_rpe import SCENARIOS, LiveMemoryRun, LiveRunConfig
from spatial_memory.memory.lost import ViewFeatures, ViewJumpCheck
from spatial_memory.memory.service import MemoryService
from spatial_memory.node_configs import MemoryNodeConfig
from spatial_memory.resources import share_path

RESULTS = Path(__file__).resolve().parent / "results"
FLOW_GATES = (0, 20, 30, 50, 80)
STILL = [0.0, 0.0, 0.0]
FAR_SAMPLES, FAR_M, FAR_DEG = 40, 2.5, 100.0  # made-up kidnaps: frame pairs this far apart (`far_pairs`)
GRID = {
    "min_features": (30, 50, 100),
    "min_inliers": (6, 8, 10, 12, 15),
    "max_motion_m": (0.1, 0.25, 0.5),
    "max_turn_deg": (8.0, 10.0, 15.0, 30.0),
}


class Recorder(ViewJumpCheck):
    """A view jump check that records what it is given and never fires."""

    def __init__(self, service: MemoryService) -> None:
        super().__init__(4, 4, 0.0, 0.0, flow_inliers=1)  # flow on: features() finds the corners
        self.service = service
        # (frame index in the run, fewer SIFT features of the two frames, SIFT inliers, increment, flow
        # inliers)
        self.inputs: list[tuple[int, int, int, list[float], int]] = []
        self.views: list[ViewFeatures] = []  # every frame, for the far pairs

    def features(self, image_rgb: np.ndarray) -> ViewFeatures:
        view = super().features(image_rgb)
        self.views.append(view)
        return view

    def jumped(self, last: ViewFeatures, now: ViewFeatures, increment: np.ndarray) -> bool:
        frame = self.service.engine.counters["frames_used"]  # frames used before this one: its index
        features, inliers = min(len(last), len(now)), self.inliers(last, now)
        flow = self.flow_inliers_between(last, now)
        self.inputs.append((frame, features, inliers, [float(v) for v in increment], flow))
        return False


def record(scenario: str, seed: int, steps: int, service: MemoryService, engine_config) -> dict:  # noqa: ANN001
    recorder = Recorder(service)
    service.engine._jump = recorder  # the engine's check, swapped for one that only records
    run = LiveMemoryRun(
        LiveRunConfig(scenario=scenario, seed=seed, steps=steps, engine=engine_config), service=service
    )
    start = service.engine.counters["frames_used"]
    try:
        run.run()
    finally:
        run.close()
    kidnap = run.kidnapped_at_step if scenario == "kidnap" else None
    inputs = [(i - start, n, k, inc, flow) for i, n, k, inc, flow in recorder.inputs]
    far = far_pairs(recorder, [inc for *_, inc, _ in inputs], kidnap, seed)
    return {"scenario": scenario, "seed": seed, "kidnap_step": kidnap, "inputs": inputs, "far_pairs": far}


def far_pairs(recorder: Recorder, increments: list[list[float]], kidnap: int | None, seed: int) -> list:
    """Kidnaps made up from the run's own frames: random pairs whose odometry poses lie >= FAR_M apart
    or face >= FAR_DEG apart (the frames before a kidnap only: after it the odometry is wrong), as if the
    robot had been carried from one to the other. (fewer SIFT features, SIFT inliers, flow inliers) each."""
    poses = [np.zeros(3)]
    for dx, dy, dyaw in increments:  # increments[i] leads from frame i to frame i + 1
        x, y, yaw = poses[-1]
        c, s = np.cos(yaw), np.sin(yaw)
        poses.append(np.array([x + c * dx - s * dy, y + s * dx + c * dy, yaw + dyaw]))
    poses = np.array(poses[: kidnap if kidnap is not None else len(poses)])
    views, rng, pairs = recorder.views, np.random.default_rng(seed), []
    for i, j in rng.integers(0, len(poses), (FAR_SAMPLES, 2)):
        turn = abs((poses[i, 2] - poses[j, 2] + np.pi) % (2 * np.pi) - np.pi)
        if np.hypot(*(poses[i, :2] - poses[j, :2])) < FAR_M and turn < np.radians(FAR_DEG):
            continue
        a, b = views[i], views[j]
        pairs.append((min(len(a), len(b)), recorder.inliers(a, b), recorder.flow_inliers_between(a, b)))
    return pairs


def fires(
    check: ViewJumpCheck, features: int, inliers: int, increment: list[float], flow: int | None = None
) -> bool:
    """What `check.jumped` would say about a recorded frame (`flow`: its flow inliers, None: not recorded)."""
    cleared = bool(check.flow_inliers) and flow is not None and flow >= check.flow_inliers
    return (
        check.still(np.array(increment))
        and not cleared
        and features >= check.min_features
        and inliers < check.min_inliers
    )


def sweep(runs: list[dict]) -> list[dict]:
    rows = []
    for setting in itertools.product(*GRID.values()):
        check = ViewJumpCheck(*setting)
        false, noticed = 0, 0
        for run in runs:
            frames = [f for f, n, k, inc, *_ in run["inputs"] if fires(check, n, k, inc)]
            false += any(f != run["kidnap_step"] for f in frames)
            noticed += run["kidnap_step"] is not None and run["kidnap_step"] in frames
        row = dict(zip(GRID, setting, strict=True))
        rows.append({**row, "false_resets": false, "kidnaps_noticed": noticed})
    return sorted(rows, key=lambda r: (r["false_resets"], -r["kidnaps_noticed"], -r["min_inliers"]))


def shipped(engine_config) -> dict:  # noqa: ANN001
    """sim.yaml's settings of the check (chosen on validation worlds 1000-1003)."""
    names = ("min_features", "min_inliers", "max_motion_m", "max_turn_deg")
    return {n: getattr(engine_config, f"jump_{n}") for n in names}


def summary(runs: list[dict], min_features: int) -> dict:
    """Inliers of normal frame pairs (odometry nearly still, both textured) against those at the kidnaps."""
    still = ViewJumpCheck(4, 4, 0.25, 15.0)  # the shipped motion gate
    normal, kidnaps = [], []
    for run in runs:
        for frame, features, inliers, increment, flow in run["inputs"]:
            if frame == run["kidnap_step"]:
                kidnaps.append({
                    "seed": run["seed"], "features": features, "inliers": inliers, "increment": increment,
                    "flow": flow,
                })  # fmt: skip
            elif features >= min_features and still.still(np.array(increment)):
                normal.append(inliers)
    v = np.array(normal)
    lowest = sorted(normal)[:10]
    spread = {"n": len(v), "lowest": lowest, "p1": float(np.quantile(v, 0.01)), "median": float(np.median(v))}
    return {"min_features": min_features, "normal": spread, "kidnaps": kidnaps}


TURN_BANDS = ((0.0, 6.0), (6.0, 8.0), (8.0, 10.0), (10.0, 12.0), (12.0, 15.0))  # recorded: <= 15 deg


def turn_bands(runs: list[dict], min_features: int) -> list[dict]:
    """Normal frame pairs (both textured, moved <= 0.25 m) by how far the odometry turned between them: how
    many, and their fewest SIFT inliers. A spin shares fewer features between frames than a drive."""
    rows = []
    for lo, hi in TURN_BANDS:
        inliers = sorted(
            k
            for run in runs
            for f, n, k, inc, _ in run["inputs"]
            if f != run["kidnap_step"] and n >= min_features and np.hypot(inc[0], inc[1]) <= 0.25
            and lo <= abs(np.degrees(inc[2])) < hi
        )  # fmt: skip
        rows.append({"turn_deg": [lo, hi], "n": len(inliers), "lowest": inliers[:5]})
    return rows


def flow_table(runs: list[dict], engine_config) -> list[dict]:  # noqa: ANN001
    """sim.yaml's SIFT setting behind each flow gate: false resets, kidnaps noticed, and the share of the
    pairs the motion gate lets through that still need SIFT (fewer flow inliers than the gate)."""
    rows = []
    for gate in FLOW_GATES:
        check = dataclasses.replace(engine_config, jump_flow_inliers=gate).view_jump_check()
        false, noticed, still, sift, far_cleared = 0, 0, 0, 0, 0
        for run in runs:
            for n, k, flow in run.get("far_pairs", []):  # SIFT would fire and the flow clears it first
                far_cleared += fires(check, n, k, STILL) and not fires(check, n, k, STILL, flow)
            frames = []
            for f, n, k, inc, flow in run["inputs"]:
                if check.still(np.array(inc)):
                    still += 1
                    sift += gate == 0 or flow < gate
                if fires(check, n, k, inc, flow):
                    frames.append(f)
            false += any(f != run["kidnap_step"] for f in frames)
            noticed += run["kidnap_step"] is not None and run["kidnap_step"] in frames
        rows.append({"flow_inliers": gate, "false_resets": false, "kidnaps_noticed": noticed,
                     "sift_share": sift / max(still, 1), "far_cleared": far_cleared})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002, 1003])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--name", default="", help="results file suffix (e.g. test)")
    parser.add_argument("--dump", type=Path, help="also write every run's recorded inputs here (JSON)")
    parser.add_argument("--replay", type=Path, help="sweep the inputs of an earlier --dump (runs nothing)")
    args = parser.parse_args()
    node = load_config(MemoryNodeConfig, share_path("config/sim.yaml"), "memory_node")
    engine_config = dataclasses.replace(node.engine, jump_check=True)
    runs = json.loads(args.replay.read_text()) if args.replay else []
    if not runs:
        service = MemoryService.from_config(engine_config)
        for scenario in args.scenarios:
            for seed in args.seeds:
                runs.append(record(scenario, seed, args.steps, service, engine_config))
                print(f"{scenario} seed {seed}: {len(runs[-1]['inputs'])} frames", flush=True)
    report = {"seeds": args.seeds, "steps": args.steps, "scenarios": args.scenarios, "runs": len(runs),
              "kidnap_runs": sum(r["kidnap_step"] is not None for r in runs),
              "summary": summary(runs, engine_config.jump_min_features), "shipped": shipped(engine_config),
              "turn_bands": turn_bands(runs, engine_config.jump_min_features),
              "shipped_flow": engine_config.jump_flow_inliers, "flow": flow_table(runs, engine_config),
              "runs_far_pairs": [run.get("far_pairs", []) for run in runs],
              "grid": sweep(runs), "machine": machine()}  # fmt: skip
    if args.dump:
        args.dump.write_text(json.dumps(runs) + "\n")
    RESULTS.mkdir(exist_ok=True)
    stem = "view_jump" + (f"_{args.name}" if args.name else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(report, args) + "\n")
    print(markdown(report, args))


def markdown(report: dict, args: argparse.Namespace) -> str:
    s, kidnaps = report["summary"], report["kidnap_runs"]
    far = [pair for run in report["runs_far_pairs"] for pair in run]
    shipped_sift = ViewJumpCheck(*report["shipped"].values())
    far_fired = sum(fires(shipped_sift, n, k, STILL) for n, k, _ in far)
    far_flow = sorted(flow for *_, flow in far)[-6:]
    lines = [
        "# The view jump check swept: kidnaps noticed against normal runs reset",
        "",
        f"`MUJOCO_GL=egl python3 benchmarks/bench_view_jump.py --seeds {' '.join(map(str, args.seeds))}"
        + (f" --steps {args.steps}" if args.steps != 200 else "")
        + (f" --scenarios {' '.join(args.scenarios)}" if args.scenarios != list(SCENARIOS) else "")
        + (f" --name {args.name}" if args.name else "")
        + "`: "
        f"T = {args.steps}, scenarios {', '.join(args.scenarios)} ({report['runs']} live runs, {kidnaps} "
        "with a kidnap), the shipped model and sim.yaml's engine. False resets: runs the setting would have "
        "reset anywhere but at the kidnap. Noticed: kidnap runs reset at the first frame after it.",
        "",
        f"Homography inliers between consecutive frames (both with >= {s['min_features']} SIFT features, the "
        f"odometry nearly still: <= 0.25 m, 15 deg): {s['normal']['n']} normal pairs, lowest "
        f"{', '.join(map(str, s['normal']['lowest']))}; 1 % quantile {s['normal']['p1']:.0f}, median "
        f"{s['normal']['median']:.0f}. At the kidnaps:",
        "",
    ]
    for k in s["kidnaps"]:
        dx, dy, dyaw = k["increment"]
        lines.append(
            f"- world {k['seed']}: {k['inliers']} inliers ({k['features']} features; odometry "
            f"{np.hypot(dx, dy):.2f} m, {np.degrees(dyaw):.0f} deg); flow {k['flow']} inliers"
        )
    lines += [
        "",
        "Normal pairs by the odometry's turn between the frames (both textured, <= 0.25 m): a spin shares "
        "fewer features between frames than a drive.",
        "",
        "| turn deg | pairs | fewest SIFT inliers |",
        "|---|---:|---|",
        *(
            f"| {b['turn_deg'][0]:g}-{b['turn_deg'][1]:g} | {b['n']} | {', '.join(map(str, b['lowest']))} |"
            for b in report["turn_bands"]
        ),
    ]
    lines += [
        "",
        "sim.yaml's setting (`engine.jump_*`, chosen on validation worlds 1000-1003: no false reset, every "
        "kidnap, the widest margin between the kidnaps' inliers and the normal frames'; the turn gate "
        "lowered from 15 to 8 deg after the T = 800 sweep, `view_jump_T800.md`): "
        + ", ".join(f"{k} {v:g}" for k, v in report["shipped"].items())
        + " (the row in bold).",
        "",
        "The flow in front of that setting (`engine.jump_flow_inliers`: a pair with this many agreeing "
        "optical-flow tracks is cleared without SIFT; 0 = SIFT judges every pair; sim.yaml: "
        f"{report['shipped_flow']}). SIFT needed: share of the pairs within the motion gate that the flow "
        "does not clear (each such pair costs the two frames' SIFT features, unless the last frame's were "
        "computed already).",
        "",
        f"Made-up kidnaps (`far_pairs`: {len(far)} pairs of frames of one run, >= {FAR_M:g} m or "
        f">= {FAR_DEG:g} deg apart in odometry, before any kidnap): SIFT fires on {far_fired} of them "
        f"(the others: too few features, or the same wall seen from afar); flow inliers up to "
        f"{', '.join(map(str, far_flow))} (the highest). Cleared: of those SIFT fires on, how many the flow "
        "would clear (a kidnap it would miss).",
        "",
        "| flow inliers | false resets | kidnaps noticed | made-up kidnaps cleared | SIFT needed % |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r['flow_inliers']} | {r['false_resets']} | {r['kidnaps_noticed']} of {kidnaps} | "
            f"{r['far_cleared']} of {far_fired} | {100 * r['sift_share']:.1f} |"
            for r in report["flow"]
        ),
        "",
        "The SIFT settings swept (flow off):",
        "",
        "| min features | min inliers | max motion m | max turn deg | false resets | kidnaps noticed |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["grid"]:
        cells = [str(r["min_features"]), str(r["min_inliers"]), f"{r['max_motion_m']:g}"]
        cells += [f"{r['max_turn_deg']:g}", str(r["false_resets"]), f"{r['kidnaps_noticed']} of {kidnaps}"]
        if all(r[k] == v for k, v in report["shipped"].items()):
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Machine: {report['machine']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
