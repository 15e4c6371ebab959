"""Go to a picture through the real ROS 2 graph: tour, then `ros2 run spatial_memory go_to_picture X.png`.

    ros2 launch spatial_memory sim.launch.py use_policy:=true world_seed:=2000 &
    python3 benchmarks/ros_go_to_picture.py --seed 2000 --steps 200 --goals 3 --out r.json

What a user would do, scripted and scored:

1. tour: this node drives the base through `cmd_vel` with the dataset's seeded world tour (the same driver
   as the live Mem-RPE harnesses) until memory_node has taken `--steps` frames more (memory/status);
2. pictures: for each goal it takes a head-camera pose the robot passed at least `--min-age` seconds ago
   and at least `--min-distance` m from where the robot stands, renders the place from there with the robot
   hidden (its own copy of the world: same preset and seed as sim_node's, never stepped) and writes a PNG;
3. the one command: `ros2 run spatial_memory go_to_picture <png> --backend <b> --budget <s>` as a
   subprocess; policy_node asks /query_pose every tick and sends goal_pose, goal_follower_node drives;
4. scoring: the head camera's distance to the picture's camera (ground truth) when the command returns,
   the command's result line and exit status. Success: "arrived" and within `--success-m`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped, Twist
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from spatial_memory.config import load_config
from spatial_memory.eval.live_mem_rpe import SCENARIOS
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import SimNodeConfig
from spatial_memory.resources import share_path
from spatial_memory.sim.live import LiveSim


class Trial(Node):
    """Drives the tour, keeps the ground truth, renders goal pictures."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("go_to_picture_trial")
        sim_cfg = load_config(SimNodeConfig, args.params, topics.SIM_NODE).sim
        world = dataclasses.replace(sim_cfg.world, preset=args.preset, seed=args.seed)
        self.world_sim = LiveSim(dataclasses.replace(sim_cfg, world=world))  # renders only, never stepped
        self.driver = SCENARIOS["tour"].make_driver(self.world_sim, args.seed, args.steps / 5.0)
        self.lock = threading.Lock()
        self.base: tuple[int, np.ndarray] | None = None
        self.cameras: list[tuple[int, np.ndarray]] = []  # (stamp, T_world_cam) of head frames
        self.memory_steps = 0
        self.policy_status: list[dict] = []  # policy/status while goals run: rate held, decision latency
        group = ReentrantCallbackGroup()
        self.create_subscription(PoseStamped, topics.GT_BASE_POSE, self._on_base, 10, callback_group=group)
        self.create_subscription(PoseStamped, topics.GT_CAMERA_POSE, self._on_cam, 100, callback_group=group)
        self.create_subscription(String, topics.MEMORY_STATUS, self._on_status, 10, callback_group=group)
        self.create_subscription(
            String, topics.POLICY_STATUS, self._on_policy_status, 10, callback_group=group
        )
        self.cmd = self.create_publisher(Twist, topics.CMD_VEL, 10)

    def _on_base(self, msg: PoseStamped) -> None:
        with self.lock:
            self.base = (conv.stamp_to_ns(msg.header.stamp), conv.pose_to_matrix(msg.pose))

    def _on_cam(self, msg: PoseStamped) -> None:
        with self.lock:
            self.cameras.append((conv.stamp_to_ns(msg.header.stamp), conv.pose_to_matrix(msg.pose)))

    def _on_status(self, msg: String) -> None:
        self.memory_steps = int(json.loads(msg.data).get("steps", 0))

    def _on_policy_status(self, msg: String) -> None:
        with self.lock:
            self.policy_status.append(json.loads(msg.data))

    def tour(self, steps: int, timeout_s: float) -> int:
        """Drive the seeded world tour through cmd_vel until memory_node has taken `steps` more frames (it
        takes frames from its start, standing still too); returns the steps it had before."""
        start, v, history = time.monotonic(), 0.0, []
        while self.memory_steps == 0 and time.monotonic() - start < 30.0:
            time.sleep(0.1)  # memory/status comes at 1 Hz
        before = self.memory_steps
        while self.memory_steps < before + steps and time.monotonic() - start < timeout_s:
            with self.lock:
                base = self.base
            if base is not None:
                stamp, T = base
                history = [(s, P) for s, P in history if stamp - s <= 1e9] + [(stamp, T)]
                earlier = next((P for s, P in history if stamp - s >= 5e8), None)
                # the graph does not say when the base is blocked: driving without moving for 0.5 s is a bump
                moved = np.hypot(*(T[:2, 3] - earlier[:2, 3])) if earlier is not None else 1.0
                stuck = abs(v) > 0.05 and moved < 0.01
                yaw = float(np.arctan2(T[1, 0], T[0, 0]))
                v, omega = self.driver.command(stamp * 1e-9, (float(T[0, 3]), float(T[1, 3]), yaw), stuck)
                cmd = Twist()
                cmd.linear.x, cmd.angular.z = float(v), float(omega)
                self.cmd.publish(cmd)
            time.sleep(1.0 / 30.0)
        self.cmd.publish(Twist())
        return before

    def goal_pose(
        self, rng: np.random.Generator, min_age_s: float, min_distance_m: float
    ) -> np.ndarray | None:
        """A head-camera pose of the tour, old enough and far enough from the robot now."""
        with self.lock:
            if self.base is None or not self.cameras:
                return None
            now, T_base = self.base  # noqa: N806
            pool = [T for s, T in self.cameras if (now - s) * 1e-9 >= min_age_s]
        pool = [T for T in pool if np.hypot(*(T[:2, 3] - T_base[:2, 3])) >= min_distance_m]
        return pool[int(rng.integers(len(pool)))] if pool else None

    def describe_views(self, min_age_s: float) -> str:
        """Why no view qualified: how many there are, how many old enough, the farthest from the robot."""
        with self.lock:
            if self.base is None:
                return "no ground-truth base pose received"
            now, T_base = self.base  # noqa: N806
            old = [T for s, T in self.cameras if (now - s) * 1e-9 >= min_age_s]
        far = max((float(np.hypot(*(T[:2, 3] - T_base[:2, 3]))) for T in old), default=float("nan"))
        n = len(self.cameras)
        return (
            f"{n} head-camera poses, {len(old)} at least {min_age_s:g} s old, the farthest {far:.2f} m away"
        )

    def head_camera(self) -> np.ndarray | None:
        with self.lock:
            return self.cameras[-1][1] if self.cameras else None


