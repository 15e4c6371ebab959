"""Message conversions against the real ROS 2 message definitions (rosbags Humble and Jazzy typestores).

Every message is built with the converters, serialised to CDR, deserialised (as a node or a bag reader
would receive it) and converted back; images must come back bit-exact.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import pose_from_xyz_rpy
from spatial_memory.msgs import conversions as conv
from spatial_memory.robot.description import TfEdge, urdf_tf_edges

REPO = Path(__file__).resolve().parents[2]
INTERFACES = REPO / "src" / "spatial_memory_interfaces"
JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]


@pytest.fixture(params=[Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY], ids=["humble", "jazzy"], scope="module")
def store(request):
    """A typestore of one distro, with our interface package's types registered."""
    ts = get_typestore(request.param)
    ts.register(_interface_types())
    return ts


@pytest.fixture
def factory(store) -> conv.RosbagsFactory:
    return conv.RosbagsFactory(store)


def _interface_types() -> dict:
    """Our .msg files, and each .srv split at '---' into `<Name>_Request` / `<Name>_Response` msgs."""
    types = {}
    for path in sorted((INTERFACES / "msg").glob("*.msg")):
        types |= get_types_from_msg(path.read_text(), f"spatial_memory_interfaces/msg/{path.stem}")
    for path in sorted((INTERFACES / "srv").glob("*.srv")):
        request, response = path.read_text().split("\n---\n")
        types |= get_types_from_msg(request, f"spatial_memory_interfaces/msg/{path.stem}_Request")
        types |= get_types_from_msg(response, f"spatial_memory_interfaces/msg/{path.stem}_Response")
    for path in sorted((INTERFACES / "action").glob("*.action")):
        parts = path.read_text().split("\n---\n")
        for part, text in zip(("Goal", "Result", "Feedback"), parts, strict=True):
            types |= get_types_from_msg(text, f"spatial_memory_interfaces/msg/{path.stem}_{part}")
    return types


def cdr_round_trip(store, msg):
    """Serialise to CDR and read back, like a subscriber receiving the message."""
    raw = store.serialize_cdr(msg, msg.__msgtype__)
    return store.deserialize_cdr(bytes(raw), msg.__msgtype__)


def raw_image(factory, *, encoding, height, width, step, data: bytes, bigendian: int = 0):
    """An Image message assembled by hand (to test padding and byte order independently of the encoder)."""
    return factory.new(
        "sensor_msgs/msg/Image",
        header=conv.make_header(5, "cam", factory),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=bigendian,
        step=step,
        data=np.frombuffer(data, dtype=np.uint8).copy(),
    )


# ----------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------

RNG = np.random.default_rng(7)
SAMPLES = {
    "rgb8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    "32FC1": RNG.normal(size=(5, 7)).astype(np.float32),
}


@pytest.mark.parametrize("encoding", sorted(SAMPLES))
def test_image_round_trip_is_exact(store, factory, encoding):
    image = SAMPLES[encoding]
    msg = conv.numpy_to_image(image, encoding, factory=factory, stamp_ns=1_500_000_007, frame_id="cam")
    back = cdr_round_trip(store, msg)
    assert back.encoding == encoding and back.step == image.shape[1] * image.itemsize * (
        3 if image.ndim == 3 else 1
    )
    out = conv.image_to_numpy(back)
    assert out.dtype == image.dtype and out.shape == image.shape
    np.testing.assert_array_equal(out, image)
    assert conv.stamp_to_ns(back.header.stamp) == 1_500_000_007 and back.header.frame_id == "cam"


def test_bgr8_is_swapped_on_the_wire_and_returned_as_rgb(factory):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200  # red
    msg = conv.numpy_to_image(rgb, "bgr8", factory=factory)
    assert np.asarray(msg.data).reshape(2, 2, 3)[0, 0].tolist() == [0, 0, 200]
    np.testing.assert_array_equal(conv.image_to_numpy(msg), rgb)


