"""memory_node and /query_pose forwarding: QueryPose messages from MemoryAnswers checked against the real
message definitions (rosbags Humble and Jazzy typestores + our .srv), and, where rclpy is present, the
node in-process (images + TF in, memory/query and memory/status out, spatial_context_node forwarding)."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import invert, yaw_pose
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.engine import EngineConfig, MemoryAnswer, MemoryEngine, level_camera_pose
from spatial_memory.memory.registry import build_model, save_checkpoint
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import configured_memory_checkpoint, memory_node_launch
from spatial_memory.ros import memory_messages as mm

REPO = Path(__file__).resolve().parents[2]
SRV = REPO / "src" / "spatial_memory_interfaces" / "srv" / "QueryPose.srv"
RESPONSE = "spatial_memory_interfaces/msg/QueryPose_Response"
SMALL_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)


@pytest.fixture(params=[Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY], ids=["humble", "jazzy"], scope="module")
def store(request):
    ts = get_typestore(request.param)
    request_text, response_text = SRV.read_text().split("\n---\n")
    ts.register(get_types_from_msg(request_text, "spatial_memory_interfaces/msg/QueryPose_Request"))
    ts.register(get_types_from_msg(response_text, RESPONSE))
    return ts


def _round_trip(store, msg):
    raw = store.serialize_cdr(msg, msg.__msgtype__)
    return store.deserialize_cdr(bytes(raw), msg.__msgtype__)


def _answer(x=1.5, y=-0.5, yaw=2.0, sigma=0.8) -> MemoryAnswer:
    return MemoryAnswer(
        T_base_query=level_camera_pose(x, y, yaw, 1.45),
        x=x,
        y=y,
        yaw=yaw,
        sigma_m=sigma,
        confidence=1.0 / (1.0 + sigma),
        seen_probability=0.9,
        backend="kinaema",
        steps=12,
    )


def _srv_response_fields() -> list[str]:
    lines = SRV.read_text().split("\n---\n")[1].splitlines()
    return [ln.split("#")[0].split()[1] for ln in lines if ln.split("#")[0].strip()]


# ----------------------------------------------------------------------------------------------------
# pure: messages


def test_the_srv_response_has_the_fields_we_fill():
    assert _srv_response_fields() == list(mm.QUERY_RESPONSE_FIELDS)  # copied when forwarded: all of them


def test_a_refined_answer_carries_its_inliers_heading_variance_and_note(store):
    factory = conv.RosbagsFactory(store)
    answer = dataclasses.replace(
        _answer(sigma=0.17), backend="refined", inliers=87, note="refined: 87 PnP inliers against view 4",
        sigma_yaw_rad=math.radians(2.5),
    )  # fmt: skip
    msg = mm.fill_query_response(
        factory.new(RESPONSE), answer, frame_id="base_link", stamp_ns=1, factory=factory
    )
    back = _round_trip(store, msg)
    summary = mm.query_response_summary(back)
    assert summary["inliers"] == 87 and "87 PnP inliers" in summary["message"]
    cov = np.diag(np.asarray(back.pose.pose.covariance).reshape(6, 6))
    np.testing.assert_allclose(cov, [0.17**2, 0.17**2, 0, 0, 0, math.radians(2.5) ** 2])
    failure = mm.fill_query_failure(factory.new(RESPONSE), "no", frame_id="b", stamp_ns=1, factory=factory)
    assert _round_trip(store, failure).inliers == -1


def test_answer_to_response_round_trips_through_cdr(store):
    factory = conv.RosbagsFactory(store)
    answer = _answer()
    msg = mm.fill_query_response(
        factory.new(RESPONSE), answer, frame_id="base_link", stamp_ns=5 * 10**9 + 7, factory=factory
    )
    back = _round_trip(store, msg)
    summary = mm.query_response_summary(back)
    assert summary["success"] and summary["frame_id"] == "base_link" and summary["stamp_ns"] == 5 * 10**9 + 7
    assert (summary["x"], summary["y"], summary["z"]) == pytest.approx((1.5, -0.5, 1.45))
    assert summary["yaw"] == pytest.approx(2.0) and summary["sigma_m"] == pytest.approx(0.8)
    assert summary["confidence"] == pytest.approx(answer.confidence) and summary["matched_keyframe_id"] == -1
    assert summary["seen_probability"] == pytest.approx(answer.seen_probability)
    cov = np.asarray(back.pose.pose.covariance).reshape(6, 6)
    np.testing.assert_allclose(np.diag(cov), [0.64, 0.64, 0, 0, 0, math.pi**2])
    np.testing.assert_allclose(conv.pose_to_matrix(back.pose.pose.pose), answer.T_base_query, atol=1e-12)
    assert "kinaema" in summary["message"] and "12 steps" in summary["message"]


def test_failure_response_round_trips(store):
    factory = conv.RosbagsFactory(store)
    msg = mm.fill_query_failure(
        factory.new(RESPONSE), "no answer: empty", frame_id="base_link", stamp_ns=1, factory=factory
    )
    summary = mm.query_response_summary(_round_trip(store, msg))
    assert not summary["success"] and summary["message"] == "no answer: empty"
    assert summary["confidence"] == 0.0 and summary["matched_keyframe_id"] == -1 and summary["x"] == 0.0
    assert summary["seen_probability"] == 0.0
    target = factory.new(RESPONSE)
    copied = mm.copy_query_response(msg, target)
    assert copied.message == "no answer: empty" and copied.seen_probability == 0.0


def test_query_and_camera_images(store):
    factory = conv.RosbagsFactory(store)
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    for encoding in ("rgb8", "bgr8"):
        msg = _round_trip(
            store,
            conv.numpy_to_image(rgb, encoding, factory=factory),
        )
        np.testing.assert_array_equal(mm.query_image_rgb(msg), rgb)
        np.testing.assert_array_equal(mm.camera_image_rgb(msg), rgb)
    mono = conv.numpy_to_image(rgb[..., 0], "mono8", factory=factory)
    assert mm.query_image_rgb(mono).shape == (6, 8, 3)
    with pytest.raises(InvalidInputError, match="rgb8 or bgr8"):
        mm.camera_image_rgb(mono)
    depth = conv.numpy_to_image(np.zeros((4, 4), np.uint16), factory=factory)
    with pytest.raises(InvalidInputError, match="query encoding"):
        mm.query_image_rgb(depth)


def test_the_search_start_of_a_query(store):
    """QueryPose's `searching_since` (builtin_interfaces/Time, from the .srv): zero means not searching,
    a stamp is read in nanoseconds, a malformed one is refused."""
    factory = conv.RosbagsFactory(store)
    request = factory.new("spatial_memory_interfaces/msg/QueryPose_Request")
    assert mm.searching_since_ns(_round_trip(store, request)) is None  # a request left as built
    request.searching_since = conv.ns_to_stamp(12_500_000_000, factory)
    assert mm.searching_since_ns(_round_trip(store, request)) == 12_500_000_000
    request.searching_since.nanosec = 2_000_000_000
    with pytest.raises(InvalidInputError, match="nanosec"):
        mm.searching_since_ns(request)


def test_configured_checkpoint(tmp_path):
    shipped = Path(configured_memory_checkpoint(REPO / "config" / "sim.yaml"))
    assert shipped.name == "kinaema_indoor64.pt" and (REPO / "models" / shipped.name).is_file()
    assert configured_memory_checkpoint(REPO / "config" / "robot.yaml") == ""  # a real robot brings its own
    assert configured_memory_checkpoint(REPO / "config" / "robot.yaml", "/x.pt") == "/x.pt"
    params = tmp_path / "p.yaml"
    params.write_text("memory_node:\n  ros__parameters:\n    engine:\n      checkpoint: /m.pt\n")
    assert configured_memory_checkpoint(params) == "/m.pt"
    assert configured_memory_checkpoint(tmp_path / "missing.yaml") == ""


def test_when_the_launch_files_start_memory_node(tmp_path):
    sim, robot = REPO / "config" / "sim.yaml", REPO / "config" / "robot.yaml"
    checkpoint, why = memory_node_launch("auto", sim)
    assert Path(checkpoint).is_file() and why == ""  # the shipped model
    assert (
        memory_node_launch("false", sim)[0] == ""
        and "use_memory:=false" in memory_node_launch("false", sim)[1]
    )
    checkpoint, why = memory_node_launch("auto", robot)
    assert checkpoint == "" and "no checkpoint file ('none given')" in why and "memory_checkpoint:=" in why
    missing = str(tmp_path / "nope.pt")
    assert memory_node_launch("auto", robot, missing) == (
        "",
        f"memory_node not started: no checkpoint file "
        f"({missing!r}); /query_pose will answer "
        "success=false. Start it with "
        "memory_checkpoint:=/path/to/model.pt",
    )
    assert memory_node_launch("true", robot, missing) == (
        missing,
        "",
    )  # starts, then stops with a clear error


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("memory") / "kinaema.pt"
    model = build_model("kinaema", {"slots": 8, "dim": 32, "heads": 2}, encoder_config=SMALL_ENCODER)
    save_checkpoint(path, model, ImageEncoder(SMALL_ENCODER))
    return path


def test_status_json_of_an_engine(checkpoint):
    engine = MemoryEngine(EngineConfig(checkpoint=str(checkpoint)))
    engine.update(np.zeros((32, 32, 3), np.uint8), T_world_base=np.eye(4), stamp_ns=3)
    status = json.loads(mm.status_json({**engine.status(), "images_used": 1}))
    assert status["steps"] == 1 and status["last_stamp_ns"] == 3 and status["backend"] == "kinaema"


# ----------------------------------------------------------------------------------------------------
# rclpy: the nodes in-process


def _call(node, srv_type, name, request, timeout=10.0):
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), f"{name} not offered"
    future = client.call_async(request)
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(timeout), f"{name} did not answer"
    return future.result()


@pytest.mark.ros
def test_memory_node_and_query_pose_forwarding(ros, checkpoint):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from tf2_msgs.msg import TFMessage

    from spatial_memory.ros.memory_node import MemoryNode
    from spatial_memory.ros.spatial_context_node import SpatialContextNode
    from spatial_memory_interfaces.srv import QueryPose

    factory = conv.RclpyFactory()
    params = [
        Parameter("engine.checkpoint", value=str(checkpoint)),
        Parameter("engine.resize", value="crop"),
        Parameter("update_rate_hz", value=50.0),
    ]
    memory = MemoryNode(parameter_overrides=params)
    probe = ros.create_node("memory_test_probe")
    executor = MultiThreadedExecutor(num_threads=4)
    for n in (memory, probe):
        executor.add_node(n)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    statuses, shown = [], []
    probe.create_subscription(String, topics.MEMORY_STATUS, lambda m: statuses.append(json.loads(m.data)), 10)
    probe.create_subscription(PoseWithCovarianceStamped, topics.MEMORY_ANSWER, shown.append, 10)
    tf_pub = probe.create_publisher(TFMessage, topics.TF, 100)
    images = probe.create_publisher(Image, topics.CAMERA_IMAGE, 10)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    t0 = 1_700_000_000 * 10**9
    try:
        empty = _call(
            probe,
            QueryPose,
            topics.MEMORY_QUERY,
            QueryPose.Request(query=conv.numpy_to_image(frames[0], "rgb8", factory=factory)),
        )
        assert not empty.success and "empty" in empty.message
        for i, frame in enumerate(frames):
            stamp = t0 + i * 10**8
            T = yaw_pose(0.2 * i, 0.0, 0.1 * i)
            tf = conv.matrix_to_transform_stamped(T, stamp, "odom", "base_link", factory=factory)
            for _ in range(3):
                tf_pub.publish(TFMessage(transforms=[tf]))
                images.publish(conv.numpy_to_image(frame, "rgb8", factory=factory, stamp_ns=stamp))
                time.sleep(0.05)
                if memory.engine.steps > i:
                    break
        deadline = time.monotonic() + 5
        while memory.engine.steps < len(frames) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert memory.engine.steps >= 3
        query = QueryPose.Request(query=conv.numpy_to_image(frames[1], "bgr8", factory=factory))
        answer = _call(probe, QueryPose, topics.MEMORY_QUERY, query)
        assert answer.success and answer.pose.header.frame_id == "base_link" and 0 < answer.confidence < 1
        deadline = time.monotonic() + 5
        while not shown and time.monotonic() < deadline:
            time.sleep(0.05)
        assert shown and shown[-1].pose == answer.pose.pose  # the latest answer, for RViz
        other = _call(
            probe, QueryPose, topics.MEMORY_QUERY, QueryPose.Request(query=query.query, backend="gru")
        )
        assert not other.success and "not 'gru'" in other.message
        searching = QueryPose.Request(query=query.query, searching_since=conv.ns_to_stamp(10**9, factory))
        assert _call(probe, QueryPose, topics.MEMORY_QUERY, searching).success  # a search start is fine
        deadline = time.monotonic() + 3
        while not statuses and time.monotonic() < deadline:
            time.sleep(0.05)
        assert statuses and statuses[-1]["backend"] == "kinaema"

        context = SpatialContextNode(
            parameter_overrides=[Parameter("mode", value="mobile"), Parameter("world_frame", value="odom")]
        )
        executor.add_node(context)
        forwarded = _call(probe, QueryPose, topics.QUERY_POSE, query)
        assert forwarded.success and forwarded.message == answer.message
        assert mm.query_response_summary(forwarded)["x"] == pytest.approx(
            mm.query_response_summary(answer)["x"], abs=1e-6
        )
        # the answer is relative to the base at the memory's newest frame, and says how likely it was seen
        summary = mm.query_response_summary(answer)
        assert summary["stamp_ns"] == memory.engine.last_stamp_ns and 0 < summary["seen_probability"] < 1
        black = _call(
            probe,
            QueryPose,
            topics.MEMORY_QUERY,
            QueryPose.Request(
                query=conv.numpy_to_image(np.zeros((48, 64, 3), np.uint8), "rgb8", factory=factory)
            ),
        )
        assert not black.success and "nothing to recognise" in black.message

        def publish_at(stamp: int, frame: np.ndarray) -> None:
            tf = conv.matrix_to_transform_stamped(np.eye(4), stamp, "odom", "base_link", factory=factory)
            tf_pub.publish(TFMessage(transforms=[tf]))
            time.sleep(0.05)
            images.publish(conv.numpy_to_image(frame, "rgb8", factory=factory, stamp_ns=stamp))

        def wait_for(condition) -> bool:
            deadline = time.monotonic() + 5
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.05)
            return condition()

        steps, last = memory.engine.steps, memory.engine.last_stamp_ns
        publish_at(last - 5 * 10**7, frames[2])  # 50 ms late: out of order, dropped and counted
        assert wait_for(lambda: memory.engine.counters["frames_dropped_late"] == 1)
        assert (memory.engine.steps, memory.engine.last_stamp_ns) == (steps, last)
        publish_at(last - 3 * 10**9, frames[3])  # 3 s back: time jumped, the memory starts again
        assert wait_for(lambda: memory.engine.counters["time_jump_resets"] == 1)
        assert memory.engine.steps == 1 and memory.engine.last_stamp_ns == last - 3 * 10**9
        executor.remove_node(memory)
        memory.destroy_node()
        deadline = time.monotonic() + 5
        while context._memory.service_is_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        absent = _call(probe, QueryPose, topics.QUERY_POSE, query)
        assert not absent.success and "memory_node is not running" in absent.message
    finally:
        executor.shutdown()
        for n in executor.get_nodes():
            n.destroy_node()


@pytest.mark.ros
def test_memory_node_refines_with_depth_from_its_own_topics(ros, checkpoint):
    """Rendered RGB-D frames of a house with camera_info and TF (odom -> base_link -> camera): the node pairs
    each frame it takes with its depth (published after the image, as drivers do) and answers 'refined'."""
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from spatial_memory.memory.poses import planar_target
    from spatial_memory.ros.memory_node import MemoryNode
    from spatial_memory.sim.live import LiveSim, LiveSimConfig, LiveWorldConfig
    from spatial_memory_interfaces.srv import QueryPose

    sim = LiveSim(LiveSimConfig(world=LiveWorldConfig(preset="house", seed=1000)))
    frames = []
    while len(frames) < 12:
        sim.command_velocity(0.0, 0.6)
        tick = sim.tick()
        f = tick.camera("camera")
        if f is not None and (not frames or tick.stamp_ns - frames[-1][-1] >= 2e8):
            frames.append((f, tick.T_world_base, tick.stamp_ns))
    factory = conv.RclpyFactory()
    params = [Parameter("engine.checkpoint", value=str(checkpoint)), Parameter("update_rate_hz", value=50.0)]
    memory = MemoryNode(parameter_overrides=params)
    probe = ros.create_node("memory_refine_probe")
    executor = MultiThreadedExecutor(num_threads=4)
    for n in (memory, probe):
        executor.add_node(n)
    threading.Thread(target=executor.spin, daemon=True).start()
    tf_pub = probe.create_publisher(TFMessage, topics.TF, 100)
    pubs = {t: probe.create_publisher(m, t, 10) for t, m in (
        (topics.CAMERA_IMAGE, Image), (topics.CAMERA_DEPTH, Image), (topics.CAMERA_INFO, CameraInfo)
    )}  # fmt: skip
    t0 = 1_700_000_000 * 10**9
    try:
        for i, (f, T_base, stamp) in enumerate(frames):
            stamp += t0
            T_base_cam = invert(T_base) @ f.T_world_cam
            tfs = [
                conv.matrix_to_transform_stamped(T_base, stamp, "odom", "base_link", factory=factory),
                conv.matrix_to_transform_stamped(T_base_cam, stamp, "base_link", f.frame_id, factory=factory),
            ]
            h, w = f.depth.shape
            for _ in range(3):
                tf_pub.publish(TFMessage(transforms=tfs))
                pubs[topics.CAMERA_INFO].publish(
                    conv.make_camera_info(f.K, w, h, stamp, f.frame_id, factory=factory)
                )
                time.sleep(0.03)
                pubs[topics.CAMERA_IMAGE].publish(
                    conv.numpy_to_image(f.rgb, "rgb8", factory=factory, stamp_ns=stamp, frame_id=f.frame_id)
                )
                time.sleep(0.03)
                pubs[topics.CAMERA_DEPTH].publish(
                    conv.numpy_to_image(
                        f.depth, "32FC1", factory=factory, stamp_ns=stamp, frame_id=f.frame_id
                    )
                )
                time.sleep(0.05)
                if memory.engine.steps > i:
                    break
        deadline = time.monotonic() + 5
        while memory.memory.status()["views_stored"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = memory.memory.status()
        assert status["views_stored"] >= 3 and status["backends"] == ["kinaema", "keyframes", "refined"]
        T_true = frames[5][0].T_world_cam.copy()
        T_true[:3, 3] += 0.2 * T_true[:3, 0]
        rgb, _ = sim.sim.render_view(T_true)
        request = QueryPose.Request(
            query=conv.numpy_to_image(rgb, "rgb8", factory=factory), backend="refined"
        )
        answer = mm.query_response_summary(_call(probe, QueryPose, topics.MEMORY_QUERY, request))
        assert answer["success"] and answer["message"].startswith("refined:") and answer["inliers"] >= 25
        truth = planar_target(invert(frames[-1][1]) @ T_true)  # relative to the base at the newest frame
        assert math.hypot(answer["x"] - truth[0], answer["y"] - truth[1]) < 0.05
        request.backend = "keyframes"
        assert _call(probe, QueryPose, topics.MEMORY_QUERY, request).success
        timing = memory.status()  # each kind of work timed, answers per backend
        assert timing["update_ms"]["n"] == memory.engine.counters["frames_used"]
        assert timing["add_view_ms"]["n"] >= 3 and timing["add_view_ms"]["wall_p50"] > 0
        queries = timing["query_ms"]
        assert [queries[b]["n"] for b in ("refined", "keyframes", "kinaema")] == [1, 1, 0]
        assert queries["refined"]["wall_max"] >= queries["refined"]["cpu_p50"] > 0
    finally:
        executor.shutdown()
        for n in (memory, probe):  # not left offering memory/query to the next test
            n.destroy_node()
        sim.close()
