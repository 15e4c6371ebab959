"""The package's layers point one way, read from the source (every import, TYPE_CHECKING and local ones too).

    base      errors, atomic, geometry, resources, provenance, config, stamps, health, saved_state, timing,
              msgs/topics
    msgs/     ROS-free message conversions and topic names: base only
    core      robot, vo, memory, context, policy, sim, eval: base, msgs and each other, never ros/
    app       node_configs, pipeline, cli, *_demo: anything but ros/
    ros/      the only place rclpy and ROS message packages are imported; nothing imports it

and no module imports itself back through others (no import circles between modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spatial_memory" / "spatial_memory"
ROS_ONLY = {
    "rclpy", "tf2_ros", "tf2_py", "cv_bridge", "tf_transformations", "launch", "launch_ros",
    "diagnostic_updater", "spatial_memory_interfaces", "sensor_msgs", "geometry_msgs", "nav_msgs",
    "std_msgs", "std_srvs", "visualization_msgs", "tf2_msgs", "rosgraph_msgs", "builtin_interfaces",
    "diagnostic_msgs", "action_msgs", "rcl_interfaces",
}  # fmt: skip
BASE = {
    "errors", "atomic", "geometry", "resources", "provenance", "config", "stamps", "health", "saved_state",
    "timing",
}  # fmt: skip
CORE = {"robot", "vo", "memory", "context", "policy", "sim", "eval"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved), wherever in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from pkg import module` names the module, not the package
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _layer(module: str) -> str:
    if module in ("spatial_memory", "spatial_memory.msgs.topics"):
        return "base"  # the package's __init__ (errors only) and the graph's names (no imports at all)
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top == "ros":
        return "ros"
    if top == "msgs":
        return "msgs"
    if top in BASE:
        return "base"
    if top in CORE:
        return "core"
    return "app"  # the package root, node_configs, pipeline, cli, demos


ALLOWED = {
    "base": {"base"},
    "msgs": {"base", "msgs"},
    "core": {"base", "msgs", "core"},
    "app": {"base", "msgs", "core", "app"},
    "ros": {"base", "msgs", "core", "app", "ros"},
}


def test_the_graph_is_read():
    """Guards the test itself: a parser that found nothing would pass everything below."""
    assert len(MODULES) > 80
    assert "spatial_memory.msgs.conversions" in GRAPH["spatial_memory.ros.memory_node"]
    assert "spatial_memory.sim.planning" in GRAPH["spatial_memory.sim.worlds"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    wrong = sorted(m for m in GRAPH[module] if _layer(m) not in ALLOWED[_layer(module)])
    assert not wrong, f"{module} ({_layer(module)}) imports {wrong} from a layer above it"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) != "ros"))
def test_only_ros_imports_ros(module):
    ros = sorted(m for m in _imports(MODULES[module]) if m.split(".")[0] in ROS_ONLY)
    assert not ros, f"{module} imports ROS packages {ros}: only spatial_memory.ros may"


def _circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert _circles() == []


def test_a_circle_would_be_found(monkeypatch):
    """The circle finder finds a planted circle (so an empty answer above means something)."""
    monkeypatch.setitem(
        GRAPH,
        "spatial_memory.sim.planning",
        GRAPH["spatial_memory.sim.planning"] | {"spatial_memory.sim.worlds"},
    )
    assert ["spatial_memory.sim.planning", "spatial_memory.sim.worlds"] in _circles()