def test_bgr8_from_a_camera_driver_comes_out_rgb(store, factory):
    bgr_pixel = bytes([10, 20, 30])  # b, g, r
    msg = raw_image(factory, encoding="bgr8", height=1, width=1, step=3, data=bgr_pixel)
    assert conv.image_to_numpy(cdr_round_trip(store, msg))[0, 0].tolist() == [30, 20, 10]


@pytest.mark.parametrize("encoding", sorted(SAMPLES))
def test_row_padding_is_dropped(store, factory, encoding):
    image = SAMPLES[encoding]
    enc = conv.image_encoding(encoding)
    wire = image[..., ::-1] if encoding == "bgr8" else image
    row = (
        np.ascontiguousarray(wire, dtype=enc.dtype.newbyteorder("<"))
        .view(np.uint8)
        .reshape(image.shape[0], -1)
    )
    padded = np.concatenate([row, np.full((row.shape[0], 5), 0xAB, np.uint8)], axis=1)  # 5 junk bytes per row
    msg = raw_image(
        factory,
        encoding=encoding,
        height=image.shape[0],
        width=image.shape[1],
        step=padded.shape[1],
        data=padded.tobytes(),
    )
    np.testing.assert_array_equal(conv.image_to_numpy(cdr_round_trip(store, msg)), image)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_big_endian_images_come_back_in_native_order(store, factory, encoding):
    image = SAMPLES[encoding]
    big = image.astype(image.dtype.newbyteorder(">")).tobytes()
    step = image.shape[1] * image.itemsize + 2  # padded too
    rows = np.frombuffer(big, np.uint8).reshape(image.shape[0], -1)
    data = np.concatenate([rows, np.zeros((rows.shape[0], 2), np.uint8)], axis=1).tobytes()
    msg = raw_image(
        factory,
        encoding=encoding,
        height=image.shape[0],
        width=image.shape[1],
        step=step,
        data=data,
        bigendian=1,
    )
    out = conv.image_to_numpy(cdr_round_trip(store, msg))
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, image)


def test_decoded_image_owns_its_memory(factory):
    msg = conv.numpy_to_image(SAMPLES["mono8"], factory=factory)
    out = conv.image_to_numpy(msg)
    msg.data[:] = 0  # the message buffer is reused: the decoded array must not change
    np.testing.assert_array_equal(out, SAMPLES["mono8"])


def test_default_encoding_follows_dtype_and_shape(factory):
    assert [
        conv.numpy_to_image(SAMPLES[e], factory=factory).encoding for e in ("rgb8", "mono8", "16UC1")
    ] == [
        "rgb8",
        "mono8",
        "16UC1",
    ]
    assert conv.numpy_to_image(SAMPLES["32FC1"], factory=factory).encoding == "32FC1"


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_big_endian_arrays_are_published_little_endian(store, factory, encoding):
    big = SAMPLES[encoding].astype(SAMPLES[encoding].dtype.newbyteorder(">"))  # a big-endian file, say
    for given in (encoding, None):
        msg = conv.numpy_to_image(big, given, factory=factory)
        assert msg.encoding == encoding and msg.is_bigendian == 0
        assert bytes(msg.data) == bytes(conv.numpy_to_image(SAMPLES[encoding], factory=factory).data)
        np.testing.assert_array_equal(conv.image_to_numpy(cdr_round_trip(store, msg)), SAMPLES[encoding])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"encoding": "yuv422", "height": 1, "width": 1, "step": 2, "data": b"ab"},
            "unsupported image encoding",
        ),
        ({"encoding": "rgb8", "height": 2, "width": 4, "step": 10, "data": bytes(20)}, "step 10 is smaller"),
        (
            {"encoding": "16UC1", "height": 2, "width": 3, "step": 6, "data": bytes(6)},
            "has 6 bytes, expected",
        ),
        (
            {"encoding": "mono8", "height": 2, "width": 3, "step": 3, "data": bytes(7)},
            "has 7 bytes, expected",
        ),
        ({"encoding": "mono8", "height": 0, "width": 3, "step": 3, "data": b""}, "empty image"),
    ],
    ids=["unknown-encoding", "step-too-small", "8bit-data-for-16UC1", "size-mismatch", "empty"],
)
def test_malformed_images_are_rejected_clearly(store, factory, kwargs, match):
    msg = cdr_round_trip(store, raw_image(factory, **kwargs))
    with pytest.raises(InvalidInputError, match=match):
        conv.image_to_numpy(msg)


