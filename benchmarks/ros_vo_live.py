"""vo_node in the live simulated graph against ground truth (needs ROS 2; run next to a running launch).

    ros2 launch spatial_memory sim.launch.py odometry:=visual &      # every node of the graph
    python3 benchmarks/ros_vo_live.py --seconds 20 --out benchmarks/results/vo_live_sim.md

Drives the base with `cmd_vel` (0.3 m/s, a slowly swinging turn) and records `vo/odometry`, the wheel
`odom` and `ground_truth/base_pose`; scores both odometries by their planar position error against the
ground truth, each relative to its own pose at the first VO message, and reports vo_node's own
`vo/status` (rate, milliseconds per frame, dropped frames, losses).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped, Twist
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from spatial_memory.geometry import invert
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics


class Recorder(Node):
    """Subscribes to the odometries, the ground truth and vo/status; publishes cmd_vel."""

    def __init__(self) -> None:
        super().__init__("vo_live_benchmark")
        self.vo: list[tuple[int, np.ndarray]] = []
        self.wheel: list[tuple[int, np.ndarray]] = []
        self.truth: list[tuple[int, np.ndarray]] = []
        self.status: list[dict] = []

        def pose_of(store, field):
            return lambda m: store.append((conv.stamp_to_ns(m.header.stamp), conv.pose_to_matrix(field(m))))

        self.create_subscription(Odometry, topics.VO_ODOMETRY, pose_of(self.vo, lambda m: m.pose.pose), 100)
        self.create_subscription(Odometry, topics.ODOM, pose_of(self.wheel, lambda m: m.pose.pose), 100)
        self.create_subscription(PoseStamped, topics.GT_BASE_POSE, pose_of(self.truth, lambda m: m.pose), 100)
        self.create_subscription(
            String, topics.VO_STATUS, lambda m: self.status.append(json.loads(m.data)), 10
        )
        self.cmd = self.create_publisher(Twist, topics.CMD_VEL, 10)


def _nearest(samples: list[tuple[int, np.ndarray]], stamp: int) -> np.ndarray:
    stamps = np.array([s for s, _ in samples])
    return samples[int(np.argmin(np.abs(stamps - stamp)))][1]


def score(rec: Recorder) -> dict:
    """Planar errors of VO and wheel odometry against the ground truth, from the first VO message on."""
    if not (rec.vo and rec.wheel and rec.truth):
        raise SystemExit(f"no data: vo {len(rec.vo)}, odom {len(rec.wheel)}, truth {len(rec.truth)} messages")
    s0 = rec.vo[0][0]
    g0, w0, v0 = _nearest(rec.truth, s0), _nearest(rec.wheel, s0), rec.vo[0][1]
    err_vo, err_wheel = [], []
    for stamp, T in rec.vo:
        g = invert(g0) @ _nearest(rec.truth, stamp)
        err_vo.append(float(np.linalg.norm((invert(v0) @ T)[:2, 3] - g[:2, 3])))
        err_wheel.append(float(np.linalg.norm((invert(w0) @ _nearest(rec.wheel, stamp))[:2, 3] - g[:2, 3])))
    truth = [T for s, T in rec.truth if s >= s0]
    path = sum(float(np.linalg.norm(b[:2, 3] - a[:2, 3])) for a, b in zip(truth, truth[1:], strict=False))
    return {
        "sim_seconds": (rec.vo[-1][0] - s0) * 1e-9,
        "path_m": path,
        "vo_messages": len(rec.vo),
        "vo_final_m": err_vo[-1],
        "vo_max_m": max(err_vo),
        "wheel_final_m": err_wheel[-1],
        "wheel_max_m": max(err_wheel),
        "status": rec.status[-1] if rec.status else {},
    }


def report(result: dict) -> str:
    s = result["status"]
    lines = [
        "# vo_node in the live simulated graph",
        "",
        "`ros2 launch spatial_memory sim.launch.py odometry:=visual` + `python3 benchmarks/ros_vo_live.py`: "
        "every node of the graph on one machine, the base driven at 0.3 m/s with a swinging turn; planar "
        "position error against `ground_truth/base_pose`, each odometry relative to its pose at the first "
        "VO message.",
        "",
        f"- machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, {platform.platform()}; "
        f"run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "| odometry | final error m | max error m | path m | sim s |",
        "|---|---:|---:|---:|---:|",
        f"| vo_node (patch VO, RGB-D, arm masked) | {result['vo_final_m']:.3f} | {result['vo_max_m']:.3f} | "
        f"{result['path_m']:.2f} | {result['sim_seconds']:.1f} |",
        f"| sim wheel odometry | {result['wheel_final_m']:.3f} | {result['wheel_max_m']:.3f} | "
        f"{result['path_m']:.2f} | {result['sim_seconds']:.1f} |",
        "",
        f"vo/status at the end: {s.get('rate_hz')} frames/s tracked, {s.get('ms_per_frame')} ms a frame, "
        f"{s.get('received')} received, {s.get('dropped')} dropped, {s.get('frames_without_depth')} tracked "
        f"without depth, {s.get('losses')} lost, sources visual "
        f"{s.get('visual')} / wheel {s.get('wheel')} / prior {s.get('prior')}, arm mask "
        f"{s.get('masked_fraction')} of the image.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="wall seconds of driving")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    args = parser.parse_args()
    rclpy.init()
    rec = Recorder()
    executor = SingleThreadedExecutor()
    executor.add_node(rec)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    start = time.monotonic()
    while (t := time.monotonic() - start) < args.seconds:
        cmd = Twist()
        cmd.linear.x, cmd.angular.z = 0.3, 0.35 * float(np.sin(t / 3.0))
        rec.cmd.publish(cmd)
        time.sleep(0.1)
    rec.cmd.publish(Twist())
    time.sleep(1.5)  # the last status
    text = report(score(rec))
    print(text)
    if args.out:
        args.out.write_text(text)
    executor.shutdown()
    spinner.join(timeout=5)
    rec.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
