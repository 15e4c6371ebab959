"""A node's health from its status dict: one level and one line, the way ROS diagnostics want it.

Every node keeps a status dict (rates, counters, the last problem). `HealthMonitor` turns successive dicts
into a `Health` (level OK / WARN / ERROR / STALE as diagnostic_msgs/DiagnosticStatus numbers them, a
summary line, and the dict flattened to strings): a rate below its floor, a counter of bad events that grew
since the last report (frames dropped, tracking lost, policy fallbacks), a fresh problem message, or a
status that stopped changing for too long. The rules are data (`HealthChecks`), so each node states what
healthy means for it, and the thresholds are tested here without ROS. `ros/diagnostics.py` publishes the
result on /diagnostics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


@dataclass(frozen=True)
class HealthChecks:
    """What healthy means for one node.

    `min_rates` maps a status key to the lowest acceptable value (a rate in Hz); a missing or None value
    is not judged (nothing measured yet). `bad_counters` are counters of bad events: growth since the
    previous report warns (a dotted key reaches into a nested dict). `error_flags` are keys whose truthy
    value is an error (e.g. "no memory"), `warn_flags` the same for warnings. `problem_key` holds the
    node's last problem text: a new text warns once.
    """

    min_rates: Mapping[str, float] = field(default_factory=dict)
    bad_counters: tuple[str, ...] = ()
    error_flags: tuple[str, ...] = ()
    warn_flags: tuple[str, ...] = ()
    problem_key: str = "last_problem"


@dataclass(frozen=True)
class Health:
    """One report: the level, a one-line summary, and every status value as a string (key, value) pair."""

    level: int
    message: str
    values: tuple[tuple[str, str], ...]

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]


def flatten_status(status: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts become dotted keys; floats keep 4 significant digits; lists and None as JSON."""
    out: list[tuple[str, str]] = []
    for key in sorted(status):
        value, name = status[key], f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += flatten_status(value, f"{name}.")
        elif isinstance(value, float):
            out.append((name, f"{value:.4g}"))
        elif isinstance(value, str):
            out.append((name, value))
        else:
            out.append((name, json.dumps(value, default=str)))
    return out


def _lookup(status: Mapping[str, Any], key: str) -> Any:
    """`status[key]`; a dotted key reaches into nested dicts ("policy_stats.timeouts"); None if absent."""
    value: Any = status
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


class HealthMonitor:
    """Judges successive status dicts of one node against its `HealthChecks`."""

    def __init__(self, checks: HealthChecks) -> None:
        self.checks = checks
        self._previous: dict[str, float] = {}
        self._last_problem = ""

    def assess(self, status: Mapping[str, Any]) -> Health:
        """The health of this report (and remember its counters for the next one)."""
        errors, warnings = self._flags(status)
        warnings += self._slow_rates(status)
        warnings += self._grown_counters(status)
        problem = str(status.get(self.checks.problem_key) or "")
        if problem and problem != self._last_problem:
            warnings.append(problem)
        self._last_problem = problem
        level = ERROR if errors else WARN if warnings else OK
        message = "; ".join(errors + warnings) if level != OK else "ok"
        return Health(level, message, tuple(flatten_status(status)))

    def _flags(self, status: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        errors = [key.replace("_", " ") for key in self.checks.error_flags if _lookup(status, key)]
        warnings = [key.replace("_", " ") for key in self.checks.warn_flags if _lookup(status, key)]
        return errors, warnings

    def _slow_rates(self, status: Mapping[str, Any]) -> list[str]:
        out = []
        for key, floor in self.checks.min_rates.items():
            value = _lookup(status, key)
            if isinstance(value, (int, float)) and math.isfinite(value) and value < floor:
                out.append(f"{key} {value:.3g} < {floor:.3g}")
        return out

    def _grown_counters(self, status: Mapping[str, Any]) -> list[str]:
        out = []
        for key in self.checks.bad_counters:
            value = _lookup(status, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            before = self._previous.get(key)
            if before is not None and value > before:
                out.append(f"{key} +{value - before:g}")
            self._previous[key] = float(value)
        return out