@pytest.mark.parametrize(
    ("array", "encoding", "match"),
    [
        (np.zeros((4, 4), np.uint16), "rgb8", r"shape \(H, W, 3\)"),
        (np.zeros((4, 4), np.uint8), "16UC1", "wrong bit depth for 16UC1"),
        (np.zeros((4, 4), np.float64), "32FC1", "wrong bit depth for 32FC1"),
        (np.zeros((4, 4), np.float64), None, "no image encoding for a float64"),
        (np.zeros((4, 4, 3), np.uint8), "rgba8", "unsupported image encoding"),
    ],
)
def test_arrays_that_do_not_fit_the_encoding_are_rejected(factory, array, encoding, match):
    with pytest.raises(InvalidInputError, match=match):
        conv.numpy_to_image(array, encoding, factory=factory)


def test_rclpy_style_byte_containers_decode_too():
    class Msg:  # rclpy hands `data` over as array.array('B'); bag tools sometimes as bytes
        height, width, step, encoding, is_bigendian = 1, 2, 2, "mono8", 0

    import array

    for data in (array.array("B", [3, 4]), b"\x03\x04", [3, 4]):
        Msg.data = data
        assert conv.image_to_numpy(Msg).tolist() == [[3, 4]]
    for data, match in (("ab", "got a str"), ([3.0, 4.5], "integers in 0..255"), (None, "sequence")):
        Msg.data = data
        with pytest.raises(InvalidInputError, match=match):
            conv.image_to_numpy(Msg)


# ----------------------------------------------------------------------------------------------------
# Poses and transforms
# ----------------------------------------------------------------------------------------------------

POSES = [
    np.eye(4),
    pose_from_xyz_rpy((0.3, -0.2, 1.1), (0.1, -0.7, 2.9)),
    pose_from_xyz_rpy((-5.0, 2.0, 0.0), (np.pi, 0.0, -np.pi / 2)),  # w = 0 edge case
]


@pytest.mark.parametrize("T", POSES)
def test_poses_and_transforms_round_trip(store, factory, T):
    pose = cdr_round_trip(store, conv.matrix_to_pose_stamped(T, 42, "odom", factory=factory))
    tf = cdr_round_trip(store, conv.matrix_to_transform_stamped(T, 42, "odom", "cam", factory=factory))
    assert (
        pose.header.frame_id == "odom"
        and tf.child_frame_id == "cam"
        and conv.stamp_to_ns(tf.header.stamp) == 42
    )
    for T_back in (
        conv.msg_to_matrix(pose),
        conv.pose_to_matrix(pose.pose),
        conv.msg_to_matrix(tf),
        conv.transform_to_matrix(tf.transform),
    ):
        np.testing.assert_allclose(T_back, T, atol=1e-12)


def test_quaternion_order_is_ros_xyzw(factory):
    T = pose_from_xyz_rpy((0, 0, 0), (0, 0, np.pi / 2))  # 90 deg about z
    q = conv.matrix_to_pose(T, factory=factory).orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)


def test_pose_with_covariance_stamped_reads_through(store, factory):
    T = POSES[1]
    msg = factory.new(
        "geometry_msgs/msg/PoseWithCovarianceStamped",
        header=conv.make_header(0, "base", factory),
        pose=factory.new(
            "geometry_msgs/msg/PoseWithCovariance", pose=conv.matrix_to_pose(T, factory=factory)
        ),
    )
    np.testing.assert_allclose(conv.msg_to_matrix(cdr_round_trip(store, msg)), T, atol=1e-12)


