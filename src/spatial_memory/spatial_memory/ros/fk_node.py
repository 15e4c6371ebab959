"""fk_node: FR3 forward kinematics (MuJoCo) from `joint_states` to TF, `fk/ee_pose` and `robot_description`.

It replaces robot_state_publisher for our URDF: fixed joints (the flange, hand, fingers, TCP, camera
frames, and `base_parent_frame` -> `base`) go once on /tf_static, the seven revolute joints on /tf with
every JointState. The TF tree is the URDF's, rooted at `base`. Do not run robot_state_publisher on the
same description next to it (one transform, one publisher).

When to publish is `robot.fk_publisher.TfThrottle`'s decision: a moved arm at most `tf_rate_hz` times per
second of stamps, an arm at rest re-stamped at `keepalive_rate_hz` (no FK), `tf_rate_hz` 0 = every
message. The subscription keeps only the newest joint state (keep-last 1) and, with a TF rate, no executor
serves it: a thread takes the newest message twice per TF period (`ros.polling`), so the node's CPU
follows the TF rate, not the input rate (an executor wake-up alone costs ~0.5 ms of CPU here), and a 1 kHz
stream never queues. `tf_rate_hz` 0 keeps one executor callback per message (the old behaviour). The TF
and ee-pose messages are built once; each publication only writes floats into them.

Subscribes: `joint_states` (sensor_msgs/JointState, best effort, keep last 1).
Publishes:  /tf, /tf_static, `fk/ee_pose` (geometry_msgs/PoseStamped in `base`, reliable depth 10, with
            every /tf publication), `robot_description` (std_msgs/String, reliable + transient local
            depth 1), /diagnostics (the `status()` counters, 1 Hz).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage
from tf2_ros import StaticTransformBroadcaster

from spatial_memory.errors import InvalidInputError, SpatialMemoryError
from spatial_memory.geometry import pose_from_xyz_rpy
from spatial_memory.health import HealthChecks
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import FkNodeConfig
from spatial_memory.robot.description import ROOT_LINK, TfEdge, load_urdf, urdf_tf_edges, with_mobile_base
from spatial_memory.robot.fk_publisher import COMPUTE, SKIP, FkEdges, TfThrottle
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.ros.diagnostics import attach_diagnostics
from spatial_memory.ros.params import declare_config
from spatial_memory.ros.polling import PolledCallbackGroup, take_newest
from spatial_memory.ros.spin import spin_node

LATCHED = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)
# Only the newest joint state matters: a reader that falls behind drops older ones instead of queueing.
NEWEST_JOINT_STATE = QoSProfile(
    depth=1, history=QoSHistoryPolicy.KEEP_LAST, reliability=QoSReliabilityPolicy.BEST_EFFORT
)
TF_QOS = QoSProfile(depth=100)  # what tf2_ros.TransformBroadcaster uses
WARN_PERIOD_S = 2.0  # throttle for repeated bad-input warnings
POLLS_PER_TF_PERIOD = 2  # two looks per TF period: every 1/tf_rate_hz slot of stamps gets its chance


class FkNode(Node):
    """Thin shell around `FR3Kinematics`: JointState in, TF / PoseStamped / URDF out."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__(topics.FK_NODE, **node_kwargs)
        self.config: FkNodeConfig = declare_config(self, FkNodeConfig)
        self._factory = conv.RclpyFactory()
        self._kinematics = FR3Kinematics(self.config.camera)
        urdf = load_urdf(self.config.camera)
        edges = urdf_tf_edges(urdf)
        self._moving = [e for e in edges if not e.fixed]
        self._check_frames(edges)
        cfg = self.config
        self.throttle = TfThrottle(cfg.tf_rate_hz, cfg.keepalive_rate_hz, cfg.move_tolerance_rad)
        self._edges = FkEdges(self._kinematics, self._moving, cfg.ee_frame)
        self._rejected = 0
        self._last_problem = ""
        self._tf_msg = TFMessage(transforms=[TransformStamped(child_frame_id=e.child) for e in self._moving])
        for t, e in zip(self._tf_msg.transforms, self._moving, strict=True):
            t.header.frame_id = e.parent
        self._ee_msg = PoseStamped()
        self._ee_msg.header.frame_id = ROOT_LINK

        self._tf_pub = self.create_publisher(TFMessage, topics.TF, TF_QOS)
        self._tf_static = StaticTransformBroadcaster(self)
        self._tf_static.sendTransform(self._static_transforms([e for e in edges if e.fixed]))
        self._ee_pub = self.create_publisher(PoseStamped, topics.EE_POSE, 10)
        if self.config.publish_robot_description:
            self._description_pub = self.create_publisher(String, topics.ROBOT_DESCRIPTION, LATCHED)
            self._description_pub.publish(String(data=self._description(urdf)))
        polled = cfg.tf_rate_hz > 0
        self._joint_sub = self.create_subscription(
            JointState,
            topics.JOINT_STATES,
            self._on_joint_state,
            NEWEST_JOINT_STATE,
            callback_group=PolledCallbackGroup() if polled else None,
        )
        self._stop = threading.Event()
        self._poller = None
        if polled:
            period = 1.0 / (POLLS_PER_TF_PERIOD * cfg.tf_rate_hz)
            self._poller = threading.Thread(target=self._poll, args=(period,), name="fk_poll", daemon=True)
            self._poller.start()
        self.diagnostics = attach_diagnostics(
            self, self.status, HealthChecks(bad_counters=("rejected", "late", "restarts"))
        )
        self.get_logger().info(
            f"FK for {len(edges)} URDF joints ({len(self._moving)} moving), root '{ROOT_LINK}' attached to "
            f"'{self.config.base_parent_frame or '(nothing)'}', camera on '{self.config.camera.parent}'"
        )

    def _description(self, urdf: str) -> str:
        """The URDF RViz draws: with the mobile base under the arm when `mobile_base_radius_m` > 0."""
        cfg = self.config
        if cfg.mobile_base_radius_m <= 0:
            return urdf
        parent = cfg.base_parent_frame or topics.BASE_LINK_FRAME
        return with_mobile_base(
            urdf, parent, cfg.mobile_base_radius_m, cfg.mobile_base_height_m, cfg.mobile_base_clearance_m,
            xyz=cfg.base_xyz, rpy=cfg.base_rpy,
        )  # fmt: skip

    def _check_frames(self, edges: list[TfEdge]) -> None:
        """Every URDF link and the ee frame must be a frame the kinematics computes."""
        known = set(self._kinematics.frame_names)
        missing = sorted({f for e in edges for f in (e.parent, e.child)} - known)
        if missing:
            raise SpatialMemoryError(f"the kinematics model lacks URDF frames {missing}")
        if self.config.ee_frame not in known:
            raise SpatialMemoryError(
                f"ee_frame {self.config.ee_frame!r} is not a frame of the FR3: {sorted(known)}"
            )

    def _static_transforms(self, fixed: list[TfEdge]) -> list:
        """TF for fixed joints (from FK at home; they do not depend on q) and the base attachment."""
        stamp = self.get_clock().now().nanoseconds
        out = conv.fk_transforms(
            self._kinematics.forward_all(self._kinematics.home), fixed, stamp, factory=self._factory
        )
        if self.config.base_parent_frame:
            T_parent_base = pose_from_xyz_rpy(self.config.base_xyz, self.config.base_rpy)
            out.append(
                conv.matrix_to_transform_stamped(
                    T_parent_base, stamp, self.config.base_parent_frame, ROOT_LINK, factory=self._factory
                )
            )
        return out

    def _poll(self, period_s: float) -> None:
        """Take the newest joint state every `period_s` (wall clock, no catch-up bursts) and handle it."""
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + period_s, time.monotonic())
            try:
                msg = take_newest(self._joint_sub)
                if msg is not None:
                    self._on_joint_state(msg)
            except Exception as exc:  # noqa: BLE001 - a thread must not die silently
                if not self.context.ok():
                    return  # shutting down mid-publish
                self._last_problem = f"joint state poll failed: {exc!r}"
                self.get_logger().error(self._last_problem, throttle_duration_sec=WARN_PERIOD_S)

    def destroy_node(self) -> None:
        """Stop the polling thread before the subscription and publishers go."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=2.0)
        super().destroy_node()

    def _on_joint_state(self, msg: JointState) -> None:
        """JointState -> (throttle) -> FK -> TF of the moving joints and the ee pose, at the message stamp."""
        try:
            q = self._kinematics.check_joints(
                conv.joint_positions(msg, self._kinematics.joint_names), self.config.clamp_joints
            )
            stamp = conv.stamp_to_ns(msg.header.stamp) or self.get_clock().now().nanoseconds
        except InvalidInputError as exc:
            self._rejected += 1
            self._last_problem = f"ignoring joint state: {exc}"
            self.get_logger().warning(self._last_problem, throttle_duration_sec=WARN_PERIOD_S)
            return
        decision = self.throttle.offer(stamp, q)
        if decision == SKIP:
            return
        if decision == COMPUTE:
            self._fill(*self._edges.compute(q))
        self._stamp(stamp)
        self._tf_pub.publish(self._tf_msg)
        self._ee_pub.publish(self._ee_msg)

    def _fill(self, xyz: Any, quat: Any, ee_xyz: Any, ee_quat: Any) -> None:
        """Write FK arrays into the messages built once (floats only: no message construction)."""
        for t, p, r in zip(self._tf_msg.transforms, xyz.tolist(), quat.tolist(), strict=True):
            tr, rot = t.transform.translation, t.transform.rotation
            tr.x, tr.y, tr.z = p
            rot.x, rot.y, rot.z, rot.w = r
        pose = self._ee_msg.pose
        pose.position.x, pose.position.y, pose.position.z = ee_xyz.tolist()
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = ee_quat.tolist()

    def _stamp(self, stamp_ns: int) -> None:
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        for t in self._tf_msg.transforms:
            t.header.stamp.sec, t.header.stamp.nanosec = sec, nanosec
        self._ee_msg.header.stamp.sec, self._ee_msg.header.stamp.nanosec = sec, nanosec

    def status(self) -> dict[str, Any]:
        """Joint states received (with a TF rate: taken by the poller, the middleware keeps only the newest)
        / computed / re-stamped / skipped / late / rejected, and the rates; on /diagnostics."""
        cfg = self.config
        return self.throttle.counts | {
            "published": self.throttle.counts["computed"] + self.throttle.counts["restamped"],
            "rejected": self._rejected,
            "tf_rate_hz": cfg.tf_rate_hz,
            "keepalive_rate_hz": cfg.keepalive_rate_hz,
            "last_problem": self._last_problem,
        }


def main(args: list[str] | None = None) -> int:
    """Run fk_node until Ctrl-C or shutdown."""
    return spin_node(FkNode, topics.FK_NODE, args, threads=1)


if __name__ == "__main__":
    sys.exit(main())
