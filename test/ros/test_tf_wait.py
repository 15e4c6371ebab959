"""Images wait for TF at their stamp instead of being dropped (issue 13): an image whose transform comes
150 ms after it is used; one whose transform never comes is dropped after `tf_timeout_s` and counted as
`tf_timeout`, and later images wait behind it (in order); one older than the TF buffer is dropped at once
as `tf_too_old`. spatial_context_node and memory_node, in-process."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from spatial_memory.geometry import yaw_pose
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.registry import build_model, save_checkpoint
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics

T0 = 1_700_000_000 * 10**9
MS = 10**6
FRAME = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
SMALL_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)


def _wait(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


class Feed:
    """A probe publishing TF (odom -> base_link -> cam) and camera images, spun with the node under test."""

    def __init__(self, ros, node) -> None:
        from rclpy.executors import MultiThreadedExecutor
        from sensor_msgs.msg import Image
        from tf2_msgs.msg import TFMessage

        self.probe = ros.create_node("tf_wait_probe")
        self.executor = MultiThreadedExecutor(num_threads=3)
        for n in (self.probe, node):
            self.executor.add_node(n)
        threading.Thread(target=self.executor.spin, daemon=True).start()
        self.tf_pub = self.probe.create_publisher(TFMessage, topics.TF, 100)
        self.image_pub = self.probe.create_publisher(Image, topics.CAMERA_IMAGE, 10)
        self.factory = conv.RclpyFactory()
        time.sleep(0.5)  # discovery

    def tf(self, stamp: int) -> None:
        from tf2_msgs.msg import TFMessage

        T = yaw_pose(1e-9 * (stamp - T0) * 0.2, 0.0, 0.0)
        self.tf_pub.publish(
            TFMessage(
                transforms=[
                    conv.matrix_to_transform_stamped(T, stamp, "odom", "base_link", factory=self.factory),
                    conv.matrix_to_transform_stamped(
                        np.eye(4), stamp, "base_link", "cam", factory=self.factory
                    ),
                ]
            )
        )

    def image(self, stamp: int) -> None:
        self.image_pub.publish(conv.numpy_to_image(FRAME, "rgb8", factory=self.factory, stamp_ns=stamp))

    def close(self) -> None:
        nodes = self.executor.get_nodes()  # (shutdown forgets them)
        self.executor.shutdown()
        for n in nodes:
            n.destroy_node()


@pytest.mark.ros
def test_spatial_context_node_waits_for_late_tf_and_counts_what_it_drops(ros):
    from rclpy.parameter import Parameter

    from spatial_memory.ros.spatial_context_node import SpatialContextNode

    node = SpatialContextNode(
        parameter_overrides=[
            Parameter("mode", value="mobile"),
            Parameter("world_frame", value="odom"),
            Parameter("frame_rate_hz", value=50.0),
            Parameter("tf_timeout_s", value=0.5),
            Parameter("context.camera_frame", value="cam"),
        ]
    )
    feed = Feed(ros, node)
    ctx = node.spatial_context
    try:
        for _ in range(3):  # TF up to T0: images after it have to wait
            feed.tf(T0)
            time.sleep(0.05)
        # 1: the image first, its TF 150 ms later (a visual odometry's): used, after waiting
        feed.image(T0 + 100 * MS)
        time.sleep(0.15)
        assert len(ctx) == 0 and node.status()["images_waiting"] == 1
        feed.tf(T0 + 100 * MS)
        assert _wait(lambda: len(ctx) == 1)
        status = node.status()
        assert status["tf_waited"] == 1 and status["tf_wait_max_ms"] >= 100 and status["images_dropped"] == {}

        # 2: an image whose TF never comes, then one whose TF comes: the first is dropped after 0.5 s
        # (tf_timeout); the second waits behind it, then for its own TF, and is used after it, in order
        feed.image(T0 + 600 * MS)
        time.sleep(0.3)
        feed.tf(T0 + 550 * MS)  # TF moves on, but not up to 600 ms
        feed.image(T0 + 700 * MS)
        assert _wait(lambda: node.status()["images_dropped"].get("tf_timeout") == 1, 2.0)
        assert node.status()["images_waiting"] == 1 and len(ctx) == 1  # 700 ms still waits (0.5 s each)
        feed.tf(T0 + 800 * MS)
        assert _wait(lambda: len(ctx) == 2)
        assert [r.stamp_ns for r in ctx.history.records()] == [T0 + 100 * MS, T0 + 700 * MS]

        # 3: an image older than the TF buffer holds: dropped at once, nothing to wait for
        feed.image(T0 - 60 * 10**9)
        assert _wait(lambda: node.status()["images_dropped"].get("tf_too_old") == 1, 2.0)
        status = node.status()
        assert status["images_used"] == 2 and status["images_received"] == 4 and status["images_waiting"] == 0
        assert "tf_too_old" in status["last_problem"]
    finally:
        feed.close()


@pytest.mark.ros
def test_memory_node_waits_for_late_tf(ros, tmp_path):
    from rclpy.parameter import Parameter

    from spatial_memory.ros.memory_node import MemoryNode

    torch.manual_seed(0)
    checkpoint = tmp_path / "kinaema.pt"
    model = build_model("kinaema", {"slots": 8, "dim": 32, "heads": 2}, encoder_config=SMALL_ENCODER)
    save_checkpoint(checkpoint, model, ImageEncoder(SMALL_ENCODER))
    node = MemoryNode(
        parameter_overrides=[
            Parameter("engine.checkpoint", value=str(checkpoint)),
            Parameter("update_rate_hz", value=50.0),
            Parameter("refine.enabled", value=False),
            Parameter("tf_timeout_s", value=0.5),
        ]
    )
    feed = Feed(ros, node)
    try:
        for _ in range(3):
            feed.tf(T0)
            time.sleep(0.05)
        for i in range(1, 4):  # every image 200 ms ahead of its TF
            feed.image(T0 + i * 100 * MS)
            time.sleep(0.2)
            feed.tf(T0 + i * 100 * MS)
            assert _wait(lambda i=i: node.engine.steps == i), node.status()
        status = node.status()
        assert status["images_used"] == 3 and status["images_dropped"] == {}
        # (an image may reach the node after its TF when the machine is busy: then it did not wait)
        assert status["tf_waited"] >= 1 and status["tf_wait_max_ms"] >= 100
    finally:
        feed.close()