@pytest.mark.parametrize(
    ("xyz", "xyzw", "match"),
    [
        ((np.nan, 0, 0), (0, 0, 0, 1), "position contains NaN"),
        ((0, 0, 0), (0, 0, 0, 0), "not a unit quaternion"),
        ((0, 0, 0), (0, 0, 0, 2), "not a unit quaternion"),
        ((0, 0, 0), (0, np.inf, 0, 1), "orientation contains NaN or infinite"),
    ],
)
def test_bad_poses_are_rejected(factory, xyz, xyzw, match):
    pose = factory.new(
        "geometry_msgs/msg/Pose",
        position=factory.new("geometry_msgs/msg/Point", x=xyz[0], y=xyz[1], z=xyz[2]),
        orientation=factory.new("geometry_msgs/msg/Quaternion", x=xyzw[0], y=xyzw[1], z=xyzw[2], w=xyzw[3]),
    )
    with pytest.raises(InvalidInputError, match=match):
        conv.pose_to_matrix(pose)


def test_non_rigid_matrices_are_not_published(factory):
    with pytest.raises(InvalidInputError, match="not orthonormal"):
        conv.matrix_to_pose(np.diag([2.0, 1.0, 1.0, 1.0]), factory=factory)


def test_stamps_split_into_sec_and_nanosec(factory):
    stamp = conv.ns_to_stamp(3_000_000_001, factory)
    assert (stamp.sec, stamp.nanosec) == (3, 1)
    assert conv.stamp_to_ns(conv.ns_to_stamp(-1, factory)) == -1
    with pytest.raises(InvalidInputError, match="int32 seconds"):
        conv.ns_to_stamp(2**31 * 1_000_000_000, factory)


@pytest.mark.parametrize(
    ("sec", "nanosec", "match"),
    [
        (1, 2_000_000_000, r"nanosec 2000000000 is outside \[0, 1e9\)"),
        (1, 1_000_000_000, "nanosec 1000000000 is outside"),
        (1, -1, "nanosec -1 is outside"),
        (2**31, 0, "int32 seconds"),
        (1.5, 0, "sec must be an integer"),
        (1, None, "nanosec must be an integer"),
    ],
)
def test_malformed_stamps_are_refused(sec, nanosec, match):
    class Time:  # a hand-made stamp: real messages cannot hold these values, a careless caller can
        pass

    stamp = Time()
    stamp.sec, stamp.nanosec = sec, nanosec
    with pytest.raises(InvalidInputError, match=match):
        conv.stamp_to_ns(stamp)
    stamp.sec, stamp.nanosec = 2**31 - 1, 999_999_999  # the largest valid stamp reads exactly
    assert conv.stamp_to_ns(stamp) == (2**31 - 1) * 1_000_000_000 + 999_999_999


# ----------------------------------------------------------------------------------------------------
# Joint states
# ----------------------------------------------------------------------------------------------------


def test_joint_state_in_any_order_with_extra_joints(store, factory):
    q = np.linspace(-1.0, 1.0, 7)
    names = ["fr3_finger_joint1", *reversed(JOINTS)]
    positions = [0.04, *reversed(q)]
    msg = cdr_round_trip(store, conv.make_joint_state(names, positions, 7, factory=factory))
    np.testing.assert_array_equal(conv.joint_positions(msg, JOINTS), q)


def _joint_state(factory, names, positions):
    return factory.new(
        "sensor_msgs/msg/JointState",
        header=conv.make_header(0, "", factory),
        name=list(names),
        position=np.asarray(positions, dtype=np.float64),
    )


