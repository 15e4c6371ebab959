"""Messages of sim_node, built through a `MessageFactory` so tests check them against the real ROS 2
definitions (rosbags typestore) and the node publishes rclpy messages. Pure: no rclpy here.

What a `LiveTick` becomes, in publish order (TF before the images, so a listener has the pose at an image's
stamp when the image arrives):

| topic | type | QoS | content |
|---|---|---|---|
| `/clock` | rosgraph_msgs/Clock | reliable, depth 1 | sim time of the tick |
| `joint_states` | sensor_msgs/JointState | reliable, depth 10 | fr3_joint1..7 positions |
| `/tf` | tf2_msgs/TFMessage | reliable, depth 100 | `odom` -> `base_link` from the wheel odometry |
| `odom` | nav_msgs/Odometry | reliable, depth 10 | noisy pose in `odom`, measured twist in `base_link` |
| `ground_truth/base_pose` | geometry_msgs/PoseStamped | reliable, depth 10 | true `T_world_base` in `world` |
| `<cam>/camera_info` | sensor_msgs/CameraInfo | sensor data | pinhole K, no distortion, when due |
| `<cam>/image`, `<cam>/depth` | sensor_msgs/Image | sensor data | rgb8; 32FC1 metres, when due |
| `ground_truth/<cam>_pose` | geometry_msgs/PoseStamped | reliable, depth 10 | optical frame in `world` |

`<cam>` is `camera` (the head camera) or `wrist_camera`, as in recorded bags (`sim.bag`, whose builders
these are). `/tf_static` (latched) carries `world` -> `odom` and the mounts on the base, once; `map`
(nav_msgs/OccupancyGrid, latched) the world's walls, furniture and floor objects in `world`, once, as a map
server would for nav2 (not inflated: the planner inflates by its own robot radius).

Inputs: `cmd_vel` (geometry_msgs/Twist), `joint_commands` (sensor_msgs/JointState) and `sim/teleport`
(geometry_msgs/PoseStamped in `world`: the robot is carried there between two steps, a kidnap the wheel
odometry does not see, as a simulator's set-pose service does; a pose in collision is refused).
"""

from __future__ import annotations

import math
from typing import Any

from spatial_memory.errors import InvalidInputError
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import SimNodeConfig
from spatial_memory.ros import navigation_messages as nm
from spatial_memory.sim import mobile_robot
from spatial_memory.sim.bag import camera_messages, camera_topics, odometry_message
from spatial_memory.sim.live import CAMERA_NAMES, LiveSim, LiveTick
from spatial_memory.sim.planning import OccupancyGrid

# QoS kinds the node maps onto rclpy profiles
SENSOR, RELIABLE, LATCHED, TF_QOS, CLOCK_QOS = "sensor_data", "reliable", "latched", "tf", "clock"

TWIST, JOINT_STATE = "geometry_msgs/msg/Twist", "sensor_msgs/msg/JointState"
IMAGE, CAMERA_INFO, POSE_STAMPED = (
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CameraInfo",
    "geometry_msgs/msg/PoseStamped",
)
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
MAP_RESOLUTION_M = 0.05


def published_topics() -> dict[str, tuple[str, str]]:
    """Every topic sim_node publishes: topic -> (message type, QoS kind)."""
    out = {
        topics.CLOCK: ("rosgraph_msgs/msg/Clock", CLOCK_QOS),
        topics.JOINT_STATES: (JOINT_STATE, RELIABLE),
        topics.TF: (TF_MESSAGE, TF_QOS),
        topics.TF_STATIC: (TF_MESSAGE, LATCHED),
        topics.ODOM: ("nav_msgs/msg/Odometry", RELIABLE),
        topics.GT_BASE_POSE: (POSE_STAMPED, RELIABLE),
        topics.MAP: (nm.OCCUPANCY_GRID, LATCHED),
    }
    for camera in CAMERA_NAMES:
        names = camera_topics(camera)
        out |= {
            names["camera_info"]: (CAMERA_INFO, SENSOR),
            names["image"]: (IMAGE, SENSOR),
            names["depth"]: (IMAGE, SENSOR),
            names["pose"]: (POSE_STAMPED, RELIABLE),
        }
    return out


def subscribed_topics() -> dict[str, tuple[str, str]]:
    """Every topic sim_node subscribes to: topic -> (message type, QoS kind). The commands take sensor-data
    QoS, which hears reliable and best-effort publishers alike; a teleport is one message that must not be
    lost: reliable."""
    return {
        topics.CMD_VEL: (TWIST, SENSOR),
        topics.JOINT_COMMANDS: (JOINT_STATE, SENSOR),
        topics.SIM_TELEPORT: (POSE_STAMPED, RELIABLE),
    }


