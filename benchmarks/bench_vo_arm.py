"""Does masking the arm help? Patch VO on simulated sequences where the FR3 waves in front of the camera.

The mobile FR3 tours a generated house (`sim.world_tour`, seeds below) while its arm sweeps through the
head camera's view (joint targets swinging around a pose in front of the mast). Every step (15 Hz) the head
camera's RGB-D frame, its true pose and the joint states are taken; the same frames are then tracked twice
by the RGB-D patch VO: without a mask, and with the arm's silhouette from the joint states
(`robot.silhouette`, dilated by `MARGIN_PX`). Accuracy: evo ATE (SE(3) alignment) against the true head
camera poses. The table gives the mean fraction of the image the (dilated) arm mask covers; `vo_arm.png`
draws each world's camera path from above: the truth, and both estimates aligned as scored.

    MUJOCO_GL=egl python3 benchmarks/bench_vo_arm.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import matplotlib
import numpy as np
from machine import machine
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from spatial_memory.geometry import invert
from spatial_memory.resources import share_path
from spatial_memory.robot.silhouette import ArmSilhouette, urdf_primitives
from spatial_memory.sim.mobile_robot import HEAD_CAMERA, MobileRobotConfig
from spatial_memory.sim.presets import world_preset
from spatial_memory.sim.world_episode import WorldEpisodeConfig, WorldEpisodeScene
from spatial_memory.vo.evaluation import aligned_positions, ate_rmse
from spatial_memory.vo.patch_vo import PatchVO

log = logging.getLogger("bench_vo_arm")
RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2)
STEPS = 150  # 10 s at 15 Hz
RATE_HZ = 15.0
MARGIN_PX = 4
Q_FRONT = np.array([0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8])  # the hand in front of the head camera
SWING = np.array([0.5, 0.35, 0.0, 0.3, 0.0, 0.0, 0.0])  # rad, amplitude per joint
SWING_HZ = (0.3, 0.45, 0.0, 0.6, 0.0, 0.0, 0.0)


def arm_target(t_s: float) -> np.ndarray:
    """Joint targets at time t: each swinging joint on its own sine."""
    phase = np.array([math.sin(2.0 * math.pi * f * t_s) for f in SWING_HZ])
    return Q_FRONT + SWING * phase


@dataclasses.dataclass
class Sequence:
    stamps: np.ndarray
    rgb: list[np.ndarray]
    depth: list[np.ndarray]
    masks: list[np.ndarray]
    T_world_cam: np.ndarray
    K: np.ndarray
    arm_fraction: float


def record(seed: int, steps: int) -> Sequence:
    """Tour a house for `steps` frames at 15 Hz with the arm swinging in view; frames, masks, truth."""
    config = WorldEpisodeConfig(
        world=world_preset("house", seed), robot=MobileRobotConfig(), rate_hz=RATE_HZ, control_hz=RATE_HZ,
        queries=None,
    )  # fmt: skip
    scene = WorldEpisodeScene(config, steps)
    sim = scene.sim
    silhouette = ArmSilhouette(sim.kinematics, urdf_primitives(share_path("urdf/fr3.urdf")))
    cam = sim.config.head_camera
    K = sim.intrinsics(HEAD_CAMERA)
    T_arm_in_cam_base = sim.config.T_base_arm()
    seq = Sequence(np.arange(steps) / RATE_HZ, [], [], [], np.zeros((steps, 4, 4)), K, 0.0)
    dt = 1.0 / RATE_HZ
    fractions = []
    try:
        for t in range(steps):
            if t:
                cmd = scene.script.command(sim.pose2d, t * dt, sim.collided)
                v, w = (0.0, 0.0) if cmd is None else (cmd.v, cmd.omega)
                sim.step(v, w, dt, q_target=arm_target(t * dt))
            else:
                sim.set_joints(arm_target(0.0))
            seq.rgb.append(sim.render(HEAD_CAMERA))
            seq.depth.append(sim.render_depth(HEAD_CAMERA))
            seq.T_world_cam[t] = sim.camera_pose(HEAD_CAMERA)
            T_cam_base = invert(sim.T_base_camera(HEAD_CAMERA)) @ T_arm_in_cam_base
            mask = silhouette.mask(sim.q, K, T_cam_base, cam.width, cam.height, margin_px=MARGIN_PX)
            seq.masks.append(mask)
            fractions.append(float(mask.mean()))
    finally:
        scene.close()
    seq.arm_fraction = float(np.mean(fractions))
    return seq


def track(seq: Sequence, masked: bool) -> dict:
    """RGB-D patch VO over the sequence, with or without the arm mask; evo ATE and frames/s."""
    h, w = seq.rgb[0].shape[:2]
    vo = PatchVO(seq.K, w, h)
    seconds = 0.0
    for i, (rgb, depth) in enumerate(zip(seq.rgb, seq.depth, strict=True)):
        t0 = time.perf_counter()
        vo.track(rgb, float(seq.stamps[i]), depth=depth, mask=seq.masks[i] if masked else None)
        seconds += time.perf_counter() - t0
    stamps, poses = vo.trajectory()
    ate = ate_rmse(stamps, poses, seq.stamps, seq.T_world_cam, align="se3")
    _, truth, estimate = aligned_positions(stamps, poses, seq.stamps, seq.T_world_cam, align="se3")
    return {"ate": ate, "fps": len(seq.rgb) / seconds, "lost": vo.lost, "xy": (truth[:, :2], estimate[:, :2])}


def run(seeds: tuple[int, ...], steps: int) -> tuple[dict, dict]:
    """Every seed, mask off and on: (report, {(seed, masked): (true xy, estimated xy)} for the plot)."""
    rows, paths = [], {}
    for seed in tqdm(seeds, desc="sequences", unit="seq"):
        seq = record(seed, steps)
        path = float(np.sum(np.linalg.norm(np.diff(seq.T_world_cam[:, :3, 3], axis=0), axis=1)))
        for masked in (False, True):
            row = {"seed": seed, "masked": masked, "arm_fraction": seq.arm_fraction, "path_m": path}
            row |= track(seq, masked)
            paths[(seed, masked)] = row.pop("xy")
            log.info("seed %d mask %s: ATE %.4f m, %.1f fps, lost %d", seed, masked, row["ate"]["rmse"],
                     row["fps"], row["lost"])  # fmt: skip
            rows.append(row)
    report = {"machine": machine(), "steps": steps, "rate_hz": RATE_HZ, "margin_px": MARGIN_PX, "rows": rows}
    return report, paths


def plot(paths: dict, report: dict, path: Path) -> None:
    """Per world: the head camera's true path from above and the VO's, without and with the arm mask."""
    seeds = sorted({seed for seed, _ in paths})
    fig, axes = plt.subplots(1, len(seeds), figsize=(5 * len(seeds), 5), squeeze=False)
    ate = {(r["seed"], r["masked"]): r["ate"]["rmse"] for r in report["rows"]}
    for ax, seed in zip(axes[0], seeds, strict=True):
        truth, _ = paths[(seed, False)]
        ax.plot(*truth.T, color="black", lw=2.5, label="ground truth")
        for masked, color in ((False, "tab:gray"), (True, "tab:red")):
            label = f"{'arm masked' if masked else 'no mask'}: ATE {ate[(seed, masked)]:.3f} m"
            ax.plot(*paths[(seed, masked)][1].T, color=color, lw=1.5, label=label)
        ax.plot(*truth[0], "ko", ms=6)
        ax.set_title(f"house seed {seed}: the arm swinging in view")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Patch VO with the arm in view: mask off and on",
        "",
        f"`MUJOCO_GL=egl python3 benchmarks/bench_vo_arm.py`: house worlds, {report['steps']} frames at "
        f"{report['rate_hz']:g} Hz of the 320x240 head camera (RGB-D) while the FR3 swings through its view; "
        f"the same frames tracked without and with the arm's silhouette from the joint states (dilated "
        f"{report['margin_px']} px). ATE: evo, SE(3) alignment, against the true camera poses.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; {m['date_utc']}",
        "",
        "| world seed | path m | arm in image (mean) | ATE m, no mask | ATE m, arm masked "
        "| fps no mask / masked |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    rows = report["rows"]
    for off, on in zip(rows[::2], rows[1::2], strict=True):
        lines.append(
            f"| {off['seed']} | {off['path_m']:.2f} | {100 * off['arm_fraction']:.0f} % | "
            f"{off['ate']['rmse']:.4f} | {on['ate']['rmse']:.4f} | {off['fps']:.0f} / {on['fps']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report, paths = run(tuple(args.seeds), args.steps)
    text = markdown(report)
    print(text)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "vo_arm.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "vo_arm.md").write_text(text)
        plot(paths, report, args.out / "vo_arm.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