@pytest.mark.parametrize(
    ("names", "positions", "match"),
    [
        (JOINTS[:6], [0.0] * 6, "joint 'fr3_joint7' is missing"),
        (JOINTS, [0.0] * 6, "joint 'fr3_joint7' has no position"),
        (JOINTS[:6], [0.0] * 7, r"position\[6\] has no joint name"),
        (JOINTS, [0.0, 0.0, np.nan, 0.0, 0.0, 0.0, 0.0], "joint 'fr3_joint3' position is nan"),
        ([*JOINTS, "fr3_joint2"], [0.0] * 8, "joint 'fr3_joint2' appears more than once"),
    ],
    ids=["missing", "fewer-positions", "more-positions", "nan", "duplicate"],
)
def test_bad_joint_states_name_the_joint(store, factory, names, positions, match):
    msg = cdr_round_trip(store, _joint_state(factory, names, positions))
    with pytest.raises(InvalidInputError, match=match):
        conv.joint_positions(msg, JOINTS)


# ----------------------------------------------------------------------------------------------------
# Markers, keyframes, TF from FK, our interfaces
# ----------------------------------------------------------------------------------------------------


def test_keyframe_markers(store, factory):
    T1, T2 = POSES[1], POSES[2]
    msg = conv.keyframe_markers(
        [(1, T1, (255, 0, 0)), (2, T2, (0, 128, 255))], frame_id="base", stamp_ns=9, factory=factory
    )
    back = cdr_round_trip(store, msg)
    markers = back.markers
    assert markers[0].action == conv.MARKER_DELETEALL
    assert [(m.ns, m.id, m.type) for m in markers[1:]] == [
        ("keyframe_arrows", 1, conv.MARKER_ARROW),
        ("keyframe_labels", 1, conv.MARKER_TEXT),
        ("keyframe_arrows", 2, conv.MARKER_ARROW),
        ("keyframe_labels", 2, conv.MARKER_TEXT),
    ]
    assert markers[2].text == "1" and markers[4].text == "2"
    assert markers[1].color.r == pytest.approx(1.0) and markers[3].color.b == pytest.approx(1.0)
    # the arrow (marker +x) points along the camera's optical axis (+z)
    arrow = conv.pose_to_matrix(markers[1].pose)
    np.testing.assert_allclose(arrow[:3, 0], T1[:3, 2], atol=1e-12)
    np.testing.assert_allclose(arrow[:3, 3], T1[:3, 3], atol=1e-12)
    assert all(m.header.frame_id == "base" for m in markers)


def test_keyframe_message_and_promote_response(store, factory):
    kf = conv.keyframe_to_msg(
        frame_id=12,
        number=3,
        T_world_cam=POSES[1],
        rgb=(10, 20, 30),
        stamp_ns=77,
        world_frame="base",
        factory=factory,
    )
    response = factory.new(
        "spatial_memory_interfaces/msg/PromoteKeyframe_Response", success=True, message="ok", keyframe=kf
    )
    back = cdr_round_trip(store, response)
    assert back.success and back.keyframe.frame_id == 12 and back.keyframe.number == 3
    assert back.keyframe.color.g == pytest.approx(20 / 255) and back.keyframe.header.frame_id == "base"
    np.testing.assert_allclose(conv.pose_to_matrix(back.keyframe.pose), POSES[1], atol=1e-12)


def test_query_pose_service_round_trips(store, factory):
    request = factory.new(
        "spatial_memory_interfaces/msg/QueryPose_Request",
        query=conv.numpy_to_image(SAMPLES["rgb8"], factory=factory),
        backend="kinaema",
    )
    back_request = cdr_round_trip(store, request)
    np.testing.assert_array_equal(conv.image_to_numpy(back_request.query), SAMPLES["rgb8"])
    covariance = np.arange(36, dtype=np.float64)
    response = factory.new(
        "spatial_memory_interfaces/msg/QueryPose_Response",
        success=False,
        message="no memory backend is configured yet",
        pose=factory.new(
            "geometry_msgs/msg/PoseWithCovarianceStamped",
            header=conv.make_header(11, "base_link", factory),
            pose=factory.new(
                "geometry_msgs/msg/PoseWithCovariance",
                pose=conv.matrix_to_pose(POSES[1], factory=factory),
                covariance=covariance,
            ),
        ),
        confidence=0.25,
        seen_probability=0.125,
        matched_keyframe_id=-1,
    )
    back = cdr_round_trip(store, response)
    assert back.seen_probability == pytest.approx(0.125)
    assert (back.success, back.message, back.matched_keyframe_id) == (
        False,
        "no memory backend is configured yet",
        -1,
    )
    assert back.confidence == pytest.approx(0.25)
    np.testing.assert_array_equal(back.pose.pose.covariance, covariance)
    np.testing.assert_allclose(conv.msg_to_matrix(back.pose), POSES[1], atol=1e-12)