def map_message(sim: LiveSim, config: SimNodeConfig, stamp_ns: int, *, factory: conv.MessageFactory) -> Any:
    """`map`: the world's obstacles at 5 cm, not inflated, in `world_frame`."""
    grid = OccupancyGrid.from_world(sim.world, resolution_m=MAP_RESOLUTION_M, inflate_m=0.0)
    return nm.occupancy_grid_message(grid, stamp_ns, config.world_frame, factory=factory)


def clock_message(stamp_ns: int, *, factory: conv.MessageFactory) -> Any:
    """rosgraph_msgs/Clock at `stamp_ns`."""
    return factory.new("rosgraph_msgs/msg/Clock", clock=conv.ns_to_stamp(stamp_ns, factory))


def _frame(name: str, config: SimNodeConfig) -> str:
    """The sim's own frame name as published: base_link is renamed by the `base_frame` parameter."""
    return config.base_frame if name == mobile_robot.BASE_LINK else name


def static_tf_message(
    sim: LiveSim, config: SimNodeConfig, stamp_ns: int, *, factory: conv.MessageFactory
) -> Any:
    """/tf_static: `world` -> `odom` (the odometry origin) and the fixed mounts on the base."""
    transforms = [
        conv.matrix_to_transform_stamped(
            sim.T_world_odom, stamp_ns, config.world_frame, config.odom_frame, factory=factory
        )
    ]
    for edge in sim.static_edges():
        transforms.append(
            conv.matrix_to_transform_stamped(
                edge.T_parent_child,
                stamp_ns,
                _frame(edge.parent, config),
                _frame(edge.child, config),
                factory=factory,
            )
        )
    return conv.make_tf_message(transforms, factory=factory)


def tick_messages(
    tick: LiveTick, config: SimNodeConfig, *, factory: conv.MessageFactory
) -> list[tuple[str, Any]]:
    """(topic, message) pairs of one tick, in publish order; every header carries the tick's stamp."""
    t, f = tick.stamp_ns, factory
    out: list[tuple[str, Any]] = [
        (topics.CLOCK, clock_message(t, factory=f)),
        (topics.JOINT_STATES, conv.make_joint_state(tick.joint_names, tick.q, t, factory=f)),
    ]
    if config.publish_odom_tf:
        odom_tf = conv.matrix_to_transform_stamped(
            tick.odometry.T_odom_base, t, config.odom_frame, config.base_frame, factory=f
        )
        out.append((topics.TF, conv.make_tf_message([odom_tf], factory=f)))
    out.append(
        (topics.ODOM, odometry_message(tick.odometry, t, config.odom_frame, config.base_frame, factory=f))
    )
    out.append(
        (
            topics.GT_BASE_POSE,
            conv.matrix_to_pose_stamped(tick.T_world_base, t, config.world_frame, factory=f),
        )
    )
    for cam in tick.cameras:
        out += camera_messages(cam, t, config.world_frame, factory=f)
    return out


def twist_command(msg: Any) -> tuple[float, float]:
    """geometry_msgs/Twist -> (v, omega) of a planar base: linear.x and angular.z (NaN/inf refused).

    The other four components cannot be driven by a unicycle base and are ignored.
    """
    twist = conv.twist_to_vector(msg)
    return float(twist[0]), float(twist[5])


def teleport_target(msg: Any, world_frame: str) -> tuple[float, float, float]:
    """geometry_msgs/PoseStamped in `world_frame` -> (x, y, yaw) of the base to carry the robot to (a planar
    base: z, roll and pitch are ignored). Another frame, NaN or a non-unit quaternion: InvalidInputError."""
    frame = msg.header.frame_id
    if frame != world_frame:
        raise InvalidInputError(f"a teleport pose in frame {frame!r}: sim_node takes it in {world_frame!r}")
    T = conv.pose_to_matrix(msg.pose)  # noqa: N806 - the project's pose naming
    return float(T[0, 3]), float(T[1, 3]), math.atan2(float(T[1, 0]), float(T[0, 0]))


def joint_command(msg: Any) -> tuple[list[str], list[float]]:
    """sensor_msgs/JointState -> (names, positions) of an arm position command (checked by the sim)."""
    return [str(n) for n in msg.name], [float(p) for p in msg.position]
