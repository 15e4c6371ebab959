"""vo_node in the live simulated graph against ground truth (needs ROS 2; run next to a running launch).

    ros2 launch spatial_memory sim.launch.py odometry:=visual &      # every node of the graph
    python3 benchmarks/ros_vo_live.py --seconds 20 --out benchmarks/results/vo_live_sim.md
    python3 benchmarks/ros_vo_live.py --case turn --out benchmarks/results/vo_live_turn.md

`--case swing` (default) drives the base with `cmd_vel` (0.3 m/s, a slowly swinging turn); `--case turn`
turns it in place at `--omega` (0.6 rad/s) until the ground truth has turned `--turns` full turns. Records
`vo/odometry`, the wheel `odom`, `ground_truth/base_pose`, `/clock` and `/tf`; scores both odometries by
their planar position error and by their heading error (unwrapped: a full turn is 360 degrees) against the
ground truth, each relative to its own pose at the first VO message, and reports vo_node's own `vo/status`
(rate, milliseconds per frame, dropped frames, losses; the counters' growth while driving) and the latency
of its odom -> base_link TF: each transform's arrival here less its stamp (the image's), on the sim clock
and in wall time (the wall time the sim clock reached the stamp, from `/clock`), p50 / p95.
"""

from __future__ import annotations

import argparse
import json
import math
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
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from spatial_memory.geometry import invert
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics


class Recorder(Node):
    """Subscribes to the odometries, the ground truth and vo/status; publishes cmd_vel."""

    def __init__(self) -> None:
        super().__init__("vo_live_benchmark", parameter_overrides=[Parameter("use_sim_time", value=True)])
        self.vo: list[tuple[int, np.ndarray]] = []
        self.wheel: list[tuple[int, np.ndarray]] = []
        self.truth: list[tuple[int, np.ndarray]] = []
        self.status: list[dict] = []
        self.clock: list[tuple[int, int]] = []  # (sim ns, wall ns) as /clock arrived
        self.tf: list[tuple[int, int, int]] = []  # odom -> base_link: (stamp, sim ns, wall ns) on arrival
        self.driving = False  # the tf latencies are kept only while driving

        def pose_of(store, field):
            return lambda m: store.append((conv.stamp_to_ns(m.header.stamp), conv.pose_to_matrix(field(m))))

        self.create_subscription(Odometry, topics.VO_ODOMETRY, pose_of(self.vo, lambda m: m.pose.pose), 100)
        self.create_subscription(Odometry, topics.ODOM, pose_of(self.wheel, lambda m: m.pose.pose), 100)
        self.create_subscription(PoseStamped, topics.GT_BASE_POSE, pose_of(self.truth, lambda m: m.pose), 100)
        self.create_subscription(
            String, topics.VO_STATUS, lambda m: self.status.append(json.loads(m.data)), 10
        )
        self.create_subscription(Clock, topics.CLOCK, self._on_clock, 100)
        self.create_subscription(TFMessage, topics.TF, self._on_tf, 100)
        self.cmd = self.create_publisher(Twist, topics.CMD_VEL, 10)

    def _on_clock(self, msg: Clock) -> None:
        self.clock.append((conv.stamp_to_ns(msg.clock), time.time_ns()))

    def _on_tf(self, msg: TFMessage) -> None:
        wall, sim = time.time_ns(), self.get_clock().now().nanoseconds
        for t in msg.transforms:
            if self.driving and t.header.frame_id == "odom" and t.child_frame_id == "base_link":
                self.tf.append((conv.stamp_to_ns(t.header.stamp), sim, wall))


def _nearest(samples: list[tuple[int, np.ndarray]], stamp: int) -> np.ndarray:
    stamps = np.array([s for s, _ in samples])
    return samples[int(np.argmin(np.abs(stamps - stamp)))][1]


def _yaw(T: np.ndarray) -> float:
    return math.atan2(T[1, 0], T[0, 0])


def headings(samples: list[np.ndarray], T0: np.ndarray) -> np.ndarray:
    """Unwrapped yaw (rad) of each pose relative to T0."""
    return np.unwrap([_yaw(invert(T0) @ T) for T in samples])


