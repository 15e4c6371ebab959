"""Static checks of what ROS reads: launch, parameter and RViz files, colcon.meta, package.xml, setup.py.

None of these needs ROS: the launch file is read with `ast`, the YAML files with PyYAML, and the
parameter names come from the nodes' config dataclasses. The last test runs a real `colcon build` of
the ament_python package (colcon from PyPI) in a temporary copy of the workspace.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import setuptools
import yaml

from spatial_memory.config import flatten, from_dict, unflatten
from spatial_memory.msgs import topics
from spatial_memory.node_configs import (
    FkNodeConfig,
    MemoryNodeConfig,
    PolicyNodeConfig,
    SpatialContextNodeConfig,
    VoNodeConfig,
)
from spatial_memory.ros.params import parameter_specs, value_matches

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "spatial_memory"
LAUNCH = REPO / "launch" / "robot.launch.py"
PARAMS = REPO / "config" / "robot.yaml"
RVIZ = REPO / "config" / "spatial_memory.rviz"
NODE_CONFIGS = {
    topics.FK_NODE: FkNodeConfig,
    topics.SPATIAL_CONTEXT_NODE: SpatialContextNodeConfig,
    topics.MEMORY_NODE: MemoryNodeConfig,
    topics.VO_NODE: VoNodeConfig,
    topics.POLICY_NODE: PolicyNodeConfig,
}
# Parameters whose robot.yaml value differs from the dataclass default on purpose: name -> reason.
DELIBERATE: dict[str, dict[str, str]] = {
    topics.FK_NODE: {},
    topics.SPATIAL_CONTEXT_NODE: {},
    topics.MEMORY_NODE: {},
    topics.VO_NODE: {},
    topics.POLICY_NODE: {},
}


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) == name]


def _kwarg(call: ast.Call, name: str) -> Any:
    """Literal value of keyword `name` of a call (None if absent or not a literal)."""
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
    cwd = os.getcwd()
    real_setup = setuptools.setup
    try:
        os.chdir(PKG)  # data_files globs are relative to setup.py's folder
        setuptools.setup = lambda **kw: captured.update(kw)
        code = compile((PKG / "setup.py").read_text(), str(PKG / "setup.py"), "exec")
        exec(code, {"__name__": "__main__", "__file__": str(PKG / "setup.py")})
    finally:
        setuptools.setup = real_setup
        os.chdir(cwd)
    return captured


@pytest.fixture(scope="module")
def console_scripts(setup_kwargs) -> dict[str, str]:
    entries = setup_kwargs["entry_points"]["console_scripts"]
    return {name.strip(): target.strip() for name, target in (e.split("=", 1) for e in entries)}


@pytest.fixture(scope="module")
def params_doc() -> dict:
    return yaml.safe_load(PARAMS.read_text())


def _node_params(doc: dict, node: str) -> dict[str, Any]:
    """Flat (dotted) parameter dict of one node's section."""
    section = doc[node]
    assert set(section) == {"ros__parameters"}, f"{node}: only 'ros__parameters' belongs under the node name"

    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out = {}
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
        return out

    return flat(section["ros__parameters"])


# ----------------------------------------------------------------------------------------------------
# launch file
# ----------------------------------------------------------------------------------------------------


