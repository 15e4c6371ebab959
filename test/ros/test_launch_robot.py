"""launch_testing: `robot.launch.py` on a real RGB-D camera's topics and sizes.

The graph a robot runs (fk_node, spatial_context_node, vo_node, memory_node, policy_node in mobile mode)
is started with a RealSense-style driver's topic names, and this test plays that driver: the TUM RGB-D
clip's real 640x480 colour frames, aligned 16UC1 depth in millimetres and camera_info at 15 Hz, with the
FR3's joint states at 50 Hz. It checks that the nodes come up, that memory_node folds the 640x480 frames
in (cropped to its model's size by default: none refused for their size), that vo_node tracks them, that
/query_pose answers a 640x480 picture, that every node reports on /diagnostics, and that every process
exits cleanly. Runs where ROS 2 and the clip (../shared/data) are present; skipped elsewhere.
"""

from __future__ import annotations

import json
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO.parent / "shared" / "data" / "rgbd_dataset_freiburg3_teddy_frames000-099"
import launch_testing  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from spatial_memory.msgs import conversions as conv  # noqa: E402
from spatial_memory.msgs import topics  # noqa: E402
from spatial_memory.vo import tum  # noqa: E402

LAUNCH = REPO / "launch" / "robot.launch.py"
DRIVER = {  # what realsense2_camera publishes with align_depth
    "image": "/camera/color/image_raw",
    "info": "/camera/color/camera_info",
    "depth": "/camera/aligned_depth_to_color/image_raw",
}
CAMERA_FRAME = "wrist_camera_optical_frame"  # the mount robot.yaml gives fk_node (config camera.*)
NODES = {topics.FK_NODE, topics.SPATIAL_CONTEXT_NODE, topics.VO_NODE, topics.MEMORY_NODE, topics.POLICY_NODE}
STARTUP_S = 90.0
FRAMES = 40  # of the clip, played in a loop


@pytest.mark.launch_test
def generate_test_description():
    args = {
        "mode": "mobile",
        "use_vo": "true",
        "use_memory": "true",
        "memory_checkpoint": str(REPO / "models" / "kinaema_indoor64.pt"),  # robot.yaml names none
        "use_policy": "true",
        "image_topic": DRIVER["image"],
        "camera_info_topic": DRIVER["info"],
        "depth_topic": DRIVER["depth"],
    }
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH)), launch_arguments=args.items()
    )
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()])


