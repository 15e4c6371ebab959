"""Property-based tests of the parameter-file loader (issue 14): whatever YAML a user writes, `load_config`
gives a valid config or one `ConfigError`, never another exception (a traceback, or a bare
`OverflowError` from a 400-digit number)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spatial_memory import node_configs
from spatial_memory.config import flatten, load_config
from spatial_memory.errors import ConfigError

NODES = {
    "fk_node": node_configs.FkNodeConfig,
    "spatial_context_node": node_configs.SpatialContextNodeConfig,
    "sim_node": node_configs.SimNodeConfig,
    "memory_node": node_configs.MemoryNodeConfig,
    "vo_node": node_configs.VoNodeConfig,
    "policy_node": node_configs.PolicyNodeConfig,
    "goal_follower_node": node_configs.GoalFollowerNodeConfig,
}
# every real parameter name of every node: most random documents should reach the value checks
PARAMETERS = sorted({name for cls in NODES.values() for name in flatten(cls())})
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# values at the edges of what a number can be, drawn often enough to be met in every run
EDGE_VALUES = [10**400, -(10**400), 2**63, 2**64, -1, 0, 1e308, float("inf"), float("nan"), "", ".inf"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: YAML reads any run of digits as an int
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(EDGE_VALUES),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
parameter_names = st.sampled_from(PARAMETERS) | st.text(max_size=16)
ros_parameters = st.dictionaries(parameter_names, values, max_size=6)
section_names = st.sampled_from([*NODES, "/**", "/memory_node", "/ns/sim_node"]) | st.text(max_size=10)
sections = st.one_of(
    st.fixed_dictionaries({"ros__parameters": ros_parameters}),
    st.fixed_dictionaries({"ros__parameters": values}),
    values,
)
documents = st.one_of(st.dictionaries(section_names, sections, max_size=3), values)


def _load(text: str, node: str) -> Any:
    """`load_config` of `node` from a parameter file holding `text`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "params.yaml"
        path.write_text(text, encoding="utf-8")
        return load_config(NODES[node], path, node)


def _valid_or_config_error(text: str, node: str) -> None:
    """The property: a config of the node's class, or a ConfigError with a message; nothing else."""
    try:
        config = _load(text, node)
    except ConfigError as exc:
        assert str(exc).strip()
        return
    assert isinstance(config, NODES[node]) and dataclasses.is_dataclass(config)


@SETTINGS
@given(doc=documents, node=st.sampled_from(sorted(NODES)))
def test_any_yaml_document_is_a_config_or_a_config_error(doc: Any, node: str) -> None:
    _valid_or_config_error(yaml.safe_dump(doc, allow_unicode=True), node)


def _own_parameters(node: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """`node` with a few of its own parameter names, each with any value."""
    names = sorted(flatten(NODES[node]()))
    value = st.sampled_from(EDGE_VALUES) | values  # half of them at the edges
    return st.tuples(st.just(node), st.dictionaries(st.sampled_from(names), value, min_size=1, max_size=4))


@SETTINGS
@given(node_params=st.sampled_from(sorted(NODES)).flatmap(_own_parameters))
@example(("memory_node", {"update_rate_hz": 10**400}))  # found: a bare OverflowError
@example(("spatial_context_node", {"context.map.marker_radius_px": 10**400}))  # found: OverflowError
@example(("fk_node", {"base_parent_frame": {".": {}, "": {"": None}}}))  # found: AttributeError
def test_a_nodes_own_parameters_with_any_values(node_params: tuple[str, dict[str, Any]]) -> None:
    """Known names only: every value reaches the type and range checks."""
    node, params = node_params
    _valid_or_config_error(yaml.safe_dump({node: {"ros__parameters": params}}), node)


@SETTINGS
@given(text=st.text(max_size=200), node=st.sampled_from(sorted(NODES)))
@example("memory_node:\n  ros__parameters:\n    update_rate_hz: " + "9" * 5000, "memory_node")  # ValueError
def test_any_text_is_a_config_or_a_config_error(text: str, node: str) -> None:
    """Not even YAML: tabs, stray colons, unbalanced brackets, duplicate keys, anchors."""
    _valid_or_config_error(text, node)


def test_a_valid_document_still_loads() -> None:
    """The property's other branch is reachable: the shipped defaults, dumped, load back equal."""
    for node, cls in NODES.items():
        params = flatten(cls())
        assert _load(yaml.safe_dump({node: {"ros__parameters": params}}), node) == cls()
