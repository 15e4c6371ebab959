"""policy_node: the 1 Hz high-level policy as a thin ROS shell around `policy.ScriptedPolicy` / `VLMPolicy`.

Each tick (`rate_hz`, on the node's clock: sim time under `use_sim_time`) it builds an `Observation` from what
it heard - the newest `camera/image` (kept, one per tick, as the recent window), `spatial_context/bev_map`,
the keyframe arrows of `spatial_context/keyframes` (the map's legend: numbers, colours, where each lies from
the base now) with the images of the frames it nominated, a text task from `policy/task`, the memory's latest
answer about the goal picture, and TF `odom_frame` -> `base_frame` - calls the policy, and acts:

* nominations: `/promote_keyframe` by the nominated frame's stamp (asynchronous);
* `ask`: `/query_pose` with the goal picture (asynchronous, one in flight, dropped after `query_timeout_s`),
  `searching_since` the goal's start (a look-alike met on the way yields to older views of the place);
* a goal: `goal_pose` (geometry_msgs/PoseStamped in `goal_frame`, nav2's topic). While a task runs and the
  policy has no goal, and when a task ends, it sends the base's own pose: hold still (nav2 and our goal
  follower stop there). Without a task nothing is sent, so teleoperation is left alone;
* `policy/decision` (JSON of every decision) and `policy/status` (JSON: rate held, decision latency,
  queries, promotions, the VLM's counters and fallbacks).

Action `go_to_picture` (spatial_memory_interfaces/action/GoToPicture): the goal is a picture; a malformed one
is rejected. A new goal preempts the running one (as nav2's NavigateToPose). Feedback each tick: the
memory's latest answer, its confidence, the distance to it, the subtask. Result: ARRIVED, NOT_SEEN, GAVE_UP
(with the reason: out of time, no memory, ...) or CANCELED. The policy and the node never block the
executor: service calls are asynchronous, a VLM thinks in its own thread.

Threads: the timer and subscriptions share one mutually exclusive group (they touch the observation state);
the action's callbacks and the service responses have their own reentrant group; the action's execute
callback is a coroutine that awaits the task's end, so no thread waits on it; main() spins 3 threads.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
import rclpy.time
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import Image
from std_msgs.msg import String
from tf2_ros import Buffer, TransformException, TransformListener
from visualization_msgs.msg import MarkerArray

from spatial_memory.context.palette import KeyframeStyle
from spatial_memory.context.watermark import watermark_images
from spatial_memory.errors import InvalidInputError, SpatialMemoryError
from spatial_memory.geometry import invert, yaw_pose
from spatial_memory.health import HealthChecks
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.node_configs import PolicyNodeConfig
from spatial_memory.policy.interface import (
    GOAL_PICTURE,
    Decision,
    Frame,
    HighLevelPolicy,
    KeyframeView,
    MemoryReading,
    Observation,
    Pose2D,
    Status,
    Task,
)
from spatial_memory.policy.scripted import ScriptedPolicy
from spatial_memory.ros import memory_messages as mm
from spatial_memory.ros import policy_messages as pm
from spatial_memory.ros.diagnostics import attach_diagnostics
from spatial_memory.ros.params import declare_config
from spatial_memory.ros.spin import spin_node
from spatial_memory_interfaces.action import GoToPicture
from spatial_memory_interfaces.srv import PromoteKeyframe, QueryPose

LATCHED = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)
WARN_PERIOD_S = 5.0
MEMORY_FAILURES_UNAVAILABLE = 3  # consecutive failed /query_pose calls: the memory counts as gone
RESULT_CODES = {
    Status.ARRIVED: GoToPicture.Result.ARRIVED,
    Status.NOT_SEEN: GoToPicture.Result.NOT_SEEN,
    Status.GAVE_UP: GoToPicture.Result.GAVE_UP,
}


@dataclass
class ActiveTask:
    """A go-to-picture goal in progress: the action's handle, the picture, and how it ended."""

    handle: Any
    picture_msg: Any  # the goal's Image, sent as is to /query_pose
    picture: np.ndarray  # RGB
    backend: str
    budget_s: float
    started_ns: int
    done: Future = field(default_factory=Future)  # resolved when the task ends; the action awaits it
    code: int = 0
    reason: str = ""
    elapsed_s: float = 0.0


