"""vo_node: a thin ROS shell around `vo.odometry.VisualOdometry` (camera in, base odometry out).

Subscribes (sensor-data QoS): `camera/image` (rgb8, bgr8, mono8), `camera/camera_info` (undistorted
pinhole), `camera/depth` (32FC1 m or 16UC1 mm; when `odometry.use_depth`), `joint_states` (when
`odometry.arm_mask`: the FR3's silhouette is masked out of the image), `odom` (wheel odometry, when
`use_wheel_odometry`).
Publishes: `vo/odometry` (nav_msgs/Odometry), TF `odom_frame` -> `base_frame` (when `publish_tf`),
`vo/path` (nav_msgs/Path, at `path_rate_hz`), `vo/status` (std_msgs/String JSON, at `status_rate_hz`).
The TF is stamped with the image's stamp and sent first, as soon as the frame is tracked (before the
odometry message and the path/status bookkeeping): consumers looking the body pose up at an image's stamp
wait only for the tracking; `vo/status` reports that latency (`tf_latency_p50_ms`, `tf_latency_p95_ms`).
Restarts (a new chain, logged and counted): the clock jumping back more than 1 s (a bag played again, a
simulation reset) or camera_info announcing other intrinsics (a camera driver restarted at another size).

Falling behind: an image callback only parks the image in a one-frame slot and wakes the worker (a guard
condition); the worker tracks the newest parked frame. A frame that arrives while another still waits
replaces it and is counted as dropped, so the node never queues stale frames. Side streams (depth, joint
states, wheel odometry) are buffered and paired with each image by the nearest stamp.
Threads: main() spins three, so images, side streams and TF keep arriving while a frame is tracked.

The VO is built on the first image after camera_info and the camera's mount in TF (`base_frame` -> camera)
are known; everything else lives in the core.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import rclpy.time
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from tf2_ros import Buffer, TransformBroadcaster, TransformException, TransformListener

from spatial_memory.errors import InvalidInputError
from spatial_memory.health import HealthChecks
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import VoNodeConfig
from spatial_memory.resources import share_path
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.robot.silhouette import ArmSilhouette, urdf_primitives
from spatial_memory.ros import vo_messages as vm
from spatial_memory.ros.diagnostics import attach_diagnostics
from spatial_memory.ros.params import declare_config
from spatial_memory.ros.spin import spin_node
from spatial_memory.stamps import JUMPED_BACK, LatestSlot, StampedBuffer, stamp_order
from spatial_memory.vo.odometry import VisualOdometry

WARN_PERIOD_S = 2.0
SIDE_BUFFER = 30  # depth images / joint states / wheel poses kept for pairing
RATE_WINDOW = 30  # frames the reported rates average over


class VoNode(Node):
    """Tracks the newest camera frame with VisualOdometry; publishes odometry, TF, path and status."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(topics.VO_NODE, **node_kwargs)
        self.config: VoNodeConfig = declare_config(self, VoNodeConfig)
        cfg, odo = self.config, self.config.odometry
        self._factory = conv.RclpyFactory()
        self._kinematics = FR3Kinematics()
        self.odometry: VisualOdometry | None = None
        self._intrinsics: tuple[np.ndarray, int, int] | None = None
        self._slot: LatestSlot[Image] = LatestSlot()
        self._depth: StampedBuffer[Image] = StampedBuffer(SIDE_BUFFER)
        self._joints: StampedBuffer[np.ndarray] = StampedBuffer(SIDE_BUFFER)
        self._wheel: StampedBuffer[np.ndarray] = StampedBuffer(SIDE_BUFFER)
        self._path: deque[tuple[int, np.ndarray]] = deque(maxlen=max(cfg.path_length, 1))
        self._lock = threading.Lock()  # the path and counters, shared with the timers
        self._done: deque[float] = deque(maxlen=RATE_WINDOW)  # wall times frames finished
        self._busy: deque[float] = deque(maxlen=RATE_WINDOW)  # seconds each took
        self._latency: deque[float] = deque(maxlen=RATE_WINDOW)  # ms, image stamp to its TF (node clock)
        self._counts = {
            "frames_refused": 0,
            "frames_waiting_for_tf": 0,
            "frames_without_depth": 0,
            "restarts": 0,
        }
        self._last_problem = ""

        self._tf_buffer = Buffer()
        self._tf_listener = TransformListener(self._tf_buffer, self)
        self._tf = TransformBroadcaster(self) if cfg.publish_tf else None
        self._odom_pub = self.create_publisher(Odometry, topics.VO_ODOMETRY, 10)
        self._path_pub = self.create_publisher(Path, topics.VO_PATH, 1) if cfg.path_length else None
        self._status_pub = self.create_publisher(String, topics.VO_STATUS, 10)

        inputs = MutuallyExclusiveCallbackGroup()  # fast: park or buffer, never track
        work = MutuallyExclusiveCallbackGroup()
        sensor = qos_profile_sensor_data
        self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_image, sensor, callback_group=inputs)
        self.create_subscription(CameraInfo, topics.CAMERA_INFO, self._on_info, sensor, callback_group=inputs)
        if odo.use_depth:
            self.create_subscription(
                Image, topics.CAMERA_DEPTH, self._on_depth, sensor, callback_group=inputs
            )
        if odo.arm_mask:
            self.create_subscription(
                JointState, topics.JOINT_STATES, self._on_joints, sensor, callback_group=inputs
            )
        if cfg.use_wheel_odometry:
            self.create_subscription(Odometry, topics.ODOM, self._on_wheel, sensor, callback_group=inputs)
        self._wake = self.create_guard_condition(self._work, callback_group=work)
        self.create_timer(1.0 / cfg.status_rate_hz, self.publish_status, callback_group=work)
        self.diagnostics = attach_diagnostics(self, self.status, VO_HEALTH)
        if self._path_pub is not None:
            self.create_timer(1.0 / cfg.path_rate_hz, self.publish_path, callback_group=work)
        depth = "on" if odo.use_depth else "off (no metric scale)"
        self.get_logger().info(
            f"patch VO: {cfg.odom_frame} -> {cfg.base_frame}{' on /tf' if cfg.publish_tf else ''}, "
            f"depth {depth}, arm mask {'on' if odo.arm_mask else 'off'}, wheel odometry "
            f"{'bridges losses' if cfg.use_wheel_odometry else 'off'}"
        )

    # -- inputs (cheap) -----------------------------------------------------------------------------

    def _stamp(self, header: Any) -> int:
        return conv.stamp_to_ns(header.stamp) or self.get_clock().now().nanoseconds

    def _on_image(self, msg: Image) -> None:
        self._slot.put(msg)
        self._wake.trigger()

    def _on_info(self, msg: CameraInfo) -> None:
        try:
            self._intrinsics = conv.camera_info_to_intrinsics(msg)
        except InvalidInputError as exc:
            self._problem(f"camera_info not used: {exc}")

    def _on_depth(self, msg: Image) -> None:
        self._depth.add(self._stamp(msg.header), msg)

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = conv.joint_positions(msg, self._kinematics.joint_names)
        except InvalidInputError as exc:
            self._problem(f"joint state not used: {exc}")
            return
        self._joints.add(self._stamp(msg.header), q)

    def _on_wheel(self, msg: Odometry) -> None:
        try:
            T = conv.pose_to_matrix(msg.pose.pose)
        except InvalidInputError as exc:
            self._problem(f"wheel odometry not used: {exc}")
            return
        self._wheel.add(self._stamp(msg.header), T)

    # -- work ---------------------------------------------------------------------------------------

    def _work(self) -> None:
        """Track the newest parked frame (the guard condition's callback)."""
        msg = self._slot.take()
        if msg is None:
            return
        start = time.perf_counter()
        stamp = self._stamp(msg.header)
        last = self.odometry.last if self.odometry is not None else None
        if stamp_order(stamp, last.stamp_ns if last else None) == JUMPED_BACK:
            self._restart(
                f"image stamp {stamp} ns is {(last.stamp_ns - stamp) * 1e-9:.1f} s before the last: the "
                "clock went back"
            )
        elif self.odometry is not None and not self._same_camera():
            self._restart("the camera's intrinsics changed")
        try:
            if self.odometry is None and not self._build(msg):
                return
            step = self._track(msg, stamp)
        except InvalidInputError as exc:
            self._counts["frames_refused"] += 1
            self._problem(f"frame not used: {exc}")
            return
        cfg = self.config
        if self._tf is not None:  # first: memory_node and spatial_context_node wait for it at the image stamp
            self._tf.sendTransform(
                conv.matrix_to_transform_stamped(
                    step.T_odom_base, step.stamp_ns, cfg.odom_frame, cfg.base_frame, factory=self._factory
                )
            )
        sent = self.get_clock().now().nanoseconds
        self._odom_pub.publish(vm.odometry_message(step, cfg.odom_frame, cfg.base_frame, self._factory))
        with self._lock:
            self._latency.append((sent - step.stamp_ns) * 1e-6)
            self._path.append((step.stamp_ns, step.T_odom_base))
            self._busy.append(time.perf_counter() - start)
            self._done.append(time.perf_counter())
        if step.source != "visual":
            self.get_logger().warning(
                f"VO lost ({step.reason}); motion from the {step.source}", throttle_duration_sec=WARN_PERIOD_S
            )

    def _track(self, msg: Image, stamp: int) -> Any:
        cfg, odo = self.config, self.config.odometry
        image = vm.vo_image(msg)
        depth = None
        if odo.use_depth:
            depth_msg = self._depth.nearest(stamp, int(cfg.depth_max_dt_s * 1e9), wait_s=cfg.depth_wait_s)
            if depth_msg is None:
                self._counts["frames_without_depth"] += 1
            else:
                depth = vm.depth_metres(depth_msg)
        joints = self._joints.nearest(stamp, int(cfg.joint_state_max_dt_s * 1e9)) if odo.arm_mask else None
        wheel = self._wheel.nearest(stamp, int(cfg.wheel_max_dt_s * 1e9)) if cfg.use_wheel_odometry else None
        return self.odometry.step(image, stamp, depth=depth, joints=joints, T_odom_base_wheel=wheel)

    def _same_camera(self) -> bool:
        """Whether the latest camera_info is the one the VO was built for."""
        K, width, height = self._intrinsics
        vo = self.odometry.vo
        return (width, height) == (vo.width, vo.height) and np.array_equal(K, vo.K)

    def _restart(self, why: str) -> None:
        """Drop the odometry; the next frame starts a new chain (at the wheel pose if there is one)."""
        self.get_logger().warning(f"{why}: restarting the odometry")
        self.odometry = None
        self._counts["restarts"] += 1
        with self._lock:
            self._path.clear()

    def _build(self, msg: Image) -> bool:
        """Build the VO once camera_info and the camera's mount (and the arm's root) are in TF."""
        cfg = self.config
        camera = cfg.camera_frame or msg.header.frame_id
        if self._intrinsics is None or not camera:
            self._counts["frames_waiting_for_tf"] += 1
            self._problem("waiting for camera_info" if camera else "the image has no frame_id")
            return False
        try:
            T_base_cam = self._lookup(cfg.base_frame, camera)
            T_cam_arm = self._lookup(camera, cfg.arm_root_frame) if cfg.odometry.arm_mask else None
        except TransformException as exc:
            self._counts["frames_waiting_for_tf"] += 1
            self._problem(f"waiting for the camera's mount in TF: {exc}")
            return False
        K, width, height = self._intrinsics
        silhouette = None
        if cfg.odometry.arm_mask:
            silhouette = ArmSilhouette(self._kinematics, urdf_primitives(share_path("urdf/fr3.urdf")))
        self.odometry = VisualOdometry(
            K, width, height, T_base_cam, cfg.odometry, silhouette=silhouette, T_cam_arm=T_cam_arm
        )
        self.get_logger().info(
            f"VO started on '{camera}' ({width}x{height}, fx {K[0, 0]:.1f}); camera at "
            f"{np.round(T_base_cam[:3, 3], 3).tolist()} m in '{cfg.base_frame}'"
        )
        return True

    def _lookup(self, parent: str, child: str) -> np.ndarray:
        tf = self._tf_buffer.lookup_transform(
            parent, child, rclpy.time.Time(), Duration(seconds=self.config.tf_timeout_s)
        )
        return conv.msg_to_matrix(tf)

    def _problem(self, text: str) -> None:
        self._last_problem = text
        self.get_logger().warning(text, throttle_duration_sec=WARN_PERIOD_S)

    # -- outputs ------------------------------------------------------------------------------------

    def rates(self) -> dict[str, float]:
        """Frames tracked per second (wall clock, last frames), the mean milliseconds per frame, and the
        latency of the odom -> base_link TF: the node's clock when it was sent less the image's stamp (p50,
        p95 over the last frames; what a consumer looking TF up at the image stamp waits at least)."""
        with self._lock:
            done, busy, latency = list(self._done), list(self._busy), list(self._latency)
        rate = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
        p50, p95 = np.percentile(latency, [50, 95]) if latency else (0.0, 0.0)
        return {
            "rate_hz": round(rate, 2),
            "ms_per_frame": round(1e3 * float(np.mean(busy)), 2) if busy else 0.0,
            "tf_latency_p50_ms": round(float(p50), 2),
            "tf_latency_p95_ms": round(float(p95), 2),
        }

    def status(self) -> dict[str, Any]:
        """The odometry's counters, the node's frame accounting and rates, the last problem."""
        status = self.odometry.status() if self.odometry is not None else {"frames": 0}
        status |= self.rates() | self._counts
        status |= {"received": self._slot.received, "dropped": self._slot.dropped}
        status["last_problem"] = self._last_problem
        return status

    def publish_status(self) -> None:
        """vo/status: `status()` as JSON."""
        self._status_pub.publish(String(data=vm.status_json(self.status())))

    def publish_path(self) -> None:
        """vo/path: the newest `path_length` poses."""
        with self._lock:
            poses = list(self._path)
        if poses:
            msg = vm.path_message(poses, poses[-1][0], self.config.odom_frame, self._factory)
            self._path_pub.publish(msg)


# Healthy: tracking (losses and refused frames warn when they grow), frames dropped because newer ones came
# counted but not judged (the node works on the newest frame by design), restarts warn
VO_HEALTH = HealthChecks(bad_counters=("losses", "frames_refused", "restarts", "frames_waiting_for_tf"))


def main(args: list[str] | None = None) -> int:
    """Run vo_node until Ctrl-C or shutdown (three threads: inputs and TF arrive while a frame is tracked)."""
    return spin_node(VoNode, topics.VO_NODE, args, threads=3)


if __name__ == "__main__":
    sys.exit(main())
