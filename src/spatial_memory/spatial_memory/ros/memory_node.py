"""memory_node: a thin ROS shell around `MemoryService` (camera images + base pose in, answers out).

Subscribes: `camera/image` (sensor_msgs/Image rgb8 or bgr8, sensor-data QoS). For each image due at
    `update_rate_hz` (by its stamp) the base pose `world_frame` -> `base_frame` is looked up in TF at the
    image stamp (odom -> base_link by default) and the image is folded into the memory; the engine turns
    consecutive poses into the per-step motion the model reads. An image whose transform has not arrived
    yet (a visual odometry publishes it tens of ms after the image; nothing at startup) waits for it, up to
    `tf_timeout_s`, without blocking the executor (`ros.tf_wait`); what is still dropped is counted by
    reason in the status. Time is the engine's business
    (`MemoryEngine.update`): a frame older than the last is dropped and counted; one more than
    `engine.time_jump_reset_s` older (a restarted simulation, a bag played again) resets the memory.
    With `refine.enabled`, also `camera/depth` (32FC1 m or 16UC1 mm) and `camera/camera_info`: a frame the
    memory took is offered, with its depth (stamped within `depth_sync_s`, whichever arrives first) and the
    camera's pose (TF `world_frame` -> the image's frame), to the view store that refined answers use.
Serves: `memory/query` (spatial_memory_interfaces/srv/QueryPose; internal, spatial_context_node's
    `/query_pose` forwards to it): the query camera's pose in the base frame with a covariance, a
    confidence and the seen probability, or success=false and the reason (empty memory, malformed image,
    a backend not served). `backend` picks the answer: '' = the configured model, 'keyframes' (with
    `serve_keyframes`), 'refined' (the model's answer verified and refined by PnP against stored RGB-D views,
    with its inlier count; the model's answer, saying why, when verification fails; `searching_since`,
    when the asker has been looking for the place since then, makes what the robot saw since yield to older
    views that verify the picture elsewhere: `refine.yield_ratio`). The pose's header
    stamp is the time of the memory's newest frame: the answer is relative to the base as it was then
    (look the base up in TF at that stamp to use it later).
    `memory/save`, `memory/load`, `memory/reset` (SaveState, LoadState, std_srvs/Trigger; see
    `ros.state_services`): the memory (every backend's state and the stored RGB-D views) to a file and
    back, atomically, refusing a file of another model or robot; `state.load_on_start` and
    `state.save_on_shutdown` do the same at startup and shutdown. A loaded memory continues at the next
    camera frame: its poses were in the odometry frame of the session that saved it, so by default it
    assumes the robot stands where it was saved (LoadState `resume` says otherwise: the same frame, or the
    robot's pose in the saved frame); until that frame, answers are relative to the base as saved.
Publishes: `memory/status` (std_msgs/String, JSON: backend, steps, last stamp, state bytes, parameters,
    images used/skipped, the last problem and the state file's; the recent updates', views' and answers'
    (per backend) wall and CPU milliseconds, `timing.Stopwatch`) at `status_rate_hz`.
Threads: the frame callbacks share the node's default mutually exclusive group; `memory/query` has a
    group of its own, so an answer never waits behind queued frames, only for the memory itself (the
    service is locked one call at a time); main() spins three threads, so the TF listener (its own group)
    keeps filling the buffer meanwhile.

The engine can be injected (tests, or a caller that loaded one already); otherwise it is built from the
`engine.*` parameters, and a missing or mismatched checkpoint stops the node with one clear log line.
Nothing here but message conversion, TF lookup and logging: the memory logic lives in `memory.engine`.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import rclpy
import rclpy.time
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from tf2_ros import Buffer, TransformException, TransformListener

from spatial_memory.errors import InvalidInputError
from spatial_memory.health import HealthChecks
from spatial_memory.memory.engine import DROPPED_LATE, RESET_AND_USED, MemoryEngine
from spatial_memory.memory.service import MemoryService
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import MemoryNodeConfig
from spatial_memory.ros import memory_messages as mm
from spatial_memory.ros import vo_messages as vm
from spatial_memory.ros.diagnostics import IMAGE_DROP_COUNTERS, attach_diagnostics
from spatial_memory.ros.params import declare_config
from spatial_memory.ros.spin import spin_node
from spatial_memory.ros.state_services import NodeState
from spatial_memory.ros.tf_wait import TfWaiter
from spatial_memory.stamps import StampedBuffer
from spatial_memory.timing import Stopwatch
from spatial_memory_interfaces.srv import QueryPose

RATE_SLACK = 0.95  # accept a frame 5 % early so camera jitter does not halve the update rate
WARN_PERIOD_S = 2.0
DEPTH_BUFFER = 10  # depth images kept for pairing with colour images
WAITING_IMAGES = 16  # images waiting for TF at most (5 Hz x 1 s needs 5)
INVALID, LATE = "invalid", "late"  # why an image with its pose was not used: refused, out of order


class MemoryNode(Node):
    """Feeds a MemoryService from images, depth and TF, answers memory/query, publishes memory/status."""

    def __init__(
        self, engine: MemoryEngine | None = None, service: MemoryService | None = None, **node_kwargs: Any
    ) -> None:
        """`engine` or `service`: an injected memory (tests, a caller that loaded one); else built from the
        parameters (`engine.*`, `serve_keyframes`, `refine.*`)."""
        super().__init__(topics.MEMORY_NODE, **node_kwargs)
        self.config: MemoryNodeConfig = declare_config(self, MemoryNodeConfig)
        cfg = self.config
        if service is None:
            service = (
                MemoryService(engine)
                if engine is not None
                else MemoryService.from_config(cfg.engine, cfg.serve_keyframes, cfg.refine)
            )
        self.memory = service
        self.engine = service.engine
        self._factory = conv.RclpyFactory()
        self._counts = {
            "images_received": 0,
            "images_skipped_rate": 0,
            "queries": 0,
            "views_without_depth": 0,
        }
        self._last_offered_ns: int | None = None  # stamp of the newest image taken for the memory
        self._depth: StampedBuffer[Image] = StampedBuffer(DEPTH_BUFFER)
        self._intrinsics: Any = None  # (K, width, height) of the latest camera_info
        self._pending_view: tuple[int, Any, Any] | None = None  # (stamp, rgb, T_world_cam) waiting for depth
        self._last_problem = ""
        # wall and CPU ms of the recent updates, views and answers (per backend): the status tells the
        # work from waiting for a core, a /query_pose caller's latency minus these from queueing
        self._watches = {"update_ms": Stopwatch(), "add_view_ms": Stopwatch()}
        self._query_watches = {b: Stopwatch() for b in service.backends}
        self._tf_buffer = Buffer()
        self._tf_listener = TransformListener(self._tf_buffer, self)  # its own reentrant group
        self._waiter = TfWaiter(
            self, cfg.tf_timeout_s, WAITING_IMAGES, self._base_pose, self._use_image, self._problem
        )
        self._status_pub = self.create_publisher(String, topics.MEMORY_STATUS, 10)
        self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_image, qos_profile_sensor_data)
        if service.views is not None:
            sensor = qos_profile_sensor_data
            self.create_subscription(Image, topics.CAMERA_DEPTH, self._on_depth, sensor)
            self.create_subscription(CameraInfo, topics.CAMERA_INFO, self._on_info, sensor)
        self.create_service(
            QueryPose, topics.MEMORY_QUERY, self._on_query, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.state = NodeState(
            self,
            "memory",
            cfg.state,
            save=lambda path: self.memory.save(path, self._robot()),
            load=lambda path, resume: self.memory.load(path, self._robot(), resume),
            reset=self._reset,
            counts=lambda: (self.memory.steps, 0 if self.memory.views is None else len(self.memory.views)),
        )
        self.state.load_on_start()
        self.create_timer(1.0 / self.config.status_rate_hz, self.publish_status)
        self._answer_pub = self.create_publisher(PoseWithCovarianceStamped, topics.MEMORY_ANSWER, 10)
        self.diagnostics = attach_diagnostics(self, self.status, MEMORY_HEALTH)
        self.get_logger().info(
            f"{self.engine.backend} memory from '{cfg.engine.checkpoint or 'an injected engine'}': "
            f"base pose {cfg.world_frame} -> {cfg.base_frame} from TF, "
            f"updates at <= {cfg.update_rate_hz:g} Hz; backends {list(service.backends)}"
        )

    # -- inputs -------------------------------------------------------------------------------------

    def _due(self, stamp_ns: int) -> bool:
        last = self._last_offered_ns if self._last_offered_ns is not None else self.engine.last_stamp_ns
        if last is None or stamp_ns < last:  # empty memory, or time went back (the engine's business)
            return True
        return stamp_ns - last >= RATE_SLACK * 1e9 / self.config.update_rate_hz

    def _on_image(self, msg: Image) -> None:
        """Take the image for the memory (at most `update_rate_hz`); it may wait for its TF base pose."""
        stamp = conv.stamp_to_ns(msg.header.stamp) or self.get_clock().now().nanoseconds
        self._counts["images_received"] += 1
        if not self._due(stamp):
            self._counts["images_skipped_rate"] += 1
            return
        self._last_offered_ns = stamp
        self._waiter.offer(stamp, msg)

    def _use_image(self, stamp: int, msg: Image, T_world_base: Any) -> str | None:  # noqa: N803
        """Fold an image with its base pose into the memory; None when used, else why not."""
        try:
            image = mm.camera_image_rgb(msg)
            with self._watches["update_ms"].time():
                verdict = self.memory.update(image, T_world_base=T_world_base, stamp_ns=stamp)
        except InvalidInputError as exc:
            self._problem(f"image not used: {exc}")
            return INVALID
        if verdict == RESET_AND_USED:  # time jumped back, or the robot was carried (the engine logs which)
            self.get_logger().warning(f"the memory starts again at image stamp {stamp} ns")
        if verdict == DROPPED_LATE:
            return LATE
        if self.memory.views is not None:
            self._offer_view(stamp, image, msg.header.frame_id)
        return None

    def _base_pose(self, stamp_ns: int, frame: str | None = None) -> Any:
        """TF `world_frame` -> `frame` (default: the base) at the stamp, as a 4x4 matrix; never waits
        (TransformException when it is not there: the caller parks the image, `ros.tf_wait`)."""
        cfg = self.config
        when = rclpy.time.Time(nanoseconds=stamp_ns, clock_type=self.get_clock().clock_type)
        tf = self._tf_buffer.lookup_transform(cfg.world_frame, frame or cfg.base_frame, when)
        return conv.msg_to_matrix(tf)

    # -- RGB-D views for refined answers ------------------------------------------------------------

    def _on_info(self, msg: CameraInfo) -> None:
        try:
            self._intrinsics = conv.camera_info_to_intrinsics(msg)
        except InvalidInputError as exc:
            self._problem(f"camera_info not used: {exc}")

    def _on_depth(self, msg: Image) -> None:
        stamp = conv.stamp_to_ns(msg.header.stamp)
        self._depth.add(stamp, msg)
        pending = self._pending_view
        if pending is not None and abs(pending[0] - stamp) <= self.config.depth_sync_s * 1e9:
            self._pending_view = None
            self._store_view(pending, msg)

    def _offer_view(self, stamp: int, image: Any, camera_frame: str) -> None:
        """The frame the memory took, with its camera pose, goes to the view store with its depth: now if
        the depth came first, else when it comes (the previous frame's chance then lapses)."""
        try:
            T_world_cam = self._base_pose(stamp, camera_frame)  # noqa: N806 - the project's pose naming
        except TransformException as exc:
            self._problem(f"view not stored: camera pose {camera_frame!r}: {exc}")
            return
        if self._pending_view is not None:
            self._counts["views_without_depth"] += 1
        view = (stamp, image, T_world_cam)
        depth = self._depth.nearest(stamp, int(self.config.depth_sync_s * 1e9))
        self._pending_view = None if depth is not None else view
        if depth is not None:
            self._store_view(view, depth)

    def _store_view(self, view: tuple[int, Any, Any], depth_msg: Image) -> None:
        stamp, image, T_world_cam = view  # noqa: N806
        if self._intrinsics is None:
            self._problem("view not stored: no camera_info yet")
            return
        K, width, height = self._intrinsics  # noqa: N806
        try:
            if (image.shape[1], image.shape[0]) != (width, height):
                size = f"{image.shape[1]}x{image.shape[0]}"
                raise InvalidInputError(f"camera_info is {width}x{height}, the image {size}")
            depth = vm.depth_metres(depth_msg)
            with self._watches["add_view_ms"].time():
                self.memory.add_view(image, depth, K, T_world_cam, stamp)
        except InvalidInputError as exc:
            self._problem(f"view not stored: {exc}")

    def _problem(self, text: str) -> None:
        self._last_problem = text
        self.get_logger().warning(text, throttle_duration_sec=WARN_PERIOD_S)

    # -- state --------------------------------------------------------------------------------------

    def _robot(self) -> dict[str, str]:
        """What a saved memory must agree on with this node besides the model and camera: its frames."""
        return {"world_frame": self.config.world_frame, "base_frame": self.config.base_frame}

    def _reset(self) -> None:
        self.memory.reset()
        self._pending_view = None
        self._last_offered_ns = None

    def destroy_node(self) -> None:
        """Save the memory first when `state.save_on_shutdown` (spin_node destroys the node on Ctrl-C)."""
        self.state.save_on_shutdown()
        super().destroy_node()

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
        watch = self._query_watches.get(request.backend or self.memory.backend)
        try:
            image, since = mm.query_image_rgb(request.query), mm.searching_since_ns(request)
            with watch.time() if watch is not None else contextlib.nullcontext():
                answer = self.memory.query(image, request.backend, searching_since_ns=since)
        except InvalidInputError as exc:
            return mm.fill_query_failure(response, f"no answer: {exc}", **where)
        if answer.stamp_ns is not None:  # the frame the answer is relative to (newer frames may have come)
            where["stamp_ns"] = answer.stamp_ns
        response = mm.fill_query_response(response, answer, **where)
        self._answer_pub.publish(response.pose)  # the latest answer, for RViz
        return response

    def status(self) -> dict[str, Any]:
        """The engine's status, the node's counters, the last problem and the state file's."""
        return {
            **self.memory.status(),
            **self._counts,
            **self._waiter.status(),
            **{name: watch.summary() for name, watch in self._watches.items()},
            "query_ms": {backend: watch.summary() for backend, watch in self._query_watches.items()},
            "last_problem": self._last_problem,
            "resume_pending": self.memory.resume_pending,
            **self.state.status,
        }

    def publish_status(self) -> None:
        """memory/status: `status()` as JSON."""
        self._status_pub.publish(String(data=mm.status_json(self.status())))


MEMORY_HEALTH = HealthChecks(
    bad_counters=(
        "frames_dropped_late",
        "time_jump_resets",
        "lost_resets",
        "kidnap_resets",
        "views_without_depth",
    )
    + IMAGE_DROP_COUNTERS
)


def main(args: list[str] | None = None) -> int:
    """Run memory_node until Ctrl-C or shutdown (three threads: TF keeps arriving while an image waits, and
    answers do not queue behind frames)."""
    return spin_node(MemoryNode, topics.MEMORY_NODE, args, threads=3)


if __name__ == "__main__":
    sys.exit(main())
