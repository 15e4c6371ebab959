"""sim_node: the mobile FR3 in a generated MuJoCo world, published as a robot on a simulated /clock.

A thin shell over `spatial_memory.sim.live.LiveSim`: a wall-clock (steady) timer runs the fixed sim steps
that `Pacer` says are due, so sim time follows wall time times `real_time_factor`; each step's outputs
(`ros.sim_messages.tick_messages`) are published with the step's sim time in every header. The node itself
provides /clock, so it never uses sim time (`use_sim_time` is irrelevant to it); every other node of the
sim graph should run with `use_sim_time:=true`.

Subscribes (sensor-data QoS, which hears reliable and best-effort publishers):
    `cmd_vel` (geometry_msgs/Twist): linear.x (m/s) and angular.z (rad/s), clipped to the robot's limits;
        the base stops when none came for `sim.cmd_vel_timeout_s` of sim time.
    `joint_commands` (sensor_msgs/JointState): arm position targets; name each of fr3_joint1..7 exactly once
        (any order); the arm moves there at `sim.robot.max_joint_speed`. Bad commands are logged and ignored.
Publishes: /clock, `joint_states`, /tf (odom -> base_link), /tf_static (world -> odom, base_link -> base,
    base_link -> head camera), `odom`, `ground_truth/base_pose`, and per camera (`camera` = head,
    `wrist_camera`) `<cam>/image`, `<cam>/depth`, `<cam>/camera_info` (sensor-data QoS) at the camera's rate
    and `ground_truth/<cam>_pose`; `map` (nav_msgs/OccupancyGrid, latched, once: the world's obstacles for
    a planner). See `ros.sim_messages` for types, frames and QoS.
Rendering: MuJoCo offscreen with MUJOCO_GL (default egl, set here before MuJoCo is imported).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before MuJoCo is imported (it picks its GL backend then)

import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from geometry_msgs.msg import PoseStamped, Twist  # noqa: E402
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.clock import Clock, ClockType  # noqa: E402
from rclpy.impl.implementation_singleton import rclpy_implementation  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import (  # noqa: E402
    QoSDurabilityPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)
from rosgraph_msgs.msg import Clock as ClockMsg  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from spatial_memory.errors import InvalidInputError  # noqa: E402
from spatial_memory.health import HealthChecks  # noqa: E402
from spatial_memory.msgs import conversions as conv  # noqa: E402
from spatial_memory.msgs import topics  # noqa: E402
from spatial_memory.node_configs import SimNodeConfig  # noqa: E402
from spatial_memory.ros import sim_messages as sm  # noqa: E402
from spatial_memory.ros.diagnostics import attach_diagnostics  # noqa: E402
from spatial_memory.ros.params import declare_config  # noqa: E402
from spatial_memory.ros.spin import spin_node  # noqa: E402
from spatial_memory.sim.live import LiveSim, LiveTick, Pacer  # noqa: E402

QOS = {
    sm.SENSOR: qos_profile_sensor_data,
    sm.RELIABLE: QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE),
    sm.CLOCK_QOS: QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE),
    sm.TF_QOS: QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE),  # as tf2_ros broadcasts
    sm.LATCHED: QoSProfile(
        depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
    ),
}
MESSAGES = {
    "rosgraph_msgs/msg/Clock": ClockMsg,
    "sensor_msgs/msg/JointState": JointState,
    "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/CameraInfo": CameraInfo,
    "tf2_msgs/msg/TFMessage": TFMessage,
    "nav_msgs/msg/Odometry": Odometry,
    "geometry_msgs/msg/PoseStamped": PoseStamped,
    "geometry_msgs/msg/Twist": Twist,
    "nav_msgs/msg/OccupancyGrid": OccupancyGridMsg,
}
WARN_PERIOD_S = 2.0


class SimNode(Node):
    """Thin shell around `LiveSim`: commands in, one tick's messages out per fixed step."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(topics.SIM_NODE, **node_kwargs)
        self.config: SimNodeConfig = declare_config(self, SimNodeConfig)
        cfg = self.config
        self._factory = conv.RclpyFactory()
        self.sim = LiveSim(cfg.sim)
        self._pacer = Pacer(cfg.sim.dt_ns, cfg.real_time_factor)
        self._reported_lag_ns = 0
        self._counts = {
            "collisions": 0,
            "arm_refusals": 0,
            "cmd_vel_timeouts": 0,
            "commands_refused": 0,
            "teleports": 0,
        }
        self._pubs = {
            topic: self.create_publisher(MESSAGES[type_name], topic, QOS[qos])
            for topic, (type_name, qos) in sm.published_topics().items()
        }
        self._pubs[topics.TF_STATIC].publish(
            sm.static_tf_message(self.sim, cfg, self.sim.stamp_ns, factory=self._factory)
        )
        self._pubs[topics.MAP].publish(
            sm.map_message(self.sim, cfg, self.sim.stamp_ns, factory=self._factory)
        )
        callbacks = {
            topics.CMD_VEL: self._on_cmd_vel,
            topics.JOINT_COMMANDS: self._on_joint_command,
            topics.SIM_TELEPORT: self._on_teleport,
        }
        for topic, (type_name, qos) in sm.subscribed_topics().items():
            self.create_subscription(MESSAGES[type_name], topic, callbacks[topic], QOS[qos])
        bad = ("sim_time_dropped_s", "collisions", "commands_refused")
        self.diagnostics = attach_diagnostics(self, self.status, HealthChecks(bad_counters=bad))
        # A steady wall clock: this node makes /clock, so a sim-time timer would wait for itself.
        self._timer = self.create_timer(
            self._pacer.period_s, self._on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        world = cfg.sim.world
        head, wrist = cfg.sim.robot.head_camera, cfg.sim.robot.wrist_camera
        self.get_logger().info(
            f"world {world.preset!r} seed {world.seed} ({len(self.sim.world.rooms)} rooms), "
            f"{cfg.sim.rate_hz:g} Hz steps at {cfg.real_time_factor:g}x real time; head camera "
            f"{head.width}x{head.height} at {head.rate_hz:g} Hz, wrist {wrist.width}x{wrist.height} at "
            f"{wrist.rate_hz:g} Hz; commands on '{topics.CMD_VEL}' and '{topics.JOINT_COMMANDS}'"
        )

    # -- inputs -------------------------------------------------------------------------------------

    def _on_cmd_vel(self, msg: Any) -> None:
        try:
            self.sim.command_velocity(*sm.twist_command(msg))
        except InvalidInputError as exc:
            self._counts["commands_refused"] += 1
            self.get_logger().warning(f"ignoring cmd_vel: {exc}", throttle_duration_sec=WARN_PERIOD_S)

    def _on_joint_command(self, msg: Any) -> None:
        try:
            q = self.sim.command_joints(*sm.joint_command(msg))
        except InvalidInputError as exc:
            self._counts["commands_refused"] += 1
            self.get_logger().warning(f"ignoring joint command: {exc}", throttle_duration_sec=WARN_PERIOD_S)
            return
        self.get_logger().debug(f"arm target {q.round(3).tolist()}")

    def _on_teleport(self, msg: Any) -> None:
        """Carry the robot to the pose (a kidnap): the odometry goes on from where it was."""
        try:
            x, y, yaw = sm.teleport_target(msg, self.config.world_frame)
            self.sim.teleport(x, y, yaw)
        except InvalidInputError as exc:
            self._counts["commands_refused"] += 1
            self.get_logger().warning(f"ignoring teleport: {exc}", throttle_duration_sec=WARN_PERIOD_S)
            return
        self._counts["teleports"] += 1
        self.get_logger().info(
            f"robot carried to ({x:.2f}, {y:.2f}, yaw {yaw:.2f}) in '{self.config.world_frame}': the "
            "odometry does not see it"
        )

    # -- stepping -----------------------------------------------------------------------------------

    def _on_timer(self) -> None:
        """Run the steps now due and publish each one's messages."""
        for _ in range(self._pacer.due(time.monotonic_ns())):
            if not self._publish(self.sim.tick()):
                return
        if self._pacer.lag_ns > self._reported_lag_ns:
            self._reported_lag_ns = self._pacer.lag_ns
            self.get_logger().warning(
                f"the simulation cannot keep up with {self.config.real_time_factor:g}x real time: "
                f"{self._pacer.lag_ns / 1e9:.1f} s of sim time dropped so far (lower the camera sizes or "
                "rates, or real_time_factor)",
                throttle_duration_sec=10.0,
            )

    def _publish(self, tick: LiveTick) -> bool:
        """Publish one tick; False when ROS is shutting down (Ctrl-C may land in the middle of a tick:
        rclpy invalidates the context from its signal thread, so a publish can fail after any check)."""
        try:
            for topic, msg in sm.tick_messages(tick, self.config, factory=self._factory):
                self._pubs[topic].publish(msg)
        except rclpy_implementation.RCLError:
            if self.context.ok():
                raise
            return False
        if tick.stopped_by_timeout:
            self._counts["cmd_vel_timeouts"] += 1
            self.get_logger().info(
                f"no {topics.CMD_VEL} for {self.config.sim.cmd_vel_timeout_s:g} s: base stopped"
            )
        if tick.collided:
            self._counts["collisions"] += 1
            self.get_logger().warning("base blocked by an obstacle", throttle_duration_sec=WARN_PERIOD_S)
        if tick.arm_blocked:
            self._counts["arm_refusals"] += 1
            self.get_logger().warning(
                "arm motion refused: it would hit the world", throttle_duration_sec=WARN_PERIOD_S
            )
        return True

    def status(self) -> dict[str, Any]:
        """Sim time, steps and what went wrong so far (on /diagnostics)."""
        return {
            "sim_time_s": self.sim.stamp_ns * 1e-9,
            "real_time_factor_target": self.config.real_time_factor,
            "sim_time_dropped_s": self._pacer.lag_ns * 1e-9,
            **self._counts,
        }

    def destroy_node(self) -> None:
        self.sim.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run sim_node until Ctrl-C or shutdown."""
    return spin_node(SimNode, topics.SIM_NODE, args, threads=1)


if __name__ == "__main__":
    sys.exit(main())
