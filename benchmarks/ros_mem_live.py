"""The memory through the real ROS 2 graph: /query_pose answers scored against ground truth (needs ROS 2).

    ros2 launch spatial_memory sim.launch.py world_seed:=1000 &        # sim_node, fk, context, memory
    python3 benchmarks/ros_mem_live.py --seed 1000 --scenario teleop --steps 200 --out r.json

Harness (b) of the live Mem-RPE (`spatial_memory.eval.live_mem_rpe` is harness (a), in one process). This
script is a ROS node beside the running graph:

- it drives the base through `cmd_vel` with the same seeded scenario drivers as harness (a), from the true
  pose on `ground_truth/base_pose` (a person at the joystick sees the robot too);
- it keeps its own copy of the world (the same preset and seed as sim_node's, built by `LiveSim` but never
  stepped) only to render query pictures: every head-camera frame of the graph (`camera/depth` with
  `ground_truth/camera_pose`, at memory_node's 5 Hz) is shown to a `QuerySampler`, which draws pictures of
  seen places (near an earlier view) and never-seen places, at the live camera's size, with the robot
  hidden;
- every `--query-every` memory steps (memory/status) it calls `/query_pose` with such a picture, with
  another query's picture (the picture control) and with a black and a grey picture, and scores the answer
  against the ground-truth base pose at the answer's header stamp (the memory's newest frame).

With `--backends kinaema keyframes refined` every query goes to each backend of the same running
memory_node (QueryPose.backend), so the rows compare the backends on the same pictures. An answer is
relative to the base at its own header stamp; answers stamped after the first of a query (the memory took
a frame in between) are moved into that first base frame with the ground truth between the two stamps.

The tour-driven scenarios start where harness (a) starts them, at the tour's own start pose: `--write-params`
writes a copy of the params file that makes sim_node start the robot there, for the launch to use:

    python3 benchmarks/ros_mem_live.py --seed 2000 --scenario tour --write-params /tmp/tour_2000.yaml
    ros2 launch spatial_memory sim.launch.py world_seed:=2000 params_file:=/tmp/tour_2000.yaml &
    python3 benchmarks/ros_mem_live.py --seed 2000 --scenario tour --params /tmp/tour_2000.yaml --out r.json

A run whose robot is not at that start is refused (a different path is a different question set).

The answers are scored by the same `score` as harness (a), so the rows compare column by column. The kidnap
carries the robot through sim_node's `sim/teleport` (the wheel odometry does not see it) to the spot
harness (a) draws for the same seed (`kidnap_spot`); the queries asked once the ground truth shows the robot
there are scored as after the kidnap. Which frames the memory took is inferred from the rate (memory_node's
rule), not read from the node.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped, Twist
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from spatial_memory.config import load_config
from spatial_memory.eval.live_mem_rpe import (
    SCENARIOS,
    KidnapDriver,
    LiveAnswers,
    Reply,
    ask_query,
    kidnap_spot,
    live_table,
    score,
)
from spatial_memory.geometry import invert
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import SimNodeConfig
from spatial_memory.resources import share_path
from spatial_memory.ros import memory_messages as mm
from spatial_memory.sim.live import LiveSim
from spatial_memory.sim.queries import QueryConfig, QuerySampler
from spatial_memory.sim.world_tour import WorldTour
from spatial_memory_interfaces.srv import QueryPose

RATE_SLACK = 0.95


class Scorer(Node):
    """Drives, watches the camera and the truth, asks /query_pose and keeps the answers."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("memory_live_scorer")
        sim_cfg = load_config(SimNodeConfig, args.params, topics.SIM_NODE).sim
        world = dataclasses.replace(sim_cfg.world, preset=args.preset, seed=args.seed)
        self.world_sim = LiveSim(dataclasses.replace(sim_cfg, world=world))  # renders only, never stepped
        scenario = SCENARIOS[args.scenario]
        self.driver = scenario.make_driver(self.world_sim, args.seed, args.steps / 5.0)
        self.grid = grid = WorldTour(self.world_sim.world, seed=args.seed).grid
        qcfg = QueryConfig(
            every_n_steps=args.query_every, min_age_steps=round(scenario.min_query_age_s * 5.0)
        )
        self.sampler = QuerySampler(self.world_sim.sim, grid, qcfg, seed=args.seed)
        self.kidnap_rng = np.random.default_rng(args.seed + 99)  # harness (a)'s draw for this seed
        self.kidnap_to: tuple[float, float, float] | None = None  # where sim/teleport was asked to carry it
        self.kidnapped = False  # the ground truth showed the robot there: later queries are after it
        self.lock = threading.Lock()
        self.sampler_lock = threading.Lock()  # the depth callback observes while the main loop samples
        self.truth: list[tuple[int, np.ndarray]] = []  # (stamp ns, T_world_base)
        self.cam_pose: dict[int, np.ndarray] = {}
        self.frames = 0
        self.last_frame_ns: int | None = None
        self.memory_steps = 0
        self.memory_resets = 0  # memory_node's resets for a kidnap (lost / view jump / kidnap checks)
        self.memory_status: dict = {}  # memory_node/status, the latest
        self.context_status: dict = {}  # spatial_context/status, the latest
        self.backends: list[str] = list(args.backends)
        self.answers = {b: LiveAnswers() for b in self.backends}
        self.pictures: dict[str, list[tuple]] = {b: [] for b in self.backends}
        self.query_ms: dict[str, list[float]] = {b: [] for b in self.backends}
        self.reference: tuple[int, np.ndarray] | None = None  # (stamp, T_world_base) a query is scored in
        group = ReentrantCallbackGroup()
        self.create_subscription(PoseStamped, topics.GT_BASE_POSE, self._on_truth, 100, callback_group=group)
        self.create_subscription(
            PoseStamped, topics.GT_CAMERA_POSE, self._on_cam_pose, 100, callback_group=group
        )
        self.create_subscription(
            Image, topics.CAMERA_DEPTH, self._on_depth, qos_profile_sensor_data, callback_group=group
        )
        self.create_subscription(String, topics.MEMORY_STATUS, self._on_status, 10, callback_group=group)
        self.create_subscription(
            String, topics.CONTEXT_STATUS, self._on_context_status, 10, callback_group=group
        )
        self.cmd = self.create_publisher(Twist, topics.CMD_VEL, 10)
        self.teleport = self.create_publisher(PoseStamped, topics.SIM_TELEPORT, 10)
        self.client = self.create_client(QueryPose, topics.QUERY_POSE, callback_group=group)
        self.query_client: QueryClient | None = None  # a light client of its own (main), else self.client
        self.factory = conv.RclpyFactory()

    # -- inputs ---------------------------------------------------------------------------------------
    def _on_truth(self, msg: PoseStamped) -> None:
        with self.lock:
            T = conv.pose_to_matrix(msg.pose)  # noqa: N806
            self.truth.append((conv.stamp_to_ns(msg.header.stamp), T))
            del self.truth[:-3000]
            if self.kidnap_to is not None and np.hypot(*(T[:2, 3] - self.kidnap_to[:2])) < 0.05:
                self.kidnapped = True

    def _on_cam_pose(self, msg: PoseStamped) -> None:
        with self.lock:
            self.cam_pose[conv.stamp_to_ns(msg.header.stamp)] = conv.pose_to_matrix(msg.pose)
            for old in sorted(self.cam_pose)[:-100]:
                del self.cam_pose[old]

    def _on_depth(self, msg: Image) -> None:
        stamp = conv.stamp_to_ns(msg.header.stamp)
        if self.last_frame_ns is not None and stamp - self.last_frame_ns < RATE_SLACK * 1e9 / 5.0:
            return
        with self.lock:
            T = self.cam_pose.pop(stamp, None)
        if T is None:
            return  # its pose has not arrived (yet): the next frame will do
        self.last_frame_ns = stamp
        depth = conv.image_to_numpy(msg)
        with self.sampler_lock:
            self.sampler.observe(self.frames, T, depth, self.world_sim.intrinsics("camera"))
        self.frames += 1

    def _on_context_status(self, msg: String) -> None:
        self.context_status = json.loads(msg.data)  # spatial_context_node's timing of /query_pose

    def _on_status(self, msg: String) -> None:
        status = json.loads(msg.data)
        self.memory_status = status  # the last one: memory_node's own timing of its work (`timing.Stopwatch`)
        # frames the memory took since it started: its `steps` restart when a kidnap check resets it
        self.memory_steps = int(status.get("frames_used", status.get("steps", 0)))
        self.memory_resets = int(status.get("lost_resets", 0)) + int(status.get("kidnap_resets", 0))

    def pose_at(self, stamp: int) -> np.ndarray | None:
        with self.lock:
            if not self.truth:
                return None
            stamps = np.array([s for s, _ in self.truth])
            i = int(np.argmin(np.abs(stamps - stamp)))
            return self.truth[i][1] if abs(stamps[i] - stamp) < 50_000_000 else None

    # -- asking ---------------------------------------------------------------------------------------
    def ask(self, rgb: np.ndarray, backend: str = "") -> dict:
        image = conv.numpy_to_image(rgb, "rgb8", factory=self.factory)
        t0 = time.perf_counter()
        client = self.query_client.client if self.query_client is not None else self.client
        response = client.call(QueryPose.Request(query=image, backend=backend))
        self.query_ms[backend or self.backends[0]].append(1e3 * (time.perf_counter() - t0))
        return mm.query_response_summary(response)

    def reply(self, rgb: np.ndarray, backend: str) -> Reply | None:
        """/query_pose's answer as the scorers keep it, in the query's reference base frame; None when it
        refused the picture (or its stamp has no ground truth)."""
        got = self.ask(rgb, backend)
        if not got["success"] or self.reference is None:
            return None
        pred = np.array([got["x"], got["y"], got["yaw"]])
        ref_stamp, T_ref = self.reference  # noqa: N806
        if got["stamp_ns"] != ref_stamp:  # the memory took a frame since: move the answer into the reference
            T_at = self.pose_at(got["stamp_ns"])  # noqa: N806
            if T_at is None:
                return None
            pred = _rebase(pred, invert(T_ref) @ T_at)
        refined = got["message"].startswith("refined:")  # fill_query_response starts with the backend
        return Reply(pred, got["sigma_m"], got["seen_probability"], got["confidence"], refined)

    def query_once(self) -> None:
        with self.lock:
            latest = self.truth[-1][1] if self.truth else None
        if latest is None or self.frames == 0:
            return
        with self.sampler_lock:
            sample = self.sampler.sample(self.frames - 1, latest)
        if sample is None:
            return
        # the truth is relative to the base at the memory's newest frame: its stamp comes with every answer
        stamp = self.ask(sample.query.rgb)["stamp_ns"]
        T_world_base = self.pose_at(stamp)
        if T_world_base is None:
            return
        self.reference = (stamp, T_world_base)
        query = dataclasses.replace(sample.query, T_base_query=invert(T_world_base) @ sample.T_world_query)
        for backend in self.backends:
            ask = functools.partial(self.reply, backend=backend)
            where = sample.T_world_query[:2, 3]
            after = self.kidnapped
            ask_query(self.answers[backend], ask, query, self.pictures[backend], after, world_xy=where)


