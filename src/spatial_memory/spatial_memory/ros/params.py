"""ROS parameters from a config dataclass: declare every field (typed, described), read the values back.

`declare_config(node, Config)` declares one read-only parameter per leaf of `flatten(Config())` (dotted
names for nested configs, e.g. `context.map.size_px`), typed from the field's annotation (a `float` field
is a DOUBLE even if its default is written as an int), then builds `Config` from the values the node got
(parameter file, launch overrides, defaults) with `spatial_memory.config.from_dict`, so validation is
the dataclass's own, exactly as in the in-process pipeline. rclpy is imported only inside `declare_config`;
the rest is pure so tests can check parameter files without ROS.
"""

from __future__ import annotations

import array
import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from spatial_memory.config import flatten, from_dict
from spatial_memory.errors import ConfigError

C = TypeVar("C")

_SCALARS = {bool: "BOOL", int: "INTEGER", float: "DOUBLE", str: "STRING"}


@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter of a config: dotted name, rclpy `Parameter.Type` name, default, description."""

    name: str
    ros_type: str
    default: Any
    description: str


def _leaf_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, type, dataclasses.Field, Any]]:
    """(dotted name, owning dataclass, field, type hint) of each non-dataclass field, depth first."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            yield from _leaf_fields(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", cls, f, tp


def ros_type_of(tp: Any, where: str) -> str:
    """rclpy `Parameter.Type` name of a field annotation (tuples become arrays), or ConfigError."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    if typing.get_origin(tp) is tuple:
        args = {a for a in typing.get_args(tp) if a is not Ellipsis}
        if len(args) == 1 and next(iter(args)) in _SCALARS:
            return _SCALARS[next(iter(args))] + "_ARRAY"
    raise ConfigError(f"{where}: type {tp!r} has no ROS parameter equivalent")


def _coerce_default(value: Any, ros_type: str, where: str) -> Any:
    """The default as the Python type rclpy expects for `ros_type` (float for DOUBLE, list for arrays)."""
    if ros_type.endswith("_ARRAY"):
        if not value:
            raise ConfigError(f"{where}: ROS cannot declare an empty array default; give it values")
        scalar = ros_type.removesuffix("_ARRAY")
        return [_coerce_default(v, scalar, where) for v in value]
    if value is None:
        raise ConfigError(f"{where}: ROS parameters cannot default to None")
    return float(value) if ros_type == "DOUBLE" else value


def parameter_specs(cls: type) -> list[ParameterSpec]:
    """Every parameter of config `cls` (defaults from `flatten(cls())`), in field order."""
    defaults = flatten(cls())
    specs = []
    for name, owner, f, tp in _leaf_fields(cls):
        where = f"{cls.__name__}.{name}"
        ros_type = ros_type_of(tp, where)
        text = f.metadata.get("help", "")
        label = f"{owner.__name__}.{f.name}" + (f": {text}" if text else "")
        description = f"{label} ({ros_type.lower()}; read at startup)"
        specs.append(
            ParameterSpec(name, ros_type, _coerce_default(defaults[name], ros_type, where), description)
        )
    return specs


def value_matches(ros_type: str, value: Any) -> bool:
    """Whether a parameter-file value has the type ROS will accept for a parameter of `ros_type`."""
    if ros_type.endswith("_ARRAY"):
        scalar = ros_type.removesuffix("_ARRAY")
        return isinstance(value, list) and bool(value) and all(value_matches(scalar, v) for v in value)
    expected = {"BOOL": bool, "INTEGER": int, "DOUBLE": float, "STRING": str}[ros_type]
    return isinstance(value, expected) and not (expected is int and isinstance(value, bool))


def _plain(value: Any) -> Any:
    """A parameter value as plain Python (rclpy may hand arrays back as array.array or numpy)."""
    if isinstance(value, (array.array, tuple)):
        return list(value)
    return value.tolist() if hasattr(value, "tolist") else value


def declare_config(node: Any, cls: type[C]) -> C:
    """Declare all parameters of config `cls` on `node` (read-only, typed, described) and return the config.

    Raises `ConfigError` (naming the node and parameter) when the values do not make a valid config.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import ParameterException
    from rclpy.parameter import Parameter

    declared = []
    for spec in parameter_specs(cls):
        descriptor = ParameterDescriptor(
            name=spec.name,
            type=Parameter.Type[spec.ros_type].value,
            description=spec.description,
            read_only=True,
        )
        try:
            declared.append(node.declare_parameter(spec.name, spec.default, descriptor))
        except ParameterException as exc:  # e.g. `5` in the YAML for a DOUBLE: name the parameter
            raise ConfigError(
                f"{node.get_name()}.{spec.name}: {exc} (expected {spec.ros_type.lower()}, "
                f"e.g. {spec.default!r})"
            ) from exc
    values = {p.name: _plain(p.value) for p in declared}
    return from_dict(cls, values, where=node.get_name())