def _distance(T_a: np.ndarray | None, T_b: np.ndarray) -> float:  # noqa: N803
    """Horizontal distance between two poses' positions (NaN without the first)."""
    return float(np.hypot(*(T_a[:2, 3] - T_b[:2, 3]))) if T_a is not None else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="house")
    parser.add_argument("--seed", type=int, default=2000, help="world seed: the launch's world_seed")
    parser.add_argument("--steps", type=int, default=200, help="memory steps T of the tour")
    parser.add_argument("--goals", type=int, default=3)
    parser.add_argument("--backend", default="refined", help="QueryPose backend policy_node asks")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per picture")
    parser.add_argument("--min-age", type=float, default=20.0, help="pictures of views this old at least (s)")
    parser.add_argument("--min-distance", type=float, default=2.0, help="...this far from the robot (m)")
    parser.add_argument("--success-m", type=float, default=1.0)
    parser.add_argument("--params", type=Path, default=None, help="sim.yaml (default: the installed one)")
    parser.add_argument("--pictures", type=Path, default=Path("outputs/go_to_picture"))
    parser.add_argument("--timeout", type=float, default=900.0, help="wall seconds for the tour")
    parser.add_argument("--out", type=Path, help="JSON with every goal's outcome")
    args = parser.parse_args()
    args.params = args.params or share_path("config/sim.yaml")
    args.pictures.mkdir(parents=True, exist_ok=True)
    rclpy.init()
    node = Trial(args)
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    started = time.monotonic()
    before = node.tour(args.steps, args.timeout)
    took = node.memory_steps - before
    print(f"tour: {took} memory steps ({before} before it) in {time.monotonic() - started:.0f} s", flush=True)
    rng = np.random.default_rng(args.seed)
    outcomes = []
    for k in range(args.goals):
        T_goal = node.goal_pose(rng, args.min_age, args.min_distance)  # noqa: N806
        if T_goal is None:
            print(f"no picture could be drawn: {node.describe_views(args.min_age)}")
            break
        rgb, _ = node.world_sim.sim.render_view(T_goal)
        path = args.pictures / f"seed{args.seed}_goal{k}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        start_cam = node.head_camera()
        command = ["ros2", "run", "spatial_memory", "go_to_picture", str(path)]
        command += ["--backend", args.backend, "--budget", f"{args.budget:g}"]
        t0 = time.monotonic()
        run = subprocess.run(command, capture_output=True, text=True, timeout=args.budget + 60)
        cam = node.head_camera()
        final = _distance(cam, T_goal)
        start = _distance(start_cam, T_goal)
        lines = run.stdout.strip().splitlines()
        result = next((ln for ln in reversed(lines) if ln.startswith("result:")), lines[-1] if lines else "")
        outcome = {
            "goal": k,
            "picture": str(path),
            "command": " ".join(command),
            "exit_status": run.returncode,
            "result": result,
            "start_distance_m": start,
            "final_distance_m": final,
            "success": run.returncode == 0 and "arrived" in result and final <= args.success_m,
            "wall_s": time.monotonic() - t0,
            "output": lines[-8:],
        }
        outcomes.append(outcome)
        print(json.dumps({k: v for k, v in outcome.items() if k != "output"}), flush=True)
    with node.lock:
        rates = [s["rate_hz_measured"] for s in node.policy_status if s.get("rate_hz_measured")]
        latency, median, cpu = (
            [s[key] for s in node.policy_status if s.get(key) is not None]
            for key in ("decision_ms_max", "decision_ms_p50", "decision_cpu_ms_max")
        )
    policy = {
        "rate_hz_min": min(rates, default=float("nan")),
        "rate_hz_median": float(np.median(rates)) if rates else float("nan"),
        "rate_hz_max": max(rates, default=float("nan")),
        "decision_ms_max": max(latency, default=float("nan")),
        "decision_ms_p50_median": float(np.median(median)) if median else float("nan"),
        "decision_cpu_ms_max": max(cpu, default=float("nan")),
        "status_messages": len(rates),
    }
    wins = sum(o["success"] for o in outcomes)
    print(f"{wins} of {len(outcomes)} pictures reached; policy_node {json.dumps(policy)}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"seed": args.seed, "steps": args.steps, "backend": args.backend, "goals": outcomes}
        args.out.write_text(json.dumps({**report, "policy_node": policy}, indent=1))
    executor.shutdown()
    node.world_sim.close()
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
