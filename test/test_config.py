"""Parameter files and the config schema against hostile input (issue 14): misspelt or empty sections,
wrong top-level types, duplicate keys, infinities and sizes that cannot fit in memory are one clear
ConfigError at load, naming the file, section or parameter."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from spatial_memory.config import check_finite, load_config, load_node_params
from spatial_memory.context.config import MAX_HISTORY_CAPACITY, ContextConfig
from spatial_memory.errors import ConfigError
from spatial_memory.node_configs import (
    MemoryNodeConfig,
    SpatialContextNodeConfig,
    VoNodeConfig,
)
from spatial_memory.resources import share_path


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_the_shipped_parameter_files_still_load() -> None:
    for name in ("config/robot.yaml", "config/sim.yaml"):
        node = load_config(MemoryNodeConfig, share_path(name), "memory_node")
        assert node.update_rate_hz == 5.0


def test_a_misspelt_node_section_is_refused_naming_it_and_the_known_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "memory_nodee:\n  ros__parameters:\n    update_rate_hz: 2.0\n")
    with pytest.raises(ConfigError, match=r"unknown node section 'memory_nodee'.*memory_node") as err:
        load_config(MemoryNodeConfig, path, "memory_node")
    assert str(path) in str(err.value) and "spatial_context_node" in str(err.value)


def test_other_nodes_wildcards_and_namespaces_are_sections_too(tmp_path: Path) -> None:
    text = (
        "/**:\n  ros__parameters:\n    use_sim_time: true\n"
        "fk_node:\n  ros__parameters:\n    clamp_joints: true\n"
        "/robot1/vo_node:\n  ros__parameters:\n    path_length: 3\n"
        "memory_node:\n  ros__parameters:\n    update_rate_hz: 2.0\n"
    )
    assert load_node_params(_write(tmp_path, text), "memory_node") == {"update_rate_hz": 2.0}
    # a node outside this package: named by the caller
    text = "my_node:\n  ros__parameters:\n    a: 1\n"
    assert load_node_params(_write(tmp_path, text), "my_node") == {"a": 1}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- memory_node\n- update_rate_hz\n", "holds a list at the top level"),
        ("42\n", "holds a int at the top level"),
        ("memory_node:\n  ros__parameters: [1, 2]\n", r"ros__parameters must be a mapping"),
        ("memory_node: {ros_parameters: {update_rate_hz: 2.0}}\n", "must hold a 'ros__parameters'"),
    ],
)
def test_empty_files_and_wrong_shapes_are_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(MemoryNodeConfig, _write(tmp_path, text), "memory_node")


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    text = (
        "memory_node:\n"
        "  ros__parameters:\n"
        "    update_rate_hz: 5.0\n"
        "    status_rate_hz: 1.0\n"
        "    update_rate_hz: 50.0\n"
    )
    twice = r"params.yaml:5: key 'update_rate_hz' given twice \(first on line 3\)"
    with pytest.raises(ConfigError, match=twice):
        load_config(MemoryNodeConfig, _write(tmp_path, text), "memory_node")
    with pytest.raises(ConfigError, match="'memory_node' given twice"):
        load_node_params(_write(tmp_path, "memory_node: {}\nmemory_node: {}\n"), "memory_node")


def test_unreadable_bytes_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(b"memory_node:\n  ros__parameters:\n    world_frame: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read parameter file .*params.yaml"):
        load_node_params(path, "memory_node")


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused_at_load(tmp_path: Path, value: str) -> None:
    text = f"memory_node:\n  ros__parameters:\n    update_rate_hz: {value}\n"
    with pytest.raises(ConfigError, match="memory_node.update_rate_hz: expected a finite number"):
        load_config(MemoryNodeConfig, _write(tmp_path, text), "memory_node")


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (MemoryNodeConfig, "update_rate_hz"),
        (MemoryNodeConfig, "depth_sync_s"),
        (SpatialContextNodeConfig, "map_rate_hz"),
        (SpatialContextNodeConfig, "max_joint_state_age_s"),
        (VoNodeConfig, "status_rate_hz"),
        (VoNodeConfig, "depth_wait_s"),
    ],
)
def test_rates_and_waits_built_in_code_refuse_infinity(cls: type, field: str) -> None:
    with pytest.raises(ConfigError, match=f"{field} must be a finite number"):
        cls(**{field: math.inf})


def test_check_finite_bounds() -> None:
    class Rates:
        a, b, c = 1.0, 0.0, True

    check_finite(Rates(), ("a",))
    check_finite(Rates(), ("b",), inclusive=True)
    with pytest.raises(ConfigError, match="b must be a finite number > 0"):
        check_finite(Rates(), ("b",))
    with pytest.raises(ConfigError, match="c must be a finite number"):
        check_finite(Rates(), ("c",))


def test_a_history_that_cannot_fit_in_memory_is_refused_at_load(tmp_path: Path) -> None:
    text = "spatial_context_node:\n  ros__parameters:\n    context:\n      history_capacity: 1000000000000\n"
    with pytest.raises(ConfigError, match=f"history_capacity must be within 1..{MAX_HISTORY_CAPACITY}"):
        load_config(SpatialContextNodeConfig, _write(tmp_path, text), "spatial_context_node")
    with pytest.raises(ConfigError, match="max_images must be within"):
        ContextConfig(max_images=10**9)
    assert ContextConfig(history_capacity=MAX_HISTORY_CAPACITY).history_capacity == MAX_HISTORY_CAPACITY
