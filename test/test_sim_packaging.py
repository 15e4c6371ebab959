"""Static checks of the simulated graph's files: launch/sim.launch.py and config/sim.yaml, and that setup.py
installs them and the sim_node executable. No ROS needed (the launch file is read with `ast`; running it
is tested in test/ros/test_sim_node.py where ROS is installed)."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest
import setuptools
import yaml

from spatial_memory.config import from_dict, load_config, unflatten
from spatial_memory.msgs import topics
from spatial_memory.node_configs import (
    FkNodeConfig,
    GoalFollowerNodeConfig,
    MemoryNodeConfig,
    PolicyNodeConfig,
    SimNodeConfig,
    SpatialContextNodeConfig,
    VoNodeConfig,
)
from spatial_memory.ros.params import parameter_specs, value_matches
from spatial_memory.sim import mobile_robot as mr

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "spatial_memory"
LAUNCH = REPO / "launch" / "sim.launch.py"
PARAMS = REPO / "config" / "sim.yaml"
NODE_CONFIGS = {
    topics.SIM_NODE: SimNodeConfig,
    topics.FK_NODE: FkNodeConfig,
    topics.SPATIAL_CONTEXT_NODE: SpatialContextNodeConfig,
    topics.MEMORY_NODE: MemoryNodeConfig,
    topics.VO_NODE: VoNodeConfig,
    topics.POLICY_NODE: PolicyNodeConfig,
    topics.GOAL_FOLLOWER_NODE: GoalFollowerNodeConfig,
}
# sim.yaml values that differ from the dataclass defaults on purpose: node -> {parameter: reason}
DELIBERATE: dict[str, dict[str, str]] = {
    topics.SIM_NODE: {},
    topics.FK_NODE: {
        "base_parent_frame": "sim_node publishes base_link -> base (the sim's arm mount)",
        "mobile_base_radius_m": "RViz draws the sim's mobile base under the arm",
    },
    topics.SPATIAL_CONTEXT_NODE: {
        "mode": "a mobile robot: camera poses from TF",
        "world_frame": "mobile mode works in the odometry frame",
        "context.camera_frame": "camera/image is the head camera in the sim",
        "context.selection.merge_distance_frames": "a touring robot's views chain into one cluster",
        "context.selection.novelty_threshold": "house rooms: 0.22 nominates nearly every tick",
    },
    topics.MEMORY_NODE: {
        "engine.camera_height_m": "the head camera's height over base_link",
        "engine.keyframe_camera_offset": "the head camera's place on the base",
        "engine.checkpoint": "the shipped model, trained in these simulated houses",
        "engine.jump_check": "measured in the sim (benchmarks/bench_view_jump.py); robots keep it off",
        "refine.loop_every": "measured in the sim (mem_rpe_live_T800_refined_loop.md); robots keep it off",
    },
    topics.VO_NODE: {},
    topics.POLICY_NODE: {
        "scripted.selection.merge_distance_frames": "as spatial_context_node's in the sim",
        "scripted.selection.novelty_threshold": "as spatial_context_node's in the sim",
    },
    topics.GOAL_FOLLOWER_NODE: {},
}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    def called(node: ast.Call) -> str:
        return node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")

    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and called(n) == name]


def _kwarg(call: ast.Call, name: str) -> Any:
    for kw in call.keywords:
        if kw.arg == name:
            try:
                return ast.literal_eval(kw.value)
            except ValueError:
                return None
    return None


@pytest.fixture(scope="module")
def setup_kwargs() -> dict[str, Any]:
    """The keyword arguments setup.py passes to setuptools.setup(), evaluated as pip/colcon would."""
    captured: dict[str, Any] = {}
    cwd, real_setup = os.getcwd(), setuptools.setup
    try:
        os.chdir(PKG)  # data_files globs are relative to setup.py's folder
        setuptools.setup = lambda **kw: captured.update(kw)
        exec(
            compile((PKG / "setup.py").read_text(), str(PKG / "setup.py"), "exec"),
            {"__name__": "__main__", "__file__": str(PKG / "setup.py")},
        )
    finally:
        setuptools.setup = real_setup
        os.chdir(cwd)
    return captured


@pytest.fixture(scope="module")
def params() -> dict[str, dict[str, Any]]:
    """node -> flat (dotted) parameters of its section in sim.yaml."""
    doc = yaml.safe_load(PARAMS.read_text())

    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
        return out

    for node, section in doc.items():
        assert set(section) == {"ros__parameters"}, f"{node}: only 'ros__parameters' belongs under the node"
    return {node: flat(section["ros__parameters"]) for node, section in doc.items()}


@pytest.fixture(scope="module")
def configs(params) -> dict[str, Any]:
    return {node: from_dict(NODE_CONFIGS[node], unflatten(p), where=node) for node, p in params.items()}


# ----------------------------------------------------------------------------------------------------
# launch file
# ----------------------------------------------------------------------------------------------------


def test_launch_file_declares_the_arguments_it_uses():
    tree = ast.parse(LAUNCH.read_text())
    assert "generate_launch_description" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert declared == {
        "world_preset",
        "world_seed",
        "use_rviz",
        "params_file",
        "use_memory",
        "memory_checkpoint",
        "odometry",
        "use_policy",
        "nodes",
    }
    used = {c.args[0].value for c in _calls(tree, "LaunchConfiguration")}
    assert used <= declared, f"LaunchConfiguration of undeclared arguments: {sorted(used - declared)}"
    assert _calls(tree, "IfCondition"), "rviz must start under IfCondition(use_rviz)"


def test_launch_starts_our_three_executables_which_setup_py_installs(setup_kwargs):
    tree = ast.parse(LAUNCH.read_text())
    ours = [c for c in _calls(tree, "Node") if _kwarg(c, "package") == "spatial_memory"]
    executables = {_kwarg(c, "executable") for c in ours}
    assert executables == {
        "sim_node",
        "fk_node",
        "spatial_context_node",
        "memory_node",
        "vo_node",
        "policy_node",
        "goal_follower_node",
    }
    scripts = dict(e.replace(" ", "").split("=", 1) for e in setup_kwargs["entry_points"]["console_scripts"])
    for exe in executables:
        module, func = scripts[exe].split(":")
        source = PKG / Path(*module.split(".")).with_suffix(".py")
        assert func in {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}


def test_launch_runs_everything_but_sim_node_on_sim_time():
    text = LAUNCH.read_text()
    assert '"use_sim_time": False' in text and 'sim_time = {"use_sim_time": True}' in text
    tree = ast.parse(text)
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {p for p in names if p.endswith((".yaml", ".rviz"))} == {"sim.yaml", "spatial_memory.rviz"}
    assert {"sim.world.preset", "sim.world.seed"} <= names  # the overridden parameters exist
    assert {"sim.world.preset", "sim.world.seed"} <= {s.name for s in parameter_specs(SimNodeConfig)}


def test_sim_files_are_installed(setup_kwargs):
    installed = {Path(f).name: dest for dest, files in setup_kwargs["data_files"] for f in files}
    assert installed["sim.launch.py"] == "share/spatial_memory/launch"
    assert installed["sim.yaml"] == "share/spatial_memory/config"


# ----------------------------------------------------------------------------------------------------
# parameter file
# ----------------------------------------------------------------------------------------------------


def test_sim_yaml_configures_exactly_our_three_nodes(params):
    assert set(params) == set(NODE_CONFIGS)


@pytest.mark.parametrize("node", sorted(NODE_CONFIGS))
def test_every_parameter_is_in_sim_yaml_with_its_type_and_default(params, node):
    specs = parameter_specs(NODE_CONFIGS[node])
    assert sorted(set(params[node]) - {s.name for s in specs}) == [], "in sim.yaml but not declared"
    assert sorted({s.name for s in specs} - set(params[node])) == [], "declared but missing from sim.yaml"
    for spec in specs:
        value = params[node][spec.name]
        assert value_matches(spec.ros_type, value), (
            f"{node}.{spec.name}: {value!r} is not a ROS {spec.ros_type}"
        )
        if spec.name in DELIBERATE[node]:
            assert value != spec.default, f"{node}.{spec.name} is listed as deliberate but is the default"
        else:
            assert value == pytest.approx(spec.default), f"{node}.{spec.name} differs from the default"


def test_the_three_nodes_agree_on_the_robot(configs):
    sim, fk, ctx = (configs[n] for n in (topics.SIM_NODE, topics.FK_NODE, topics.SPATIAL_CONTEXT_NODE))
    assert fk.camera == sim.sim.robot.wrist_mount, (
        "fk_node's wrist camera TF and the rendered view would differ"
    )
    assert fk.base_parent_frame == "", "base_link -> base has one publisher: sim_node"
    assert ctx.mode == "mobile" and ctx.world_frame == sim.odom_frame and ctx.base_frame == sim.base_frame
    assert ctx.context.camera_frame == mr.HEAD_OPTICAL_FRAME  # the frame of camera/image
    assert ctx.frame_rate_hz <= sim.sim.robot.head_camera.rate_hz
    assert sim.publish_odom_tf, "odometry:=wheel (the default): sim_node publishes odom -> base_link"
    vo = configs[topics.VO_NODE]
    assert (vo.odom_frame, vo.base_frame, vo.arm_root_frame) == (sim.odom_frame, sim.base_frame, mr.ARM_ROOT)
    assert vo.use_wheel_odometry and vo.publish_tf, "odometry:=visual: vo_node publishes odom -> base_link"


def test_exactly_one_node_publishes_odom_to_base_link_for_either_odometry():
    """sim.launch.py turns sim_node's odom TF off exactly when it starts vo_node (odometry:=visual)."""
    code = ast.unparse(ast.parse(LAUNCH.read_text()))
    compare = "PythonExpression([\"'\", LaunchConfiguration('odometry'), \"' == '{}'\"])"
    assert f"visual = {compare.format('visual')}" in code
    assert "condition=IfCondition(visual)" in code.split("executable='vo_node'")[1].split(")\n")[0]
    assert f"'publish_odom_tf': ParameterValue({compare.format('wheel')}, value_type=bool)" in code
    assert "choices=['wheel', 'visual']" in code


def test_sim_yaml_loads_like_the_pipeline_loads_it():
    config = load_config(SimNodeConfig, PARAMS, topics.SIM_NODE)
    assert config == SimNodeConfig()
