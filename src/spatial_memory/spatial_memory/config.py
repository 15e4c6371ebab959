"""One config schema: frozen dataclasses, filled from ROS 2 parameter files or plain dicts.

Each component owns a frozen dataclass config that validates itself in `__post_init__`. The ROS nodes
declare their parameters from the same dataclasses (`flatten`), and the in-process pipeline reads the same
YAML file (`load_node_params`), so the two never drift apart. Nested dataclasses map to dotted ROS
parameter names (`map.size_px`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from spatial_memory.errors import ConfigError

C = TypeVar("C")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/ROS value to the field type `tp`, or raise ConfigError."""
    origin = typing.get_origin(tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    """Build dataclass `cls` from a (possibly nested or dotted-key) mapping; unknown keys are errors."""
    data = unflatten(data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown parameter(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where + '.' if where else ''}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted-name view of a dataclass instance: the ROS parameter names and their values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, name + "."))
        elif isinstance(value, tuple):
            out[name] = list(value)
        else:
            out[name] = value
    return out


def unflatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted keys ('map.size_px') into nested dicts; nested input passes through."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        node = out
        *parents, leaf = str(key).split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"parameter {key!r} clashes with a non-nested value")
        if isinstance(value, Mapping):
            node.setdefault(leaf, {}).update(unflatten(value))
        else:
            node[leaf] = value
    return out


def load_node_params(path: str | Path, node_name: str) -> dict[str, Any]:
    """Parameters of one node from a ROS 2 parameter file (`/**` entries first, the node's own on top)."""
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read parameter file {path}: {exc}") from exc
    params: dict[str, Any] = {}
    for key in ("/**", node_name, "/" + node_name):
        section = doc.get(key)
        if section is None:
            continue
        if not isinstance(section, Mapping) or "ros__parameters" not in section:
            raise ConfigError(f"{path}: section {key!r} must hold a 'ros__parameters' mapping")
        params.update(unflatten(section["ros__parameters"] or {}))
    params.pop("use_sim_time", None)  # a ROS-wide parameter, not a component setting
    return params


def load_config(cls: type[C], path: str | Path, node_name: str) -> C:
    """Dataclass config of `node_name` from a ROS 2 parameter file."""
    return from_dict(cls, load_node_params(path, node_name), where=node_name)
