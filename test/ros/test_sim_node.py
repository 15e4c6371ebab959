"""sim_node: its messages checked against the ROS 2 Jazzy definitions (rosbags typestore, always run), then
the node itself in-process and its launch file (need rclpy / launch; skipped where ROS is absent)."""

from __future__ import annotations

import importlib.util
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import numpy as np
import pytest

from spatial_memory.config import flatten
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import SimNodeConfig
from spatial_memory.ros import sim_messages as sm
from spatial_memory.ros.params import parameter_specs
from spatial_memory.sim import mobile_robot as mr
from spatial_memory.sim.bag import camera_topics, jazzy_typestore
from spatial_memory.sim.episode import HEAD_CAMERA, WRIST_CAMERA
from spatial_memory.sim.live import LiveSim, LiveSimConfig, LiveWorldConfig
from spatial_memory.sim.odometry import WheelOdometryConfig

STORE = jazzy_typestore()
FACTORY = conv.RosbagsFactory(STORE)
JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]
SMALL = {  # parameter overrides: the small room, tiny cameras
    "sim.world.preset": "room",
    "sim.world.texture_px": 16,
    "sim.robot.head_camera.width": 32,
    "sim.robot.head_camera.height": 24,
    "sim.robot.wrist_camera.width": 24,
    "sim.robot.wrist_camera.height": 16,
}


def small_live_config() -> LiveSimConfig:
    robot = mr.MobileRobotConfig(
        head_camera=mr.CameraConfig(width=32, height=24, fovy_deg=60.0, rate_hz=15.0),
        wrist_camera=mr.CameraConfig(width=24, height=16, fovy_deg=58.0, rate_hz=5.0),
    )
    exact = WheelOdometryConfig(linear_noise=0.0, angular_noise=0.0, heading_noise=0.0, heading_bias=0.0)
    return LiveSimConfig(world=LiveWorldConfig(preset="room", texture_px=16), robot=robot, odometry=exact)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveSim]:
    with LiveSim(small_live_config()) as sim:
        yield sim


def roundtrip(msg):
    """Serialize to CDR with the Jazzy definition and read back: the message is valid ROS 2."""
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def _edges(tf_msg) -> dict[tuple[str, str], np.ndarray]:
    return {(t.header.frame_id, t.child_frame_id): conv.msg_to_matrix(t) for t in tf_msg.transforms}


# ----------------------------------------------------------------------------------------------------
# pure: messages, topics, config
# ----------------------------------------------------------------------------------------------------


def test_topic_tables_agree_with_topics_py_and_the_bag():
    published = sm.published_topics()
    assert set(published) == topics.SIM_TOPICS <= topics.PUBLISHED_TOPICS
    subscribed = sm.subscribed_topics()
    assert set(subscribed) == {topics.CMD_VEL, topics.JOINT_COMMANDS, topics.SIM_TELEPORT}
    assert set(subscribed) <= topics.SUBSCRIBED_TOPICS
    assert all(type_name in STORE.types for type_name, _ in subscribed.values())
    assert subscribed[topics.SIM_TELEPORT][1] == sm.RELIABLE  # one message that must not be lost
    head, wrist = camera_topics(HEAD_CAMERA), camera_topics(WRIST_CAMERA)
    assert (head["image"], head["depth"], head["camera_info"], head["pose"]) == (
        topics.CAMERA_IMAGE,
        topics.CAMERA_DEPTH,
        topics.CAMERA_INFO,
        topics.GT_CAMERA_POSE,
    )
    assert (wrist["image"], wrist["depth"], wrist["camera_info"], wrist["pose"]) == (
        topics.WRIST_CAMERA_IMAGE,
        topics.WRIST_CAMERA_DEPTH,
        topics.WRIST_CAMERA_INFO,
        topics.GT_WRIST_CAMERA_POSE,
    )
    assert all(type_name in STORE.types for type_name, _ in published.values())
    assert {published[t][1] for t in (topics.CAMERA_IMAGE, topics.CAMERA_DEPTH, topics.CAMERA_INFO)} == {
        sm.SENSOR
    }
    assert published[topics.TF_STATIC][1] == sm.LATCHED
    assert topics.HEAD_CAMERA_OPTICAL_FRAME == mr.HEAD_OPTICAL_FRAME


