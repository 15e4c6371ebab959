"""The ROS nodes in-process: feed JointState / Image / TF, check TF, ee pose, map, markers and services.

Needs rclpy and our built interfaces (source a ROS 2 install and this workspace's install/); skipped
where rclpy is absent. Each test adds the node under test and a probe node to one executor and spins it
until the expected messages arrive (or a timeout fails the test).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from tf2_ros import StaticTransformBroadcaster  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from spatial_memory.errors import SpatialMemoryError  # noqa: E402
from spatial_memory.geometry import invert, pose_from_xyz_rpy  # noqa: E402
from spatial_memory.msgs import conversions as conv  # noqa: E402
from spatial_memory.msgs import topics  # noqa: E402
from spatial_memory.robot.kinematics import FR3Kinematics  # noqa: E402

pytestmark = pytest.mark.ros

LATCHED = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)
STATIC_TF = QoSProfile(depth=100, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
FACTORY = conv.RclpyFactory()
JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]
Q = np.array([0.1, -0.6, 0.2, -2.2, 0.1, 1.7, 0.6])
T0 = 1_700_000_000 * 10**9  # a plausible wall-clock stamp


@pytest.fixture
def graph(ros) -> Iterator[SimpleNamespace]:
    """An executor with a probe node; `add(node)` spins another node on it; `wait(pred)` spins until true."""
    executor = SingleThreadedExecutor()
    probe = rclpy.create_node("test_probe")
    executor.add_node(probe)
    nodes = [probe]
    received: dict[str, list] = defaultdict(list)

    def add(node):
        executor.add_node(node)
        nodes.append(node)
        return node

    def listen(msg_type, topic, qos=10):
        probe.create_subscription(msg_type, topic, received[topic].append, qos)

    def wait(pred: Callable[[], bool], timeout: float = 10.0, tick: Callable[[], None] | None = None) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if tick is not None:
                tick()
            executor.spin_once(timeout_sec=0.05)
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


def joint_state(q, stamp_ns: int, names=JOINTS) -> JointState:
    """JointState with the arm joints reversed and a finger joint first (order must not matter)."""
    names = list(names)
    values = dict(zip(JOINTS, q, strict=True))
    ordered = ["fr3_finger_joint1", *reversed(names)]
    positions = [0.02] + [values[n] for n in reversed(names)]
    return conv.make_joint_state(ordered, positions, stamp_ns, factory=FACTORY)


def camera_image(stamp_ns: int, seed: int = 0, **kwargs) -> Image:
    rgb = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return conv.numpy_to_image(
        rgb, "rgb8", factory=FACTORY, stamp_ns=stamp_ns, frame_id="wrist_camera_optical_frame"
    )


def call(graph, srv_type, name: str, request):
    client = graph.probe.create_client(srv_type, name)
    assert graph.wait(client.service_is_ready), f"service {name} did not come up"
    future = client.call_async(request)
    assert graph.wait(future.done), f"service {name} did not answer"
    return future.result()


# ----------------------------------------------------------------------------------------------------
# fk_node
# ----------------------------------------------------------------------------------------------------


def _tf_edges(messages: list[TFMessage]) -> dict[str, tuple[str, np.ndarray]]:
    """child -> (parent, T_parent_child) of the newest transform of each child."""
    return {
        t.child_frame_id: (t.header.frame_id, conv.msg_to_matrix(t)) for m in messages for t in m.transforms
    }


def _chain(edges: dict[str, tuple[str, np.ndarray]], root: str, frame: str) -> np.ndarray:
    """T_root_frame composed along the TF tree."""
    T = np.eye(4)
    while frame != root:
        parent, T_parent_frame = edges[frame]
        T = T_parent_frame @ T
        frame = parent
    return T


def test_fk_node_publishes_tf_ee_pose_and_robot_description(graph):
    from spatial_memory.ros.fk_node import FkNode

    graph.add(FkNode())
    graph.listen(TFMessage, topics.TF, 100)
    graph.listen(TFMessage, topics.TF_STATIC, STATIC_TF)
    graph.listen(PoseStamped, topics.EE_POSE)
    graph.listen(String, topics.ROBOT_DESCRIPTION, LATCHED)  # a late subscriber: latched
    pub = graph.probe.create_publisher(JointState, topics.JOINT_STATES, 10)
    stamp = T0 + 12_500_000_000

    assert graph.wait(lambda: graph.received[topics.EE_POSE], tick=lambda: pub.publish(joint_state(Q, stamp)))
    assert graph.wait(lambda: graph.received[topics.TF_STATIC] and graph.received[topics.ROBOT_DESCRIPTION])

    kin = FR3Kinematics()
    ee = graph.received[topics.EE_POSE][-1]
    assert ee.header.frame_id == "base" and conv.stamp_to_ns(ee.header.stamp) == stamp
    np.testing.assert_allclose(conv.msg_to_matrix(ee), kin.forward(Q, "fr3_hand_tcp"), atol=1e-9)

    dynamic = _tf_edges(graph.received[topics.TF])
    static = _tf_edges(graph.received[topics.TF_STATIC])
    assert {f"fr3_link{i}" for i in range(1, 8)} == set(dynamic)
    assert static["base"][0] == "base_link"
    assert (
        static["fr3_hand_tcp"][0] == "fr3_hand"
        and static["wrist_camera_optical_frame"][0] == "wrist_camera_link"
    )
    edges = static | dynamic
    np.testing.assert_allclose(
        _chain(edges, "base", "wrist_camera_optical_frame"), kin.camera_pose(Q), atol=1e-9
    )
    np.testing.assert_allclose(_chain(edges, "base_link", "base"), np.eye(4), atol=1e-12)

    urdf = graph.received[topics.ROBOT_DESCRIPTION][-1].data
    assert '<robot name="fr3"' in urdf and "wrist_camera_joint" in urdf
    assert '<link name="base_link"' not in urdf  # no mobile base drawn by default (robot.yaml)


def test_fk_node_draws_the_mobile_base_in_robot_description(graph):
    from rclpy.parameter import Parameter

    from spatial_memory.ros.fk_node import FkNode

    graph.add(FkNode(parameter_overrides=[Parameter("mobile_base_radius_m", value=0.3)]))
    graph.listen(String, topics.ROBOT_DESCRIPTION, LATCHED)
    assert graph.wait(lambda: graph.received[topics.ROBOT_DESCRIPTION])
    urdf = graph.received[topics.ROBOT_DESCRIPTION][-1].data
    assert '<link name="base_link">' in urdf and '<cylinder radius="0.3"' in urdf
    assert '<joint name="base_link_to_base" type="fixed">' in urdf


def test_fk_node_ignores_bad_joint_states_and_keeps_running(graph):
    from spatial_memory.ros.fk_node import FkNode

    graph.add(FkNode())
    graph.listen(PoseStamped, topics.EE_POSE)
    pub = graph.probe.create_publisher(JointState, topics.JOINT_STATES, 10)
    bad = [joint_state(Q, T0, names=JOINTS[:6]), joint_state(np.where(np.arange(7) == 3, np.nan, Q), T0)]
    bad.append(joint_state(np.full(7, 10.0), T0))  # out of limits
    graph.wait(lambda: False, timeout=1.0, tick=lambda: [pub.publish(m) for m in bad])
    assert graph.received[topics.EE_POSE] == []
    assert graph.wait(lambda: graph.received[topics.EE_POSE], tick=lambda: pub.publish(joint_state(Q, T0)))


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [("ee_frame", "no_such_link", "ee_frame"), ("camera.parent", "table", "camera mount parent")],
)
def test_fk_node_refuses_bad_parameters(ros, name, value, match):
    from spatial_memory.ros.fk_node import FkNode

    with pytest.raises(SpatialMemoryError, match=match):
        FkNode(parameter_overrides=[Parameter(name, value=value)])


def _stream(graph, pub, qs, stamps) -> None:
    """Publish joint states one by one, spinning in between (stamps say 1 kHz; the wall rate is the
    executor's), so fk_node sees the stream in order; a reader keeping only the newest may still drop."""
    for q, stamp in zip(qs, stamps, strict=True):
        pub.publish(joint_state(q, int(stamp)))
        for timeout in (0.005, 0.0, 0.0):  # fk_node's callback, then the probe's TF and ee pose
            graph.executor.spin_once(timeout_sec=timeout)
    quiet, end = 0, time.monotonic() + 10.0
    while quiet < 5 and time.monotonic() < end:  # until the last TF and ee poses are in
        before = sum(len(v) for v in graph.received.values())
        graph.executor.spin_once(timeout_sec=0.02)
        quiet = quiet + 1 if sum(len(v) for v in graph.received.values()) == before else 0


def _tf_per_stamp(messages: list[TFMessage]) -> dict[int, dict[str, tuple[str, np.ndarray]]]:
    out: dict[int, dict[str, tuple[str, np.ndarray]]] = defaultdict(dict)
    for m in messages:
        for t in m.transforms:
            out[conv.stamp_to_ns(t.header.stamp)][t.child_frame_id] = (
                t.header.frame_id,
                conv.msg_to_matrix(t),
            )
    return out


@pytest.mark.parametrize("tf_rate_hz", [0.0, 50.0])
def test_fk_node_at_1khz_publishes_fk_of_the_newest_joints_at_the_rate_and_rests_quietly(graph, tf_rate_hz):
    """A moving arm at 1 kHz of stamps: every TF equals FK of the joint vector at its stamp, at most one
    per 20 ms (50 Hz) or one per message (0 = the unthrottled baseline); then the arm rests: the newest TF
    is FK of the final vector, re-stamped at 25 Hz instead of 1 kHz, and a consumer's lookup at an image
    stamp of the resting arm succeeds once the next keep-alive is in."""
    from tf2_ros import Buffer, TransformListener

    from spatial_memory.ros.fk_node import FkNode

    node = graph.add(FkNode(parameter_overrides=[Parameter("tf_rate_hz", value=tf_rate_hz)]))
    graph.listen(TFMessage, topics.TF, 1000)
    graph.listen(PoseStamped, topics.EE_POSE, 1000)
    buffer = Buffer()
    TransformListener(buffer, graph.probe)
    pub = graph.probe.create_publisher(JointState, topics.JOINT_STATES, 10)
    kin = FR3Kinematics()
    moving = 300
    stamps = T0 + np.arange(moving) * 1_000_000
    qs = [Q + 0.3 * np.sin(np.arange(7) + i / 50) for i in range(moving)]
    q_at = dict(zip(stamps.tolist(), qs, strict=True))
    _stream(graph, pub, qs, stamps)

    moved = _tf_per_stamp(graph.received[topics.TF])
    counts = node.status()
    assert counts["received"] > 0 and counts["rejected"] == 0  # polled: how many it sees is wall-time luck
    assert len(moved) == counts["published"] == counts["computed"]
    if tf_rate_hz == 0:
        assert counts["published"] == counts["received"] and counts["skipped"] == 0
    else:
        assert counts["published"] <= moving // 20 + 1 and counts["skipped"] > 0
        assert len({s // 20_000_000 for s in moved}) == len(moved)  # one per 20 ms of stamps
        assert stamps[-1] - max(moved) < 20_000_000  # the newest TF is at most one period behind
    for stamp, edges in moved.items():
        assert set(edges) == {f"fr3_link{i}" for i in range(1, 8)}
        np.testing.assert_allclose(
            _chain(edges, "fr3_link0", "fr3_link7"), kin.forward(q_at[stamp], "fr3_link7"), atol=1e-9
        )
    ee = {conv.stamp_to_ns(m.header.stamp): conv.msg_to_matrix(m) for m in graph.received[topics.EE_POSE]}
    assert set(ee) <= set(moved) and max(ee) == max(moved)  # with each TF (a lagging reader may miss some)
    for stamp, T in ee.items():
        np.testing.assert_allclose(T, kin.forward(q_at[stamp], "fr3_hand_tcp"), atol=1e-9)

    # The arm rests at its last vector for 300 ms more (1 kHz of stamps, tiny encoder noise).
    graph.received[topics.TF].clear()
    rest = stamps[-1] + np.arange(1, 301) * 1_000_000
    noise = np.random.default_rng(0).uniform(-2e-5, 2e-5, (len(rest), 7))
    _stream(graph, pub, qs[-1] + noise, rest)
    rested = _tf_per_stamp(graph.received[topics.TF])
    newest = max(rested)
    assert rest[-1] - newest < 40_000_000  # the keep-alive period
    q_tf = node.throttle.computed_q  # the vector the newest TF was computed from: the newest within tolerance
    assert np.max(np.abs(q_tf - (qs[-1] + noise[-1]))) <= 1e-4
    np.testing.assert_allclose(
        _chain(rested[newest], "fr3_link0", "fr3_link7"), kin.forward(q_tf, "fr3_link7"), atol=1e-9
    )
    if tf_rate_hz == 0:
        assert len(rested) == node.status()["received"] - counts["received"]  # every message
    else:
        assert len(rested) <= 300 // 40 + 1  # 25 Hz keep-alive, not 1 kHz
    image_stamp = int(rest[200])  # a camera frame of the resting arm, looked up at its stamp
    when = rclpy.time.Time(nanoseconds=image_stamp)
    assert buffer.can_transform("base", "wrist_camera_optical_frame", when)
    T_cam = conv.msg_to_matrix(buffer.lookup_transform("base", "wrist_camera_optical_frame", when))
    np.testing.assert_allclose(T_cam, kin.camera_pose(qs[-1]), atol=5e-4)  # within the encoder noise


def test_fk_node_polls_joint_states_in_its_own_thread_and_stops_it_when_destroyed(ros):
    from spatial_memory.ros.fk_node import FkNode

    node = FkNode()
    poller = node._poller
    assert poller is not None and poller.is_alive()
    node.destroy_node()
    assert not poller.is_alive()
    unthrottled = FkNode(parameter_overrides=[Parameter("tf_rate_hz", value=0.0)])
    assert unthrottled._poller is None  # every message through the executor, as before
    unthrottled.destroy_node()


# ----------------------------------------------------------------------------------------------------
# spatial_context_node
# ----------------------------------------------------------------------------------------------------


def _context_node(graph, **params):
    from spatial_memory.ros.spatial_context_node import SpatialContextNode

    overrides = [
        Parameter(k, value=v) for k, v in {"map_rate_hz": 5.0, "frame_rate_hz": 50.0, **params}.items()
    ]
    node = graph.add(SpatialContextNode(parameter_overrides=overrides))
    graph.listen(Image, topics.BEV_MAP, LATCHED)
    graph.listen(MarkerArray, topics.KEYFRAME_MARKERS, LATCHED)
    graph.listen(Image, topics.KEYFRAME_IMAGES, LATCHED)
    return node


def test_stationary_context_node_maps_promotes_and_answers_queries(graph):
    from spatial_memory_interfaces.srv import PromoteKeyframe, QueryPose

    node = _context_node(graph)
    joints = graph.probe.create_publisher(JointState, topics.JOINT_STATES, 10)
    images = graph.probe.create_publisher(Image, topics.CAMERA_IMAGE, 10)
    sent = iter(range(10**6))

    def feed():
        i = next(sent)
        stamp = T0 + i * 100_000_000  # 10 Hz
        joints.publish(joint_state(Q, stamp))
        images.publish(camera_image(stamp, seed=i))

    assert graph.wait(lambda: len(node.spatial_context) >= 3, tick=feed)
    assert graph.wait(lambda: graph.received[topics.BEV_MAP])
    bev = graph.received[topics.BEV_MAP][-1]
    assert (bev.encoding, bev.height, bev.width, bev.header.frame_id) == ("rgb8", 512, 512, "base")
    assert conv.image_to_numpy(bev).shape == (512, 512, 3)

    promoted = call(graph, PromoteKeyframe, topics.PROMOTE_KEYFRAME, PromoteKeyframe.Request(latest=True))
    assert promoted.success, promoted.message
    assert promoted.keyframe.number == 1 and promoted.keyframe.header.frame_id == "base"
    np.testing.assert_allclose(
        conv.msg_to_matrix(promoted.keyframe.pose), FR3Kinematics().camera_pose(Q), atol=1e-9
    )
    assert promoted.keyframe.frame_id == node.spatial_context.keyframes[0].frame_id

    again = call(
        graph,
        PromoteKeyframe,
        topics.PROMOTE_KEYFRAME,
        PromoteKeyframe.Request(frame_id=promoted.keyframe.frame_id),
    )
    assert again.success and "already" in again.message
    unknown = call(graph, PromoteKeyframe, topics.PROMOTE_KEYFRAME, PromoteKeyframe.Request(frame_id=123456))
    assert not unknown.success and "never added" in unknown.message
    captured = conv.stamp_to_ns(promoted.keyframe.header.stamp)  # a policy nominates frames by their stamps
    by_stamp = PromoteKeyframe.Request(stamp=conv.ns_to_stamp(captured + 30_000_000, FACTORY))
    nominated = call(graph, PromoteKeyframe, topics.PROMOTE_KEYFRAME, by_stamp)
    assert nominated.success and nominated.keyframe.frame_id == promoted.keyframe.frame_id, nominated.message
    assert "already" in nominated.message
    far = PromoteKeyframe.Request(stamp=conv.ns_to_stamp(captured + 10**12, FACTORY))
    missed = call(graph, PromoteKeyframe, topics.PROMOTE_KEYFRAME, far)
    assert not missed.success and "within 0.5 s" in missed.message

    def markers_ready() -> bool:
        arrays = graph.received[topics.KEYFRAME_MARKERS]
        return bool(arrays) and len(arrays[-1].markers) == 3

    assert graph.wait(markers_ready)
    markers = graph.received[topics.KEYFRAME_MARKERS][-1].markers
    assert markers[0].action == conv.MARKER_DELETEALL and markers[2].text == "1"
    assert graph.wait(lambda: graph.received[topics.KEYFRAME_IMAGES])
    sheet = graph.received[topics.KEYFRAME_IMAGES][-1]
    assert sheet.encoding == "rgb8" and sheet.height == node.config.keyframe_tile_height

    query = QueryPose.Request(query=camera_image(T0), backend="")
    answer = call(graph, QueryPose, topics.QUERY_POSE, query)
    assert (answer.success, answer.matched_keyframe_id) == (False, -1)  # no memory_node in this graph
    assert "memory_node is not running" in answer.message
    broken = camera_image(T0)
    broken.step = 10  # smaller than a row
    answer = call(graph, QueryPose, topics.QUERY_POSE, QueryPose.Request(query=broken))
    assert (
        not answer.success
        and answer.message.startswith("malformed query image")
        and "step 10" in answer.message
    )
    depth = conv.numpy_to_image(np.zeros((8, 8), np.uint16), factory=FACTORY)
    answer = call(graph, QueryPose, topics.QUERY_POSE, QueryPose.Request(query=depth))
    assert not answer.success and "query encoding must be one of" in answer.message


def test_stationary_context_node_skips_images_without_a_recent_joint_state(graph):
    node = _context_node(graph)
    joints = graph.probe.create_publisher(JointState, topics.JOINT_STATES, 10)
    images = graph.probe.create_publisher(Image, topics.CAMERA_IMAGE, 10)
    graph.wait(
        lambda: False, timeout=0.5, tick=lambda: images.publish(camera_image(T0 + 100 * 10**9))
    )  # no joint state yet (and 100 s after the joint state sent next)
    assert len(node.spatial_context) == 0

    def stale():
        joints.publish(joint_state(Q, T0))
        images.publish(camera_image(T0 + 5 * 10**9))  # 5 s after the joint state

    graph.wait(lambda: False, timeout=0.5, tick=stale)
    assert len(node.spatial_context) == 0


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("frame_rate_hz", 5, "frame_rate_hz"),  # an int for a DOUBLE parameter
        ("mode", "flying", "mode must be one of"),
        ("world_frame", "odom", "stationary mode computes poses by FK"),
        ("context.map.size_px", 16, "size_px"),
    ],
)
def test_context_node_refuses_bad_parameters(ros, name, value, match):
    from spatial_memory.ros.spatial_context_node import SpatialContextNode

    with pytest.raises(SpatialMemoryError, match=match):
        SpatialContextNode(parameter_overrides=[Parameter(name, value=value)])


def test_promote_before_any_frame_fails_clearly(graph):
    from spatial_memory_interfaces.srv import PromoteKeyframe

    _context_node(graph)
    answer = call(graph, PromoteKeyframe, topics.PROMOTE_KEYFRAME, PromoteKeyframe.Request(latest=True))
    assert not answer.success and "no frames" in answer.message


def test_mobile_context_node_takes_poses_from_tf_at_the_image_stamp(graph):
    from spatial_memory_interfaces.srv import PromoteKeyframe

    node = _context_node(graph, mode="mobile", world_frame="odom")
    images = graph.probe.create_publisher(Image, topics.CAMERA_IMAGE, 10)
    graph.wait(lambda: False, timeout=0.5, tick=lambda: images.publish(camera_image(T0)))
    assert len(node.spatial_context) == 0, "no TF yet: the image must not be added"

    T_odom_base = pose_from_xyz_rpy((1.0, -2.0, 0.0), (0.0, 0.0, 0.7))
    T_base_cam = pose_from_xyz_rpy((0.2, 0.0, 0.5), (-np.pi / 2, 0.0, -np.pi / 2))
    broadcaster = StaticTransformBroadcaster(graph.probe)
    broadcaster.sendTransform(
        [
            conv.matrix_to_transform_stamped(T_odom_base, T0, "odom", "base_link", factory=FACTORY),
            conv.matrix_to_transform_stamped(
                T_base_cam, T0, "base_link", "wrist_camera_optical_frame", factory=FACTORY
            ),
        ]
    )
    stamps = iter(range(1, 10**6))
    assert graph.wait(
        lambda: len(node.spatial_context) >= 1,
        tick=lambda: images.publish(camera_image(T0 + next(stamps) * 10**8)),
    )
    answer = call(graph, PromoteKeyframe, topics.PROMOTE_KEYFRAME, PromoteKeyframe.Request(latest=True))
    assert answer.success and answer.keyframe.header.frame_id == "odom"
    np.testing.assert_allclose(conv.msg_to_matrix(answer.keyframe.pose), T_odom_base @ T_base_cam, atol=1e-9)
    record = node.spatial_context.frame(answer.keyframe.frame_id)
    np.testing.assert_allclose(record.T_world_base, T_odom_base, atol=1e-9)
    np.testing.assert_allclose(invert(record.T_world_base) @ record.T_world_cam, T_base_cam, atol=1e-9)
    assert graph.wait(lambda: graph.received[topics.BEV_MAP])
    assert graph.received[topics.BEV_MAP][-1].header.frame_id == "base_link"


@pytest.mark.parametrize("module", ["fk_node", "spatial_context_node"])
def test_executables_exit_with_one_clear_line_on_bad_parameters(module):
    """`main()` (what `ros2 run` / the launch file start): a bad parameter ends it with exit code 1."""
    import subprocess
    import sys

    param = "ee_frame:=no_such_link" if module == "fk_node" else "mode:=flying"
    result = subprocess.run(
        [sys.executable, "-m", f"spatial_memory.ros.{module}", "--ros-args", "-p", param],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert ("ee_frame" if module == "fk_node" else "mode must be one of") in result.stderr
