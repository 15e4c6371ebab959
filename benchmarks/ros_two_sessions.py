"""Two sessions through the real ROS 2 graph: explore, save, restart every node, load, answer about session 1.

    python3 benchmarks/ros_two_sessions.py --seed 1000 --steps 150 --pictures 8 --out r.json

Session 1: `sim.launch.py` (sim_node, fk_node, spatial_context_node, memory_node with the shipped Kinaema,
keyframe retrieval and refinement; wheel odometry). This script drives the seeded world tour through
`cmd_vel` until memory_node has taken `--steps` frames, promoting the newest frame to a keyframe every
`--keyframe-every` steps, then stops the robot. Pictures: `--pictures` head-camera poses of the tour, at
least `--min-age` seconds old, rendered with the robot hidden (its own copy of the world, never stepped).
It asks /query_pose about each picture (every backend), then saves with `memory/save` and
`spatial_context/save`, and stops the whole launch with Ctrl-C (SIGINT to its process group).

Session 2: the launch again, every node new, sim_node starting the robot where it stood at the save
(`sim.world.start_at_xy`, `start_xy`, `start_yaw` in a copy of the parameter file): a new odometry frame
(it starts at the robot) and a new clock (from 0). First the fresh memory (it has seen only where it stands)
is asked the same pictures: the baseline that never saw them. Then `memory/load` and `spatial_context/load`
(resume: the robot stands where it was saved), a wait for the memory's next frame (it resumes), and the
same pictures again. The keyframes of session 1 are read back with /promote_keyframe and compared, relative
to the robot, with where they were relative to the robot at the save.

Scoring: each answer is relative to the base at its header stamp; the truth is the picture's camera in that
base (ground truth on `ground_truth/base_pose`, the world being the same in both sessions). Rows: position
error (median, share within 1 m), heading error (median), seen probability (median), answers given.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before MuJoCo is imported: the pictures render offscreen

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import rclpy.time
import yaml
from geometry_msgs.msg import PoseStamped, Twist
from machine import machine
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from ros_launch import SimLaunch
from std_msgs.msg import String
from tf2_ros import Buffer, TransformListener

from spatial_memory.config import load_config
from spatial_memory.eval.live_mem_rpe import SCENARIOS
from spatial_memory.geometry import invert
from spatial_memory.memory.poses import planar_target, wrap_angle
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import SimNodeConfig
from spatial_memory.resources import share_path
from spatial_memory.ros import memory_messages as mm
from spatial_memory.sim.live import LiveSim
from spatial_memory_interfaces.srv import LoadState, PromoteKeyframe, QueryPose, SaveState

BACKENDS = ("kinaema", "keyframes", "refined")


class Trial(Node):
    """Drives, keeps the ground truth, calls the services; one per session (rclpy stays up between)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.lock = threading.Lock()
        self.truth: list[tuple[int, np.ndarray]] = []  # (stamp, T_world_base)
        self.cameras: list[tuple[int, np.ndarray]] = []  # (stamp, T_world_cam) of head frames
        self.status: dict[str, dict] = {}
        group = ReentrantCallbackGroup()
        self.create_subscription(PoseStamped, topics.GT_BASE_POSE, self._on_base, 100, callback_group=group)
        self.create_subscription(PoseStamped, topics.GT_CAMERA_POSE, self._on_cam, 100, callback_group=group)
        for key, topic in (("memory", topics.MEMORY_STATUS), ("context", topics.CONTEXT_STATUS)):
            self.create_subscription(
                String, topic, lambda m, k=key: self._on_status(k, m), 10, callback_group=group
            )
        self.cmd = self.create_publisher(Twist, topics.CMD_VEL, 10)
        self.tf = Buffer()
        self.tf_listener = TransformListener(self.tf, self)
        self.group = group
        self.factory = conv.RclpyFactory()

    def _on_base(self, msg: PoseStamped) -> None:
        with self.lock:
            self.truth.append((conv.stamp_to_ns(msg.header.stamp), conv.pose_to_matrix(msg.pose)))
            del self.truth[:-3000]

    def _on_cam(self, msg: PoseStamped) -> None:
        with self.lock:
            self.cameras.append((conv.stamp_to_ns(msg.header.stamp), conv.pose_to_matrix(msg.pose)))

    def _on_status(self, key: str, msg: String) -> None:
        with self.lock:
            self.status[key] = json.loads(msg.data)

    def memory(self, key: str, default=None):
        with self.lock:
            return self.status.get("memory", {}).get(key, default)

    def base_at(self, stamp: int) -> np.ndarray | None:
        with self.lock:
            if not self.truth:
                return None
            stamps = np.array([s for s, _ in self.truth])
            i = int(np.argmin(np.abs(stamps - stamp)))
            return self.truth[i][1] if abs(stamps[i] - stamp) < 100_000_000 else None

    def latest_base(self) -> np.ndarray | None:
        with self.lock:
            return self.truth[-1][1] if self.truth else None

    def call(self, srv_type, name: str, request, timeout_s: float = 30.0):
        client = self.create_client(srv_type, name, callback_group=self.group)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise RuntimeError(f"{name} is not served")
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            if not done.wait(timeout_s):
                raise RuntimeError(f"{name} did not answer within {timeout_s:g} s")
            return future.result()
        finally:
            self.destroy_client(client)

    def wait_for(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def odom_base(self) -> np.ndarray:
        tf = self.tf.lookup_transform("odom", "base_link", rclpy.time.Time())
        return conv.msg_to_matrix(tf)


def drive_tour(node: Trial, world_sim: LiveSim, seed: int, steps: int, keyframe_every: int, timeout_s: float):
    """The seeded world tour until memory_node took `steps` frames; the newest frame is promoted to a
    keyframe every `keyframe_every` steps. Returns the promoted frame ids."""
    driver = SCENARIOS["tour"].make_driver(world_sim, seed, steps / 5.0)
    start, v, history, promoted, next_kf = time.monotonic(), 0.0, [], [], keyframe_every
    while node.memory("steps", 0) < steps and time.monotonic() - start < timeout_s:
        base = node.truth[-1] if node.truth else None
        if base is not None:
            stamp, T = base
            history = [(s, P) for s, P in history if stamp - s <= 1e9] + [(stamp, T)]
            earlier = next((P for s, P in history if stamp - s >= 5e8), None)
            moved = np.hypot(*(T[:2, 3] - earlier[:2, 3])) if earlier is not None else 1.0
            yaw = float(np.arctan2(T[1, 0], T[0, 0]))
            v, omega = driver.command(
                stamp * 1e-9, (float(T[0, 3]), float(T[1, 3]), yaw), abs(v) > 0.05 and moved < 0.01
            )
            cmd = Twist()
            cmd.linear.x, cmd.angular.z = float(v), float(omega)
            node.cmd.publish(cmd)
        if node.memory("steps", 0) >= next_kf:
            next_kf += keyframe_every
            got = node.call(PromoteKeyframe, topics.PROMOTE_KEYFRAME, PromoteKeyframe.Request(latest=True))
            if got.success:
                promoted.append(int(got.keyframe.frame_id))
        time.sleep(1.0 / 30.0)
    for _ in range(10):
        node.cmd.publish(Twist())
        time.sleep(0.1)
    return promoted


def pick_pictures(node: Trial, count: int, min_age_s: float, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` head-camera poses of the tour at least `min_age_s` old, spread over it."""
    with node.lock:
        now = node.cameras[-1][0]
        pool = [T for s, T in node.cameras if (now - s) * 1e-9 >= min_age_s]
    if len(pool) < count:
        raise RuntimeError(f"only {len(pool)} camera poses at least {min_age_s:g} s old")
    picks = np.linspace(0, len(pool) - 1, count).round().astype(int)
    jitter = rng.integers(-3, 4, count)
    return [pool[int(np.clip(i + j, 0, len(pool) - 1))] for i, j in zip(picks, jitter, strict=True)]


def ask(node: Trial, pictures: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, list[dict]]:
    """Every picture to every backend: the answer and its error against the truth at the answer's stamp."""
    out: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    for rgb, T_world_query in pictures:
        for backend in BACKENDS:
            request = QueryPose.Request(
                query=conv.numpy_to_image(rgb, "rgb8", factory=node.factory), backend=backend
            )
            got = mm.query_response_summary(node.call(QueryPose, topics.QUERY_POSE, request))
            row = {"success": got["success"], "message": got["message"][:160]}
            T_base = node.base_at(got["stamp_ns"]) if got["success"] else None
            if T_base is not None:
                x, y, yaw = planar_target(invert(T_base) @ T_world_query)
                row.update(
                    error_m=float(math.hypot(got["x"] - x, got["y"] - y)),
                    yaw_error_deg=float(abs(math.degrees(wrap_angle(got["yaw"] - yaw)))),
                    seen=got["seen_probability"],
                    sigma_m=got["sigma_m"],
                    distance_m=float(math.hypot(x, y)),
                )
            out[backend].append(row)
    return out


def score(rows: list[dict]) -> dict:
    errors = [r["error_m"] for r in rows if "error_m" in r]
    return {
        "answered": len(errors),
        "asked": len(rows),
        "median_error_m": float(np.median(errors)) if errors else float("nan"),
        "within_1m": float(np.mean([e <= 1.0 for e in errors])) if errors else float("nan"),
        "median_yaw_error_deg": float(np.median([r["yaw_error_deg"] for r in rows if "error_m" in r]))
        if errors
        else float("nan"),
        "median_seen": float(np.median([r["seen"] for r in rows if "error_m" in r]))
        if errors
        else float("nan"),
    }


def keyframes_relative(node: Trial, frame_ids: list[int]) -> dict[int, np.ndarray]:
    """Each keyframe's camera relative to the robot now (odom -> base_link from TF), via /promote_keyframe."""
    T_odom_base = node.odom_base()
    out = {}
    for fid in frame_ids:
        got = node.call(PromoteKeyframe, topics.PROMOTE_KEYFRAME, PromoteKeyframe.Request(frame_id=fid))
        if got.success:
            out[fid] = invert(T_odom_base) @ conv.pose_to_matrix(got.keyframe.pose)
    return out


def session_params(params: Path, start: np.ndarray, out: Path) -> Path:
    """A copy of the parameter file with sim_node starting the robot at the planar pose of `start`."""
    data = yaml.safe_load(params.read_text())
    world = data["sim_node"]["ros__parameters"]["sim"]["world"]
    world["start_at_xy"] = True
    world["start_xy"] = [float(start[0, 3]), float(start[1, 3])]
    world["start_yaw"] = float(math.atan2(start[1, 0], start[0, 0]))
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="house")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=150, help="memory steps of the session-1 tour")
    parser.add_argument("--keyframe-every", type=int, default=30)
    parser.add_argument("--pictures", type=int, default=8)
    parser.add_argument("--min-age", type=float, default=10.0, help="pictures: views at least this old (s)")
    parser.add_argument("--params", type=Path, default=None, help="sim.yaml (default: the installed one)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the state files and logs")
    parser.add_argument("--out", type=Path, help="JSON with every answer and the scores")
    args = parser.parse_args()
    params = args.params or Path(share_path("config/sim.yaml"))
    work = args.work or Path(tempfile.mkdtemp(prefix="two_sessions_"))
    work.mkdir(parents=True, exist_ok=True)
    sim_cfg = load_config(SimNodeConfig, params, topics.SIM_NODE).sim
    world = dataclasses.replace(sim_cfg.world, preset=args.preset, seed=args.seed)
    world_sim = LiveSim(dataclasses.replace(sim_cfg, world=world))  # renders pictures only, never stepped
    rng = np.random.default_rng(args.seed)
    launch_args = [f"world_preset:={args.preset}", f"world_seed:={args.seed}"]
    rclpy.init()
    executor = MultiThreadedExecutor(num_threads=3)
    threading.Thread(target=executor.spin, daemon=True).start()
    report: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    t0 = time.monotonic()

    # -- session 1 --------------------------------------------------------------------------------------
    node = Trial("two_sessions_1")
    executor.add_node(node)
    with SimLaunch(launch_args, work / "session1.log"):
        node.wait_for(lambda: node.memory("steps", 0) > 0, 180, "memory_node's first frame")
        promoted = drive_tour(node, world_sim, args.seed, args.steps, args.keyframe_every, timeout_s=900)
        time.sleep(2.0)  # standing still
        poses = pick_pictures(node, args.pictures, args.min_age, rng)
        pictures = [(world_sim.sim.render_view(T)[0], T) for T in poses]
        report["session1"] = ask(node, pictures)
        T_save = node.latest_base()
        kf_before = keyframes_relative(node, promoted)
        saves = {}
        for name, srv in (("memory", topics.MEMORY_SAVE), ("context", topics.CONTEXT_SAVE)):
            got = node.call(SaveState, srv, SaveState.Request(path=str(work / f"{name}.state")))
            if not got.success:
                raise RuntimeError(got.message)
            saves[name] = {"steps": got.steps, "keyframes_or_views": got.keyframes, "message": got.message}
        report["saved"] = saves
        report["session1_memory_status"] = node.status.get("memory")
    log1 = (work / "session1.log").read_text()
    report["session1_exit_problems"] = [ln for ln in log1.splitlines() if "process has died" in ln]
    executor.remove_node(node)
    node.destroy_node()

    # -- session 2: every node new, the robot where it stood ---------------------------------------------
    node = Trial("two_sessions_2")
    executor.add_node(node)
    second = session_params(params, T_save, work / "session2.yaml")
    with SimLaunch([*launch_args, f"params_file:={second}"], work / "session2.log"):
        node.wait_for(lambda: node.memory("steps", 0) >= 3, 180, "the fresh memory's first frames")
        T_now = node.latest_base()
        report["restart_offset_m"] = float(np.hypot(*(T_now[:2, 3] - T_save[:2, 3])))
        report["fresh"] = ask(node, pictures)
        loads = {}
        for name, srv in (("memory", topics.MEMORY_LOAD), ("context", topics.CONTEXT_LOAD)):
            got = node.call(LoadState, srv, LoadState.Request(path=str(work / f"{name}.state")))
            if not got.success:
                raise RuntimeError(got.message)
            loads[name] = {"steps": got.steps, "keyframes_or_views": got.keyframes, "message": got.message}
        report["loaded"] = loads
        node.wait_for(lambda: node.memory("resume_pending") is False, 60, "the loaded memory to resume")
        time.sleep(1.5)  # the context resumes at its next frame too
        report["reloaded"] = ask(node, pictures)
        kf_after = keyframes_relative(node, promoted)
        report["session2_memory_status"] = node.status.get("memory")
    report["keyframes"] = {
        "promoted": promoted,
        "restored": sorted(kf_after),
        "max_offset_m": max(
            (
                float(np.linalg.norm(kf_after[f][:3, 3] - kf_before[f][:3, 3]))
                for f in kf_after
                if f in kf_before
            ),
            default=float("nan"),
        ),
    }
    report["wall_s"] = time.monotonic() - t0
    report["scores"] = {
        cond: {b: score(report[cond][b]) for b in BACKENDS} for cond in ("session1", "reloaded", "fresh")
    }
    for cond, rows in report["scores"].items():
        for backend, s in rows.items():
            print(f"{cond:9s} {backend:9s} {json.dumps(s)}")
    print(json.dumps({k: report[k] for k in ("saved", "loaded", "keyframes", "restart_offset_m")}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str))
    executor.shutdown()
    world_sim.close()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
