"""policy_node and goal_follower_node in-process with real rclpy: the go_to_picture action against a fake
/query_pose (a place fixed in odom, answered relative to the base as TF has it), nominations through
/promote_keyframe, not seen, no memory, cancel, preemption, a malformed picture; the follower's cmd_vel on a
map, and its stop when the goal goes stale. Skipped where rclpy is absent."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped, TransformStamped, Twist  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from tf2_ros import TransformBroadcaster  # noqa: E402

from spatial_memory.geometry import yaw_pose  # noqa: E402
from spatial_memory.memory.engine import MemoryAnswer, level_camera_pose  # noqa: E402
from spatial_memory.msgs import conversions as conv  # noqa: E402
from spatial_memory.msgs import topics  # noqa: E402
from spatial_memory.ros import memory_messages as mm  # noqa: E402
from spatial_memory.ros import navigation_messages as nm  # noqa: E402
from spatial_memory.sim.planning import OccupancyGrid  # noqa: E402

pytestmark = pytest.mark.ros
FACTORY = conv.RclpyFactory()
LATCHED = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)


def picture(seed: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), np.uint8))


@pytest.fixture
def graph(ros) -> Iterator[SimpleNamespace]:
    """One executor for the nodes under test and a probe; `wait(pred, tick)` spins until pred holds."""
    executor = SingleThreadedExecutor()
    probe = rclpy.create_node("policy_test_probe")
    executor.add_node(probe)
    nodes = [probe]
    received: dict[str, list] = defaultdict(list)
    tf = TransformBroadcaster(probe)
    state = SimpleNamespace(base=[0.0, 0.0, 0.0], frame=0)

    def add(node):
        executor.add_node(node)
        nodes.append(node)
        return node

    def listen(msg_type, topic, qos=10):
        probe.create_subscription(msg_type, topic, received[topic].append, qos)

    camera = probe.create_publisher(Image, topics.CAMERA_IMAGE, 10)

    def feed() -> None:
        """TF odom -> base_link at the robot's pose now, and a camera frame (a new view every 10)."""
        now = probe.get_clock().now().nanoseconds
        t = TransformStamped()
        msg = conv.matrix_to_transform_stamped(
            yaw_pose(*state.base), now, "odom", "base_link", factory=FACTORY
        )
        t.header, t.child_frame_id, t.transform = msg.header, msg.child_frame_id, msg.transform
        tf.sendTransform(t)
        state.frame += 1
        image = picture(state.frame // 10)
        camera.publish(conv.numpy_to_image(image, "rgb8", factory=FACTORY, stamp_ns=now, frame_id="camera"))

    def wait(pred: Callable[[], bool], timeout: float = 15.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            feed()
            executor.spin_once(timeout_sec=0.02)
            if pred():
                return True
        return pred()

    yield SimpleNamespace(
        executor=executor, probe=probe, add=add, listen=listen, wait=wait, received=received, state=state
    )
    for node in nodes:
        executor.remove_node(node)
        node.destroy_node()
    executor.shutdown()


class FakeMemory:
    """/query_pose: a place fixed in odom, answered relative to the base's pose (as TF has it) now."""

    def __init__(self, graph, place=(3.0, 1.0, 0.0), seen=0.9, sigma=0.3) -> None:
        from spatial_memory_interfaces.srv import QueryPose

        self.graph, self.place, self.seen, self.sigma = graph, place, seen, sigma
        self.requests: list = []
        graph.probe.create_service(QueryPose, topics.QUERY_POSE, self.answer)

    def answer(self, request, response):
        self.requests.append(request)
        bx, by, byaw = self.graph.state.base
        dx, dy = self.place[0] - bx, self.place[1] - by
        c, s = math.cos(byaw), math.sin(byaw)
        x, y = c * dx + s * dy, -s * dx + c * dy
        yaw = self.place[2] - byaw
        answer = MemoryAnswer(
            T_base_query=level_camera_pose(x, y, yaw, 1.45), x=x, y=y, yaw=yaw, sigma_m=self.sigma,
            confidence=1 / (1 + self.sigma), seen_probability=self.seen, backend="kinaema", steps=10,
        )  # fmt: skip
        now = self.graph.probe.get_clock().now().nanoseconds
        return mm.fill_query_response(response, answer, frame_id="base_link", stamp_ns=now, factory=FACTORY)


def policy_node(graph, **params):
    from spatial_memory.ros.policy_node import PolicyNode

    values = {"rate_hz": 5.0, "scripted.memory_patience_ticks": 4, "scripted.not_seen_ticks": 3, **params}
    node = graph.add(PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
    graph.listen(PoseStamped, topics.GOAL_POSE)
    graph.listen(PoseWithCovarianceStamped, topics.POLICY_GOAL)
    graph.listen(String, topics.POLICY_STATUS)
    graph.listen(String, topics.POLICY_DECISION)
    return node


def send(graph, image: np.ndarray | None = None, encoding: str = "rgb8", budget: float = 0.0):
    from spatial_memory_interfaces.action import GoToPicture

    client = ActionClient(graph.probe, GoToPicture, topics.GO_TO_PICTURE)
    assert graph.wait(client.server_is_ready), "the go_to_picture action did not come up"
    feedback: list = []
    goal = GoToPicture.Goal(budget_s=budget)
    goal.picture = conv.numpy_to_image(picture(99) if image is None else image, "rgb8", factory=FACTORY)
    goal.picture.encoding = encoding
    sent = client.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback))
    assert graph.wait(sent.done)
    return sent.result(), feedback


def result_of(graph, handle, timeout: float = 20.0):
    future = handle.get_result_async()
    assert graph.wait(future.done, timeout), "no result"
    return future.result().result


def test_go_to_picture_drives_to_the_memory_answer_and_arrives(graph):
    from spatial_memory_interfaces.action import GoToPicture

    memory = FakeMemory(graph, place=(3.0, 1.0, 0.0))
    policy_node(graph)
    handle, feedback = send(graph)
    assert handle.accepted
    goals = graph.received[topics.GOAL_POSE]
    assert graph.wait(lambda: any(g.pose.position.x > 1 for g in goals)), "no goal towards the place"
    g = next(g for g in goals if g.pose.position.x > 1)
    assert g.header.frame_id == "odom"
    assert (g.pose.position.x, g.pose.position.y) == pytest.approx((3.0, 1.0), abs=0.05)
    assert feedback and feedback[-1].distance_m == pytest.approx(math.hypot(3.0, 1.0), abs=0.1)
    assert feedback[-1].confidence == pytest.approx(1 / 1.3, abs=1e-3)
    shown_goals = graph.received[topics.POLICY_GOAL]  # RViz's copy, with the memory's sigma
    assert graph.wait(lambda: any(g.pose.pose.position.x > 1 for g in shown_goals))
    shown = next(g for g in shown_goals if g.pose.pose.position.x > 1)
    assert (shown.pose.pose.position.x, shown.pose.pose.position.y) == pytest.approx((3.0, 1.0), abs=0.05)
    assert shown.pose.covariance[0] == shown.pose.covariance[7] == pytest.approx(0.3**2, rel=0.05)
    graph.state.base = [2.8, 0.9, 0.3]  # the robot drove there (TF follows)
    result = result_of(graph, handle)
    assert result.status == GoToPicture.Result.ARRIVED, result.reason
    assert len(memory.requests) >= 2  # asked every tick
    hold = graph.received[topics.GOAL_POSE][-1]  # the base's own pose: stand still
    assert (hold.pose.position.x, hold.pose.position.y) == pytest.approx((2.8, 0.9), abs=0.05)


def test_the_memory_saying_not_seen_ends_the_task_and_nominations_promote_by_stamp(graph):
    from spatial_memory_interfaces.action import GoToPicture
    from spatial_memory_interfaces.srv import PromoteKeyframe

    promoted: list = []

    def promote(request, response):
        promoted.append(conv.stamp_to_ns(request.stamp))
        response.success, response.message = True, "ok"
        response.keyframe.frame_id = len(promoted)
        return response

    graph.probe.create_service(PromoteKeyframe, topics.PROMOTE_KEYFRAME, promote)
    FakeMemory(graph, seen=0.1)
    policy_node(graph)
    handle, _ = send(graph)
    result = result_of(graph, handle)
    assert result.status == GoToPicture.Result.NOT_SEEN and "not seen" in result.reason
    assert promoted and all(s > 0 for s in promoted)  # novel frames were nominated by their stamps


def test_without_a_memory_the_robot_holds_still_then_the_policy_gives_up(graph):
    from spatial_memory_interfaces.action import GoToPicture

    policy_node(graph)
    handle, _ = send(graph)
    result = result_of(graph, handle)
    assert result.status == GoToPicture.Result.GAVE_UP and "memory" in result.reason
    goals = graph.received[topics.GOAL_POSE]
    assert goals and all(abs(g.pose.position.x) < 1e-6 and abs(g.pose.position.y) < 1e-6 for g in goals)
    assert graph.wait(lambda: graph.received[topics.POLICY_STATUS])
    status = json.loads(graph.received[topics.POLICY_STATUS][-1].data)
    assert status["memory_available"] is False and status["ticks"] >= 4
    # a decision's CPU time never exceeds its wall time (which also counts waiting for a core)
    assert 0.0 <= status["decision_cpu_ms_max"] <= status["decision_ms_max"] + 1.0


def test_a_malformed_picture_is_rejected(graph):
    policy_node(graph)
    handle, _ = send(graph, encoding="32FC1")
    assert not handle.accepted


def test_cancel_stops_the_robot_and_a_new_goal_preempts(graph):
    from spatial_memory_interfaces.action import GoToPicture

    FakeMemory(graph, place=(6.0, 0.0, 0.0))
    policy_node(graph)
    first, _ = send(graph)
    assert graph.wait(lambda: any(g.pose.position.x > 1 for g in graph.received[topics.GOAL_POSE]))
    second, _ = send(graph)
    assert result_of(graph, first).status == GoToPicture.Result.GAVE_UP  # preempted
    cancel = second.cancel_goal_async()
    assert graph.wait(cancel.done)
    result = result_of(graph, second)
    assert result.status == GoToPicture.Result.CANCELED
    hold = graph.received[topics.GOAL_POSE][-1]
    assert abs(hold.pose.position.x) < 1e-6  # the base's own pose: stop


def test_the_budget_ends_the_task(graph):
    from spatial_memory_interfaces.action import GoToPicture

    FakeMemory(graph, place=(6.0, 0.0, 0.0))
    policy_node(graph)
    handle, _ = send(graph, budget=0.6)
    result = result_of(graph, handle)
    assert result.status == GoToPicture.Result.GAVE_UP and "out of time" in result.reason


class HeldMemory:
    """/query_pose from a node of its own, spun in a thread: each answer waits until `release` is set, and
    says the pictured place is where `places` puts it for that picture (by the picture's first byte)."""

    def __init__(self, graph, places: dict[int, tuple[float, float]]) -> None:
        from spatial_memory_interfaces.srv import QueryPose

        self.graph, self.places = graph, places
        self.release, self.asked = threading.Event(), threading.Event()
        self.node = rclpy.create_node("held_memory")
        self.node.create_service(QueryPose, topics.QUERY_POSE, self.answer)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def answer(self, request, response):
        self.asked.set()
        self.release.wait(10.0)
        px, py = self.places[bytes(request.query.data[:1])[0]]
        bx, by, byaw = self.graph.state.base
        c, s = math.cos(byaw), math.sin(byaw)
        x, y = c * (px - bx) + s * (py - by), -s * (px - bx) + c * (py - by)
        answer = MemoryAnswer(
            T_base_query=level_camera_pose(x, y, 0.0, 1.45), x=x, y=y, yaw=0.0, sigma_m=0.2,
            confidence=1 / 1.2, seen_probability=0.9, backend="kinaema", steps=10,
        )  # fmt: skip
        now = self.node.get_clock().now().nanoseconds
        return mm.fill_query_response(response, answer, frame_id="base_link", stamp_ns=now, factory=FACTORY)

    def close(self) -> None:
        self.release.set()
        self.executor.shutdown()
        self.node.destroy_node()
        self.thread.join(5.0)


def test_an_answer_about_the_previous_goals_picture_is_not_taken_for_the_new_goal(graph):
    """Found live: a /query_pose call about goal 1's picture came back after goal 2 started, was read as
    goal 2's answer, and goal 2 'arrived' at once 2.9 m from its place. Answers are tied to their goal."""
    from spatial_memory_interfaces.action import GoToPicture

    here, there = picture(7), picture(8)
    here[0, 0, 0], there[0, 0, 0] = 1, 2  # the fake memory tells the pictures apart by their first byte
    memory = HeldMemory(graph, {1: (0.1, 0.0), 2: (4.0, 0.0)})  # picture 1: where the robot stands
    try:
        policy_node(graph)
        first, _ = send(graph, here)
        assert graph.wait(memory.asked.is_set), "the policy never asked the memory"
        cancel = first.cancel_goal_async()  # goal 1 ends while its question is unanswered
        assert graph.wait(cancel.done)
        second, _ = send(graph, there)
        memory.release.set()  # now the answer about picture 1 ("you are there") comes back
        goals = graph.received[topics.GOAL_POSE]
        assert graph.wait(lambda: any(g.pose.position.x > 3.5 for g in goals)), "never drove to goal 2"
        done = second.get_result_async()
        graph.wait(done.done, timeout=1.0)
        assert not done.done() or done.result().result.status != GoToPicture.Result.ARRIVED
        status_msgs = graph.received[topics.POLICY_STATUS]
        assert graph.wait(lambda: status_msgs and json.loads(status_msgs[-1].data)["answers_dropped"] >= 1)
    finally:
        memory.close()


# ---------------------------------------------------------------------------------------------- follower


def test_goal_follower_drives_to_a_goal_on_the_map_and_stops_when_it_goes_stale(graph):
    from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg

    from spatial_memory.ros.goal_follower_node import GoalFollowerNode

    occ = np.zeros((80, 120), bool)
    occ[[0, -1], :] = occ[:, [0, -1]] = True
    grid = OccupancyGrid(occ, (0.0, 0.0), 0.05)
    probe = graph.probe
    map_pub = probe.create_publisher(OccupancyGridMsg, topics.MAP, LATCHED)
    map_pub.publish(nm.occupancy_grid_message(grid, 0, "world", factory=FACTORY))
    pose_pub = probe.create_publisher(PoseStamped, topics.GT_BASE_POSE, 10)
    goal_pub = probe.create_publisher(PoseStamped, topics.GOAL_POSE, 10)
    graph.listen(Twist, topics.CMD_VEL)
    graph.listen(String, topics.GOAL_FOLLOWER_STATUS)
    params = [Parameter("follower.stale_s", value=1.0), Parameter("robot_radius_m", value=0.3)]
    node = graph.add(GoalFollowerNode(parameter_overrides=params))

    def now() -> int:
        return probe.get_clock().now().nanoseconds

    pose_pub.publish(conv.matrix_to_pose_stamped(yaw_pose(1.0, 1.0, 0.0), now(), "world", factory=FACTORY))
    assert graph.wait(lambda: node.follower is not None and node._pose is not None)
    goal_pub.publish(conv.matrix_to_pose_stamped(yaw_pose(4.0, 2.0, 0.0), now(), "world", factory=FACTORY))
    cmds = graph.received[topics.CMD_VEL]
    assert graph.wait(lambda: any(abs(c.linear.x) > 0 or abs(c.angular.z) > 0 for c in cmds))
    # no new goal for longer than stale_s: one zero command, then silence
    assert graph.wait(lambda: cmds and cmds[-1].linear.x == 0 and cmds[-1].angular.z == 0, timeout=5.0)
    n = len(cmds)
    graph.wait(lambda: False, timeout=0.5)
    assert len(cmds) == n
    statuses = graph.received[topics.GOAL_FOLLOWER_STATUS]
    assert graph.wait(lambda: statuses and json.loads(statuses[-1].data)["state"] == "stale", timeout=3.0)


def test_goal_follower_without_a_map_ignores_goals_and_never_drives(graph):
    from spatial_memory.ros.goal_follower_node import GoalFollowerNode

    probe = graph.probe
    pose_pub = probe.create_publisher(PoseStamped, topics.GT_BASE_POSE, 10)
    goal_pub = probe.create_publisher(PoseStamped, topics.GOAL_POSE, 10)
    graph.listen(Twist, topics.CMD_VEL)
    graph.listen(String, topics.GOAL_FOLLOWER_STATUS)
    node = graph.add(GoalFollowerNode())
    now = probe.get_clock().now().nanoseconds
    pose_pub.publish(conv.matrix_to_pose_stamped(yaw_pose(1.0, 1.0, 0.0), now, "world", factory=FACTORY))
    goal_pub.publish(conv.matrix_to_pose_stamped(yaw_pose(3.0, 1.0, 0.0), now, "world", factory=FACTORY))
    statuses = graph.received[topics.GOAL_FOLLOWER_STATUS]
    assert graph.wait(lambda: statuses and json.loads(statuses[-1].data)["state"] == "no map", timeout=5.0)
    assert graph.wait(lambda: "no map" in node._last_problem, timeout=3.0)
    assert graph.received[topics.CMD_VEL] == []  # nothing drives without a map
