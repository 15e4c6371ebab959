"""`nodes:=all|robot|workstation` in sim.launch.py and robot.launch.py: which nodes each half starts.

The launch descriptions are built and their conditions evaluated with the real `launch` API (no process is
started): the two halves split the graph with nothing left out and nothing started twice, the robot half
holds sensors and control, the workstation half the memory and the policy, and the other arguments
(use_policy, odometry, use_vo, mode) still apply inside each half. Skipped where ROS 2 is not installed;
benchmarks/ros_two_machines.py runs the halves in two network namespaces.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("launch")
pytest.importorskip("launch_ros")

from launch import LaunchContext, LaunchDescription  # noqa: E402
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction  # noqa: E402
from launch.utilities import perform_substitutions  # noqa: E402
from launch_ros.actions import Node  # noqa: E402

from spatial_memory.msgs import topics  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "models" / "kinaema_indoor64.pt"  # any existing file: memory_node is not started here


def _description(name: str) -> LaunchDescription:
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _started(entities, context: LaunchContext) -> set[str]:
    """Executables the entities start under the context's arguments (groups and opaque functions opened)."""
    started: set[str] = set()
    for entity in entities:
        if entity.condition is not None and not entity.condition.evaluate(context):
            continue
        if isinstance(entity, Node):
            started.add(entity.node_executable)
        elif isinstance(entity, GroupAction):
            started |= _started(entity.get_sub_entities(), context)
        elif isinstance(entity, OpaqueFunction):
            started |= _started(entity.execute(context) or [], context)
    return started


def started(launch_file: str, **arguments: str) -> set[str]:
    """What `ros2 launch spatial_memory <launch_file> k:=v ...` would start."""
    description = _description(launch_file)
    context = LaunchContext()
    arguments = {"params_file": str(REPO / "config" / "sim.yaml"), **arguments}
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            value = arguments.get(entity.name)
            if value is None:
                value = perform_substitutions(context, entity.default_value)
            else:
                assert not entity.choices or value in entity.choices, (entity.name, value)
            context.launch_configurations[entity.name] = value
    return _started(description.entities, context)


SIM_FULL = {"use_policy": "true", "odometry": "visual", "use_memory": "true", "use_rviz": "true"}
SIM_FULL["memory_checkpoint"] = str(CHECKPOINT)
SIM_ROBOT = {"sim_node", "fk_node", "spatial_context_node", "vo_node", "goal_follower_node"}
SIM_WORKSTATION = {"memory_node", "policy_node", "rviz2"}


def test_sim_halves_split_the_whole_graph():
    everything = started("sim.launch.py", **SIM_FULL)
    robot = started("sim.launch.py", nodes="robot", **SIM_FULL)
    workstation = started("sim.launch.py", nodes="workstation", **SIM_FULL)
    assert robot == SIM_ROBOT
    assert workstation == SIM_WORKSTATION
    assert everything == robot | workstation and not robot & workstation
    assert topics.GOAL_FOLLOWER_NODE in robot, "cmd_vel is control: it stays on the robot"
    assert started("sim.launch.py", **SIM_FULL) == started("sim.launch.py", nodes="all", **SIM_FULL)


def test_sim_halves_keep_the_other_arguments():
    assert started("sim.launch.py", nodes="robot") == {"sim_node", "fk_node", "spatial_context_node"}
    assert started("sim.launch.py", nodes="workstation", use_memory="false") == set()
    workstation = started("sim.launch.py", nodes="workstation", use_policy="true", use_memory="false")
    assert workstation == {"policy_node"}


def test_sim_rejects_an_unknown_half():
    with pytest.raises(AssertionError):
        started("sim.launch.py", nodes="laptop")


def test_robot_launch_halves_split_the_whole_graph():
    full = {"mode": "mobile", "use_vo": "true", "use_policy": "true", "use_memory": "true"}
    full["memory_checkpoint"] = str(CHECKPOINT)
    robot = started("robot.launch.py", nodes="robot", **full)
    workstation = started("robot.launch.py", nodes="workstation", **full)
    assert robot == {"fk_node", "spatial_context_node", "vo_node"}
    assert workstation == {"memory_node", "policy_node"}  # rviz is off by default
    assert started("robot.launch.py", **full) == robot | workstation
    assert started("robot.launch.py", nodes="workstation", mode="stationary", use_memory="true") == set()


def _nodes(entities, context: LaunchContext) -> list[Node]:
    """The Node actions the entities start under the context's arguments."""
    found: list[Node] = []
    for entity in entities:
        if entity.condition is not None and not entity.condition.evaluate(context):
            continue
        if isinstance(entity, Node):
            found.append(entity)
        elif isinstance(entity, GroupAction):
            found += _nodes(entity.get_sub_entities(), context)
        elif isinstance(entity, OpaqueFunction):
            found += _nodes(entity.execute(context) or [], context)
    return found


def test_robot_launch_rviz_shows_the_drivers_camera_topic():
    """RViz's camera panel reads /camera/image; with a driver's topic (image_topic:=...) it must follow it,
    as the other nodes do (it showed "No Image" on a RealSense's topics)."""
    import shutil

    if shutil.which("rviz2") is None:
        pytest.skip("rviz2 is not installed: robot.launch.py starts no RViz here")
    description = _description("robot.launch.py")
    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = perform_substitutions(context, entity.default_value)
    context.launch_configurations.update(use_rviz="true", image_topic="/camera/color/image_raw")
    rviz = [n for n in _nodes(description.entities, context) if n.node_executable == "rviz2"]
    assert len(rviz) == 1
    rules = {
        perform_substitutions(context, list(src)): perform_substitutions(context, list(dst))
        for src, dst in rviz[0]._Node__remappings
    }
    assert rules.get(topics.CAMERA_IMAGE) == "/camera/color/image_raw", rules
