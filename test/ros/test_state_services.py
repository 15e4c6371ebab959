"""memory_node and spatial_context_node save, load and reset over ROS (issue 13): a few frames in, save, a new
node loads the file and gives the same answers and keyframes; a resumed frame continues it in a new
odometry frame and clock; a foreign or missing file is refused; the shutdown save and the startup load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_memory.geometry import yaw_pose
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.registry import build_model, save_checkpoint
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics

SMALL_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)
T0 = 1_700_000_000 * 10**9
FRAMES = np.random.default_rng(0).integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("memory") / "kinaema.pt"
    model = build_model("kinaema", {"slots": 8, "dim": 32, "heads": 2}, encoder_config=SMALL_ENCODER)
    save_checkpoint(path, model, ImageEncoder(SMALL_ENCODER))
    return path


def _call(node, srv_type, name, request, timeout=10.0):
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), f"{name} not offered"
    future = client.call_async(request)
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(timeout), f"{name} did not answer"
    node.destroy_client(client)
    return future.result()


def _wait(condition, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


class Graph:
    """An executor spinning a probe node (TF and image publisher, service caller) and the nodes under test."""

    def __init__(self, ros) -> None:
        from rclpy.executors import MultiThreadedExecutor
        from sensor_msgs.msg import Image
        from tf2_msgs.msg import TFMessage

        self.probe = ros.create_node("state_test_probe")
        self.executor = MultiThreadedExecutor(num_threads=4)
        self.executor.add_node(self.probe)
        threading.Thread(target=self.executor.spin, daemon=True).start()
        self.tf = self.probe.create_publisher(TFMessage, topics.TF, 100)
        self.images = self.probe.create_publisher(Image, topics.CAMERA_IMAGE, 10)
        self.factory = conv.RclpyFactory()

    def add(self, node):
        self.executor.add_node(node)
        return node

    def remove(self, node) -> None:
        self.executor.remove_node(node)
        node.destroy_node()

    def frame(self, image: np.ndarray, T_odom_base: np.ndarray, stamp: int, done) -> None:
        """Publish TF (odom -> base_link -> camera) and the image until `done()` says it was taken."""
        from tf2_msgs.msg import TFMessage

        tfs = [
            conv.matrix_to_transform_stamped(T_odom_base, stamp, "odom", "base_link", factory=self.factory),
            conv.matrix_to_transform_stamped(np.eye(4), stamp, "base_link", "cam", factory=self.factory),
        ]
        for _ in range(20):
            self.tf.publish(TFMessage(transforms=tfs))
            time.sleep(0.03)
            self.images.publish(conv.numpy_to_image(image, "rgb8", factory=self.factory, stamp_ns=stamp))
            if _wait(done, 0.3):
                return
        raise AssertionError(f"frame at {stamp} was not taken")

    def close(self) -> None:
        nodes = self.executor.get_nodes()  # (shutdown forgets them)
        self.executor.shutdown()
        for n in nodes:
            n.destroy_node()


def _memory_params(checkpoint: Path, state: Path, **extra):
    from rclpy.parameter import Parameter

    values = {
        "engine.checkpoint": str(checkpoint),
        "engine.resize": "crop",
        "update_rate_hz": 50.0,
        "refine.enabled": False,
        "state.path": str(state),
        **extra,
    }
    return [Parameter(k, value=v) for k, v in values.items()]


def _ask(graph: Graph, image: np.ndarray) -> dict:
    from spatial_memory.ros import memory_messages as mm
    from spatial_memory_interfaces.srv import QueryPose

    request = QueryPose.Request(query=conv.numpy_to_image(image, "rgb8", factory=graph.factory))
    return mm.query_response_summary(_call(graph.probe, QueryPose, topics.MEMORY_QUERY, request))


@pytest.mark.ros
def test_memory_node_saves_loads_and_resets(ros, checkpoint, tmp_path):
    from std_srvs.srv import Trigger

    from spatial_memory.ros.memory_node import MemoryNode
    from spatial_memory_interfaces.srv import LoadState, SaveState

    graph = Graph(ros)
    state = tmp_path / "memory.pt"
    try:
        memory = graph.add(MemoryNode(parameter_overrides=_memory_params(checkpoint, state)))
        for i in range(4):
            steps = memory.engine.steps
            graph.frame(
                FRAMES[i],
                yaw_pose(0.2 * i, 0.0, 0.1 * i),
                T0 + i * 10**8,
                lambda steps=steps: memory.engine.steps > steps,
            )
        before = {name: _ask(graph, FRAMES[name]) for name in (1, 4)}
        saved = _call(graph.probe, SaveState, topics.MEMORY_SAVE, SaveState.Request())
        assert saved.success and saved.path == str(state) and saved.steps == 4 and state.is_file(), (
            saved.message
        )
        graph.remove(memory)

        # a new node (a restart): its own empty memory, then the saved one
        memory = graph.add(MemoryNode(parameter_overrides=_memory_params(checkpoint, state)))
        missing = _call(
            graph.probe, LoadState, topics.MEMORY_LOAD, LoadState.Request(path=str(tmp_path / "no.pt"))
        )
        assert not missing.success and "does not exist" in missing.message and memory.engine.steps == 0
        loaded = _call(graph.probe, LoadState, topics.MEMORY_LOAD, LoadState.Request())
        assert loaded.success and loaded.steps == 4 and loaded.saved_at == saved.saved_at, loaded.message
        for name, answer in before.items():  # the same answers, from the same memory
            again = _ask(graph, FRAMES[name])
            assert again["success"] and (again["x"], again["y"], again["yaw"]) == pytest.approx(
                (answer["x"], answer["y"], answer["yaw"]), abs=1e-6
            )
        assert memory.status()["resume_pending"]
        # the robot restarted where it was saved: new odometry frame (identity) and a clock back at 1 s
        graph.frame(FRAMES[5], np.eye(4), 10**9, lambda: memory.engine.steps == 5)
        status = memory.status()
        assert not status["resume_pending"] and status["last_stamp_ns"] == 10**9
        assert status["time_jump_resets"] == 0 and "memory.pt" in status["state_loaded"]

        reset = _call(graph.probe, Trigger, topics.MEMORY_RESET, Trigger.Request())
        assert reset.success and memory.engine.steps == 0
    finally:
        graph.close()


@pytest.mark.ros
def test_a_memory_of_another_robot_is_refused(ros, checkpoint, tmp_path):
    from spatial_memory.ros.memory_node import MemoryNode
    from spatial_memory_interfaces.srv import LoadState, SaveState

    graph = Graph(ros)
    state = tmp_path / "memory.pt"
    try:
        memory = graph.add(MemoryNode(parameter_overrides=_memory_params(checkpoint, state)))
        graph.frame(FRAMES[0], np.eye(4), T0, lambda: memory.engine.steps == 1)
        assert _call(graph.probe, SaveState, topics.MEMORY_SAVE, SaveState.Request()).success
        graph.remove(memory)
        params = _memory_params(checkpoint, state, world_frame="map", **{"engine.camera_height_m": 0.5})
        other = graph.add(MemoryNode(parameter_overrides=params))
        refused = _call(graph.probe, LoadState, topics.MEMORY_LOAD, LoadState.Request())
        assert not refused.success and "another robot" in refused.message
        assert (
            "world_frame 'odom' (this node: 'map')" in refused.message
            and "camera_height_m" in refused.message
        )
        assert other.engine.steps == 0 and other.status()["state_problem"] == refused.message
    finally:
        graph.close()


@pytest.mark.ros
def test_shutdown_save_and_startup_load(ros, checkpoint, tmp_path):
    from spatial_memory.ros.memory_node import MemoryNode

    graph = Graph(ros)
    state = tmp_path / "memory.pt"
    try:
        params = _memory_params(checkpoint, state, **{"state.save_on_shutdown": True})
        memory = graph.add(MemoryNode(parameter_overrides=params))
        for i in range(3):
            graph.frame(
                FRAMES[i], yaw_pose(0.2 * i, 0, 0), T0 + i * 10**8, lambda i=i: memory.engine.steps > i
            )
        answer = _ask(graph, FRAMES[2])
        graph.remove(memory)  # what spin_node does on Ctrl-C
        assert state.is_file()
        params = _memory_params(checkpoint, state, **{"state.load_on_start": True})
        memory = graph.add(MemoryNode(parameter_overrides=params))
        assert memory.engine.steps == 3 and memory.memory.resume_pending
        assert _ask(graph, FRAMES[2])["x"] == pytest.approx(answer["x"], abs=1e-6)
    finally:
        graph.close()


@pytest.mark.ros
def test_spatial_context_node_saves_loads_and_resets(ros, tmp_path):
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    from spatial_memory.ros.spatial_context_node import SpatialContextNode
    from spatial_memory_interfaces.srv import LoadState, PromoteKeyframe, SaveState

    graph = Graph(ros)
    state = tmp_path / "context.state"
    params = [
        Parameter("mode", value="mobile"),
        Parameter("world_frame", value="odom"),
        Parameter("frame_rate_hz", value=50.0),
        Parameter("context.camera_frame", value="cam"),
        Parameter("state.path", value=str(state)),
    ]
    try:
        node = graph.add(SpatialContextNode(parameter_overrides=params))
        ctx = node.spatial_context
        for i in range(4):
            graph.frame(FRAMES[i], yaw_pose(0.3 * i, 0.0, 0.2 * i), T0 + i * 10**8, lambda i=i: len(ctx) > i)
        for fid in (1, 3):
            promoted = _call(
                graph.probe, PromoteKeyframe, topics.PROMOTE_KEYFRAME, PromoteKeyframe.Request(frame_id=fid)
            )
            assert promoted.success
        keyframes = [(k.frame_id, k.T_world_cam.tobytes()) for k in ctx.keyframes]
        saved = _call(graph.probe, SaveState, topics.CONTEXT_SAVE, SaveState.Request())
        assert saved.success and saved.steps == 4 and saved.keyframes == 2, saved.message
        graph.remove(node)

        node = graph.add(SpatialContextNode(parameter_overrides=params))
        loaded = _call(graph.probe, LoadState, topics.CONTEXT_LOAD, LoadState.Request())
        assert loaded.success and loaded.steps == 4 and loaded.keyframes == 2, loaded.message
        ctx = node.spatial_context
        assert [(k.frame_id, k.T_world_cam.tobytes()) for k in ctx.keyframes] == keyframes
        # restarted where it was saved: a new odometry frame and clock; the next frame resumes
        graph.frame(FRAMES[4], np.eye(4), 10**9, lambda: len(ctx) == 5)
        assert ctx.latest_frame_id == 4 and not node.status()["resume_pending"]
        np.testing.assert_allclose(ctx.keyframes[-1].T_world_cam, np.eye(4), atol=1e-9)  # frame 3 was there

        reset = _call(graph.probe, Trigger, topics.CONTEXT_RESET, Trigger.Request())
        assert reset.success and len(ctx) == 0 and ctx.keyframes == []
    finally:
        graph.close()