def test_tick_messages_are_valid_ros2_messages_with_the_tick_stamp_and_frames(live):
    cfg = SimNodeConfig(sim=live.config)
    live.command_velocity(0.3, 0.2)
    ticks = [live.tick() for _ in range(7)]
    full = next(t for t in ticks if t.camera(HEAD_CAMERA) is not None)
    published = sm.published_topics()
    messages = [(topic, roundtrip(msg)) for topic, msg in sm.tick_messages(full, cfg, factory=FACTORY)]
    by_topic = dict(messages)
    assert len(by_topic) == len(messages), "one message per topic and tick"
    assert [t for t, _ in messages[:5]] == [
        topics.CLOCK,
        topics.JOINT_STATES,
        topics.TF,
        topics.ODOM,
        topics.GT_BASE_POSE,
    ], "clock first, TF before any image"
    for topic, msg in messages:
        assert msg.__msgtype__ == published[topic][0], topic
        header = getattr(msg, "header", None)
        if header is not None:
            assert conv.stamp_to_ns(header.stamp) == full.stamp_ns, topic
    assert conv.stamp_to_ns(by_topic[topics.CLOCK].clock) == full.stamp_ns

    js = by_topic[topics.JOINT_STATES]
    assert list(js.name) == JOINTS
    np.testing.assert_allclose(conv.joint_positions(js, JOINTS), full.q)
    ((odom_edge, T_odom_base),) = _edges(by_topic[topics.TF]).items()
    assert odom_edge == ("odom", "base_link")
    np.testing.assert_allclose(T_odom_base, full.odometry.T_odom_base, atol=1e-12)
    odom = by_topic[topics.ODOM]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    np.testing.assert_allclose(conv.msg_to_matrix(odom.pose), full.odometry.T_odom_base, atol=1e-12)
    np.testing.assert_allclose(conv.twist_to_vector(odom.twist.twist), [0.3, 0, 0, 0, 0, 0.2], atol=0.01)
    assert odom.twist.covariance[0] == 0.0  # measured (the bag marks an unmeasured twist with -1)
    gt = by_topic[topics.GT_BASE_POSE]
    assert gt.header.frame_id == "world"
    np.testing.assert_allclose(conv.msg_to_matrix(gt), full.T_world_base, atol=1e-12)

    head = full.camera(HEAD_CAMERA)
    image, depth, info = (by_topic[t] for t in (topics.CAMERA_IMAGE, topics.CAMERA_DEPTH, topics.CAMERA_INFO))
    assert image.encoding == "rgb8" and depth.encoding == "32FC1"
    assert {image.header.frame_id, depth.header.frame_id, info.header.frame_id} == {mr.HEAD_OPTICAL_FRAME}
    np.testing.assert_array_equal(conv.image_to_numpy(image), head.rgb)
    np.testing.assert_array_equal(conv.image_to_numpy(depth), head.depth)
    K, width, height = conv.camera_info_to_intrinsics(info)
    np.testing.assert_allclose(K, live.intrinsics(HEAD_CAMERA))
    assert (width, height) == (32, 24)
    cam_pose = by_topic[topics.GT_CAMERA_POSE]
    assert cam_pose.header.frame_id == "world"
    np.testing.assert_allclose(conv.msg_to_matrix(cam_pose), head.T_world_cam, atol=1e-12)


def test_ticks_without_due_cameras_carry_no_images(live):
    cfg = SimNodeConfig(sim=live.config)
    bare = next(t for t in (live.tick() for _ in range(4)) if not t.cameras)
    names = {topic for topic, _ in sm.tick_messages(bare, cfg, factory=FACTORY)}
    assert names == {topics.CLOCK, topics.JOINT_STATES, topics.TF, topics.ODOM, topics.GT_BASE_POSE}


def test_odom_tf_can_be_left_to_another_node_and_frames_renamed(live):
    cfg = SimNodeConfig(publish_odom_tf=False, base_frame="body", odom_frame="wheel_odom", sim=live.config)
    messages = dict(sm.tick_messages(live.tick(), cfg, factory=FACTORY))
    assert topics.TF not in messages
    assert (messages[topics.ODOM].header.frame_id, messages[topics.ODOM].child_frame_id) == (
        "wheel_odom",
        "body",
    )
    edges = _edges(roundtrip(sm.static_tf_message(live, cfg, 0, factory=FACTORY)))
    assert {("world", "wheel_odom"), ("body", "base"), ("body", "head_camera_link")} <= set(edges)