def test_launch_file_parses_and_declares_its_arguments():
    tree = ast.parse(LAUNCH.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    declared = {
        c.args[0].value for c in _calls(tree, "DeclareLaunchArgument") if isinstance(c.args[0], ast.Constant)
    }
    assert {"mode", "use_sim_time", "use_rviz", "params_file"} <= declared
    used = {
        c.args[0].value for c in _calls(tree, "LaunchConfiguration") if isinstance(c.args[0], ast.Constant)
    }
    assert used <= declared, f"LaunchConfiguration of undeclared arguments: {sorted(used - declared)}"
    assert _calls(tree, "IfCondition"), "rviz must start under IfCondition(use_rviz)"


def test_rviz_is_off_by_default_and_checked_before_it_starts():
    """Issue 13/14: `use_rviz:=true` by default failed on a machine without rviz2, after fk_node and
    spatial_context_node had started (left running as orphans). Off by default (a robot is often
    headless, as in sim.launch.py); when asked for, an OpaqueFunction starts it only if rviz2 is
    installed and otherwise logs one line."""
    tree = ast.parse(LAUNCH.read_text())
    declared = {c.args[0].value: c for c in _calls(tree, "DeclareLaunchArgument")}
    assert _kwarg(declared["use_rviz"], "default_value") == "false"
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    rviz = [c for c in _calls(tree, "Node") if _kwarg(c, "package") == "rviz2"]
    assert len(rviz) == 1 and rviz[0] in list(ast.walk(functions["_rviz"])), "rviz2 starts inside _rviz"
    assert _calls(functions["_rviz"], "missing_ros_package") and _calls(functions["_rviz"], "LogInfo")
    keywords = [{k.arg: k.value for k in c.keywords} for c in _calls(tree, "OpaqueFunction")]
    opaque = [k for k in keywords if isinstance(k.get("function"), ast.Name) and k["function"].id == "_rviz"]
    assert len(opaque) == 1 and _call_name(opaque[0]["condition"]) == "IfCondition"


def test_missing_ros_package_names_what_to_install(monkeypatch):
    import sys
    import types

    from spatial_memory.node_configs import missing_ros_package

    class PackageNotFoundError(KeyError):
        pass

    def get_package_prefix(name: str) -> str:
        if name != "rviz2":
            raise PackageNotFoundError(name)
        return "/opt/ros/jazzy"

    fake = types.ModuleType("ament_index_python.packages")
    fake.PackageNotFoundError, fake.get_package_prefix = PackageNotFoundError, get_package_prefix
    monkeypatch.setitem(sys.modules, "ament_index_python", types.ModuleType("ament_index_python"))
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", fake)
    assert missing_ros_package("rviz2") == ""
    assert "sudo apt install ros-$ROS_DISTRO-nav2-bringup" in missing_ros_package("nav2_bringup")
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", None)  # import fails: no ROS sourced
    assert "is ROS 2 sourced?" in missing_ros_package("rviz2")


def test_launched_executables_are_console_scripts(console_scripts):
    tree = ast.parse(LAUNCH.read_text())
    ours = [c for c in _calls(tree, "Node") if _kwarg(c, "package") == "spatial_memory"]
    executables = {_kwarg(c, "executable") for c in ours}
    assert executables == {"fk_node", "spatial_context_node", "memory_node", "vo_node", "policy_node"}
    for exe in executables:
        assert exe in console_scripts, f"launch starts {exe!r}, which setup.py does not install"
        module, func = console_scripts[exe].split(":")
        source = REPO / "src" / "spatial_memory" / Path(*module.split(".")).with_suffix(".py")
        assert func in {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}


def test_files_named_in_the_launch_file_exist():
    tree = ast.parse(LAUNCH.read_text())
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    shipped = {p for p in names if p.endswith((".yaml", ".rviz"))}
    assert shipped == {"robot.yaml", "spatial_memory.rviz"}
    assert all((REPO / "config" / p).is_file() for p in shipped)


# ----------------------------------------------------------------------------------------------------
# parameters
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("node", sorted(NODE_CONFIGS))
def test_every_yaml_parameter_is_declared_and_every_declared_one_is_in_the_yaml(params_doc, node):
    yaml_params = _node_params(params_doc, node)
    declared = {s.name for s in parameter_specs(NODE_CONFIGS[node])}
    assert sorted(set(yaml_params) - declared) == [], "in robot.yaml but not declared by the node"
    assert sorted(declared - set(yaml_params)) == [], "declared by the node but missing from robot.yaml"
    assert set(flatten(NODE_CONFIGS[node]())) == declared


@pytest.mark.parametrize("node", sorted(NODE_CONFIGS))
def test_yaml_values_have_the_declared_types_and_defaults(params_doc, node):
    yaml_params = _node_params(params_doc, node)
    for spec in parameter_specs(NODE_CONFIGS[node]):
        value = yaml_params[spec.name]
        assert value_matches(spec.ros_type, value), (
            f"{node}.{spec.name}: {value!r} is not a ROS {spec.ros_type}"
        )
        if spec.name not in DELIBERATE[node]:
            assert value == pytest.approx(spec.default), f"{node}.{spec.name} differs from the default"
    config = from_dict(NODE_CONFIGS[node], unflatten(yaml_params), where=node)  # validates
    assert dataclasses.is_dataclass(config)


def test_only_our_nodes_are_configured_and_camera_mounts_agree(params_doc):
    assert set(params_doc) == set(NODE_CONFIGS)
    fk = from_dict(FkNodeConfig, unflatten(_node_params(params_doc, topics.FK_NODE)))
    ctx = from_dict(
        SpatialContextNodeConfig, unflatten(_node_params(params_doc, topics.SPATIAL_CONTEXT_NODE))
    )
    assert fk.camera == ctx.camera, "fk_node's TF and the context's FK would disagree"


def _missing_defaults(cls: type, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            out.append(prefix + f.name)
        elif isinstance(f.type, type) and dataclasses.is_dataclass(f.type):
            out += _missing_defaults(f.type, f"{prefix}{f.name}.")
    return out


@pytest.mark.parametrize("cls", list(NODE_CONFIGS.values()))
def test_every_parameter_has_a_default_and_a_ros_type(cls):
    assert _missing_defaults(cls) == []
    specs = parameter_specs(cls)
    assert specs and all(value_matches(s.ros_type, s.default) for s in specs)
    assert all(s.description for s in specs)


def test_a_float_written_as_an_integer_is_caught():
    spec = next(s for s in parameter_specs(SpatialContextNodeConfig) if s.name == "frame_rate_hz")
    assert spec.ros_type == "DOUBLE" and not value_matches("DOUBLE", 5) and value_matches("DOUBLE", 5.0)


# ----------------------------------------------------------------------------------------------------
# RViz
# ----------------------------------------------------------------------------------------------------


def _rviz_topics(displays: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for d in displays:
        for key in ("Topic", "Description Topic"):
            if isinstance(d.get(key), dict):
                out.append((d["Name"], d[key]))
        out += _rviz_topics(d.get("Displays", []))
    return out


def test_rviz_shows_only_topics_our_nodes_publish():
    doc = yaml.safe_load(RVIZ.read_text())
    manager = doc["Visualization Manager"]
    shown = _rviz_topics(manager["Displays"])
    allowed = {"/" + t.lstrip("/") for t in topics.PUBLISHED_TOPICS} | {"/" + topics.CAMERA_IMAGE}
    assert shown and {topic["Value"] for _, topic in shown} <= allowed
    assert manager["Global Options"]["Fixed Frame"] == SpatialContextNodeConfig().world_frame
    classes = {d["Class"] for d in manager["Displays"]}
    assert {"rviz_default_plugins/TF", "rviz_default_plugins/RobotModel"} <= classes
    assert {"rviz_default_plugins/MarkerArray", "rviz_default_plugins/Image"} <= classes


def test_rviz_qos_matches_the_latched_publishers():
    shown = dict(
        (topic["Value"], topic)
        for _, topic in _rviz_topics(yaml.safe_load(RVIZ.read_text())["Visualization Manager"]["Displays"])
    )
    for latched in (
        topics.BEV_MAP,
        topics.ROBOT_DESCRIPTION,
        topics.KEYFRAME_MARKERS,
        topics.KEYFRAME_IMAGES,
    ):
        qos = shown["/" + latched]
        assert (qos["Durability Policy"], qos["Reliability Policy"]) == ("Transient Local", "Reliable"), (
            latched
        )
    assert shown["/" + topics.CAMERA_IMAGE]["Reliability Policy"] == "Best Effort"  # hears any camera driver


# ----------------------------------------------------------------------------------------------------
# workspace metadata
# ----------------------------------------------------------------------------------------------------


def _packages() -> dict[str, Path]:
    """name -> folder of every package.xml under src/."""
    return {
        ET.parse(p).getroot().findtext("name"): p.parent for p in sorted((REPO / "src").glob("*/package.xml"))
    }


def test_colcon_meta_names_real_packages():
    doc = yaml.safe_load((REPO / "colcon.meta").read_text())
    assert isinstance(doc, dict) and set(doc) <= {"names", "paths"}
    assert set(doc.get("names", {})) <= set(_packages())
    for path in doc.get("paths", {}):
        assert (REPO / path).is_dir()


def test_package_xml_files_are_format_3():
    packages = _packages()
    assert set(packages) == {"spatial_memory", "spatial_memory_interfaces"}
    for name, folder in packages.items():
        root = ET.parse(folder / "package.xml").getroot()
        assert root.tag == "package" and root.get("format") == "3"
        assert folder.name == name and root.findtext("version") and root.findtext("license")
        assert root.find("export/build_type") is not None


def test_setup_data_files_are_not_empty(setup_kwargs):
    installed = {dest: files for dest, files in setup_kwargs["data_files"]}
    for dest, files in installed.items():
        assert files, f"data_files entry {dest!r} matched no files"
    names = {Path(f).name for files in installed.values() for f in files}
    assert {"robot.launch.py", "robot.yaml", "spatial_memory.rviz", "fr3.urdf", "package.xml"} <= names


# ----------------------------------------------------------------------------------------------------
# colcon build (ament_python, no ROS needed)
# ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_colcon_build_installs_launch_config_and_urdf(tmp_path):
    colcon = shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon is not installed (pip install colcon-common-extensions)")
    for folder in ("src", "launch", "config", "urdf"):
        shutil.copytree(
            REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    shutil.copy(REPO / "colcon.meta", tmp_path / "colcon.meta")
    env = dict(os.environ, COLCON_HOME=str(tmp_path / ".colcon"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("COLCON_DEFAULTS_FILE", None)
    result = subprocess.run(
        # the interfaces package needs ament_cmake/rosidl (ROS): leave it out of this build
        [
            colcon,
            "build",
            "--base-paths",
            "src",
            "--packages-select",
            "spatial_memory",
            "--packages-ignore",
            "spatial_memory_interfaces",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    share = tmp_path / "install" / "spatial_memory" / "share" / "spatial_memory"
    for rel in ("launch/robot.launch.py", "config/robot.yaml", "config/spatial_memory.rviz", "urdf/fr3.urdf"):
        assert (share / rel).is_file(), f"{rel} was not installed"
    assert (share / "package.xml").is_file()
    index = tmp_path / "install" / "spatial_memory" / "share" / "ament_index" / "resource_index" / "packages"
    assert (index / "spatial_memory").is_file()
    scripts = tmp_path / "install" / "spatial_memory" / "lib" / "spatial_memory"
    assert {"fk_node", "spatial_context_node"} <= {p.name for p in scripts.iterdir()}
