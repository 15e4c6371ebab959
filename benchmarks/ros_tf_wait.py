"""Images the spatial context and the memory use and drop for TF timing in the live ROS 2 graph (needs ROS 2).

    python3 benchmarks/ros_tf_wait.py --odometry wheel --duration 60 --out wheel.json
    python3 benchmarks/ros_tf_wait.py --odometry visual --duration 60 --out visual.json

Starts `sim.launch.py` (sim_node, fk_node, spatial_context_node, memory_node with the shipped model; with
`--odometry visual` vo_node publishes odom -> base_link instead of the sim's wheel odometry), drives the base
through `cmd_vel` with a simple wander (forward, gentle turns; turn away after a bump) for `--duration`
wall seconds from the first camera image, then reads the last `spatial_context/status` and `memory/status`
and stops the launch with Ctrl-C (SIGINT to its process group).

Per node: images received, images due at its frame rate, images used, and drops by reason. Nodes that
count no drop reasons (the code before the TF wait) give their total of images not used, with the node's
last problem text; the script itself counts the camera images it received as a cross-check.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
from pathlib import Path

import rclpy
from geometry_msgs.msg import PoseStamped, Twist
from machine import machine
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from ros_launch import SimLaunch
from sensor_msgs.msg import Image
from std_msgs.msg import String

from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics


class Watcher(Node):
    """Counts camera images, keeps the nodes' latest status dicts and the true base pose."""

    def __init__(self) -> None:
        super().__init__("tf_wait_watcher")
        self.lock = threading.Lock()
        self.images = 0
        self.first_image: float | None = None
        self.status: dict[str, dict] = {}
        self.pose: tuple[float, float, float] | None = None
        self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_image, qos_profile_sensor_data)
        for name, topic in (
            ("spatial_context_node", topics.CONTEXT_STATUS),
            ("memory_node", topics.MEMORY_STATUS),
            ("vo_node", topics.VO_STATUS),
        ):
            self.create_subscription(String, topic, lambda m, n=name: self._on_status(n, m), 10)
        self.create_subscription(PoseStamped, topics.GT_BASE_POSE, self._on_pose, 10)
        self.cmd = self.create_publisher(Twist, topics.CMD_VEL, 10)

    def _on_image(self, msg: Image) -> None:
        with self.lock:
            self.images += 1
            if self.first_image is None:
                self.first_image = time.monotonic()

    def _on_status(self, name: str, msg: String) -> None:
        with self.lock:
            self.status[name] = json.loads(msg.data)

    def _on_pose(self, msg: PoseStamped) -> None:
        T = conv.pose_to_matrix(msg.pose)
        with self.lock:
            self.pose = (float(T[0, 3]), float(T[1, 3]), math.atan2(T[1, 0], T[0, 0]))


def wander(node: Watcher, seconds: float) -> None:
    """Forward at 0.3 m/s with a slow weave; after 0.6 s without progress, turn in place for 1.5 s."""
    start = time.monotonic()
    trail: list[tuple[float, tuple[float, float]]] = []
    turning_until = 0.0
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        with node.lock:
            pose = node.pose
        cmd = Twist()
        if pose is not None:
            trail = [(t, p) for t, p in trail if now - t < 0.6] + [(now, pose[:2])]
            old = trail[0]
            stuck = now - old[0] > 0.5 and math.dist(old[1], pose[:2]) < 0.02 and now > turning_until
            if stuck:
                turning_until = now + 1.5
            if now < turning_until:
                cmd.angular.z = 0.8
            else:
                cmd.linear.x, cmd.angular.z = 0.3, 0.35 * math.sin(0.4 * (now - start))
        node.cmd.publish(cmd)
        time.sleep(0.1)
    node.cmd.publish(Twist())


def summary(name: str, status: dict) -> dict:
    """Received, due, used and dropped (by reason where the node counts them) from a node's status."""
    received = status.get("images_received")
    used = status.get("images_used")
    skipped_rate = status.get("images_skipped_rate")
    dropped = status.get("images_dropped")  # {reason: count} (nodes with the TF wait)
    if isinstance(dropped, dict):
        total = sum(dropped.values())
        reasons = dict(dropped)
    else:  # before the TF wait: one counter (memory_node) or received - used - rate-skipped
        total = status.get("images_skipped")
        if total is None and None not in (received, used, skipped_rate):
            total = received - used - skipped_rate
        reasons = {"not split by reason": total}
    due = (received - skipped_rate) if None not in (received, skipped_rate) else (used or 0) + (total or 0)
    return {
        "node": name,
        "received": received,
        "due": due,
        "used": used,
        "dropped": total,
        "dropped_pct_of_due": None if not due or total is None else 100.0 * total / due,
        "reasons": reasons,
        "tf_waited": status.get("tf_waited"),
        "tf_wait_max_ms": status.get("tf_wait_max_ms"),
        "last_problem": status.get("last_problem", ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--odometry", choices=["wheel", "visual"], default="wheel")
    parser.add_argument("--duration", type=float, default=60.0, help="wall seconds from the first image")
    parser.add_argument("--seed", type=int, default=1000, help="world seed")
    parser.add_argument("--label", default="", help="e.g. 'before' / 'after', kept in the JSON")
    parser.add_argument(
        "--params-file", type=Path, default=None, help="the launch's params_file (default: its own)"
    )
    parser.add_argument("--log", type=Path, default=Path("/tmp/ros_tf_wait_launch.log"))
    parser.add_argument("--out", type=Path, help="JSON with the per-node counts")
    args = parser.parse_args()
    rclpy.init()
    node = Watcher()
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    launch_args = [f"world_seed:={args.seed}", f"odometry:={args.odometry}"]
    if args.params_file is not None:
        launch_args.append(f"params_file:={args.params_file}")
    launch = SimLaunch(launch_args, args.log)
    started = time.monotonic()
    with launch:
        while node.first_image is None and time.monotonic() - started < 120:
            time.sleep(0.2)
        if node.first_image is None:
            raise SystemExit(f"no camera image within 120 s; see {args.log}")
        wander(node, args.duration)
        time.sleep(2.5)  # one more status of each node (1 Hz)
        with node.lock:
            status = {k: dict(v) for k, v in node.status.items()}
            images = node.images
    rows = [summary(n, status[n]) for n in ("spatial_context_node", "memory_node") if n in status]
    report = {
        "label": args.label,
        "odometry": args.odometry,
        "seed": args.seed,
        "duration_s": args.duration,
        "params_file": str(args.params_file or "installed sim.yaml"),
        "spatial_memory_from": str(Path(conv.__file__).resolve().parents[1]),
        "camera_images_seen_by_script": images,
        "nodes": rows,
        "vo_status": status.get("vo_node"),
        "machine": machine(),
    }
    for row in rows:
        print(json.dumps(row))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