def tf_latency(rec: Recorder) -> dict:
    """odom -> base_link arrival less stamp, ms, p50 / p95: on the sim clock, and in wall time (the wall
    time the sim clock reached the stamp, interpolated from /clock)."""
    if not rec.tf or len(rec.clock) < 2:
        return {}
    stamps, sims, walls = (np.array(c, dtype=np.float64) for c in zip(*rec.tf, strict=True))
    clock_sim, clock_wall = (np.array(c, dtype=np.float64) for c in zip(*rec.clock, strict=True))
    order = np.argsort(clock_sim)
    at_stamp = np.interp(stamps, clock_sim[order], clock_wall[order])
    sim_ms, wall_ms = (sims - stamps) * 1e-6, (walls - at_stamp) * 1e-6
    return {
        "transforms": len(stamps),
        "sim_p50_ms": float(np.percentile(sim_ms, 50)),
        "sim_p95_ms": float(np.percentile(sim_ms, 95)),
        "wall_p50_ms": float(np.percentile(wall_ms, 50)),
        "wall_p95_ms": float(np.percentile(wall_ms, 95)),
    }


def score(rec: Recorder, status_start: dict) -> dict:
    """Planar and heading errors of VO and wheel odometry against the ground truth, from the first VO message
    on; vo/status at the end and its counters' growth since `status_start`; the TF latency."""
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
    stamps = [stamp for stamp, _ in rec.vo]
    yaw_true = headings([_nearest(rec.truth, t) for t in stamps], g0)
    yaw_vo = headings([T for _, T in rec.vo], v0)
    yaw_wheel = headings([_nearest(rec.wheel, t) for t in stamps], w0)
    turned = float(np.degrees(yaw_true[-1]))

    def heading(est: np.ndarray) -> dict:
        err = np.degrees(est - yaw_true)
        per_turn = float(err[-1]) * 360.0 / abs(turned) if abs(turned) > 1.0 else math.nan
        return {"final_deg": float(err[-1]), "per_turn_deg": per_turn, "max_deg": float(np.max(np.abs(err)))}

    end = rec.status[-1] if rec.status else {}
    grown = {
        k: end.get(k, 0) - status_start.get(k, 0)
        for k in ("losses", "received", "dropped", "visual", "wheel", "prior", "frames_without_depth")
    }
    return {
        "turned_deg": turned,
        "vo_heading": heading(yaw_vo),
        "wheel_heading": heading(yaw_wheel),
        "while_driving": grown,
        "tf_latency": tf_latency(rec),
        "sim_seconds": (rec.vo[-1][0] - s0) * 1e-9,
        "path_m": path,
        "vo_messages": len(rec.vo),
        "vo_final_m": err_vo[-1],
        "vo_max_m": max(err_vo),
        "wheel_final_m": err_wheel[-1],
        "wheel_max_m": max(err_wheel),
        "status": rec.status[-1] if rec.status else {},
    }


