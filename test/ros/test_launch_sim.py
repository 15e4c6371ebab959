"""launch_testing: `sim.launch.py` with every node (visual odometry, memory, policy) brings the graph up.

Starts the launch file of this checkout, then checks from a separate rclpy node that every node is in the
graph, that the topics users read carry messages (camera, TF, map, BEV map, odometry, policy status), that
the services and the action are offered and /query_pose answers, and that every node reports on
/diagnostics; after shutdown, that every process exited cleanly. Runs where ROS 2 is installed (the
launch_testing pytest plugin collects it); skipped elsewhere.
"""

from __future__ import annotations

import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")

import launch_testing  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from spatial_memory.msgs import topics  # noqa: E402

LAUNCH = Path(__file__).resolve().parents[2] / "launch" / "sim.launch.py"
NODES = {
    topics.SIM_NODE, topics.FK_NODE, topics.SPATIAL_CONTEXT_NODE, topics.VO_NODE, topics.MEMORY_NODE,
    topics.POLICY_NODE, topics.GOAL_FOLLOWER_NODE,
}  # fmt: skip
SERVICES = {topics.QUERY_POSE, topics.PROMOTE_KEYFRAME, "/" + topics.MEMORY_QUERY}
FLOWING = {
    topics.CLOCK: "rosgraph_msgs/msg/Clock",
    "/" + topics.CAMERA_IMAGE: "sensor_msgs/msg/Image",
    "/" + topics.CAMERA_DEPTH: "sensor_msgs/msg/Image",
    topics.TF: "tf2_msgs/msg/TFMessage",
    "/" + topics.VO_ODOMETRY: "nav_msgs/msg/Odometry",
    "/" + topics.BEV_MAP: "sensor_msgs/msg/Image",
    "/" + topics.MAP: "nav_msgs/msg/OccupancyGrid",
    "/" + topics.POLICY_STATUS: "std_msgs/msg/String",
    topics.DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
}
STARTUP_S = 90.0  # 2 cores: MuJoCo, torch and seven Python processes start together


@pytest.mark.launch_test
def generate_test_description():
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH)),
        launch_arguments={"odometry": "visual", "use_policy": "true", "use_memory": "true"}.items(),
    )
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()])


def _message_class(type_name: str):
    from rosidl_runtime_py.utilities import get_message

    return get_message(type_name)


class TestSimGraph(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.context = rclpy.Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("launch_test_probe", context=cls.context)
        cls.executor = rclpy.executors.SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        cls.node.destroy_node()
        rclpy.shutdown(context=cls.context)

    def _spin_until(self, done, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.1)
        return done()

    def test_every_node_and_service_is_up(self):
        names = lambda: {n for n, _ in self.node.get_node_names_and_namespaces()}  # noqa: E731
        self.assertTrue(self._spin_until(lambda: names() >= NODES, STARTUP_S), f"missing: {NODES - names()}")
        services = lambda: {n for n, _ in self.node.get_service_names_and_types()}  # noqa: E731
        self.assertTrue(
            self._spin_until(lambda: services() >= SERVICES, 30.0), f"missing: {SERVICES - services()}"
        )
        actions = rclpy.action.get_action_names_and_types(self.node)
        self.assertIn("/" + topics.GO_TO_PICTURE, {n for n, _ in actions})

    def test_topics_carry_messages(self):
        from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

        seen: dict[str, int] = dict.fromkeys(FLOWING, 0)
        latched = QoSProfile(
            depth=1,
            reliability=QoSReliabilityPolicy.RELIABLE,
            durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
        )
        for topic, type_name in FLOWING.items():
            qos = latched if topic in ("/" + topics.BEV_MAP, "/" + topics.MAP) else 10
            if topic.endswith(("image", "depth")):
                qos = rclpy.qos.qos_profile_sensor_data
            self.node.create_subscription(
                _message_class(type_name), topic, lambda _m, t=topic: seen.__setitem__(t, seen[t] + 1), qos
            )
        ok = self._spin_until(lambda: all(seen.values()), STARTUP_S)
        self.assertTrue(ok, f"no message on {[t for t, n in seen.items() if not n]}")

    def test_every_node_reports_on_diagnostics(self):
        from diagnostic_msgs.msg import DiagnosticArray

        reporting: set[str] = set()

        def on_diag(msg):
            reporting.update(s.name.split(":")[0].lstrip("/") for s in msg.status)

        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diag, 50)
        ok = self._spin_until(lambda: reporting >= NODES, STARTUP_S)
        self.assertTrue(ok, f"not on /diagnostics: {sorted(NODES - reporting)}")

    def test_query_pose_answers_a_camera_picture(self):
        from sensor_msgs.msg import Image

        from spatial_memory_interfaces.srv import QueryPose

        pictures: list = []
        self.node.create_subscription(
            Image, "/" + topics.CAMERA_IMAGE, pictures.append, rclpy.qos.qos_profile_sensor_data
        )
        client = self.node.create_client(QueryPose, topics.QUERY_POSE)
        self.assertTrue(self._spin_until(lambda: client.service_is_ready() and pictures, STARTUP_S))
        time.sleep(3.0)  # let the memory fold in a few frames
        future = client.call_async(QueryPose.Request(query=pictures[-1]))
        self.assertTrue(self._spin_until(future.done, 30.0), "no /query_pose response within 30 s")
        response = future.result()
        self.assertTrue(response.success, response.message)


@launch_testing.post_shutdown_test()
class TestSimShutdown(unittest.TestCase):
    def test_every_process_exits_cleanly(self, proc_info):
        # SIGINT from the launch service: 0, or -2 / -15 when a process was signalled while starting
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
