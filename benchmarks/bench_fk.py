"""FR3 forward-kinematics speed: MuJoCo-backed `FR3Kinematics` next to a plain-numpy modified-DH chain.

Pinned to one CPU core; each number is the median over repeats of the mean time per call (or per pose for
the batch rows) over random joint vectors within the limits. Target: `forward()` under 20 us per call.
Writes `benchmarks/results/fk.json` and `fk.md` with the machine it ran on.

    python3 benchmarks/bench_fk.py                                # with spatial_memory installed
    PYTHONPATH=src/spatial_memory python3 benchmarks/bench_fk.py  # or straight from the checkout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np
from machine import machine

from spatial_memory.robot.kinematics import FR3Kinematics

TARGET_US = 20.0
RESULTS = Path(__file__).resolve().parent / "results"

# The baseline a user might write: Franka's modified DH table and a loop of 4x4 products.
DH = np.array(
    [
        [0.0, 0.333, 0.0],
        [0.0, 0.0, -np.pi / 2],
        [0.0, 0.316, np.pi / 2],
        [0.0825, 0.0, np.pi / 2],
        [-0.0825, 0.384, -np.pi / 2],
        [0.0, 0.0, np.pi / 2],
        [0.088, 0.0, np.pi / 2],
        [0.0, 0.107, 0.0],  # flange
    ]
)
T_FLANGE_TCP = np.array(
    [
        [np.cos(-np.pi / 4), -np.sin(-np.pi / 4), 0.0, 0.0],
        [np.sin(-np.pi / 4), np.cos(-np.pi / 4), 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.1034],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def dh_link(a: float, d: float, alpha: float, theta: float) -> np.ndarray:
    """Craig's modified DH link transform Rx(alpha) Tx(a) Rz(theta) Tz(d), written out."""
    ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
    return np.array(
        [
            [ct, -st, 0.0, a],
            [st * ca, ct * ca, -sa, -d * sa],
            [st * sa, ct * sa, ca, d * ca],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def numpy_dh_tcp(q: np.ndarray) -> np.ndarray:
    """T_base_tcp by the DH chain (no input checks)."""
    T = np.eye(4)
    for (a, d, alpha), theta in zip(DH, (*q, 0.0), strict=True):
        T = T @ dh_link(a, d, alpha, theta)
    return T @ T_FLANGE_TCP


def numpy_dh_all(q: np.ndarray) -> list[np.ndarray]:
    """Poses of link1..link8 and the TCP by the DH chain (no input checks)."""
    out, T = [], np.eye(4)
    for (a, d, alpha), theta in zip(DH, (*q, 0.0), strict=True):
        T = T @ dh_link(a, d, alpha, theta)
        out.append(T)
    out.append(T @ T_FLANGE_TCP)
    return out


def numpy_dh_batch(Q: np.ndarray) -> np.ndarray:
    """(N, 4, 4) T_base_tcp for N joint vectors, vectorised over N (no input checks)."""
    n = len(Q)
    theta = np.concatenate([Q, np.zeros((n, 1))], axis=1)
    ct, st = np.cos(theta), np.sin(theta)
    a, d, alpha = DH[:, 0], DH[:, 1], DH[:, 2]
    ca, sa = np.cos(alpha), np.sin(alpha)
    L = np.zeros((n, len(DH), 4, 4))
    L[..., 0, 0], L[..., 0, 1], L[..., 0, 3] = ct, -st, a
    L[..., 1, 0], L[..., 1, 1], L[..., 1, 2], L[..., 1, 3] = st * ca, ct * ca, -sa, -d * sa
    L[..., 2, 0], L[..., 2, 1], L[..., 2, 2], L[..., 2, 3] = st * sa, ct * sa, ca, d * ca
    L[..., 3, 3] = 1.0
    T = L[:, 0]
    for j in range(1, len(DH)):
        T = T @ L[:, j]
    return T @ T_FLANGE_TCP


def time_per_call(fn: Callable[[np.ndarray], object], inputs: list, repeats: int, per_item: int = 1) -> dict:
    """Median (and min/max) over `repeats` runs of the mean seconds per call (divided by `per_item`)."""
    fn(inputs[0])  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for x in inputs:
            fn(x)
        runs.append((time.perf_counter() - start) / (len(inputs) * per_item))
    us = [r * 1e6 for r in runs]
    return {"median_us": statistics.median(us), "min_us": min(us), "max_us": max(us), "repeats": repeats}


def run(n_configs: int, repeats: int) -> dict:
    """Time every case on the same random joint vectors; check the two implementations agree."""
    info = machine(
        mujoco=mujoco.__version__, numpy=np.__version__
    )  # before the runs: the load average is that of the machine we start on
    kin = FR3Kinematics()
    rng = np.random.default_rng(0)
    Q = rng.uniform(kin.lower, kin.upper, size=(n_configs, 7))
    qs = list(Q)
    batch_size = 1000
    batches = [rng.uniform(kin.lower, kin.upper, size=(batch_size, 7)) for _ in range(10)]
    err = max(float(np.abs(kin.forward(q) - numpy_dh_tcp(q)).max()) for q in qs[:200])
    err_batch = float(np.abs(kin.forward_batch(batches[0]) - numpy_dh_batch(batches[0])).max())
    rows = [
        ("forward(q) -> T_base_tcp", "FR3Kinematics (MuJoCo)", time_per_call(kin.forward, qs, repeats)),
        ("forward(q) -> T_base_tcp", "numpy DH loop, no checks", time_per_call(numpy_dh_tcp, qs, repeats)),
        ("camera_pose(q)", "FR3Kinematics (MuJoCo)", time_per_call(kin.camera_pose, qs, repeats)),
        ("forward_all(q), 16 frames", "FR3Kinematics (MuJoCo)", time_per_call(kin.forward_all, qs, repeats)),
        ("all link poses, 9 frames", "numpy DH loop, no checks", time_per_call(numpy_dh_all, qs, repeats)),
        (
            f"forward_batch({batch_size}), per pose",
            "FR3Kinematics (MuJoCo)",
            time_per_call(kin.forward_batch, batches, max(3, repeats // 3), per_item=batch_size),
        ),
        (
            f"batch of {batch_size}, per pose",
            "numpy DH vectorised, no checks",
            time_per_call(numpy_dh_batch, batches, max(3, repeats // 3), per_item=batch_size),
        ),
    ]
    return {
        "machine": info,
        "n_configs": n_configs,
        "target_forward_us": TARGET_US,
        "max_abs_diff_mujoco_vs_numpy_dh": max(err, err_batch),
        "results": [{"case": c, "implementation": impl, **t} for c, impl, t in rows],
    }


def table(report: dict) -> str:
    """Markdown table of the results."""
    lines = [
        "| case | implementation | median us | min us | max us |",
        "|---|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['case']} | {r['implementation']} | {r['median_us']:.2f} "
            f"| {r['min_us']:.2f} | {r['max_us']:.2f} |"
        )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """The results page: machine, table, target and the agreement between the two implementations."""
    m = report["machine"]
    forward_us = report["results"][0]["median_us"]
    verdict = "meets" if forward_us < report["target_forward_us"] else "MISSES"
    return "\n".join(
        [
            "# FR3 forward kinematics benchmark",
            "",
            "`python3 benchmarks/bench_fk.py`: one core, median of repeats; microseconds per call",
            "(per pose for the batch rows).",
            "",
            f"- machine: {m['cpu']}, {m['cores']} cores (run pinned to {m['pinned_to']}),",
            f"  {m['platform']}",
            f"- python {m['python']}, mujoco {m['mujoco']}, numpy {m['numpy']}; run {m['date_utc']}, "
            f"load average {m['load_average_at_start']} at the start",
            f"- {report['n_configs']} random joint vectors within the FR3 limits",
            "",
            table(report),
            "",
            f"Target: `forward()` under {report['target_forward_us']:.0f} us per call: "
            f"{forward_us:.2f} us, {verdict} it.",
            "MuJoCo FK vs the numpy DH chain: max abs difference "
            f"{report['max_abs_diff_mujoco_vs_numpy_dh']:.1e}.",
            "",
            "The FR3Kinematics rows include input validation (length, NaN, limits) and building float64 4x4",
            "poses; the numpy rows check nothing. `forward_all` returns every link and camera frame (16).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=2000, help="random joint vectors per run")
    parser.add_argument("--repeats", type=int, default=9, help="runs per case; the median is reported")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for fk.json and fk.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    report = run(args.configs, args.repeats)
    print(table(report))
    forward_us = report["results"][0]["median_us"]
    print(f"\ntarget: forward() < {TARGET_US:.0f} us per call; measured {forward_us:.2f} us")
    print(f"max |MuJoCo FK - numpy DH| = {report['max_abs_diff_mujoco_vs_numpy_dh']:.1e}")
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fk.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "fk.md").write_text(markdown(report))
        print(f"wrote {args.out / 'fk.json'} and {args.out / 'fk.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