def kidnap(node: Scorer, T_world_base: np.ndarray) -> None:  # noqa: N803
    """Carry the robot through sim_node's sim/teleport to harness (a)'s spot for this seed."""
    spot = kidnap_spot(node.world_sim, node.grid, node.kidnap_rng, (T_world_base[0, 3], T_world_base[1, 3]))
    if spot is None:
        raise SystemExit("kidnap: no free spot 3 m away in this world")
    x, y, yaw = spot
    T = np.eye(4)  # noqa: N806
    T[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    T[:2, 3] = (x, y)
    node.kidnap_to = spot
    node.teleport.publish(conv.matrix_to_pose_stamped(T, 0, topics.WORLD_FRAME, factory=node.factory))
    if isinstance(node.driver, KidnapDriver):
        node.driver.after_kidnap(node.world_sim)  # a fresh tour from the new place, as in harness (a)
    print(f"kidnap: carried from ({T_world_base[0, 3]:.1f}, {T_world_base[1, 3]:.1f}) to ({x:.1f}, {y:.1f})")


def _rebase(pred: np.ndarray, T_ref_at: np.ndarray) -> np.ndarray:  # noqa: N803
    """A planar answer (x, y, yaw) relative to base pose `at`, made relative to base pose `ref`."""
    c, s = T_ref_at[0, 0], T_ref_at[1, 0]
    x, y, yaw = pred
    heading = math.atan2(s, c)
    return np.array([c * x - s * y + T_ref_at[0, 3], s * x + c * y + T_ref_at[1, 3], yaw + heading])


def start_pose(args: argparse.Namespace) -> tuple[float, float, float] | None:
    """Where the scenario's driver starts the robot in harness (a), or None (where the sim starts it)."""
    sim_cfg = load_config(SimNodeConfig, args.params, topics.SIM_NODE).sim
    world = dataclasses.replace(sim_cfg.world, preset=args.preset, seed=args.seed, start_at_xy=False)
    with LiveSim(dataclasses.replace(sim_cfg, world=world)) as sim:
        return SCENARIOS[args.scenario].make_driver(sim, args.seed, args.steps / 5.0).start_pose()


def write_params(args: argparse.Namespace, out: Path) -> None:
    """A copy of the params file whose sim_node starts the robot at the scenario's start pose."""
    import yaml

    doc = yaml.safe_load(Path(args.params).read_text())
    world = doc[topics.SIM_NODE]["ros__parameters"]["sim"]["world"]
    world.update(preset=args.preset, seed=args.seed)
    pose = start_pose(args)
    if pose is not None:
        world.update(start_at_xy=True, start_xy=[pose[0], pose[1]], start_yaw=pose[2])
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    print(f"wrote {out}: sim_node starts the robot at {pose or 'its configured start'}")


def start_problem(node: Scorer, expected: tuple[float, float, float] | None) -> str | None:
    """Why this run must not go on: its robot does not stand at the scenario's start pose (see
    `--write-params`), or no ground truth came; None when it may."""
    if expected is None:
        return None
    with node.lock:
        first = node.truth[0][1] if node.truth else None
    if first is None:
        return "no ground_truth/base_pose: is sim.launch.py running?"
    x, y = first[0, 3], first[1, 3]
    yaw = math.atan2(first[1, 0], first[0, 0])
    turn = abs(math.remainder(yaw - expected[2], 2 * math.pi))
    if math.hypot(x - expected[0], y - expected[1]) > 0.1 or turn > math.radians(5):
        return (
            f"the robot starts at ({x:.2f}, {y:.2f}, {yaw:.2f}), not at this scenario's start {expected}: "
            "launch with the params of --write-params"
        )
    return None


class QueryClient(Node):
    """The /query_pose client on a node and executor of its own, as a user's light client would have it:
    the scorer's own subscriptions (depth images at 15 Hz, ground truth at 30 Hz) do not hold up the
    responses (`--shared-client`: on the scorer's executor, as measured before)."""

    def __init__(self) -> None:
        super().__init__("ros_mem_live_query_client")
        self.client = self.create_client(QueryPose, topics.QUERY_POSE)
        self.executor_ = SingleThreadedExecutor()
        self.executor_.add_node(self)
        threading.Thread(target=self.executor_.spin, daemon=True).start()

    def close(self) -> None:
        self.executor_.shutdown()
        self.destroy_node()


def shut_down(executor: MultiThreadedExecutor, node: Scorer) -> None:
    executor.shutdown()
    if isinstance(node.query_client, QueryClient):
        node.query_client.close()
    node.world_sim.close()
    node.destroy_node()
    rclpy.try_shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="teleop", choices=list(SCENARIOS))
    parser.add_argument("--preset", default="house")
    parser.add_argument("--seed", type=int, default=1000, help="world seed: the launch's world_seed")
    parser.add_argument("--steps", type=int, default=200, help="memory steps T to run for")
    parser.add_argument("--query-every", type=int, default=5)
    parser.add_argument("--params", type=Path, default=None, help="sim.yaml (default: the installed one)")
    parser.add_argument("--timeout", type=float, default=900.0, help="wall seconds before giving up")
    parser.add_argument("--out", type=Path, help="JSON with the scores and the table")
    parser.add_argument(
        "--backends", nargs="+", default=[""], help="QueryPose backends to ask ('' = the node's default)"
    )
    parser.add_argument(
        "--write-params", type=Path, help="write the params file that starts the scenario right, and exit"
    )
    parser.add_argument(
        "--shared-client",
        action="store_true",
        help="call /query_pose from the scorer's busy executor (its latency then includes the scorer's own "
        "callbacks) instead of a light client node of its own",
    )
    args = parser.parse_args()
    args.params = args.params or share_path("config/sim.yaml")
    if args.write_params:
        write_params(args, args.write_params)
        return
    rclpy.init()
    node = Scorer(args)
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    if not args.shared_client:
        node.query_client = QueryClient()
    if not node.client.wait_for_service(timeout_sec=30.0) or not (
        node.query_client is None or node.query_client.client.wait_for_service(timeout_sec=30.0)
    ):
        raise SystemExit("/query_pose is not served: is sim.launch.py running?")
    time.sleep(1.0)  # the first ground-truth poses
    problem = start_problem(node, node.driver.start_pose())  # the scorer's own driver knows its start
    if problem:
        shut_down(executor, node)
        raise SystemExit(problem)
    extra = round(SCENARIOS[args.scenario].extra_s * 5.0)
    kidnap_s = node.driver.kidnap_at_s()
    start, next_query = time.monotonic(), args.query_every
    v = 0.0
    while node.memory_steps < args.steps + extra and time.monotonic() - start < args.timeout:
        with node.lock:
            latest = node.truth[-1] if node.truth else None
            earlier = next((T for t, T in reversed(node.truth) if latest and latest[0] - t >= 5e8), None)
        # at the memory step where harness (a) kidnaps (the graph's sim clock ran while the launch started)
        due = kidnap_s is not None and node.kidnap_to is None and node.memory_steps >= round(kidnap_s * 5.0)
        if latest is not None and due:
            kidnap(node, latest[1])
        if latest is not None:
            stamp, T = latest
            yaw = float(np.arctan2(T[1, 0], T[0, 0]))
            # the graph does not say when the base is blocked: driving without moving for 0.5 s is a bump
            stuck = earlier is not None and abs(v) > 0.05 and np.hypot(*(T[:2, 3] - earlier[:2, 3])) < 0.01
            v, omega = node.driver.command(stamp * 1e-9, (float(T[0, 3]), float(T[1, 3]), yaw), stuck)
            cmd = Twist()
            cmd.linear.x, cmd.angular.z = float(v), float(omega)
            node.cmd.publish(cmd)
        if node.memory_steps >= next_query:
            next_query = node.memory_steps + args.query_every
            node.query_once()
        time.sleep(1.0 / 30.0)
    node.cmd.publish(Twist())
    rows, timing = {}, {}
    for backend in node.backends:
        name = backend or "default"
        node.answers[backend].lost_resets.append(node.memory_resets)
        rows[f"ros {args.scenario} {name} (seed {args.seed}, T={args.steps})"] = score(node.answers[backend])
        ms = node.query_ms[backend]
        timing[name] = {
            "median": float(np.median(ms)) if ms else float("nan"),
            "p95": float(np.percentile(ms, 95)) if ms else float("nan"),
            "n": len(ms),
        }
        print(f"/query_pose {name}: {len(ms)} calls, median {timing[name]['median']:.0f} ms, "
              f"p95 {timing[name]['p95']:.0f} ms")  # fmt: skip
    table = live_table(rows)
    print(table)
    if args.out:
        report = {
            "rows": {label: s.to_dict() for label, s in rows.items()},
            "table": table,
            "query_ms": timing,
            "client": "the scorer's executor" if args.shared_client else "a client node of its own",
            "memory_node_ms": {  # the node's own view of its last 200 calls of each kind
                k: node.memory_status.get(k)
                for k in ("update_ms", "add_view_ms", "query_ms", "query_lock_wait_ms")
            },
            "query_pose_ms": node.context_status.get("query_pose_ms"),  # spatial_context_node's, all backends
            "memory_node_counts": {  # what the view store did: views kept, loop closures, resets
                k: node.memory_status.get(k)
                for k in ("views", "views_stored", "loop_closures", "kidnap_resets", "lost_resets")
            },
        }
        print("memory_node's own timing (last 200 calls):", json.dumps(report["memory_node_ms"]))
        print("memory_node's counts:", json.dumps(report["memory_node_counts"]))
        print("spatial_context_node's /query_pose (last 200 calls):", json.dumps(report["query_pose_ms"]))
        args.out.write_text(json.dumps(report, indent=2))
    shut_down(executor, node)


if __name__ == "__main__":
    main()
