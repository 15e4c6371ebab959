"""spatial_context_node: camera frames + poses into a `SpatialContext`; BEV map, keyframe markers, images out.

Poses: in `stationary` mode the camera pose is FK of the latest `joint_states` (world = the arm's root
`base`); in `mobile` mode it is a TF lookup `world_frame` -> `context.camera_frame` at the image stamp
(e.g. odom -> ... -> wrist_camera_optical_frame, fed by vo_node and fk_node), and the body pose
`world_frame` -> `base_frame` is stored with it to centre and orient the map. TF was chosen over a
PoseStamped topic because it gives the pose at the image's own stamp (interpolated) and composes the
base and arm chains without a second FK here. An image whose transform has not arrived yet (a visual
odometry publishes it tens of ms after the image; nothing at startup) waits for it, up to `tf_timeout_s`,
without blocking the executor (`ros.tf_wait`); what is still dropped is counted by reason in the status.

Subscribes: `camera/image` (sensor_msgs/Image, sensor-data QoS), `joint_states` (stationary only).
Publishes (reliable, transient local, depth 1, so a late RViz or policy gets the latest):
    `spatial_context/bev_map` (rgb8 Image, `map_rate_hz`), `spatial_context/keyframes` (MarkerArray:
    DELETEALL, then an arrow + number per keyframe), `spatial_context/keyframe_images` (one rgb8 Image:
    the watermarked keyframes tiled row-major, republished when the keyframe set changes).
    `spatial_context/status` (std_msgs/String JSON at `map_rate_hz`: frames, keyframes, images received,
    used and dropped by reason, the last problem, the state file's; `query_pose_ms`: wall and CPU ms of
    the recent /query_pose calls, memory_node's answer included, `timing.Stopwatch`).
Serves: /promote_keyframe (PromoteKeyframe: by frame id, the latest frame, or the frame captured nearest a
    stamp, within 0.5 s: how policy_node nominates the frames it saw), /query_pose (QueryPose: a well-formed
    query is forwarded to memory_node's `memory/query` and its answer returned; without a memory node, or
    when it does not answer within `memory_query_timeout_s`, success=false and the reason; a malformed
    image: success=false). `spatial_context/save`, `/load`, `/reset` (SaveState, LoadState, std_srvs/Trigger;
    see `ros.state_services`): the pose history, keyframes and their images to a file and back, atomically,
    refusing a file of another robot (mode, frames, camera frame); `state.load_on_start` and
    `state.save_on_shutdown` do the same at startup and shutdown. A loaded context continues at the next
    camera frame: by default it assumes the robot stands where it was saved and moves every saved pose
    into the current odometry frame (LoadState `resume`: the same frame, or the robot's saved-frame pose).
Threads: the callbacks that touch `SpatialContext` share the node's default mutually exclusive group (it is
not thread-safe); /query_pose (which touches only the config) and the memory client each have their own
group, so a forwarded query waits for its answer without holding up images. main() spins 3 threads: TF,
images and a waiting query can all make progress.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import rclpy
import rclpy.time
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from tf2_ros import Buffer, TransformListener
from visualization_msgs.msg import MarkerArray

from spatial_memory.context.spatial_context import SpatialContext
from spatial_memory.context.watermark import tile_images
from spatial_memory.errors import InvalidInputError, SpatialMemoryError, UnknownFrameError
from spatial_memory.health import HealthChecks
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import SpatialContextNodeConfig
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.ros import memory_messages as mm
from spatial_memory.ros.diagnostics import IMAGE_DROP_COUNTERS, attach_diagnostics
from spatial_memory.ros.params import declare_config
from spatial_memory.ros.spin import spin_node
from spatial_memory.ros.state_services import NodeState
from spatial_memory.ros.tf_wait import TfWaiter
from spatial_memory.timing import Stopwatch
from spatial_memory_interfaces.srv import PromoteKeyframe, QueryPose

LATCHED = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)
NO_BACKEND = f"no memory backend: memory_node is not running (no '{topics.MEMORY_QUERY}' service)"
RATE_SLACK = 0.95  # accept a frame 5 % early so camera jitter does not halve the frame rate
WARN_PERIOD_S = 2.0
PROMOTE_BY_STAMP_TOLERANCE_NS = 500_000_000  # /promote_keyframe by stamp: the nearest frame within 0.5 s
WAITING_IMAGES = 16  # images waiting for TF at most (5 Hz x 1 s needs 5)
INVALID = "invalid"  # an image with its pose that the spatial context refused


class SpatialContextNode(Node):
    """Thin shell around `SpatialContext`: converts messages, looks up poses, publishes what it draws."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(topics.SPATIAL_CONTEXT_NODE, **node_kwargs)
        self.config: SpatialContextNodeConfig = declare_config(self, SpatialContextNodeConfig)
        cfg = self.config
        self._factory = conv.RclpyFactory()
        self._stationary = cfg.mode == "stationary"
        self._kinematics = FR3Kinematics(cfg.camera) if self._stationary else None
        # (not `self.context`: rclpy.Node.context is the node's rclpy Context)
        self.spatial_context = SpatialContext(cfg.context, kinematics=self._kinematics)
        self._joints: tuple[np.ndarray, int] | None = None  # stationary: latest q and its stamp (ns)
        self._last_added_ns: int | None = None
        self._shown_keyframes: tuple[int, ...] | None = None
        s = cfg.marker_scale
        self._marker_style = conv.MarkerStyle(0.08 * s, 0.01 * s, 0.03 * s, 0.03 * s)

        self._map_pub = self.create_publisher(Image, topics.BEV_MAP, LATCHED)
        self._marker_pub = self.create_publisher(MarkerArray, topics.KEYFRAME_MARKERS, LATCHED)
        self._keyframe_pub = self.create_publisher(Image, topics.KEYFRAME_IMAGES, LATCHED)
        self._status_pub = self.create_publisher(String, topics.CONTEXT_STATUS, 10)
        self._query_watch = Stopwatch()  # wall / CPU ms of each forwarded /query_pose (timing.Stopwatch)
        self._counts = {"images_received": 0, "images_skipped_rate": 0}
        self._last_problem = ""
        self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_image, qos_profile_sensor_data)
        if self._stationary:
            self.create_subscription(
                JointState, topics.JOINT_STATES, self._on_joint_state, qos_profile_sensor_data
            )
        else:
            self._tf_buffer = Buffer()
            # The listener's subscriptions sit in their own reentrant group: under the multi-threaded
            # executor of main() they keep filling the buffer while images wait for TF.
            self._tf_listener = TransformListener(self._tf_buffer, self)
        self._waiter = TfWaiter(
            self, cfg.tf_timeout_s, WAITING_IMAGES, self._tf_pose, self._use_frame, self._problem
        )
        self.create_service(PromoteKeyframe, topics.PROMOTE_KEYFRAME, self._on_promote)
        self._memory = self.create_client(
            QueryPose, topics.MEMORY_QUERY, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.create_service(
            QueryPose, topics.QUERY_POSE, self._on_query_pose, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.state = NodeState(
            self,
            "spatial_context",
            cfg.state,
            save=lambda path: self.spatial_context.save(path, self._robot()),
            load=self._load,
            reset=self._reset,
            counts=lambda: (len(self.spatial_context), len(self.spatial_context.keyframes)),
        )
        self.state.load_on_start()
        self.create_timer(1.0 / cfg.map_rate_hz, self.publish_outputs)
        self.diagnostics = attach_diagnostics(self, self.status, CONTEXT_HEALTH)
        self.get_logger().info(
            f"{cfg.mode} mode: poses in '{cfg.world_frame}' "
            f"({'FK of joint_states' if self._stationary else 'TF at the image stamp'}), "
            f"frames at <= {cfg.frame_rate_hz:g} Hz, map at {cfg.map_rate_hz:g} Hz"
        )

    # -- inputs -------------------------------------------------------------------------------------

    def _stamp_ns(self, header: Any) -> int:
        """Header stamp in ns; an unstamped (zero) header gets the node's clock."""
        return conv.stamp_to_ns(header.stamp) or self.get_clock().now().nanoseconds

    def _on_joint_state(self, msg: JointState) -> None:
        """Stationary mode: keep the latest arm joint vector (validated by FK when a frame is added)."""
        try:
            q = conv.joint_positions(msg, self._kinematics.joint_names)
        except InvalidInputError as exc:
            self.get_logger().warning(f"ignoring joint state: {exc}", throttle_duration_sec=WARN_PERIOD_S)
            return
        self._joints = (q, self._stamp_ns(msg.header))

    def _due(self, stamp_ns: int) -> bool:
        """Whether a frame stamped `stamp_ns` may be added at `frame_rate_hz` (one stamped before the last
        is due: the context refuses it and the status counts it, rather than skipping it silently)."""
        last = self._last_added_ns
        if last is None or stamp_ns < last:
            return True
        return stamp_ns - last >= RATE_SLACK * 1e9 / self.config.frame_rate_hz

    def _on_image(self, msg: Image) -> None:
        """Add the image with its pose to the context (at most `frame_rate_hz`); in mobile mode it may wait
        for its TF pose (`ros.tf_wait`)."""
        stamp = self._stamp_ns(msg.header)
        self._counts["images_received"] += 1
        if not self._due(stamp):
            self._counts["images_skipped_rate"] += 1
            return
        self._last_added_ns = stamp
        if not self._stationary:
            self._waiter.offer(stamp, msg)
            return
        try:
            pose = self._fk_pose(stamp)
        except InvalidInputError as exc:
            self._problem(f"image not added: {exc}")
            self._waiter.count(INVALID)
            return
        self._waiter.count(self._use_frame(stamp, msg, pose))

    def _use_frame(self, stamp: int, msg: Image, pose: dict[str, np.ndarray]) -> str | None:
        """Add a frame with its pose; None when added, else why not."""
        try:
            frame_id = self.spatial_context.add_frame(**pose, stamp_ns=stamp, image=conv.image_to_numpy(msg))
        except InvalidInputError as exc:
            self._problem(f"image not added: {exc}")
            return INVALID
        self.get_logger().debug(f"added frame {frame_id} at {stamp} ns")
        return None

    def _problem(self, text: str) -> None:
        self._last_problem = text
        self.get_logger().warning(text, throttle_duration_sec=WARN_PERIOD_S)

    def _fk_pose(self, stamp_ns: int) -> dict[str, np.ndarray]:
        """Stationary: the latest joint vector, if it is recent enough for an image at `stamp_ns`."""
        if self._joints is None:
            raise InvalidInputError(f"no joint state received yet on '{topics.JOINT_STATES}'")
        q, joint_stamp = self._joints
        max_age = self.config.max_joint_state_age_s
        if max_age > 0 and abs(stamp_ns - joint_stamp) > max_age * 1e9:
            raise InvalidInputError(
                f"latest joint state is {abs(stamp_ns - joint_stamp) / 1e9:.3f} s away from the image stamp "
                f"(max_joint_state_age_s = {max_age:g})"
            )
        return {"robot_state": q}

    def _tf_pose(self, stamp_ns: int) -> dict[str, np.ndarray]:
        """Mobile: camera and body poses in `world_frame` from TF at the image stamp; never waits
        (TransformException when not there yet: the image is parked, `ros.tf_wait`)."""
        cfg = self.config
        when = rclpy.time.Time(nanoseconds=stamp_ns, clock_type=self.get_clock().clock_type)
        cam = self._tf_buffer.lookup_transform(cfg.world_frame, cfg.context.camera_frame, when)
        base = self._tf_buffer.lookup_transform(cfg.world_frame, cfg.base_frame, when)
        return {"T_world_cam": conv.msg_to_matrix(cam), "T_world_base": conv.msg_to_matrix(base)}

    # -- state --------------------------------------------------------------------------------------

    def _robot(self) -> dict[str, str]:
        """What a saved context must agree on with this node besides the camera frame: mode and frames."""
        cfg = self.config
        return {"mode": cfg.mode, "world_frame": cfg.world_frame, "base_frame": cfg.base_frame}

    def _load(self, path: str, resume: Any) -> dict[str, Any]:
        header = self.spatial_context.load(path, self._robot(), resume)
        self._last_added_ns, self._shown_keyframes = None, None  # the clock may have restarted
        return header

    def _reset(self) -> None:
        self.spatial_context.reset()
        self._last_added_ns, self._shown_keyframes = None, None
        self.publish_outputs()

    def destroy_node(self) -> None:
        """Save the context first when `state.save_on_shutdown` (spin_node destroys the node on Ctrl-C)."""
        self.state.save_on_shutdown()
        super().destroy_node()

    def status(self) -> dict[str, Any]:
        """Frames and keyframes held, images received / used / dropped, the last problem, the state file's."""
        ctx = self.spatial_context
        return {
            "frames": len(ctx),
            "latest_frame_id": ctx.latest_frame_id,
            "keyframes": len(ctx.keyframes),
            **self._counts,
            **self._waiter.status(),
            "resume_pending": ctx.resume_pending,
            "query_pose_ms": self._query_watch.summary(),  # each forwarded /query_pose, the answer included
            "last_problem": self._last_problem,
            **self.state.status,
        }

    # -- outputs ------------------------------------------------------------------------------------

    def publish_outputs(self) -> None:
        """Publish the BEV map and the keyframe markers; the keyframe images when the set changed; status."""
        now = self.get_clock().now().nanoseconds
        self._status_pub.publish(String(data=mm.status_json(self.status())))
        try:
            map_rgb, styles = self.spatial_context.generate_map()
            self._map_pub.publish(
                conv.numpy_to_image(
                    map_rgb, "rgb8", factory=self._factory, stamp_ns=now, frame_id=self.config.map_frame
                )
            )
            keyframes = self.spatial_context.keyframes
            triples = [(k.number, k.T_world_cam, k.rgb) for k in keyframes]
            self._marker_pub.publish(
                conv.keyframe_markers(
                    triples,
                    frame_id=self.config.world_frame,
                    stamp_ns=0,  # stamp 0: RViz uses the latest TF (keyframes do not move in the world)
                    factory=self._factory,
                    style=self._marker_style,
                )
            )
            shown = tuple(k.frame_id for k in keyframes)
            if shown != self._shown_keyframes:
                self._publish_keyframe_images(styles, now)
                self._shown_keyframes = shown
        except SpatialMemoryError as exc:
            self.get_logger().error(
                f"cannot publish the spatial context: {exc}", throttle_duration_sec=WARN_PERIOD_S
            )

    def _publish_keyframe_images(self, styles: list, stamp_ns: int) -> None:
        """Watermark the keyframes that still have an image and publish them tiled in one Image."""
        pairs = [
            (img, s)
            for img, s in zip(self.spatial_context.keyframe_images(), styles, strict=True)
            if img is not None
        ]
        if not pairs:
            return
        marked = self.spatial_context.watermark_keyframes([img for img, _ in pairs], [s for _, s in pairs])
        sheet = tile_images(marked, self.config.keyframe_tile_height, self.config.keyframe_tile_columns)
        self._keyframe_pub.publish(
            conv.numpy_to_image(sheet, "rgb8", factory=self._factory, stamp_ns=stamp_ns)
        )

    # -- services -----------------------------------------------------------------------------------

    def _on_promote(self, request: Any, response: Any) -> Any:
        """Promote a frame (or the latest) to a keyframe and answer with the keyframe as it is now drawn."""
        by_stamp = not request.latest and (request.stamp.sec or request.stamp.nanosec)
        frame_id = self.spatial_context.latest_frame_id if request.latest else int(request.frame_id)
        try:
            if by_stamp:
                stamp = conv.stamp_to_ns(request.stamp)
                frame_id = self.spatial_context.history.frame_at(stamp, PROMOTE_BY_STAMP_TOLERANCE_NS)
            if frame_id is None:
                raise UnknownFrameError("no frames in the pose history yet")
            already = self.spatial_context.is_keyframe(frame_id)
            self.spatial_context.promote_to_keyframe(frame_id)
        except (UnknownFrameError, InvalidInputError) as exc:
            response.success, response.message = False, f"cannot promote: {exc}"
            return response
        keyframes = self.spatial_context.keyframes
        kf = next(k for k in keyframes if k.frame_id == frame_id)
        response.keyframe = conv.keyframe_to_msg(
            frame_id=kf.frame_id,
            number=kf.number,
            T_world_cam=kf.T_world_cam,
            rgb=kf.rgb,
            stamp_ns=kf.stamp_ns or 0,
            world_frame=self.config.world_frame,
            factory=self._factory,
        )
        response.success = True
        state = "was already" if already else "is now"
        response.message = f"frame {frame_id} {state} keyframe {kf.number} of {len(keyframes)}"
        self.get_logger().info(response.message)
        self.publish_outputs()  # show it at once, not at the next map tick
        return response

    def _on_query_pose(self, request: Any, response: Any) -> Any:
        """Validate the query image and forward it to memory_node (asynchronous call, bounded wait)."""
        where = {
            "frame_id": self.config.map_frame,
            "stamp_ns": self.get_clock().now().nanoseconds,
            "factory": self._factory,
        }
        try:
            mm.query_image_rgb(request.query)
        except InvalidInputError as exc:
            return mm.fill_query_failure(response, f"malformed query image: {exc}", **where)
        if not self._memory.service_is_ready():
            backend = f" (asked for backend {request.backend!r})" if request.backend else ""
            return mm.fill_query_failure(response, NO_BACKEND + backend, **where)
        with self._query_watch.time():
            return self._forward_query(request, response, where)

    def _forward_query(self, request: Any, response: Any, where: dict[str, Any]) -> Any:
        done = threading.Event()
        future = self._memory.call_async(request)
        future.add_done_callback(lambda _: done.set())
        timeout = self.config.memory_query_timeout_s
        if not done.wait(timeout) or future.result() is None:
            self._memory.remove_pending_request(future)
            return mm.fill_query_failure(
                response, f"memory_node did not answer within {timeout:g} s (memory_query_timeout_s)", **where
            )
        return mm.copy_query_response(future.result(), response)


CONTEXT_HEALTH = HealthChecks(bad_counters=IMAGE_DROP_COUNTERS)


def main(args: list[str] | None = None) -> int:
    """Run spatial_context_node until Ctrl-C or shutdown; two threads so TF keeps arriving while a
    callback waits for a transform (the node's own callbacks still run one at a time)."""
    return spin_node(SpatialContextNode, topics.SPATIAL_CONTEXT_NODE, args, threads=3)


if __name__ == "__main__":
    sys.exit(main())