def test_interface_files_parse_into_the_expected_fields():
    types = _interface_types()
    fields = {name.rsplit("/", 1)[1]: [f for f, _ in defs[1]] for name, defs in types.items()}
    assert fields["QueryPose_Request"] == ["query", "backend", "searching_since"]
    assert fields["QueryPose_Response"] == [
        "success",
        "message",
        "pose",
        "confidence",
        "seen_probability",
        "matched_keyframe_id",
        "inliers",
    ]
    assert fields["PromoteKeyframe_Request"] == ["frame_id", "latest", "stamp"]
    assert fields["GoToPicture_Goal"] == ["picture", "backend", "budget_s"]
    assert fields["GoToPicture_Result"] == ["status", "reason", "elapsed_s"]
    assert fields["GoToPicture_Feedback"] == [
        "answer",
        "confidence",
        "seen_probability",
        "distance_m",
        "subtask",
        "stale",
    ]
    assert fields["Keyframe"] == ["header", "frame_id", "number", "pose", "color"]


URDF = """<robot name="r"><link name="a"/><link name="b"/><link name="c"/>
<joint name="j1" type="revolute"><parent link="a"/><child link="b"/></joint>
<joint name="j2" type="fixed"><parent link="b"/><child link="c"/></joint></robot>"""


def test_fk_transforms_follow_the_urdf_tree(store, factory):
    edges = urdf_tf_edges(URDF)
    assert edges == [TfEdge("a", "b", False), TfEdge("b", "c", True)]
    T_ab, T_bc = POSES[1], POSES[2]
    poses = {"a": np.eye(4), "b": T_ab, "c": T_ab @ T_bc}
    tfs = [cdr_round_trip(store, t) for t in conv.fk_transforms(poses, edges, 5, factory=factory)]
    assert [(t.header.frame_id, t.child_frame_id) for t in tfs] == [("a", "b"), ("b", "c")]
    np.testing.assert_allclose(conv.msg_to_matrix(tfs[1]), T_bc, atol=1e-12)
    with pytest.raises(InvalidInputError, match="no pose for frame"):
        conv.fk_transforms({"a": np.eye(4)}, edges, 5, factory=factory)


def test_rosbags_factory_rejects_unknown_fields(factory):
    with pytest.raises(InvalidInputError, match="has no field"):
        factory.new("std_msgs/msg/Header", frame="x")


def test_importing_the_conversions_does_not_import_rclpy():
    code = "import sys, spatial_memory.msgs.conversions; sys.exit('rclpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ----------------------------------------------------------------------------------------------------
# Camera info, odometry, TF messages
# ----------------------------------------------------------------------------------------------------

K_SAMPLE = np.array([[120.5, 0.0, 63.5], [0.0, 121.0, 47.5], [0.0, 0.0, 1.0]])


def test_camera_info_round_trip_is_exact(store, factory):
    msg = cdr_round_trip(store, conv.make_camera_info(K_SAMPLE, 128, 96, 42, "cam_optical", factory=factory))
    assert (msg.width, msg.height, msg.distortion_model, msg.header.frame_id) == (
        128,
        96,
        "plumb_bob",
        "cam_optical",
    )
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4)[:, :3], K_SAMPLE)
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3))
    K, width, height = conv.camera_info_to_intrinsics(msg)
    np.testing.assert_array_equal(K, K_SAMPLE)
    assert (width, height) == (128, 96)


