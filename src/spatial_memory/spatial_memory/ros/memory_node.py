"""memory_node: a thin ROS shell around `MemoryEngine` (camera images + base pose in, answers out).

Subscribes: `camera/image` (sensor_msgs/Image rgb8 or bgr8, sensor-data QoS). For each image due at
    `update_rate_hz` (by its stamp) the base pose `world_frame` -> `base_frame` is looked up in TF at the
    image stamp (odom -> base_link by default) and the image is folded into the memory; the engine turns
    consecutive poses into the per-step motion the model reads. Time is the engine's business
    (`MemoryEngine.update`): a frame older than the last is dropped and counted; one more than
    `engine.time_jump_reset_s` older (a restarted simulation, a bag played again) resets the memory.
Serves: `memory/query` (spatial_memory_interfaces/srv/QueryPose; internal, spatial_context_node's
    `/query_pose` forwards to it): the query camera's pose in the base frame with a covariance, a
    confidence and the seen probability, or success=false and the reason (empty memory, malformed image,
    other backend). The pose's header stamp is the time of the memory's newest frame: the answer is
    relative to the base as it was then (look the base up in TF at that stamp to use it later).
Publishes: `memory/status` (std_msgs/String, JSON: backend, steps, last stamp, state bytes, parameters,
    images used/skipped and the last problem) at `status_rate_hz`.
Threads: our callbacks share the node's default mutually exclusive group (one engine call at a time);
    main() spins two threads so the TF listener keeps filling the buffer while an image waits for TF.

The engine can be injected (tests, or a caller that loaded one already); otherwise it is built from the
`engine.*` parameters, and a missing or mismatched checkpoint stops the node with one clear log line.
Nothing here but message conversion, TF lookup and logging: the memory logic lives in `memory.engine`.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
import rclpy.time
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String
from tf2_ros import Buffer, TransformException, TransformListener

from spatial_memory.errors import InvalidInputError
from spatial_memory.memory.engine import DROPPED_LATE, RESET_AND_USED, MemoryEngine
from spatial_memory.ros import conversions as conv
from spatial_memory.ros import memory_messages as mm
from spatial_memory.ros import topics
from spatial_memory.ros.node_configs import MemoryNodeConfig
from spatial_memory.ros.params import declare_config
from spatial_memory.ros.spin import spin_node
from spatial_memory_interfaces.srv import QueryPose

RATE_SLACK = 0.95  # accept a frame 5 % early so camera jitter does not halve the update rate
WARN_PERIOD_S = 2.0


class MemoryNode(Node):
    """Feeds a MemoryEngine from images and TF, answers memory/query, publishes memory/status."""

    def __init__(self, engine: MemoryEngine | None = None, **node_kwargs: Any) -> None:
        super().__init__(topics.MEMORY_NODE, **node_kwargs)
        self.config: MemoryNodeConfig = declare_config(self, MemoryNodeConfig)
        self.engine = engine if engine is not None else MemoryEngine(self.config.engine)
        self._factory = conv.RclpyFactory()
        self._counts = {"images_used": 0, "images_skipped": 0, "queries": 0}
        self._last_problem = ""
        self._tf_buffer = Buffer()
        self._tf_listener = TransformListener(self._tf_buffer, self)  # its own reentrant group
        self._status_pub = self.create_publisher(String, topics.MEMORY_STATUS, 10)
        self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_image, qos_profile_sensor_data)
        self.create_service(QueryPose, topics.MEMORY_QUERY, self._on_query)
        self.create_timer(1.0 / self.config.status_rate_hz, self.publish_status)
        cfg = self.config
        self.get_logger().info(
            f"{self.engine.backend} memory from '{cfg.engine.checkpoint or 'an injected engine'}': "
            f"base pose {cfg.world_frame} -> {cfg.base_frame} from TF, "
            f"updates at <= {cfg.update_rate_hz:g} Hz"
        )

    # -- inputs -------------------------------------------------------------------------------------

    def _due(self, stamp_ns: int) -> bool:
        last = self.engine.last_stamp_ns
        if last is None or stamp_ns < last:  # empty memory, or time went back (handled in _on_image)
            return True
        return stamp_ns - last >= RATE_SLACK * 1e9 / self.config.update_rate_hz

    def _on_image(self, msg: Image) -> None:
        """Fold the image with its TF base pose into the memory (at most `update_rate_hz`)."""
        stamp = conv.stamp_to_ns(msg.header.stamp) or self.get_clock().now().nanoseconds
        if not self._due(stamp):
            return
        try:
            image = mm.camera_image_rgb(msg)
            T_world_base = self._base_pose(stamp)  # noqa: N806 - the project's pose naming
            verdict = self.engine.update(image, T_world_base=T_world_base, stamp_ns=stamp)
        except (InvalidInputError, TransformException) as exc:
            self._counts["images_skipped"] += 1
            self._last_problem = f"image not used: {exc}"
            self.get_logger().warning(self._last_problem, throttle_duration_sec=WARN_PERIOD_S)
            return
        if verdict == RESET_AND_USED:
            self.get_logger().warning(f"image stamp {stamp} ns jumped back in time: the memory starts again")
        if verdict != DROPPED_LATE:
            self._counts["images_used"] += 1

    def _base_pose(self, stamp_ns: int) -> Any:
        cfg = self.config
        when = rclpy.time.Time(nanoseconds=stamp_ns, clock_type=self.get_clock().clock_type)
        tf = self._tf_buffer.lookup_transform(
            cfg.world_frame, cfg.base_frame, when, Duration(seconds=cfg.tf_timeout_s)
        )
        return conv.msg_to_matrix(tf)

    # -- outputs ------------------------------------------------------------------------------------

    def _on_query(self, request: Any, response: Any) -> Any:
        """Answer from the engine; every refusal is success=false with the reason."""
        self._counts["queries"] += 1
        last = self.engine.last_stamp_ns  # the answer is relative to the base at the newest frame's time
        where = {
            "frame_id": self.config.base_frame,
            "stamp_ns": self.get_clock().now().nanoseconds if last is None else last,
            "factory": self._factory,
        }
        if request.backend and request.backend != self.engine.backend:
            return mm.fill_query_failure(
                response,
                f"this memory runs the {self.engine.backend!r} backend, not {request.backend!r}",
                **where,
            )
        try:
            answer = self.engine.query(mm.query_image_rgb(request.query))
        except InvalidInputError as exc:
            return mm.fill_query_failure(response, f"no answer: {exc}", **where)
        return mm.fill_query_response(response, answer, **where)

    def publish_status(self) -> None:
        """memory/status: the engine's status, the node's counters and the last problem, as JSON."""
        status = {**self.engine.status(), **self._counts, "last_problem": self._last_problem}
        self._status_pub.publish(String(data=mm.status_json(status)))


def main(args: list[str] | None = None) -> int:
    """Run memory_node until Ctrl-C or shutdown (two threads: TF keeps arriving while an image waits)."""
    return spin_node(MemoryNode, topics.MEMORY_NODE, args, threads=2)


if __name__ == "__main__":
    sys.exit(main())