def test_static_tf_puts_odom_at_the_start_pose_and_mounts_the_arm_and_head_camera(live):
    cfg = SimNodeConfig(sim=live.config)
    msg = roundtrip(sm.static_tf_message(live, cfg, 0, factory=FACTORY))
    edges = _edges(msg)
    assert set(edges) == {
        ("world", "odom"),
        ("base_link", "base"),
        ("base_link", "head_camera_link"),
        ("head_camera_link", "head_camera_optical_frame"),
    }
    np.testing.assert_allclose(edges[("world", "odom")], live.T_world_odom, atol=1e-12)
    np.testing.assert_allclose(edges[("base_link", "base")], live.config.robot.T_base_arm(), atol=1e-12)
    T_base_head = (
        edges[("base_link", "head_camera_link")] @ edges[("head_camera_link", "head_camera_optical_frame")]
    )
    np.testing.assert_allclose(T_base_head, live.sim.T_base_camera(mr.HEAD_CAMERA), atol=1e-9)
    # world -> odom -> base_link -> head camera is the ground-truth camera pose while odometry is exact
    tick = live.tick()
    T_world_head = edges[("world", "odom")] @ tick.odometry.T_odom_base @ T_base_head
    np.testing.assert_allclose(T_world_head, tick.T_world_base @ T_base_head, atol=1e-9)
    np.testing.assert_allclose(
        invert(live.T_world_odom) @ tick.T_world_base, tick.odometry.T_odom_base, atol=1e-9
    )


def test_command_messages_convert_and_bad_ones_are_refused():
    vec = lambda x, y, z: FACTORY.new("geometry_msgs/msg/Vector3", x=x, y=y, z=z)  # noqa: E731
    twist = FACTORY.new(sm.TWIST, linear=vec(0.4, 0.1, 0.0), angular=vec(0.0, 0.0, -0.3))
    assert sm.twist_command(roundtrip(twist)) == pytest.approx((0.4, -0.3))
    with pytest.raises(InvalidInputError, match="twist angular"):
        sm.twist_command(FACTORY.new(sm.TWIST, linear=vec(0.4, 0.0, 0.0), angular=vec(0.0, 0.0, math.nan)))
    js = conv.make_joint_state(JOINTS[::-1], np.arange(7.0), 0, factory=FACTORY)
    assert sm.joint_command(roundtrip(js)) == (JOINTS[::-1], list(np.arange(7.0)))


