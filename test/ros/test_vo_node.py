"""vo_node: its messages checked against the real ROS 2 definitions (rosbags Humble and Jazzy typestores,
serialized to CDR and read back), and, where rclpy is present, the node in-process: camera, depth, camera
info, joint states and TF in; odometry, TF, path and status out; frames dropped rather than queued, bad
frames refused without touching the chain."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import make_pose, yaw_pose
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.ros import vo_messages as vm
from spatial_memory.vo.odometry import OdometryStep

K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
T_BASE_CAM = make_pose(R_BODY_OPTICAL, np.array([0.2, 0.0, 1.0]))


@pytest.fixture(params=[Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY], ids=["humble", "jazzy"], scope="module")
def store(request):
    return get_typestore(request.param)


def _round_trip(store, msg):
    raw = store.serialize_cdr(msg, msg.__msgtype__)
    return store.deserialize_cdr(bytes(raw), msg.__msgtype__)


def _step(T=None, stamp=1_700_000_000_123_456_789) -> OdometryStep:
    return OdometryStep(
        stamp_ns=stamp,
        T_odom_base=yaw_pose(1.0, -2.0, 0.3) if T is None else T,
        twist=np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.2]),
        pose_covariance=np.diag([0.01, 0.01, 0.01, 0.002, 0.002, 0.002]),
        twist_covariance=np.diag([0.1, 0.1, 0.1, 0.03, 0.03, 0.03]),
        source="visual",
        tracked=40,
        reason="",
        masked_fraction=0.1,
    )


def test_odometry_round_trips_with_frames_twist_and_covariance(store):
    factory = conv.RosbagsFactory(store)
    step = _step()
    back = _round_trip(store, vm.odometry_message(step, "odom", "base_link", factory))
    assert back.header.frame_id == "odom" and back.child_frame_id == "base_link"
    assert conv.stamp_to_ns(back.header.stamp) == step.stamp_ns
    np.testing.assert_allclose(conv.pose_to_matrix(back.pose.pose), step.T_odom_base, atol=1e-12)
    np.testing.assert_array_equal(np.reshape(back.pose.covariance, (6, 6)), step.pose_covariance)
    np.testing.assert_array_equal(np.reshape(back.twist.covariance, (6, 6)), step.twist_covariance)
    np.testing.assert_array_equal(conv.twist_to_vector(back.twist.twist), step.twist)


def test_path_round_trips_oldest_first(store):
    factory = conv.RosbagsFactory(store)
    poses = [(10 + i, yaw_pose(0.1 * i, 0.0, 0.05 * i)) for i in range(5)]
    back = _round_trip(store, vm.path_message(poses, 14, "odom", factory))
    assert back.header.frame_id == "odom" and len(back.poses) == 5
    for (stamp, T), msg in zip(poses, back.poses, strict=True):
        assert conv.stamp_to_ns(msg.header.stamp) == stamp and msg.header.frame_id == "odom"
        np.testing.assert_allclose(conv.pose_to_matrix(msg.pose), T, atol=1e-12)


def test_camera_and_depth_images_decode_and_wrong_encodings_are_refused(store):
    factory = conv.RosbagsFactory(store)
    rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    for encoding in ("rgb8", "bgr8"):
        msg = _round_trip(store, conv.numpy_to_image(rgb, encoding, factory=factory))
        np.testing.assert_array_equal(vm.vo_image(msg), rgb)
    mono = rgb[..., 0].copy()
    np.testing.assert_array_equal(vm.vo_image(conv.numpy_to_image(mono, "mono8", factory=factory)), mono)
    mm = np.array([[0, 1000], [1500, 65535]], np.uint16)
    depth = vm.depth_metres(_round_trip(store, conv.numpy_to_image(mm, "16UC1", factory=factory)))
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, [[0.0, 1.0], [1.5, 65.535]], rtol=1e-6)
    metres = np.array([[np.nan, 2.5]], np.float32)
    np.testing.assert_array_equal(
        vm.depth_metres(conv.numpy_to_image(metres, "32FC1", factory=factory)), metres
    )
    with pytest.raises(InvalidInputError, match="image encoding"):
        vm.vo_image(conv.numpy_to_image(metres, "32FC1", factory=factory))
    with pytest.raises(InvalidInputError, match="depth encoding"):
        vm.depth_metres(conv.numpy_to_image(rgb, "rgb8", factory=factory))


def test_status_is_sorted_compact_json():
    assert vm.status_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


# ----------------------------------------------------------------------------------------------------
# rclpy: the node in-process


def _wall(shift_px: float) -> np.ndarray:
    """A textured wall 2 m ahead after the camera moved right by shift_px * 2 m / fx (see test_odometry)."""
    rng = np.random.default_rng(7)
    base = cv2.resize(
        rng.integers(0, 255, (60, 80), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC
    )
    img = cv2.warpAffine(
        base, np.float32([[1, 0, -shift_px], [0, 1, 0]]), (640, 480), borderMode=cv2.BORDER_REFLECT
    )
    return np.dstack([img, img, img])


def _wait(predicate, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


@pytest.mark.ros
def test_vo_node_publishes_odometry_tf_path_and_status(ros):
    from nav_msgs.msg import Odometry, Path
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from std_msgs.msg import String
    from tf2_msgs.msg import TFMessage
    from tf2_ros import StaticTransformBroadcaster

    from spatial_memory.robot.kinematics import FR3Kinematics
    from spatial_memory.ros.vo_node import VoNode

    factory = conv.RclpyFactory()
    node = VoNode(
        parameter_overrides=[Parameter("path_rate_hz", value=10.0), Parameter("status_rate_hz", value=10.0)]
    )
    probe = ros.create_node("vo_test_probe")
    executor = MultiThreadedExecutor(num_threads=4)
    for n in (node, probe):
        executor.add_node(n)
    threading.Thread(target=executor.spin, daemon=True).start()
    odoms, paths, statuses, tfs = [], [], [], []
    probe.create_subscription(Odometry, topics.VO_ODOMETRY, odoms.append, 50)
    probe.create_subscription(Path, topics.VO_PATH, paths.append, 10)
    probe.create_subscription(String, topics.VO_STATUS, lambda m: statuses.append(json.loads(m.data)), 10)
    probe.create_subscription(TFMessage, topics.TF, tfs.append, 50)
    static = StaticTransformBroadcaster(probe)
    t0 = 1_700_000_000 * 10**9
    arm_far_behind = make_pose(translation=np.array([0.0, 0.0, -3.0]))  # the arm's root behind the camera
    static.sendTransform(
        [
            conv.matrix_to_transform_stamped(T_BASE_CAM, t0, "base_link", "cam_optical", factory=factory),
            conv.matrix_to_transform_stamped(
                T_BASE_CAM @ arm_far_behind, t0, "base_link", "base", factory=factory
            ),
        ]
    )
    images = probe.create_publisher(Image, topics.CAMERA_IMAGE, 10)
    depths = probe.create_publisher(Image, topics.CAMERA_DEPTH, 10)
    infos = probe.create_publisher(CameraInfo, topics.CAMERA_INFO, 10)
    joints = probe.create_publisher(JointState, topics.JOINT_STATES, 10)
    kin = FR3Kinematics()
    depth = np.full((480, 640), 2.0, np.float32)
    period = 66_666_667
    order = []  # what the worker sent, in order: the TF must go out before the frame's odometry message
    for name, obj, attr in (("tf", node._tf, "sendTransform"), ("odometry", node._odom_pub, "publish")):
        sent = getattr(obj, attr)
        setattr(obj, attr, lambda msg, name=name, sent=sent: (order.append(name), sent(msg))[1])
    try:
        import rclpy.time

        infos.publish(conv.make_camera_info(K, 640, 480, t0, "cam_optical", factory=factory))
        assert _wait(lambda: node._intrinsics is not None)
        assert _wait(lambda: node._tf_buffer.can_transform("base_link", "cam_optical", rclpy.time.Time()))
        for f in range(12):
            stamp = t0 + f * period
            joints.publish(conv.make_joint_state(kin.joint_names, kin.home, stamp, factory=factory))
            time.sleep(0.02)  # the joint state before its image
            image = conv.numpy_to_image(
                _wall(3.0 * f), "rgb8", factory=factory, stamp_ns=stamp, frame_id="cam_optical"
            )
            images.publish(image)
            time.sleep(0.01)  # the depth just after its image, as camera drivers do: the image waits for it
            depths.publish(
                conv.numpy_to_image(depth, "32FC1", factory=factory, stamp_ns=stamp, frame_id="cam_optical")
            )
            assert _wait(lambda f=f: node.odometry is not None and node.odometry.vo.frames > f), (
                node._last_problem
            )
        assert _wait(lambda: len(odoms) >= 12), f"{len(odoms)} odometry messages"
        last = odoms[-1]
        assert last.header.frame_id == "odom" and last.child_frame_id == "base_link"
        T = conv.pose_to_matrix(last.pose.pose)
        np.testing.assert_allclose(T[:3, 3], [0.0, -11 * 3.0 * 2.0 / 500.0, 0.0], atol=3e-3)  # right, metres
        assert last.pose.covariance[0] > 0
        # the TF of every frame carries exactly the image's stamp, and is sent before its odometry message
        tf_stamps = {
            conv.stamp_to_ns(t.header.stamp)
            for m in list(tfs)
            for t in m.transforms
            if t.header.frame_id == "odom" and t.child_frame_id == "base_link"
        }
        assert {t0 + f * period for f in range(12)} <= tf_stamps
        assert order[:24] == ["tf", "odometry"] * 12, order[:24]
        assert _wait(lambda: paths and len(paths[-1].poses) >= 12)
        assert _wait(lambda: statuses and statuses[-1]["frames"] >= 12)
        status = statuses[-1]
        assert status["visual"] >= 12 and status["arm_mask"] and status["frames_without_depth"] == 0
        assert status["rate_hz"] > 0 and status["ms_per_frame"] > 0
        assert 0 < status["tf_latency_p50_ms"] <= status["tf_latency_p95_ms"]

        # a wrong encoding on camera/image: refused, said, the chain untouched
        before = node.odometry.last
        images.publish(conv.numpy_to_image(depth, "32FC1", factory=factory, stamp_ns=t0 + 12 * period))
        assert _wait(lambda: node._counts["frames_refused"] == 1)
        assert "encoding" in node._last_problem and node.odometry.last is before

        # a burst faster than the VO: the newest frames win, the rest are dropped, nothing queues up
        dropped = node._slot.dropped
        for f in range(13, 33):
            stamp = t0 + f * period
            depths.publish(conv.numpy_to_image(depth, "32FC1", factory=factory, stamp_ns=stamp))
            images.publish(conv.numpy_to_image(_wall(3.0 * f), "rgb8", factory=factory, stamp_ns=stamp))
        assert _wait(lambda: node.odometry.last.stamp_ns == t0 + 32 * period)
        assert node._slot.dropped > dropped
        assert node.odometry.vo.frames < 12 + 20

        # the camera comes back at half the size: a new chain on the new intrinsics, said and counted
        half = np.ascontiguousarray(cv2.resize(_wall(0.0), (320, 240)))
        half_depth = np.full((240, 320), 2.0, np.float32)
        infos.publish(
            conv.make_camera_info(K * [[0.5], [0.5], [1]], 320, 240, t0, "cam_optical", factory=factory)
        )
        assert _wait(lambda: node._intrinsics[1] == 320)
        for f in range(40, 43):
            stamp = t0 + f * period
            images.publish(
                conv.numpy_to_image(half, "rgb8", factory=factory, stamp_ns=stamp, frame_id="cam_optical")
            )
            time.sleep(0.01)
            depths.publish(conv.numpy_to_image(half_depth, "32FC1", factory=factory, stamp_ns=stamp))
            assert _wait(
                lambda stamp=stamp: (o := node.odometry) is not None and o.last and o.last.stamp_ns == stamp
            )
        assert (
            node._counts["restarts"] == 1 and node.odometry.vo.width == 320 and node.odometry.vo.frames == 3
        )
    finally:
        executor.shutdown()
        for n in executor.get_nodes():
            n.destroy_node()