def report(result: dict, case: str, omega: float) -> str:
    s, g, lat = result["status"], result["while_driving"], result["tf_latency"]
    vo_h, wh_h = result["vo_heading"], result["wheel_heading"]
    drive = (
        "the base driven at 0.3 m/s with a swinging turn"
        if case == "swing"
        else f"the base turning in place at {omega} rad/s ({result['turned_deg']:.0f} degrees by the truth)"
    )
    lines = [
        f"# vo_node in the live simulated graph: {'driving' if case == 'swing' else 'turning in place'}",
        "",
        "`ros2 launch spatial_memory sim.launch.py odometry:=visual` + `python3 benchmarks/ros_vo_live.py "
        f"--case {case}`: every node of the graph on one machine, {drive}; planar position and heading error "
        "against `ground_truth/base_pose`, each odometry relative to its pose at the first VO message "
        "(headings unwrapped; per turn: the final error scaled to 360 degrees of the truth).",
        "",
        f"- machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, {platform.platform()}; "
        f"run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end",
        "",
        "| odometry | final error m | max error m | heading error deg: final / per turn / max | path m "
        "| sim s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| vo_node (patch VO, RGB-D, arm masked) | {result['vo_final_m']:.3f} | {result['vo_max_m']:.3f} | "
        f"{vo_h['final_deg']:+.2f} / {vo_h['per_turn_deg']:+.2f} / {vo_h['max_deg']:.2f} | "
        f"{result['path_m']:.2f} | {result['sim_seconds']:.1f} |",
        f"| sim wheel odometry | {result['wheel_final_m']:.3f} | {result['wheel_max_m']:.3f} | "
        f"{wh_h['final_deg']:+.2f} / {wh_h['per_turn_deg']:+.2f} / {wh_h['max_deg']:.2f} | "
        f"{result['path_m']:.2f} | {result['sim_seconds']:.1f} |",
        "",
        f"While driving: {g['received']} images received, {g['dropped']} dropped (newer ones arrived while "
        f"one was tracked), {g['losses']} tracking losses, motion from visual {g['visual']} / wheel "
        f"{g['wheel']} / prior {g['prior']} frames, {g['frames_without_depth']} tracked without depth.",
        "",
        f"vo/status at the end: {s.get('rate_hz')} frames/s tracked, {s.get('ms_per_frame')} ms a frame, "
        f"{s.get('received')} received, {s.get('dropped')} dropped, {s.get('losses')} lost since the start, "
        f"arm mask {s.get('masked_fraction')} of the image; TF latency by vo_node's clock (sent less the "
        f"image stamp, last 30 frames) p50 {s.get('tf_latency_p50_ms')} ms, p95 {s.get('tf_latency_p95_ms')} "
        "ms.",
        "",
    ]
    if lat:
        lines += [
            f"odom -> base_link TF, image stamp to its arrival here ({lat['transforms']} transforms while "
            f"driving): p50 {lat['sim_p50_ms']:.0f} ms / p95 {lat['sim_p95_ms']:.0f} ms on the sim clock, "
            f"p50 {lat['wall_p50_ms']:.0f} ms / p95 {lat['wall_p95_ms']:.0f} ms in wall time.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("swing", "turn"), default="swing")
    parser.add_argument("--seconds", type=float, default=20.0, help="swing: wall seconds of driving")
    parser.add_argument("--omega", type=float, default=0.6, help="turn: rad/s")
    parser.add_argument("--turns", type=float, default=1.0, help="turn: full turns of the ground truth")
    parser.add_argument("--timeout", type=float, default=120.0, help="turn: wall seconds at most")
    parser.add_argument("--out", type=Path, help="write the markdown report here (and the JSON beside it)")
    args = parser.parse_args()
    rclpy.init()
    rec = Recorder()
    executor = SingleThreadedExecutor()
    executor.add_node(rec)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    deadline = time.monotonic() + 60.0
    while not (rec.vo and rec.status and rec.truth) and time.monotonic() < deadline:
        time.sleep(0.2)  # vo_node running and reporting
    status_start = dict(rec.status[-1]) if rec.status else {}
    rec.driving = True
    start = time.monotonic()
    truth0 = len(rec.truth)
    while (t := time.monotonic() - start) < (args.seconds if args.case == "swing" else args.timeout):
        cmd = Twist()
        if args.case == "swing":
            cmd.linear.x, cmd.angular.z = 0.3, 0.35 * float(np.sin(t / 3.0))
        else:
            cmd.angular.z = args.omega
            seen = [T for _, T in rec.truth[truth0:]]
            if len(seen) > 1 and abs(headings(seen, seen[0])[-1]) >= 2.0 * math.pi * args.turns + 0.05:
                break
        rec.cmd.publish(cmd)
        time.sleep(0.1)
    rec.cmd.publish(Twist())
    time.sleep(1.5)  # the last frames and status
    rec.driving = False
    executor.shutdown()  # no message lands in the lists while they are scored
    spinner.join(timeout=5)
    result = score(rec, status_start)
    text = report(result, args.case, args.omega)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"case": args.case, **result}, indent=2) + "\n")
    rec.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