def _yaw_pose(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = (x, y, z)
    return T


def test_teleport_messages_convert_and_bad_ones_are_refused():
    msg = conv.matrix_to_pose_stamped(_yaw_pose(1.5, -2.0, 2.5, z=0.3), 0, "world", factory=FACTORY)
    assert sm.teleport_target(roundtrip(msg), "world") == pytest.approx((1.5, -2.0, 2.5))
    with pytest.raises(InvalidInputError, match="frame 'odom'"):
        sm.teleport_target(
            conv.matrix_to_pose_stamped(_yaw_pose(1, 2, 0), 0, "odom", factory=FACTORY), "world"
        )
    msg.pose.position.x = math.nan
    with pytest.raises(InvalidInputError):
        sm.teleport_target(msg, "world")


def test_sim_node_config_declares_ros_typed_parameters_and_checks_frames():
    specs = {s.name: s for s in parameter_specs(SimNodeConfig)}
    assert set(specs) == set(flatten(SimNodeConfig()))
    assert specs["sim.world.preset"].ros_type == "STRING" and specs["sim.world.seed"].ros_type == "INTEGER"
    assert specs["sim.robot.head_camera.rate_hz"].ros_type == "DOUBLE"
    assert specs["sim.robot.arm_mount_xy"].ros_type == "DOUBLE_ARRAY"
    for bad, match in (
        ({"odom_frame": "world"}, "must differ"),
        ({"base_frame": ""}, "non-empty"),
        ({"base_frame": "base"}, "robot's own links"),
        ({"real_time_factor": 0.0}, "real_time_factor"),
    ):
        with pytest.raises(ConfigError, match=match):
            SimNodeConfig(**bad)


# ----------------------------------------------------------------------------------------------------
# rclpy: the node in-process
# ----------------------------------------------------------------------------------------------------

needs_rclpy = pytest.mark.skipif(importlib.util.find_spec("rclpy") is None, reason="needs rclpy (ROS 2)")


@pytest.fixture
def graph(ros) -> Iterator[SimpleNamespace]:
    """An executor with a probe node; `add(node)` spins another node on it; `wait(pred)` spins until true."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    probe = rclpy.create_node("sim_test_probe")
    executor.add_node(probe)
    nodes = [probe]
    received: dict[str, list] = defaultdict(list)

    def add(node):
        executor.add_node(node)
        nodes.append(node)
        return node

    def listen(msg_type, topic, qos=10):
        probe.create_subscription(msg_type, topic, received[topic].append, qos)

    def wait(pred: Callable[[], bool], timeout: float = 15.0, tick: Callable[[], None] | None = None) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if tick is not None:
                tick()
            executor.spin_once(timeout_sec=0.02)
            if pred():
                return True
        return pred()

    yield SimpleNamespace(
        executor=executor, probe=probe, add=add, listen=listen, wait=wait, received=received
    )
    for node in nodes:
        executor.remove_node(node)
        node.destroy_node()
    executor.shutdown()


def _sim_node(graph, **params):
    from rclpy.parameter import Parameter

    from spatial_memory.ros.sim_node import SimNode

    overrides = [Parameter(k, value=v) for k, v in {**SMALL, **params}.items()]
    return graph.add(SimNode(parameter_overrides=overrides))


@needs_rclpy
@pytest.mark.ros
def test_sim_node_publishes_clock_sensors_and_ground_truth_and_drives_on_cmd_vel(graph):
    from geometry_msgs.msg import PoseStamped, Twist
    from nav_msgs.msg import Odometry
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from tf2_msgs.msg import TFMessage

    node = _sim_node(graph)
    graph.listen(Clock, topics.CLOCK)
    graph.listen(JointState, topics.JOINT_STATES)
    graph.listen(Odometry, topics.ODOM)
    graph.listen(PoseStamped, topics.GT_BASE_POSE)
    graph.listen(Image, topics.CAMERA_IMAGE, qos_profile_sensor_data)
    graph.listen(Image, topics.WRIST_CAMERA_DEPTH, qos_profile_sensor_data)
    graph.listen(CameraInfo, topics.CAMERA_INFO, qos_profile_sensor_data)
    graph.listen(
        TFMessage, topics.TF_STATIC, QoSProfile(depth=10, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    )
    got = graph.received
    assert graph.wait(
        lambda: got[topics.CAMERA_IMAGE] and got[topics.WRIST_CAMERA_DEPTH] and got[topics.TF_STATIC]
    )
    image = got[topics.CAMERA_IMAGE][-1]
    assert (image.width, image.height, image.encoding) == (32, 24, "rgb8")
    assert image.header.frame_id == mr.HEAD_OPTICAL_FRAME
    assert got[topics.WRIST_CAMERA_DEPTH][-1].encoding == "32FC1"
    assert {(t.header.frame_id, t.child_frame_id) for t in got[topics.TF_STATIC][-1].transforms} >= {
        ("world", "odom"),
        ("base_link", "base"),
    }
    clocks = [conv.stamp_to_ns(c.clock) for c in got[topics.CLOCK]]
    assert clocks == sorted(clocks) and len(set(clocks)) == len(clocks)
    assert all(c % node.config.sim.dt_ns == 0 for c in clocks)  # whole fixed steps

    start = conv.msg_to_matrix(got[topics.GT_BASE_POSE][-1])
    cmd = graph.probe.create_publisher(Twist, topics.CMD_VEL, 10)
    twist = Twist()
    twist.linear.x, twist.angular.z = 0.4, 0.5

    def moved() -> bool:
        now = conv.msg_to_matrix(got[topics.GT_BASE_POSE][-1])
        return np.linalg.norm(now[:2, 3] - start[:2, 3]) > 0.1

    assert graph.wait(moved, tick=lambda: cmd.publish(twist))
    # the odometry measures the commanded speed while driving: the median of the moving ticks (the last
    # message alone can be off: under load a command can expire for a tick between two publishes)
    speeds = [o.twist.twist.linear.x for o in got[topics.ODOM] if o.twist.twist.linear.x > 0.05]
    assert float(np.median(speeds)) == pytest.approx(0.4, abs=0.05), speeds[-20:]
    # stop publishing: the base stops after the timeout
    graph.wait(lambda: False, timeout=1.0)
    settled = conv.msg_to_matrix(got[topics.GT_BASE_POSE][-1])
    graph.wait(lambda: False, timeout=0.3)
    np.testing.assert_allclose(conv.msg_to_matrix(got[topics.GT_BASE_POSE][-1]), settled)


@needs_rclpy
@pytest.mark.ros
def test_sim_node_carries_the_robot_on_teleport_behind_the_odometrys_back(graph):
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Odometry

    node = _sim_node(graph)
    graph.listen(PoseStamped, topics.GT_BASE_POSE)
    graph.listen(Odometry, topics.ODOM)
    got = graph.received
    assert graph.wait(lambda: got[topics.GT_BASE_POSE] and got[topics.ODOM])
    start = conv.msg_to_matrix(got[topics.GT_BASE_POSE][-1])
    odom_start = conv.msg_to_matrix(got[topics.ODOM][-1].pose.pose)
    grid = node.sim.world  # the room: pick a free spot 0.8 m from the start
    target = next(
        (x, y)
        for x, y in (
            (start[0, 3] + dx, start[1, 3] + dy) for dx, dy in ((0.8, 0), (-0.8, 0), (0, 0.8), (0, -0.8))
        )
        if node.sim.sim.pose_is_free(x, y, 1.0)
    )
    del grid
    pub = graph.probe.create_publisher(PoseStamped, topics.SIM_TELEPORT, 10)
    rclpy_factory = conv.RclpyFactory()
    wrong = conv.matrix_to_pose_stamped(_yaw_pose(*target, 1.0), 0, "odom", factory=rclpy_factory)
    pub.publish(wrong)
    graph.wait(lambda: node.status()["commands_refused"] > 0, timeout=3.0)
    assert node.status()["commands_refused"] == 1 and node.status()["teleports"] == 0
    pub.publish(conv.matrix_to_pose_stamped(_yaw_pose(*target, 1.0), 0, "world", factory=rclpy_factory))

    def carried() -> bool:
        now = conv.msg_to_matrix(got[topics.GT_BASE_POSE][-1])
        return np.allclose(now[:2, 3], target, atol=1e-6)

    assert graph.wait(carried)
    assert node.status()["teleports"] == 1
    now = conv.msg_to_matrix(got[topics.GT_BASE_POSE][-1])
    assert math.atan2(now[1, 0], now[0, 0]) == pytest.approx(1.0, abs=1e-6)
    graph.wait(lambda: False, timeout=0.3)  # a few more odometry messages
    odom_now = conv.msg_to_matrix(got[topics.ODOM][-1].pose.pose)
    np.testing.assert_allclose(odom_now[:2, 3], odom_start[:2, 3], atol=1e-3)  # the odometry saw nothing


@needs_rclpy
@pytest.mark.ros
def test_sim_node_moves_the_arm_on_joint_commands_and_ignores_bad_ones(graph):
    from sensor_msgs.msg import JointState

    node = _sim_node(graph)
    graph.listen(JointState, topics.JOINT_STATES)
    got = graph.received
    assert graph.wait(lambda: got[topics.JOINT_STATES])
    home = conv.joint_positions(got[topics.JOINT_STATES][-1], JOINTS)
    pub = graph.probe.create_publisher(JointState, topics.JOINT_COMMANDS, 10)
    rclpy_factory = conv.RclpyFactory()
    bad = conv.make_joint_state(JOINTS[:6], home[:6] + 0.2, 0, factory=rclpy_factory)
    graph.wait(lambda: False, timeout=0.3, tick=lambda: pub.publish(bad))
    assert node.sim.q_target is None
    target = home + 0.2
    good = conv.make_joint_state(JOINTS[::-1], target[::-1], 0, factory=rclpy_factory)

    def arrived() -> bool:
        return np.allclose(conv.joint_positions(got[topics.JOINT_STATES][-1], JOINTS), target, atol=1e-9)

    assert graph.wait(arrived, tick=lambda: pub.publish(good))


@needs_rclpy
@pytest.mark.ros
@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("sim.world.preset", "castle", "preset must be one of"),
        ("sim.rate_hz", 30, "sim.rate_hz"),  # an int for a DOUBLE parameter
        ("sim.robot.head_camera.rate_hz", 60.0, "above the simulation rate_hz"),
        ("world_frame", "odom", "must differ"),
    ],
)
def test_sim_node_refuses_bad_parameters(ros, name, value, match):
    from rclpy.parameter import Parameter

    from spatial_memory.errors import SpatialMemoryError
    from spatial_memory.ros.sim_node import SimNode

    with pytest.raises(SpatialMemoryError, match=match):
        SimNode(parameter_overrides=[Parameter(name, value=value)])


@pytest.mark.ros
def test_sim_launch_file_builds_its_launch_description(repo_root):
    pytest.importorskip("launch_ros")
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, GroupAction
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("sim_launch", repo_root / "launch" / "sim.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    arguments = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert arguments == {
        "world_preset",
        "world_seed",
        "use_rviz",
        "params_file",
        "use_memory",
        "memory_checkpoint",
        "odometry",
        "use_policy",
        "nodes",
    }

    def flat(entities):  # nodes inside the robot / workstation halves' GroupActions too
        for e in entities:
            yield e
            if isinstance(e, GroupAction):
                yield from flat(e.get_sub_entities())

    nodes = [e for e in flat(description.entities) if isinstance(e, Node)]
    # sim_node, fk_node, spatial_context_node, vo_node, policy_node, goal_follower_node and rviz2
    # (the last four conditional); memory_node: opaque
    assert len(nodes) == 7
