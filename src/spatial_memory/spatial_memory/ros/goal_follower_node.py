"""goal_follower_node: drives the simulated base to `goal_pose` on the `map` grid (`sim.GoalFollower`).

In simulation it plays nav2's part: the policy says where (`goal_pose`, geometry_msgs/PoseStamped, any frame
TF can carry into the map's), the follower plans with A* on `map` (nav_msgs/OccupancyGrid, inflated by
`robot_radius_m`) and follows with pure pursuit, localised by `ground_truth/base_pose` (the simulator's
truth, as nav2 with a good localisation would be). On a robot, start nav2 instead and leave this node out.

It commands `cmd_vel` only while it drives: a goal reached, unreachable or stale (no new `goal_pose` for
`follower.stale_s`: the policy stopped or died) gets one zero command, then silence, so a person can still
teleoperate the robot. `goal_follower/status` (JSON) says what it is doing.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import rclpy
import rclpy.time
from geometry_msgs.msg import PoseStamped, Twist
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from std_msgs.msg import String
from tf2_ros import Buffer, TransformException, TransformListener

from spatial_memory.errors import InvalidInputError
from spatial_memory.health import HealthChecks
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import GoalFollowerNodeConfig
from spatial_memory.ros import navigation_messages as nm
from spatial_memory.ros.diagnostics import attach_diagnostics
from spatial_memory.ros.params import declare_config
from spatial_memory.ros.policy_messages import planar
from spatial_memory.ros.spin import spin_node
from spatial_memory.sim.goal_follower import STOP, GoalFollower

LATCHED = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)
WARN_PERIOD_S = 5.0


class GoalFollowerNode(Node):
    """goal_pose + map + true base pose in, cmd_vel out (see the module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(topics.GOAL_FOLLOWER_NODE, **node_kwargs)
        self.config: GoalFollowerNodeConfig = declare_config(self, GoalFollowerNodeConfig)
        self.follower: GoalFollower | None = None
        self._map_frame = ""
        self._pose: tuple[float, float, float] | None = None
        self._driving = False
        self._last_problem = ""
        self._tf_buffer = Buffer()
        self._tf_listener = TransformListener(self._tf_buffer, self)
        self._cmd_pub = self.create_publisher(Twist, topics.CMD_VEL, 10)
        self._status_pub = self.create_publisher(String, topics.GOAL_FOLLOWER_STATUS, 10)
        self.create_subscription(OccupancyGridMsg, topics.MAP, self._on_map, LATCHED)
        self.create_subscription(PoseStamped, topics.GT_BASE_POSE, self._on_base_pose, 10)
        self.create_subscription(PoseStamped, topics.GOAL_POSE, self._on_goal, 10)
        self.create_timer(1.0 / self.config.rate_hz, self._on_timer)
        self.create_timer(1.0 / self.config.status_rate_hz, self._publish_status)
        self.diagnostics = attach_diagnostics(self, self.status, HealthChecks(warn_flags=("no_map",)))
        self.get_logger().info(
            f"following '{topics.GOAL_POSE}' on '{topics.MAP}' "
            f"(robot radius {self.config.robot_radius_m:g} m)"
        )

    def _on_map(self, msg: Any) -> None:
        try:
            grid = nm.occupancy_grid_from_message(msg).inflated(self.config.robot_radius_m)
        except InvalidInputError as exc:
            self._problem(f"map not used: {exc}")
            return
        self.follower = GoalFollower(grid, self.config.follower)
        self._map_frame = str(msg.header.frame_id)
        self.get_logger().info(f"map {grid.shape[1]}x{grid.shape[0]} cells in '{self._map_frame}'")

    def _on_base_pose(self, msg: Any) -> None:
        self._pose = tuple(planar(conv.msg_to_matrix(msg)))

    def _on_goal(self, msg: Any) -> None:
        if self.follower is None or self._pose is None:
            self._problem("goal ignored: no map or no base pose yet")
            return
        try:
            T_goal = conv.msg_to_matrix(msg)  # noqa: N806 - the project's pose naming
            if msg.header.frame_id != self._map_frame:
                when = rclpy.time.Time()
                tf = self._tf_buffer.lookup_transform(
                    self._map_frame, msg.header.frame_id, when, Duration(seconds=self.config.tf_timeout_s)
                )
                T_goal = conv.msg_to_matrix(tf) @ T_goal  # noqa: N806
        except (InvalidInputError, TransformException) as exc:
            self._problem(f"goal ignored: {exc}")
            return
        stamp = self.get_clock().now().nanoseconds
        yaw = float(np.arctan2(T_goal[1, 0], T_goal[0, 0]))  # the goal's heading, turned to on arrival
        self.follower.set_goal(T_goal[:2, 3], stamp, np.array(self._pose[:2]), yaw=yaw)

    def _on_timer(self) -> None:
        if self.follower is None or self._pose is None:
            return
        cmd = self.follower.command(self._pose, self.get_clock().now().nanoseconds)
        if cmd != STOP:
            self._driving = True
            self._cmd_pub.publish(self._twist(cmd.v, cmd.omega))
        elif self._driving:  # one zero command when it stops; then leave cmd_vel to others
            self._driving = False
            self._cmd_pub.publish(self._twist(0.0, 0.0))

    @staticmethod
    def _twist(v: float, omega: float) -> Twist:
        msg = Twist()
        msg.linear.x, msg.angular.z = float(v), float(omega)
        return msg

    def _problem(self, text: str) -> None:
        self._last_problem = text
        self.get_logger().warning(text, throttle_duration_sec=WARN_PERIOD_S)

    def status(self) -> dict[str, Any]:
        """What the follower is doing: its state, goal, whether it drives, the last problem."""
        f = self.follower
        return {
            "state": "no map" if f is None else f.status,
            "goal": None if f is None or f.goal is None else [round(float(v), 3) for v in f.goal],
            "driving": self._driving,
            "no_map": f is None,
            "last_problem": self._last_problem,
        }

    def _publish_status(self) -> None:
        self._status_pub.publish(String(data=json.dumps(self.status(), sort_keys=True)))


def main(args: list[str] | None = None) -> int:
    """Run goal_follower_node until Ctrl-C or shutdown."""
    return spin_node(GoalFollowerNode, topics.GOAL_FOLLOWER_NODE, args, threads=2)


if __name__ == "__main__":
    sys.exit(main())