def test_camera_info_rejects_distortion_and_bad_intrinsics(factory):
    msg = conv.make_camera_info(K_SAMPLE, 128, 96, 0, "cam", factory=factory)
    msg.d[0] = 0.1
    with pytest.raises(InvalidInputError, match="distortion"):
        conv.camera_info_to_intrinsics(msg)
    with pytest.raises(InvalidInputError, match="not a pinhole"):
        conv.make_camera_info(np.eye(3) * [1, 1, 2], 128, 96, 0, "cam", factory=factory)
    with pytest.raises(InvalidInputError, match="size must be positive"):
        conv.make_camera_info(K_SAMPLE, 0, 96, 0, "cam", factory=factory)


def test_odometry_round_trip(store, factory):
    twist = np.array([0.5, -0.1, 0.0, 0.0, 0.0, 0.3])
    cov = np.diag([1e-4, 1e-4, 0.0, 0.0, 0.0, 4e-4])
    msg = conv.make_odometry(
        POSES[1], 77, "odom", "base_link", factory=factory, twist=twist, pose_covariance=cov
    )
    back = cdr_round_trip(store, msg)
    assert (back.header.frame_id, back.child_frame_id, conv.stamp_to_ns(back.header.stamp)) == (
        "odom",
        "base_link",
        77,
    )
    np.testing.assert_allclose(conv.msg_to_matrix(back.pose), POSES[1], atol=1e-12)
    np.testing.assert_array_equal(conv.twist_to_vector(back.twist.twist), twist)
    np.testing.assert_array_equal(np.asarray(back.pose.covariance).reshape(6, 6), cov)
    with pytest.raises(InvalidInputError, match="twist must be 6"):
        conv.make_odometry(POSES[1], 0, "odom", "base_link", factory=factory, twist=np.zeros(3))


def test_tf_message_round_trip(store, factory):
    edges = [
        conv.matrix_to_transform_stamped(T, 9, "odom", f"f{i}", factory=factory) for i, T in enumerate(POSES)
    ]
    back = cdr_round_trip(store, conv.make_tf_message(edges, factory=factory))
    assert [t.child_frame_id for t in back.transforms] == ["f0", "f1", "f2"]
    np.testing.assert_allclose(conv.msg_to_matrix(back.transforms[2]), POSES[2], atol=1e-12)


# ----------------------------------------------------------------------------------------------------
# Diagnostics
# ----------------------------------------------------------------------------------------------------


def test_diagnostic_array_serialises_as_the_real_message(store, factory):
    status = conv.diagnostic_status(
        "vo_node: status",
        1,
        "frames_refused +2",
        [("rate_hz", "14.9"), ("restarts", "0")],
        "vo_node",
        factory=factory,
    )
    msg = conv.diagnostic_array([status], 1_500_000_000, factory=factory)
    raw = store.serialize_cdr(msg, "diagnostic_msgs/msg/DiagnosticArray")
    back = store.deserialize_cdr(raw, "diagnostic_msgs/msg/DiagnosticArray")
    (got,) = back.status
    assert (got.level, got.name, got.message, got.hardware_id) == (
        1,
        "vo_node: status",
        "frames_refused +2",
        "vo_node",
    )
    assert [(kv.key, kv.value) for kv in got.values] == [("rate_hz", "14.9"), ("restarts", "0")]
    assert conv.stamp_to_ns(back.header.stamp) == 1_500_000_000


@pytest.mark.parametrize("level", [-1, 4, 1.0, None])
def test_diagnostic_status_refuses_a_level_ros_does_not_have(factory, level):
    with pytest.raises(InvalidInputError, match="diagnostic level"):
        conv.diagnostic_status("n", level, "", [], "", factory=factory)
