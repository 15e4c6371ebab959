"""Two machines on one host: the robot half and the workstation half of the graph in two network namespaces.

    sudo python3 benchmarks/ros_two_machines.py --out benchmarks/results/two_machines.json

Needs root (ip netns, veth, tc) and ROS 2 (`/opt/ros2_jazzy/ENV.sh` is sourced in each namespace). What a
user does on two computers, with the computers replaced by network namespaces and the cable by a veth pair:

- `sm_robot` (10.77.0.1/24): `ros2 launch spatial_memory sim.launch.py nodes:=robot odometry:=visual
  use_policy:=true` (sim_node, fk_node, spatial_context_node, vo_node, goal_follower_node) and a driver
  that publishes cmd_vel and counts camera/image on the robot itself;
- `sm_ws` (10.77.0.2/24): `... nodes:=workstation use_policy:=true use_memory:=true` (memory_node,
  policy_node) and the probe, which measures from the workstation:
  1. the graph alone for `--window` s: bytes over the veth (its /sys statistics), memory/status steps,
     policy/status ticks, /diagnostics names (which nodes report, from which half);
  2. for `--window` s more, a raw (serialized) subscription to every topic whose publisher is on one half
     and a subscriber on the other (found in the graph): messages and bytes per topic; camera/image latency
     = receive time - the DDS source timestamp (the writer's wall clock: one machine, one clock; header
     stamps are sim time, so they cannot be compared with a wall clock);
  3. `--queries` rounds of QueryPose calls with the newest camera picture, interleaved: /query_pose
     (served by spatial_context_node on the robot, which forwards to memory/query on memory_node on the
     workstation: two crossings each way), memory/query straight to memory_node (no crossing), and both
     again with a backend memory_node refuses at once (the round trip with the picture, without the model).

Modes (`--modes`; discovery ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET, multicast on the veth, unless said):
`single` = every node, the driver and the probe in sm_robot (the baseline: one machine); `split` = the two
halves; `split_peers` = split with multicast off on the veth and ROS_STATIC_PEERS naming both addresses
(unicast discovery and data, as on a network without multicast); `split_tbf:<rate>` = split with a token
bucket (`tc qdisc tbf rate <rate>`, 200 ms of queue) on both veth ends, a link slower than a veth (this
kernel has no netem, so no added delay).

Namespaces, veth and every process group are removed on exit, on Ctrl-C and on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROBOT_NS, WS_NS = "sm_robot", "sm_ws"
ROBOT_IF, WS_IF = "sm_robot0", "sm_ws0"
ROBOT_IP, WS_IP = "10.77.0.1", "10.77.0.2"
ROBOT_NODES = {"sim_node", "fk_node", "spatial_context_node", "vo_node", "goal_follower_node"}
WORKSTATION_NODES = {"memory_node", "policy_node"}
ENV_SH = "/opt/ros2_jazzy/ENV.sh"
CHECKPOINT = REPO / "models" / "kinaema_indoor64.pt"
DISCOVERY = {
    "subnet": "ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET (multicast on the veth)",
    "peers": f"multicast off on the veth, ROS_STATIC_PEERS={ROBOT_IP};{WS_IP} (unicast)",
}
PING, PONG = "two_machines/ping", "two_machines/pong"
RELIABLE = 10  # depth 10, reliable, volatile: rclpy's default profile
# ping-pong payloads (sensor_msgs/Image): width, height, encoding, bytes per pixel
PAYLOADS = {
    "tiny (1x1 rgb8)": (1, 1, "rgb8", 3),
    "camera/image 160x120 rgb8": (160, 120, "rgb8", 3),
    "camera/depth 160x120 32FC1": (160, 120, "32FC1", 4),
    "bev_map 512x512 rgb8": (512, 512, "rgb8", 3),
    "VGA 640x480 rgb8": (640, 480, "rgb8", 3),
}
UNSERVED = "two_machines_probe"  # a backend memory_node refuses at once: the round trip without the model


# ----------------------------------------------------------------------------------------------------
# host side: namespaces, processes, cleanup
# ----------------------------------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def remove_namespaces() -> None:
    """Delete both namespaces (their veth ends go with them); quiet when they do not exist."""
    for ns in (ROBOT_NS, WS_NS):
        _ip("netns", "del", ns, check=False)


def make_namespaces(multicast: bool, tbf_rate: str = "") -> None:
    """sm_robot and sm_ws joined by a veth pair, lo up in both; optionally a token bucket on both ends."""
    remove_namespaces()
    _ip("netns", "add", ROBOT_NS)
    _ip("netns", "add", WS_NS)
    _ip("link", "add", ROBOT_IF, "type", "veth", "peer", "name", WS_IF)
    for ns, dev, addr in ((ROBOT_NS, ROBOT_IF, ROBOT_IP), (WS_NS, WS_IF, WS_IP)):
        _ip("link", "set", dev, "netns", ns)
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "multicast", "on" if multicast else "off")
        _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        if tbf_rate:
            tbf = ["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", tbf_rate]
            subprocess.run([*tbf, "burst", "64kb", "latency", "200ms"], check=True, capture_output=True)


class Processes:
    """Process groups started in namespaces (setsid), stopped with SIGINT to the group, then SIGKILL."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.groups: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, ns: str, command: str) -> subprocess.Popen:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        script = f"source {ENV_SH} && export {exports} && cd {REPO} && exec {command}"
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "bash", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.groups.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, grace_s: float = 20.0) -> int | None:
        """SIGINT to its group, wait, then SIGKILL what is left; the exit status (None if killed)."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # children a launch left behind, too
        try:
            return proc.wait(5.0)
        except subprocess.TimeoutExpired:
            return None

    def stop_all(self) -> dict[str, int | None]:
        codes = {}
        for name, proc in reversed(self.groups):
            codes[name] = self.stop(proc)
        self.groups.clear()
        return codes


def _launch(nodes: str, seed: int) -> str:
    args = f"nodes:={nodes} odometry:=visual use_policy:=true world_seed:={seed}"
    if nodes != "robot":
        args += f" use_memory:=true memory_checkpoint:={CHECKPOINT}"
    return f"ros2 launch spatial_memory sim.launch.py {args}"


def run_mode(mode: str, args: argparse.Namespace, log_root: Path) -> dict:
    """One configuration: namespaces, the graph, the driver and the probe; everything removed after."""
    split = mode != "single"
    multicast = mode != "split_peers"
    tbf_rate = mode.split(":", 1)[1] if mode.startswith("split_tbf:") else ""
    make_namespaces(multicast, tbf_rate)
    env = {"ROS_DOMAIN_ID": str(args.domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    if not multicast:
        env["ROS_STATIC_PEERS"] = f"{ROBOT_IP};{WS_IP}"
    log_dir = log_root / mode.replace(":", "_")
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = Processes(log_dir, env)
    probe_ns = WS_NS if split else ROBOT_NS
    probe_out, drive_out = log_dir / "probe.json", log_dir / "drive.json"
    ping_out = log_dir / "ping.json"
    for f in (probe_out, drive_out, ping_out):
        f.unlink(missing_ok=True)
    me = f"python3 {Path(__file__).resolve()}"
    try:
        # the driver (which also echoes pings) and the probe first: the transport alone, then the graph
        drive = procs.start("drive", ROBOT_NS, f"{me} --role drive --json {drive_out}")
        iface = WS_IF if split else "lo"  # single: nothing crosses (multicast loops back without lo)
        probe_cmd = (
            f"{me} --role probe --json {probe_out} --iface {iface} --window {args.window} "
            f"--queries {args.queries} --startup {args.startup} --pings {args.pings} --ping-json {ping_out}"
        )
        probe = procs.start("probe", probe_ns, probe_cmd)
        deadline = time.monotonic() + 300.0
        while not ping_out.exists() and probe.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        if split:
            procs.start("robot_launch", ROBOT_NS, _launch("robot", args.seed))
            procs.start("workstation_launch", WS_NS, _launch("workstation", args.seed))
        else:
            procs.start("launch", ROBOT_NS, _launch("all", args.seed))
        probe.wait(args.startup + 2 * args.window + 60 * args.queries + 120)
        procs.stop(drive)
        codes = procs.stop_all()
        if not probe_out.exists():
            tail = (log_dir / "probe.log").read_text()[-3000:]
            raise RuntimeError(f"{mode}: the probe wrote no result; its log ends:\n{tail}")
        result = json.loads(probe_out.read_text())
        result["robot_local"] = json.loads(drive_out.read_text()) if drive_out.exists() else None
        result["exit_codes"] = codes
        result["mode"] = mode
        result["discovery"] = DISCOVERY["peers" if mode == "split_peers" else "subnet"]
        result["link_kind"] = {
            "single": "one namespace",
            "split": "veth pair",
            "split_peers": "veth pair, no multicast",
        }.get(mode, f"veth pair, tbf {tbf_rate} on both ends")
        return result
    finally:
        procs.stop_all()
        remove_namespaces()


# ----------------------------------------------------------------------------------------------------
# inside the namespaces: the driver (robot) and the probe (workstation)
# ----------------------------------------------------------------------------------------------------


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    q = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else values * 19
    return {"n": len(values), "p50": statistics.median(values), "p95": q[18], "max": max(values)}


def _stop_flag() -> list[bool]:
    stop = [False]

    def handler(signum, frame):  # noqa: ARG001
        stop[0] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def role_drive(out: Path) -> None:
    """Robot side: cmd_vel at 10 Hz (slow arcs, turning one way then the other); camera/image counted on the
    robot itself (rate and latency without a crossing); every ping published straight back; until SIGINT."""
    import rclpy
    from geometry_msgs.msg import Twist
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image

    from spatial_memory.msgs import topics

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop = _stop_flag()
    node = rclpy.create_node("two_machines_drive")
    pub = node.create_publisher(Twist, topics.CMD_VEL, 10)
    arrivals: list[int] = []
    latency_ms: list[float] = []

    def on_image(_: bytes, info) -> None:
        now = time.time_ns()
        arrivals.append(now)
        latency_ms.append((now - info["source_timestamp"]) * 1e-6)

    node.create_subscription(Image, topics.CAMERA_IMAGE, on_image, qos_profile_sensor_data, raw=True)
    pong = node.create_publisher(Image, PONG, RELIABLE)
    node.create_subscription(Image, PING, pong.publish, RELIABLE, raw=True)  # the bytes straight back
    start, last = time.monotonic(), 0.0
    while not stop[0]:
        rclpy.spin_once(node, timeout_sec=0.02)
        now = time.monotonic()
        if now - last >= 0.1:
            last = now
            cmd = Twist()
            cmd.linear.x, cmd.angular.z = 0.15, 0.4 if int((now - start) / 10.0) % 2 == 0 else -0.4
            pub.publish(cmd)
    pub.publish(Twist())
    span = (arrivals[-1] - arrivals[0]) * 1e-9 if len(arrivals) > 1 else 0.0
    report = {
        "camera_images": len(arrivals),
        "camera_rate_hz": (len(arrivals) - 1) / span if span > 0 else None,
        "camera_latency_ms": _percentiles(latency_ms),
    }
    out.write_text(json.dumps(report, indent=1))
    node.destroy_node()
    rclpy.try_shutdown()


def _bytes(iface: str) -> dict[str, int]:
    base = Path("/sys/class/net") / iface / "statistics"
    return {k: int((base / f"{k}_bytes").read_text()) for k in ("rx", "tx")}


def _half(node_name: str) -> str:
    name = node_name.strip("/").split("/")[-1]
    return "robot" if name in ROBOT_NODES else "workstation" if name in WORKSTATION_NODES else "other"


class Probe:
    """The workstation's view of the graph (see the module docstring, steps 1-3)."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from std_msgs.msg import String

        from spatial_memory.msgs import topics

        self.rclpy = rclpy
        self.node = rclpy.create_node("two_machines_probe")
        self.memory: list[dict] = []
        self.policy: list[dict] = []
        self.diagnostics: dict[str, int] = {}
        self.image_msg: bytes | None = None
        self.sim_ns = (
            0  # the newest /clock: windows are also measured in sim seconds (the sim lags real time)
        )
        self.node.create_subscription(String, topics.MEMORY_STATUS, self._on_memory, 10)
        from rclpy.qos import qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock

        self.node.create_subscription(Clock, topics.CLOCK, self._on_clock, qos_profile_sensor_data)
        self.node.create_subscription(String, topics.POLICY_STATUS, self._on_policy, 10)
        from diagnostic_msgs.msg import DiagnosticArray

        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics, 50)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)

    def _on_memory(self, msg) -> None:
        self.memory.append({"t": time.monotonic(), **json.loads(msg.data)})

    def _on_clock(self, msg) -> None:
        self.sim_ns = max(self.sim_ns, msg.clock.sec * 1_000_000_000 + msg.clock.nanosec)

    def _on_policy(self, msg) -> None:
        self.policy.append({"t": time.monotonic(), **json.loads(msg.data)})

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            name = status.hardware_id or status.name.split(":")[0]
            self.diagnostics[name] = self.diagnostics.get(name, 0) + 1

    def spin_for(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
            if until is not None and until():
                return True
        return until is None

    def crossing_topics(self) -> dict[str, dict]:
        """Topics with a publisher on one half and a subscriber on the other (the probe excluded)."""
        crossing = {}
        for name, types in self.node.get_topic_names_and_types():
            pubs = {
                _half(f"{i.node_namespace}/{i.node_name}")
                for i in self.node.get_publishers_info_by_topic(name)
            }
            subs = {
                _half(f"{i.node_namespace}/{i.node_name}")
                for i in self.node.get_subscriptions_info_by_topic(name)
                if i.node_name != self.node.get_name()
            }
            directions = []
            if "robot" in pubs and "workstation" in subs:
                directions.append("robot->workstation")
            if "workstation" in pubs and "robot" in subs:
                directions.append("workstation->robot")
            if directions:
                crossing[name] = {"type": types[0], "direction": ", ".join(directions)}
        return crossing

    def measure_topics(self, crossing: dict[str, dict], window: float) -> dict:
        """Raw subscriptions to the crossing topics for `window` s: messages, serialized bytes, rates;
        camera/image latency from the DDS source timestamp."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosidl_runtime_py.utilities import get_message

        from spatial_memory.msgs import topics

        counts = {name: {"messages": 0, "bytes": 0, "first": None, "last": None} for name in crossing}
        image_latency_ms: list[float] = []
        camera = "/" + topics.CAMERA_IMAGE
        subs = []

        def callback(name: str):
            def on_message(data: bytes, info) -> None:
                now = time.time_ns()
                c = counts[name]
                c["messages"] += 1
                c["bytes"] += len(data)
                c["first"] = c["first"] or now
                c["last"] = now
                if name == camera:
                    self.image_msg = data
                    image_latency_ms.append((now - info["source_timestamp"]) * 1e-6)

            return on_message

        if camera not in crossing:
            counts[camera] = {"messages": 0, "bytes": 0, "first": None, "last": None}
            crossing = {**crossing, camera: {"type": "sensor_msgs/msg/Image", "direction": "(local)"}}
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        for name, info in crossing.items():
            cls = get_message(info["type"])
            subs.append(self.node.create_subscription(cls, name, callback(name), qos, raw=True))
        start, sim_start = time.monotonic(), self.sim_ns
        self.spin_for(window)
        elapsed, sim_s = time.monotonic() - start, (self.sim_ns - sim_start) * 1e-9
        for s in subs:
            self.node.destroy_subscription(s)
        per_topic = {}
        for name, c in counts.items():
            span = (c["last"] - c["first"]) * 1e-9 if c["messages"] > 1 else 0.0
            per_topic[name] = {
                **crossing[name],
                "messages": c["messages"],
                "rate_hz": (c["messages"] - 1) / span if span > 0 else None,
                "bytes_per_s": c["bytes"] / elapsed,
                "bytes_per_sim_s": c["bytes"] / sim_s if sim_s > 0 else None,
                "bytes_per_message": c["bytes"] / c["messages"] if c["messages"] else None,
            }
        return {
            "window_s": elapsed,
            "sim_s": sim_s,
            "topics": per_topic,
            "camera_latency_ms": _percentiles(image_latency_ms),
        }

    def ping(self, n: int) -> dict[str, dict]:
        """Round trips of Image messages of each payload size to the driver's echo on the robot and back
        (reliable QoS), one at a time: the transport alone, before the graph starts."""
        from sensor_msgs.msg import Image

        got: list[int] = []
        pub = self.node.create_publisher(Image, PING, RELIABLE)
        sub = self.node.create_subscription(
            Image, PONG, lambda m: got.append(m.header.stamp.nanosec), RELIABLE
        )
        t0 = time.monotonic()
        while (
            pub.get_subscription_count() == 0 or sub.get_publisher_count() == 0
        ) and time.monotonic() - t0 < 60:
            self.executor.spin_once(timeout_sec=0.1)
        self.spin_for(1.0)  # matched both ways: let discovery settle
        results = {}
        for label, (width, height, encoding, bpp) in PAYLOADS.items():
            msg = Image(width=width, height=height, encoding=encoding, step=width * bpp)
            msg.data = bytes(width * height * bpp)
            rtt_ms, lost = [], 0
            for k in range(n + 3):  # 3 to warm up
                msg.header.stamp.nanosec = k
                start = time.perf_counter()
                pub.publish(msg)
                while k not in got and time.perf_counter() - start < 5.0:
                    self.executor.spin_once(timeout_sec=0.001)
                if k not in got:
                    lost += 1
                elif k >= 3:
                    rtt_ms.append((time.perf_counter() - start) * 1e3)
            got.clear()
            results[label] = {"bytes": width * height * bpp, "rtt_ms": _percentiles(rtt_ms), "lost": lost}
        self.node.destroy_publisher(pub)
        self.node.destroy_subscription(sub)
        return results

    def queries(self, variants: dict[str, tuple[str, str]], n: int) -> dict[str, dict]:
        """`n` rounds of QueryPose calls, one call per variant (name: (service, backend)) in each round, one
        after another, each with the newest camera picture: the variants share the CPU load they meet."""
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import Image

        from spatial_memory_interfaces.srv import QueryPose

        clients, results = {}, {}
        for name, (service, backend) in variants.items():
            clients[name] = self.node.create_client(QueryPose, service)
            results[name] = {"service": service, "backend": backend, "ms": [], "success": 0, "outcomes": {}}
            if not clients[name].wait_for_service(timeout_sec=30.0):
                results[name]["error"] = "not offered"
        for _ in range(n):
            for name, (_, backend) in variants.items():
                r = results[name]
                if "error" in r:
                    continue
                self.spin_for(0.1)  # a newer picture
                request = QueryPose.Request(backend=backend)
                request.query = deserialize_message(self.image_msg, Image)
                t0 = time.perf_counter()
                future = clients[name].call_async(request)
                while not future.done() and time.perf_counter() - t0 < 30.0:
                    self.executor.spin_once(timeout_sec=0.005)
                if not future.done():
                    r["outcomes"]["timeout"] = r["outcomes"].get("timeout", 0) + 1
                    continue
                r["ms"].append((time.perf_counter() - t0) * 1e3)
                response = future.result()
                r["success"] += bool(response.success)
                key = "answered" if response.success else response.message[:80]
                r["outcomes"][key] = r["outcomes"].get(key, 0) + 1
                r["request_bytes"] = len(serialize_message(request))
                r["response_bytes"] = len(serialize_message(response))
        for name, client in clients.items():
            self.node.destroy_client(client)
            results[name]["ms"] = _percentiles(results[name]["ms"])
        return results


def role_probe(args: argparse.Namespace) -> None:
    import rclpy

    from spatial_memory.msgs import topics

    rclpy.init()
    probe = Probe()
    report: dict = {"iface": args.iface}
    report["ping"] = probe.ping(args.pings)
    args.ping_json.write_text(json.dumps(report["ping"], indent=1))  # the host starts the graph now
    t0 = time.monotonic()

    def ready() -> bool:
        steps = probe.memory[-1].get("steps", 0) if probe.memory else 0
        return steps > 0 and bool(probe.policy)

    report["graph_ready"] = probe.spin_for(args.startup, ready)
    report["graph_ready_after_s"] = time.monotonic() - t0
    # 1. the graph alone
    before, start, n_mem, n_pol = _bytes(args.iface), time.monotonic(), len(probe.memory), len(probe.policy)
    sim_start = probe.sim_ns
    probe.diagnostics.clear()
    probe.spin_for(args.window)
    after, elapsed = _bytes(args.iface), time.monotonic() - start
    sim_s = (probe.sim_ns - sim_start) * 1e-9
    report["link"] = {
        "iface": args.iface,
        "window_s": elapsed,
        "sim_s": sim_s,  # sim_node's camera and map rates are per sim second
        "rx_bytes_per_s": (after["rx"] - before["rx"]) / elapsed,
        "tx_bytes_per_s": (after["tx"] - before["tx"]) / elapsed,
        "rx_bytes_per_sim_s": (after["rx"] - before["rx"]) / sim_s if sim_s > 0 else None,
        "tx_bytes_per_sim_s": (after["tx"] - before["tx"]) / sim_s if sim_s > 0 else None,
    }
    report["diagnostics"] = {
        name: {"messages": k, "half": _half(name)} for name, k in sorted(probe.diagnostics.items())
    }
    mem, pol = probe.memory[n_mem:], probe.policy[n_pol:]
    report["memory_status"] = _progress(mem, "steps")
    report["memory_status"]["steps_per_sim_s"] = (
        report["memory_status"]["steps_gained"] / sim_s if sim_s else None
    )
    report["memory_status"]["last"] = {k: v for k, v in (mem[-1] if mem else {}).items() if _counter(k, v)}
    report["policy_status"] = _progress(pol, "ticks")
    report["policy_status"]["rate_hz_measured"] = [p.get("rate_hz_measured") for p in pol][-3:]
    report["policy_status"]["memory_available"] = pol[-1].get("memory_available") if pol else None
    # 2. per topic
    crossing = probe.crossing_topics()
    report["nodes"] = sorted(probe.node.get_node_names())
    report["per_topic"] = probe.measure_topics(crossing, args.window)
    # 3. queries
    if probe.image_msg is None:
        report["queries"] = {"error": "no camera image received"}
    else:
        variants = {
            "query_pose": (topics.QUERY_POSE, ""),  # the configured model
            "memory_query": ("/" + topics.MEMORY_QUERY, ""),
            "query_pose_no_model": (topics.QUERY_POSE, UNSERVED),  # refused after the image is read
            "memory_query_no_model": ("/" + topics.MEMORY_QUERY, UNSERVED),
        }
        report["queries"] = probe.queries(variants, args.queries)
    report["memory_steps_total"] = probe.memory[-1].get("steps") if probe.memory else None
    args.json.write_text(json.dumps(report, indent=1))
    probe.executor.shutdown()
    probe.node.destroy_node()
    rclpy.try_shutdown()


def _counter(key: str, value) -> bool:
    """A status entry worth keeping in the report: a number (counters, rates), not a path or a hash."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and key != "t"


def _progress(statuses: list[dict], key: str) -> dict:
    """How much a status counter grew over the window, and how many status messages came."""
    values = [s.get(key) for s in statuses if isinstance(s.get(key), (int, float))]
    return {
        "messages": len(statuses),
        f"{key}_first": values[0] if values else None,
        f"{key}_last": values[-1] if values else None,
        f"{key}_gained": values[-1] - values[0] if len(values) > 1 else 0,
    }


# ----------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------


def _ms(p: dict) -> str:
    return f"{p['p50']:.1f} / {p['p95']:.1f}" if p.get("n") else "-"


def _crossing_bytes_per_s(mode: dict) -> float:
    """Serialized bytes per second of the topics that cross between the halves (the camera counted in the
    single mode only where it would cross)."""
    topics_ = mode["per_topic"]["topics"].values()
    return sum(t["bytes_per_s"] for t in topics_ if "->" in t["direction"])


def write_markdown(report: dict, path: Path) -> None:
    modes = report["modes"]
    lines = [
        "# Two machines: the robot half and the workstation half over a veth pair",
        "",
        f"`{report['command']}`: network namespaces `sm_robot` (sim_node, fk_node, spatial_context_node, "
        "vo_node under odometry:=visual, goal_follower_node, and a driver on cmd_vel) and `sm_ws` "
        "(memory_node, policy_node, and the probe) joined by a veth pair (10.77.0.1/24, 10.77.0.2/24); "
        "Cyclone DDS, no other transport; discovery "
        + "; ".join(sorted({m["discovery"] for m in modes}))
        + ". Baseline `single`: everything in one namespace (link bytes: none cross). "
        "Image latency: receive time in the subscriber's callback minus the DDS source timestamp (the "
        "writer's wall clock; one host, one clock). Queries: one after another with the newest camera "
        "picture; /query_pose crosses twice each way in the split (probe -> spatial_context_node on the "
        "robot -> memory/query on the workstation), memory/query is memory_node directly. Bytes per wall "
        "second and per sim second: sim_node ran slower than real time on this shared machine, and it "
        "publishes per sim second (camera 15 Hz, BEV map 1 Hz), so per sim second is what a robot running "
        "in real time sends. Rows are measured one after another in each mode; the CPU load of the whole "
        "machine varied between and within modes (see the last line).",
        "",
        "| | " + " | ".join(m["mode"] + f" ({m['link_kind']})" for m in modes) + " |",
        "|---|" + "---|" * len(modes),
    ]

    def row(label: str, fn) -> None:
        cells = []
        for m in modes:
            try:
                cells.append(fn(m))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    q = "queries"
    row(
        "/query_pose p50 / p95 ms",
        lambda m: _ms(m[q]["query_pose"]["ms"]) + f" (n={m[q]['query_pose']['ms']['n']})",
    )
    row(
        "/query_pose answered",
        lambda m: f"{m[q]['query_pose']['success']} of {m[q]['query_pose']['ms']['n']}",
    )
    row("memory/query (no crossing) p50 / p95 ms", lambda m: _ms(m[q]["memory_query"]["ms"]))
    row("/query_pose without the model p50 / p95 ms", lambda m: _ms(m[q]["query_pose_no_model"]["ms"]))
    row("memory/query without the model p50 / p95 ms", lambda m: _ms(m[q]["memory_query_no_model"]["ms"]))
    row(
        "query request / response bytes",
        lambda m: f"{m[q]['query_pose']['request_bytes']} / {m[q]['query_pose']['response_bytes']}",
    )
    row("camera/image latency p50 / p95 ms, workstation", lambda m: _ms(m["per_topic"]["camera_latency_ms"]))
    row(
        "camera/image latency p50 / p95 ms, on the robot",
        lambda m: _ms(m["robot_local"]["camera_latency_ms"]),
    )
    row(
        "camera/image rate Hz, workstation / robot",
        lambda m: (
            f"{m['per_topic']['topics']['/camera/image']['rate_hz']:.1f} / "
            f"{m['robot_local']['camera_rate_hz']:.1f}"
        ),
    )
    row(
        "veth MB/s into / out of the workstation, graph alone",
        lambda m: (
            "-"
            if m["mode"] == "single"
            else f"{m['link']['rx_bytes_per_s'] / 1e6:.2f} / {m['link']['tx_bytes_per_s'] / 1e6:.3f}"
        ),
    )
    row(
        "veth MB per sim second into / out of the workstation (graph alone)",
        lambda m: (
            "-"
            if m["mode"] == "single"
            else f"{m['link']['rx_bytes_per_sim_s'] / 1e6:.2f} / {m['link']['tx_bytes_per_sim_s'] / 1e6:.3f}"
        ),
    )
    row(
        "sim seconds per wall second (graph alone)",
        lambda m: f"{m['link']['sim_s'] / m['link']['window_s']:.2f}",
    )
    row(
        "crossing topics, serialized MB/s; MB per sim second",
        lambda m: (
            f"{_crossing_bytes_per_s(m) / 1e6:.2f}; "
            f"{_crossing_bytes_per_s(m) * m['per_topic']['window_s'] / m['per_topic']['sim_s'] / 1e6:.2f}"
        ),
    )
    row(
        "memory steps gained in the window; per sim second (at most 5)",
        lambda m: (
            f"{m['memory_status']['steps_gained']} ({m['link']['window_s']:.0f} s); "
            f"{m['memory_status']['steps_per_sim_s']:.1f}"
        ),
    )
    row("policy ticks gained in the window", lambda m: str(m["policy_status"]["ticks_gained"]))
    row(
        "policy_node Hz on the sim clock (last 3 status); /query_pose ready for it",
        lambda m: (
            ", ".join(f"{hz:.3f}" for hz in m["policy_status"]["rate_hz_measured"])
            + f"; {m['policy_status']['memory_available']}"
        ),
    )
    row(
        "/diagnostics from the robot; the workstation",
        lambda m: (
            ", ".join(n for n, d in m["diagnostics"].items() if d["half"] == "robot")
            + "; "
            + ", ".join(n for n, d in m["diagnostics"].items() if d["half"] == "workstation")
        ),
    )
    lines += [
        "",
        "Transport alone, before the graph starts: round trips of one Image message from the probe to the "
        "driver's echo on the robot and back (reliable QoS, one at a time, two Python callbacks in each), "
        "p50 / p95 ms:",
        "",
        "| payload | bytes | " + " | ".join(m["mode"] for m in modes) + " |",
        "|---|---|" + "---|" * len(modes),
    ]
    for label in PAYLOADS:
        cells = []
        for m in modes:
            ping = m.get("ping", {}).get(label, {})
            lost = f", {ping['lost']} lost" if ping.get("lost") else ""
            cells.append(_ms(ping.get("rtt_ms", {})) + lost)
        size = next((m["ping"][label]["bytes"] for m in modes if label in m.get("ping", {})), "-")
        lines.append(f"| {label} | {size} | " + " | ".join(cells) + " |")
    split = next((m for m in modes if m["mode"] == "split"), None)
    if split is not None:
        lines += [
            "",
            f"Topics that cross in `split` ({split['per_topic']['window_s']:.0f} s, serialized bytes as "
            "received by a raw subscription on the workstation; the wire adds RTPS headers):",
            "",
            "| topic | direction | Hz | bytes/message | kB/s | kB per sim second |",
            "|---|---|---|---|---|---|",
        ]
        for name, t in sorted(split["per_topic"]["topics"].items(), key=lambda kv: -kv[1]["bytes_per_s"]):
            hz = f"{t['rate_hz']:.1f}" if t["rate_hz"] else "-"
            size = f"{t['bytes_per_message']:.0f}" if t["bytes_per_message"] else "-"
            per_sim = f"{t['bytes_per_sim_s'] / 1e3:.1f}" if t.get("bytes_per_sim_s") is not None else "-"
            kbs = f"{t['bytes_per_s'] / 1e3:.1f}"
            lines.append(f"| `{name}` | {t['direction']} | {hz} | {size} | {kbs} | {per_sim} |")
    m = report["machine"]
    lines += [
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['platform']}, {m['date_utc']}, 1-min load at start "
        f"{m['load_average_at_start']} (shared with other work: every node runs on the same 2 cores in "
        "both modes, so the split adds the link, not CPU).",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["host", "drive", "probe"], default="host")
    parser.add_argument("--json", type=Path, help="drive/probe: where to write the result")
    parser.add_argument("--iface", default=WS_IF, help="probe: the interface whose bytes are counted")
    parser.add_argument(
        "--modes",
        default="single,split,split_peers,split_tbf:100mbit,split_tbf:20mbit",
        help="comma list of single, split, split_peers, split_tbf:<tc rate>",
    )
    parser.add_argument("--pings", type=int, default=50, help="round trips per ping payload")
    parser.add_argument("--ping-json", type=Path, help="probe: where the ping results go (a marker)")
    parser.add_argument("--domain", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "34")))
    parser.add_argument("--seed", type=int, default=0, help="world_seed")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of each measuring window")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--startup", type=float, default=240.0, help="seconds the graph may take to start")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/ros_two_machines"))
    parser.add_argument("--out", type=Path, help="host: JSON report (and .md beside it)")
    args = parser.parse_args()
    if args.role == "drive":
        role_drive(args.json)
        return
    if args.role == "probe":
        role_probe(args)
        return
    if os.geteuid() != 0:
        sys.exit("needs root: ip netns, veth and tc")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally blocks clean up
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import machine

    report = {
        "machine": machine(),
        "command": "sudo python3 benchmarks/ros_two_machines.py " + " ".join(sys.argv[1:]),
    }
    report["modes"] = []
    try:
        for mode in args.modes.split(","):
            print(f"--- {mode}", flush=True)
            result = run_mode(mode, args, args.logs)
            print(json.dumps({k: result.get(k) for k in ("queries", "link", "memory_status")}), flush=True)
            report["modes"].append(result)
    except KeyboardInterrupt:
        print("interrupted: namespaces and processes removed", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        remove_namespaces()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        write_markdown(report, args.out.with_suffix(".md"))
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
