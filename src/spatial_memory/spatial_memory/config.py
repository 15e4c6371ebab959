"""One config schema: frozen dataclasses, filled from ROS 2 parameter files or plain dicts.

Each component owns a frozen dataclass config that validates itself in `__post_init__`. The ROS nodes
declare their parameters from the same dataclasses (`flatten`), and the in-process pipeline reads the same
YAML file (`load_node_params`), so the two never drift apart. Nested dataclasses map to dotted ROS
parameter names (`map.size_px`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from spatial_memory.errors import ConfigError

C = TypeVar("C")
INT64 = (-(2**63), 2**63 - 1)  # the range of a ROS 2 integer parameter


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
        try:
            number = float(value)  # an int of 309+ digits (YAML reads any digits as an int) overflows
        except OverflowError:
            raise ConfigError(f"{where}: an integer of {value.bit_length()} bits is too large") from None
        if not math.isfinite(number):  # `.inf` / `.nan` in YAML: no setting means "infinitely often"
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if not INT64[0] <= value <= INT64[1]:  # YAML reads any run of digits as an int
            raise ConfigError(f"{where}: an integer of {value.bit_length()} bits does not fit int64 (ROS)")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def check_finite(config: Any, names: Collection[str], minimum: float = 0.0, inclusive: bool = False) -> None:
    """ConfigError unless each named field of `config` is a finite number above `minimum` (at or above it
    when `inclusive`). For rates and timeouts: a bare `value > 0` lets `.inf` through, and an infinite
    rate or wait is never what was meant."""
    for name in names:
        value = getattr(config, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not (ok and (value >= minimum if inclusive else value > minimum)):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


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
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: a value too large for a float
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
            nested = node.setdefault(leaf, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"parameter {key!r} is given both as a value and as a mapping")
            nested.update(unflatten(value))
        elif isinstance(node.get(leaf), dict):
            raise ConfigError(f"parameter {key!r} is given both as a mapping and as a value")
        else:
            node[leaf] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML keeps the last silently,
    so a second `update_rate_hz:` further down a long file would quietly override the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(
                    f"{key_node.start_mark.name}:{line}: key {key!r} given twice (first on line {seen[key]})"
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """The YAML document in `path`, with duplicate keys refused; ConfigError naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read parameter file {path}: {exc}") from exc
    except ValueError as exc:  # an int of 4301+ digits: Python refuses to parse it (CVE-2020-10735)
        raise ConfigError(f"cannot read parameter file {path}: {exc}") from exc


def node_names() -> tuple[str, ...]:
    """The node names a parameter file of this package may hold sections for (`ros.topics.*_NODE`)."""
    from spatial_memory.msgs import topics  # pure module; imported here to keep config.py dependency-free

    return tuple(sorted(v for k, v in vars(topics).items() if k.endswith("_NODE") and isinstance(v, str)))


def _section_node(key: str) -> str:
    """The node a section key addresses: 'memory_node', '/memory_node' and '/ns/memory_node' alike."""
    return key.rstrip("/").rsplit("/", 1)[-1]


def load_node_params(
    path: str | Path, node_name: str, known_nodes: Collection[str] | None = None
) -> dict[str, Any]:
    """Parameters of one node from a ROS 2 parameter file (`/**` entries first, the node's own on top).

    The file must be a non-empty mapping of node sections, and every section must address `/**`, a
    wildcard, or one of `known_nodes` (default: this package's nodes): a misspelt section would otherwise
    be skipped and every default used without a word.
    """
    doc = read_yaml(path)
    if doc is None:
        raise ConfigError(f"parameter file {path} is empty; expected node sections such as '{node_name}:'")
    if not isinstance(doc, Mapping):
        raise ConfigError(
            f"parameter file {path} holds a {type(doc).__name__} at the top level; expected a mapping of "
            f"node sections such as '{node_name}: {{ros__parameters: ...}}'"
        )
    known = set(node_names() if known_nodes is None else known_nodes) | {node_name}
    for key in doc:
        if not isinstance(key, str) or ("*" not in key and _section_node(key) not in known):
            raise ConfigError(f"{path}: unknown node section {key!r}; known node names: {sorted(known)}")
    params: dict[str, Any] = {}
    for key in ("/**", node_name, "/" + node_name):
        section = doc.get(key)
        if section is None:
            continue
        if not isinstance(section, Mapping) or "ros__parameters" not in section:
            raise ConfigError(f"{path}: section {key!r} must hold a 'ros__parameters' mapping")
        values = section["ros__parameters"] or {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{path}: {key}.ros__parameters must be a mapping, got {type(values).__name__}")
        params.update(unflatten(values))
    params.pop("use_sim_time", None)  # a ROS-wide parameter, not a component setting
    return params


def load_config(cls: type[C], path: str | Path, node_name: str) -> C:
    """Dataclass config of `node_name` from a ROS 2 parameter file."""
    return from_dict(cls, load_node_params(path, node_name), where=node_name)