def _clip() -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Colour (rgb8), depth (uint16 mm, as a RealSense driver sends it) and K of the first frames."""
    seq = tum.read_tum(CLIP, max_frames=FRAMES)
    rgb = [tum.load_rgb(seq, i) for i in range(FRAMES)]
    depth_m = [tum.load_depth(seq, i) for i in range(FRAMES)]
    depth_mm = [np.round(np.nan_to_num(d, nan=0.0) * 1000.0).astype(np.uint16) for d in depth_m]
    return rgb, depth_mm, seq.K


class TestRobotGraphOnARealCamera(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from std_msgs.msg import String

        from spatial_memory.robot.kinematics import FR3Kinematics

        cls.context = rclpy.Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("robot_launch_probe", context=cls.context)
        cls.executor = rclpy.executors.SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)
        cls.rgb, cls.depth, cls.K = _clip()
        cls.factory = conv.RclpyFactory()
        kin = FR3Kinematics()
        cls.joints = (list(kin.joint_names), [float(v) for v in kin.home])
        cls.pubs = {
            "image": cls.node.create_publisher(Image, DRIVER["image"], qos_profile_sensor_data),
            "info": cls.node.create_publisher(CameraInfo, DRIVER["info"], qos_profile_sensor_data),
            "depth": cls.node.create_publisher(Image, DRIVER["depth"], qos_profile_sensor_data),
            "joints": cls.node.create_publisher(JointState, topics.JOINT_STATES, qos_profile_sensor_data),
        }
        cls.frame = 0
        cls.status: dict[str, dict] = {}
        for topic in (topics.MEMORY_STATUS, topics.VO_STATUS):
            cls.node.create_subscription(
                String, "/" + topic, lambda m, t=topic: cls.status.__setitem__(t, json.loads(m.data)), 10
            )
        cls.node.create_timer(1 / 15, cls._publish_frame)
        cls.node.create_timer(1 / 50, cls._publish_joints)

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        cls.node.destroy_node()
        rclpy.shutdown(context=cls.context)

    @classmethod
    def _publish_frame(cls):
        i = cls.frame % FRAMES
        cls.frame += 1
        stamp = cls.node.get_clock().now().nanoseconds
        f = cls.factory
        where = {"factory": f, "stamp_ns": stamp, "frame_id": CAMERA_FRAME}
        cls.pubs["image"].publish(conv.numpy_to_image(cls.rgb[i], "rgb8", **where))
        cls.pubs["depth"].publish(conv.numpy_to_image(cls.depth[i], "16UC1", **where))
        h, w = cls.rgb[i].shape[:2]
        cls.pubs["info"].publish(conv.make_camera_info(cls.K, w, h, stamp, CAMERA_FRAME, factory=f))

    @classmethod
    def _publish_joints(cls):
        stamp = cls.node.get_clock().now().nanoseconds
        names, q = cls.joints
        cls.pubs["joints"].publish(conv.make_joint_state(names, q, stamp, factory=cls.factory))

    def _spin_until(self, done, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return done()

    def test_the_graph_uses_a_640x480_rgbd_camera(self):
        names = lambda: {n for n, _ in self.node.get_node_names_and_namespaces()}  # noqa: E731
        self.assertTrue(self._spin_until(lambda: names() >= NODES, STARTUP_S), f"missing: {NODES - names()}")

        def used() -> bool:
            memory, vo = self.status.get(topics.MEMORY_STATUS, {}), self.status.get(topics.VO_STATUS, {})
            return memory.get("frames_used", 0) >= 20 and vo.get("frames", 0) >= 20

        ok = self._spin_until(used, STARTUP_S)
        memory, vo = self.status.get(topics.MEMORY_STATUS, {}), self.status.get(topics.VO_STATUS, {})
        self.assertTrue(ok, f"memory status {memory}, vo status {vo}")
        self.assertEqual(vo.get("frames_refused", 0), 0, vo.get("last_problem"))
        self.assertNotIn("size", str(memory.get("last_problem", "")), memory)

    def test_query_pose_answers_a_640x480_picture(self):
        from spatial_memory_interfaces.srv import QueryPose

        client = self.node.create_client(QueryPose, topics.QUERY_POSE)

        def ready() -> bool:
            used = self.status.get(topics.MEMORY_STATUS, {}).get("frames_used", 0)
            return client.service_is_ready() and used > 0

        self.assertTrue(self._spin_until(ready, STARTUP_S), "no memory answering")
        picture = conv.numpy_to_image(self.rgb[5], "rgb8", factory=self.factory, frame_id=CAMERA_FRAME)
        future = client.call_async(QueryPose.Request(query=picture))
        self.assertTrue(self._spin_until(future.done, 30.0), "no /query_pose response within 30 s")
        self.assertTrue(future.result().success, future.result().message)

    def test_every_node_reports_on_diagnostics(self):
        from diagnostic_msgs.msg import DiagnosticArray

        reporting: set[str] = set()

        def on_diag(msg):
            reporting.update(s.name.split(":")[0].lstrip("/") for s in msg.status)

        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diag, 50)
        ok = self._spin_until(lambda: reporting >= NODES, STARTUP_S)
        self.assertTrue(ok, f"not on /diagnostics: {sorted(NODES - reporting)}")


@launch_testing.post_shutdown_test()
class TestRobotShutdown(unittest.TestCase):
    def test_every_process_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])


if not CLIP.is_dir():
    # No clip: not a launch test here, one skipped test says why. (A module-level pytest.skip would abort
    # the launch_testing plugin's collection of every other test file in the run.)
    del generate_test_description, TestRobotGraphOnARealCamera, TestRobotShutdown

    def test_robot_launch_needs_the_tum_clip():
        pytest.skip(f"TUM clip not found at {CLIP} (it lives in ../shared/data beside the checkout)")
