"""fk_node: FR3 forward kinematics (MuJoCo) from `joint_states` to TF, `fk/ee_pose` and `robot_description`.

It replaces robot_state_publisher for our URDF: fixed joints (the flange, hand, fingers, TCP, camera
frames, and `base_parent_frame` -> `base`) go once on /tf_static, the seven revolute joints on /tf with
every JointState. The TF tree is the URDF's, rooted at `base`. Do not run robot_state_publisher on the
same description next to it (one transform, one publisher).

Subscribes: `joint_states` (sensor_msgs/JointState, sensor-data QoS).
Publishes:  /tf, /tf_static, `fk/ee_pose` (geometry_msgs/PoseStamped in `base`, reliable depth 10),
            `robot_description` (std_msgs/String, reliable + transient local depth 1).
"""

from __future__ import annotations

import sys

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_ros import StaticTransformBroadcaster, TransformBroadcaster

from spatial_memory.errors import InvalidInputError, SpatialMemoryError
from spatial_memory.geometry import pose_from_xyz_rpy
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import FkNodeConfig
from spatial_memory.robot.description import ROOT_LINK, TfEdge, load_urdf, urdf_tf_edges
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.ros.params import declare_config
from spatial_memory.ros.spin import spin_node

LATCHED = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)
WARN_PERIOD_S = 2.0  # throttle for repeated bad-input warnings


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

        self._tf = TransformBroadcaster(self)
        self._tf_static = StaticTransformBroadcaster(self)
        self._tf_static.sendTransform(self._static_transforms([e for e in edges if e.fixed]))
        self._ee_pub = self.create_publisher(PoseStamped, topics.EE_POSE, 10)
        if self.config.publish_robot_description:
            self._description_pub = self.create_publisher(String, topics.ROBOT_DESCRIPTION, LATCHED)
            self._description_pub.publish(String(data=urdf))
        self.create_subscription(
            JointState, topics.JOINT_STATES, self._on_joint_state, qos_profile_sensor_data
        )
        self.get_logger().info(
            f"FK for {len(edges)} URDF joints ({len(self._moving)} moving), root '{ROOT_LINK}' attached to "
            f"'{self.config.base_parent_frame or '(nothing)'}', camera on '{self.config.camera.parent}'"
        )

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

    def _on_joint_state(self, msg: JointState) -> None:
        """JointState -> FK -> TF of the moving joints and the ee pose, stamped with the message stamp."""
        try:
            q = conv.joint_positions(msg, self._kinematics.joint_names)
            poses = self._kinematics.forward_all(q, clamp=self.config.clamp_joints)
        except InvalidInputError as exc:
            self.get_logger().warning(f"ignoring joint state: {exc}", throttle_duration_sec=WARN_PERIOD_S)
            return
        stamp = conv.stamp_to_ns(msg.header.stamp) or self.get_clock().now().nanoseconds
        self._tf.sendTransform(conv.fk_transforms(poses, self._moving, stamp, factory=self._factory))
        self._ee_pub.publish(
            conv.matrix_to_pose_stamped(poses[self.config.ee_frame], stamp, ROOT_LINK, factory=self._factory)
        )


def main(args: list[str] | None = None) -> int:
    """Run fk_node until Ctrl-C or shutdown."""
    return spin_node(FkNode, topics.FK_NODE, args, threads=1)


if __name__ == "__main__":
    sys.exit(main())