class PolicyNode(Node):
    """The 1 Hz loop around a HighLevelPolicy (see the module docstring)."""

    def __init__(self, policy: HighLevelPolicy | None = None, **node_kwargs: Any) -> None:
        super().__init__(topics.POLICY_NODE, **node_kwargs)
        self.config: PolicyNodeConfig = declare_config(self, PolicyNodeConfig)
        cfg = self.config
        self.policy = policy or self._make_policy()
        self._factory = conv.RclpyFactory()
        self._lock = threading.Lock()  # the task and the memory's answer: shared with the action thread
        data = MutuallyExclusiveCallbackGroup()
        calls = ReentrantCallbackGroup()
        self._tf_buffer = Buffer()
        self._tf_listener = TransformListener(self._tf_buffer, self)
        self._image: Image | None = None
        self._map: np.ndarray | None = None
        self._markers: Any = None
        self._task_text = ""
        self._recent: deque[Frame] = deque(maxlen=cfg.recent_frames)
        self._next_frame_id = 0
        self._frame_stamps: dict[int, int] = {}  # our frame id -> capture stamp (nominations go by stamp)
        self._keyframe_images: dict[int, np.ndarray] = {}  # promoted keyframe's context frame id -> image
        self._keyframe_positions: dict[int, np.ndarray] = {}  # context frame id -> camera position (world)
        self._task: ActiveTask | None = None
        self._reading: MemoryReading | None = None
        # (future, wall time sent, the task whose picture it asks about)
        self._query_in_flight: tuple[Any, float, ActiveTask] | None = None
        self._memory_failures = 0
        self._last_tick_wall: tuple[float, float] | None = None  # (wall s, node clock s) of the last tick
        self._periods: deque[tuple[float, float]] = deque(maxlen=60)  # (node clock, wall) between ticks
        self._latencies: deque[float] = deque(maxlen=60)  # wall time of each decision
        self._cpu: deque[float] = deque(maxlen=60)  # ... and the CPU time this thread spent on it
        self._counts = {"ticks": 0, "queries": 0, "query_failures": 0, "query_timeouts": 0}
        self._counts["answers_dropped"] = 0  # answers about an earlier goal's picture, not used
        self._counts |= {"promotions": 0, "promotion_failures": 0, "goals_sent": 0, "holds_sent": 0}
        self._last_problem = ""
        self.create_subscription(
            Image, topics.CAMERA_IMAGE, self._on_image, qos_profile_sensor_data, callback_group=data
        )
        self.create_subscription(Image, topics.BEV_MAP, self._on_map, LATCHED, callback_group=data)
        self.create_subscription(
            MarkerArray, topics.KEYFRAME_MARKERS, self._on_markers, LATCHED, callback_group=data
        )
        self.create_subscription(String, topics.POLICY_TASK, self._on_task, 10, callback_group=data)
        self._goal_pub = self.create_publisher(PoseStamped, topics.GOAL_POSE, 10)
        self._goal_cov_pub = self.create_publisher(PoseWithCovarianceStamped, topics.POLICY_GOAL, 10)
        self._decision_pub = self.create_publisher(String, topics.POLICY_DECISION, 10)
        self._status_pub = self.create_publisher(String, topics.POLICY_STATUS, 10)
        self._query = self.create_client(QueryPose, topics.QUERY_POSE, callback_group=calls)
        self._promote = self.create_client(PromoteKeyframe, topics.PROMOTE_KEYFRAME, callback_group=calls)
        self._action = ActionServer(
            self,
            GoToPicture,
            topics.GO_TO_PICTURE,
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=calls,
        )
        self.create_timer(1.0 / cfg.rate_hz, self._tick, callback_group=data)
        self.diagnostics = attach_diagnostics(self, self.status, policy_health_checks(cfg.rate_hz))
        self.get_logger().info(
            f"{self.policy.name} policy at {cfg.rate_hz:g} Hz; goals on '{topics.GOAL_POSE}' in "
            f"{cfg.goal_frame}; action '{topics.GO_TO_PICTURE}'"
        )

    def _make_policy(self) -> HighLevelPolicy:
        scripted = ScriptedPolicy(self.config.scripted)
        if self.config.policy == "vlm":
            from spatial_memory.policy.vlm import VLMPolicy

            return VLMPolicy(self.config.vlm, scripted)
        return scripted

    # -- inputs -------------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        self._image = msg

    def _on_map(self, msg: Image) -> None:
        try:
            self._map = conv.image_to_numpy(msg)
        except InvalidInputError as exc:
            self._problem(f"map not used: {exc}")

    def _on_markers(self, msg: MarkerArray) -> None:
        self._markers = msg

    def _on_task(self, msg: String) -> None:
        self._task_text = str(msg.data)

    def _tf(self, target: str, source: str, stamp_ns: int | None = None) -> np.ndarray | None:
        """TF `target` <- `source` (4x4) at `stamp_ns` (None: the latest), or None with the reason kept."""
        when = rclpy.time.Time() if stamp_ns is None else rclpy.time.Time(nanoseconds=stamp_ns)
        wait = Duration(seconds=0.0 if stamp_ns is None else self.config.tf_timeout_s)
        try:
            tf = self._tf_buffer.lookup_transform(target, source, when, wait)
        except TransformException as exc:
            self._problem(f"no TF {target} <- {source}: {exc}")
            return None
        return conv.msg_to_matrix(tf)

    # -- the action ---------------------------------------------------------------------------------

    def _on_goal(self, goal: Any) -> GoalResponse:
        try:
            mm.query_image_rgb(goal.picture)
        except InvalidInputError as exc:
            self.get_logger().warning(f"go_to_picture goal rejected: the picture is malformed: {exc}")
            return GoalResponse.REJECT
        if not (math.isfinite(goal.budget_s) and goal.budget_s >= 0):
            self.get_logger().warning(f"go_to_picture goal rejected: budget_s {goal.budget_s} is not >= 0")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, handle: Any) -> CancelResponse:
        with self._lock:
            task = self._task
            if task is not None and task.handle is handle:
                self._finish(task, GoToPicture.Result.CANCELED, "cancelled")
        return CancelResponse.ACCEPT

    async def _execute(self, handle: Any) -> Any:
        """Start the task and wait (without holding a thread) until a tick, a cancel or a new goal ends it."""
        goal = handle.request
        task = ActiveTask(
            handle=handle,
            picture_msg=goal.picture,
            picture=mm.query_image_rgb(goal.picture),
            backend=goal.backend or self.config.backend,
            budget_s=goal.budget_s or self.config.scripted.budget_s,
            started_ns=self.get_clock().now().nanoseconds,
        )
        with self._lock:
            if self._task is not None:
                self._finish(self._task, GoToPicture.Result.GAVE_UP, "preempted by a new goal")
            self._task, self._reading = task, None
            self.policy.reset()
        self.get_logger().info(f"go_to_picture: new goal (backend {task.backend or 'default'!r})")
        await task.done
        result = GoToPicture.Result(status=task.code, reason=task.reason, elapsed_s=task.elapsed_s)
        if task.code == GoToPicture.Result.CANCELED:
            handle.canceled()
        elif task.code in (GoToPicture.Result.ARRIVED, GoToPicture.Result.NOT_SEEN):
            handle.succeed()
        else:
            handle.abort()
        self.get_logger().info(f"go_to_picture ended: {task.reason}")
        return result

    def _finish(self, task: ActiveTask, code: int, reason: str) -> None:
        """End a task (the lock held): send a hold goal so the base stops, wake the action's coroutine."""
        if task.done.done():
            return
        task.code, task.reason = code, reason
        task.elapsed_s = (self.get_clock().now().nanoseconds - task.started_ns) * 1e-9
        if self._task is task:
            self._task, self._reading = None, None
            self._send_hold()
        task.done.set_result(True)

    # -- the tick -----------------------------------------------------------------------------------

    def _tick(self) -> None:
        wall, clock = time.perf_counter(), self.get_clock().now().nanoseconds * 1e-9
        if self._last_tick_wall is not None:
            self._periods.append((clock - self._last_tick_wall[1], wall - self._last_tick_wall[0]))
        self._last_tick_wall = (wall, clock)
        self._counts["ticks"] += 1
        self._collect_answer()
        obs = self._observe()
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            decision = self.policy.decide(obs)
        except SpatialMemoryError as exc:
            self._problem(f"the policy failed: {exc}")
            decision = Decision(stamp_ns=obs.stamp_ns, status=Status.GAVE_UP, reason=f"policy failed: {exc}")
        self._latencies.append(time.perf_counter() - started)
        self._cpu.append(time.thread_time() - started_cpu)
        self._act(decision, obs)
        self._decision_pub.publish(String(data=pm.decision_json(decision)))
        self._publish_status()

    def _observe(self) -> Observation:
        now = self.get_clock().now().nanoseconds
        cfg = self.config
        self._take_frame()
        T_odom_base = self._tf(cfg.odom_frame, cfg.base_frame)  # noqa: N806 - the project's pose naming
        odom = pm.planar(T_odom_base) if T_odom_base is not None else None
        with self._lock:
            task = self._task
            reading = self._reading
        if task is not None:
            picture_task = Task(text="go to where this picture was taken", goal_image=task.picture)
        else:
            picture_task = Task(text=self._task_text)
        return Observation(
            stamp_ns=now,
            task=picture_task,
            recent=tuple(self._recent),
            keyframes=tuple(self._keyframe_views()),
            map_image=self._map,
            answers={GOAL_PICTURE: reading} if reading is not None else {},
            odom_base=odom,
            memory_available=self._query.service_is_ready()
            and self._memory_failures < MEMORY_FAILURES_UNAVAILABLE,
        )

    def _take_frame(self) -> None:
        msg = self._image
        if msg is None:
            return
        stamp = conv.stamp_to_ns(msg.header.stamp)
        if self._recent and self._recent[-1].stamp_ns == stamp:
            return  # no new frame since the last tick
        try:
            rgb = mm.camera_image_rgb(msg)
        except InvalidInputError as exc:
            self._problem(f"camera image not used: {exc}")
            return
        frame = Frame(self._next_frame_id, stamp, rgb)
        self._next_frame_id += 1
        self._recent.append(frame)
        self._frame_stamps[frame.frame_id] = stamp
        for old in [k for k in self._frame_stamps if k < frame.frame_id - 4 * self.config.recent_frames]:
            del self._frame_stamps[old]

    def _keyframe_views(self) -> list[KeyframeView]:
        """The map's legend from the keyframe arrows, with the images of the keyframes we nominated."""
        if self._markers is None or not self._markers.markers:
            return []
        frame = self._markers.markers[0].header.frame_id
        T_frame_base = self._tf(frame, self.config.base_frame)  # noqa: N806
        if T_frame_base is None:
            return []
        views = []
        for number, position, rgb in pm.keyframe_legend(self._markers, invert(T_frame_base)):
            image, frame_id = self._keyframe_image_near(number, frame)
            views.append(KeyframeView(number, frame_id, image, position, rgb))
        return views

    def _keyframe_image_near(self, number: int, frame: str) -> tuple[np.ndarray | None, int]:
        """The image of the promoted keyframe whose camera sits where arrow `number` is (frame ids come
        back from /promote_keyframe with the keyframe's pose), watermarked as on the map."""
        arrow = next(
            (m for m in self._markers.markers if m.ns == pm.KEYFRAME_ARROWS and int(m.id) == number), None
        )
        if arrow is None:
            return None, -1
        p = np.array([arrow.pose.position.x, arrow.pose.position.y, arrow.pose.position.z])
        for frame_id, position in self._keyframe_positions.items():
            if np.linalg.norm(position - p) < 1e-3 and frame_id in self._keyframe_images:
                rgb = tuple(int(round(255 * c)) for c in (arrow.color.r, arrow.color.g, arrow.color.b))
                style = KeyframeStyle(number, frame_id, rgb, (255, 255, 255))
                return watermark_images([self._keyframe_images[frame_id]], [style])[0], frame_id
        return None, -1

    # -- acting -------------------------------------------------------------------------------------

    def _act(self, decision: Decision, obs: Observation) -> None:
        for frame_id in decision.nominated_frame_ids:
            self._nominate(frame_id, obs)
        with self._lock:
            task = self._task
            if task is not None and GOAL_PICTURE in decision.ask:
                self._ask_memory(task)
            if task is not None:
                self._feedback(task, decision, obs)
                elapsed = (obs.stamp_ns - task.started_ns) * 1e-9
                if decision.status.done:
                    self._finish(task, RESULT_CODES[decision.status], decision.reason)
                    return
                if elapsed > task.budget_s:
                    self._finish(task, GoToPicture.Result.GAVE_UP, f"out of time ({task.budget_s:g} s)")
                    return
        if task is None:
            return
        if decision.goal is not None:
            if self._publish_goal(decision.goal.pose, decision.goal.sigma_m):
                self._counts["goals_sent"] += 1
        else:
            self._send_hold()

    def _publish_goal(self, goal: Pose2D, sigma_m: float = 0.0) -> bool:
        """`goal` (base frame now) on goal_pose in `goal_frame`, and with its uncertainty on policy/goal;
        False when TF cannot place it."""
        cfg = self.config
        T_frame_base = self._tf(cfg.goal_frame, cfg.base_frame)  # noqa: N806
        if T_frame_base is None:
            return False
        T = T_frame_base @ yaw_pose(goal.x, goal.y, goal.yaw)  # noqa: N806
        now = self.get_clock().now().nanoseconds
        self._goal_pub.publish(conv.matrix_to_pose_stamped(T, now, cfg.goal_frame, factory=self._factory))
        self._goal_cov_pub.publish(pm.goal_with_covariance(T, sigma_m, now, cfg.goal_frame, self._factory))
        return True

    def _send_hold(self) -> None:
        """The base's own pose as the goal: stand still there."""
        if self._publish_goal(Pose2D(0.0, 0.0, 0.0)):
            self._counts["holds_sent"] += 1

    def _nominate(self, frame_id: int, obs: Observation) -> None:
        stamp = self._frame_stamps.get(frame_id)
        if stamp is None or not self.config.promote_keyframes or not self._promote.service_is_ready():
            return
        image = next((f.image for f in obs.recent if f.frame_id == frame_id), None)
        request = PromoteKeyframe.Request(stamp=conv.ns_to_stamp(stamp, self._factory))
        future = self._promote.call_async(request)
        future.add_done_callback(lambda f, img=image: self._on_promoted(f, img))

    def _on_promoted(self, future: Any, image: np.ndarray | None) -> None:
        response = future.result()
        if response is None or not response.success:
            self._counts["promotion_failures"] += 1
            if response is not None:
                self._problem(response.message)
            return
        self._counts["promotions"] += 1
        kf = response.keyframe
        self._keyframe_positions[int(kf.frame_id)] = np.array(
            [kf.pose.position.x, kf.pose.position.y, kf.pose.position.z]
        )
        if image is not None:
            self._keyframe_images[int(kf.frame_id)] = image

    def _ask_memory(self, task: ActiveTask) -> None:
        """One /query_pose in flight (the lock held); a call older than `query_timeout_s` is dropped, and so
        is one about an earlier task's picture (its answer is not about this goal)."""
        if self._query_in_flight is not None:
            future, sent, asked_for = self._query_in_flight
            if asked_for is not task:
                self._query.remove_pending_request(future)
                self._counts["answers_dropped"] += 1
            elif time.perf_counter() - sent < self.config.query_timeout_s:
                return
            else:
                self._query.remove_pending_request(future)
                self._counts["query_timeouts"] += 1
                self._memory_failures += 1
            self._query_in_flight = None
        if not self._query.service_is_ready():
            return
        request = QueryPose.Request(  # since the goal came, what the robot sees is its search for the place
            query=task.picture_msg,
            backend=task.backend,
            searching_since=conv.ns_to_stamp(task.started_ns, self._factory),
        )
        future = self._query.call_async(request)
        self._query_in_flight = (future, time.perf_counter(), task)
        self._counts["queries"] += 1

    def _collect_answer(self) -> None:
        """Turn a finished /query_pose call into the task's MemoryReading (odometry at its stamp via TF)."""
        with self._lock:
            flight, task = self._query_in_flight, self._task
            if flight is None or not flight[0].done():
                return
            self._query_in_flight = None
            if flight[2] is not task:  # asked about an earlier goal's picture: not this goal's answer
                self._counts["answers_dropped"] += 1
                return
        response = flight[0].result()
        if response is None or not response.success:
            self._memory_failures += 1
            self._counts["query_failures"] += 1
            if response is not None:
                self._problem(f"/query_pose: {response.message}")
            return
        self._memory_failures = 0
        stamp = conv.stamp_to_ns(response.pose.header.stamp)
        T = self._tf(self.config.odom_frame, self.config.base_frame, stamp)  # noqa: N806
        reading = pm.reading_from_response(
            GOAL_PICTURE, response, pm.planar(T) if T is not None else None, task.backend if task else ""
        )
        with self._lock:
            if task is not None and self._task is task:
                self._reading = reading

    def _feedback(self, task: ActiveTask, decision: Decision, obs: Observation) -> None:
        feedback = GoToPicture.Feedback(subtask=decision.subtask or decision.reason, stale=decision.stale)
        reading = self._reading
        if reading is not None:
            now = reading.relative_to(obs.odom_base)
            T = yaw_pose(reading.pose.x, reading.pose.y, reading.pose.yaw)  # noqa: N806
            pose = conv.matrix_to_pose_stamped(
                T, reading.stamp_ns, self.config.base_frame, factory=self._factory
            )
            feedback.answer.header = pose.header
            feedback.answer.pose.pose = pose.pose
            sigma = reading.sigma_m if math.isfinite(reading.sigma_m) else 1e6
            feedback.answer.pose.covariance[0] = feedback.answer.pose.covariance[7] = sigma**2
            feedback.confidence = float(reading.confidence)
            feedback.seen_probability = float(reading.seen_probability)
            feedback.distance_m = float(now.distance)
        task.handle.publish_feedback(feedback)

    # -- status -------------------------------------------------------------------------------------

    def _problem(self, text: str) -> None:
        self._last_problem = text
        self.get_logger().warning(text, throttle_duration_sec=WARN_PERIOD_S)

    def status(self) -> dict[str, Any]:
        """Rate held, decision latency, the memory's availability, counters, the last problem."""
        periods = np.array(self._periods).reshape(-1, 2) if self._periods else np.full((1, 2), math.nan)
        lat = np.array(self._latencies) if self._latencies else np.array([math.nan])
        cpu = np.array(self._cpu) if self._cpu else np.array([math.nan])
        rates = 1.0 / periods.mean(axis=0)  # over the last 60 ticks: on the node's clock (sim time), wall
        stats = getattr(self.policy, "stats", None)
        return {
            "policy": self.policy.name,
            "rate_hz_target": self.config.rate_hz,
            "rate_hz_measured": float(rates[0]) if np.isfinite(rates[0]) else None,
            "rate_hz_wall": float(rates[1]) if np.isfinite(rates[1]) else None,
            "decision_ms_p50": float(np.median(lat) * 1e3) if np.isfinite(lat).all() else None,
            "decision_ms_max": float(np.max(lat) * 1e3) if np.isfinite(lat).all() else None,
            # the decision's own work: wall time also counts waiting for a core or the GIL on a busy machine
            "decision_cpu_ms_max": float(np.max(cpu) * 1e3) if np.isfinite(cpu).all() else None,
            "task_active": self._task is not None,
            "memory_available": self._query.service_is_ready()
            and self._memory_failures < MEMORY_FAILURES_UNAVAILABLE,
            **self._counts,
            "policy_stats": stats() if callable(stats) else {},
            "last_problem": self._last_problem,
        }

    def _publish_status(self) -> None:
        self._status_pub.publish(String(data=json.dumps(self.status(), sort_keys=True, default=str)))

    def destroy_node(self) -> None:
        close = getattr(self.policy, "close", None)
        if callable(close):
            close()
        super().destroy_node()


def policy_health_checks(rate_hz: float) -> HealthChecks:
    """Healthy: the tick rate within 20 % of its target on the node's clock, no
    query failures or timeouts, no VLM fallbacks, timeouts or failures since the last report."""
    vlm = ("timeouts", "http_errors", "connection_errors", "malformed", "failures", "stale_decisions")
    return HealthChecks(
        min_rates={"rate_hz_measured": 0.8 * rate_hz},
        bad_counters=("query_failures", "query_timeouts", "promotion_failures")
        + tuple(f"policy_stats.{key}" for key in vlm),
    )


def main(args: list[str] | None = None) -> int:
    """Run policy_node until Ctrl-C or shutdown (three threads: the tick, the action, service answers)."""
    return spin_node(PolicyNode, topics.POLICY_NODE, args, threads=3)


if __name__ == "__main__":
    sys.exit(main())
