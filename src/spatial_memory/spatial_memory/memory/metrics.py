"""Mem-RPE: how well a memory answers "where is the place in this image, relative to me now?".

For every query of an episode the memory gives a planar answer (x, y, yaw) of the query camera in the base
frame now (`poses.planar_target` defines the target). Pose accuracy is scored over the *seen* queries only:
a place the robot never saw has no answer a memory could know. The score is the percentage of seen queries
answered within (1 m, 10 deg), (1 m, 90 deg) and (2 m, 90 deg), and the median position and heading errors.
A memory that also says whether it recognises the place (`seen_pred`) is scored on the *unseen* queries by
its detection rate (unseen queries it flags as unseen) and on the seen ones by its false-alarm rate (seen
queries it flags as unseen).

Thresholds are inclusive: an answer exactly 1 m and 10 deg off counts as within (1 m, 10 deg). A margin of
`THRESHOLD_EPS` absorbs float rounding, so 10 deg that arrives as 10.000000000000002 still counts. A missing
answer (NaN anywhere in the prediction) is a miss: it counts in the total, within no threshold, and as an
infinite error in the medians.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from spatial_memory.errors import InvalidInputError
from spatial_memory.memory.poses import pose_errors

THRESHOLD_EPS = 1e-9
THRESHOLDS: tuple[tuple[float, float], ...] = ((1.0, 10.0), (1.0, 90.0), (2.0, 90.0))  # (m, deg)


@dataclass(frozen=True)
class MemRpe:
    """Mem-RPE of one model on one set of queries; percentages in [0, 100], NaN where undefined.

    seen_count: seen queries scored for pose (the denominator of the `within_*` percentages).
    within_1m_10deg_pct, within_1m_90deg_pct, within_2m_90deg_pct: seen queries answered within the bounds.
    median_position_m, median_heading_deg: median errors over the seen queries.
    unseen_count: queries of never-seen places.
    unseen_detected_pct: unseen queries that `seen_pred` flagged as unseen (NaN without `seen_pred`).
    seen_false_alarm_pct: seen queries that `seen_pred` flagged as unseen (NaN without `seen_pred`).
    """

    seen_count: int
    within_1m_10deg_pct: float
    within_1m_90deg_pct: float
    within_2m_90deg_pct: float
    median_position_m: float
    median_heading_deg: float
    unseen_count: int
    unseen_detected_pct: float = math.nan
    seen_false_alarm_pct: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values (NaN and infinity become None)."""
        return {k: _json_number(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemRpe:
        """The inverse of `to_dict` (None back to NaN)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidInputError(f"unknown Mem-RPE fields {unknown}; known: {sorted(names)}")
        return cls(**{k: (math.nan if v is None else v) for k, v in data.items()})


def _json_number(value: float | int) -> float | int | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _percent(flags: np.ndarray) -> float:
    return float(100.0 * flags.mean()) if flags.size else math.nan


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else math.nan


def _check_inputs(
    pred: np.ndarray, target: np.ndarray, seen: np.ndarray, seen_pred: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    pred, target, seen = (np.asarray(pred, np.float64), np.asarray(target, np.float64), np.asarray(seen))
    if seen.ndim != 1 or seen.dtype != bool:
        raise InvalidInputError(f"seen must be a 1-D bool array, got {seen.dtype} {seen.shape}")
    n = len(seen)
    if n == 0 and pred.size == 0 and target.size == 0:  # no queries: empty arrays of any shape do
        pred, target = pred.reshape(0, 3), target.reshape(0, 3)
    if pred.shape != (n, 3) or target.shape != (n, 3):
        raise InvalidInputError(
            f"pred {pred.shape} and target {target.shape} must be ({n}, 3) for {n} queries"
        )
    if not np.all(np.isfinite(target)):
        raise InvalidInputError("target contains NaN or infinite values")
    if seen_pred is not None:
        seen_pred = np.asarray(seen_pred)
        if seen_pred.shape != (n,):
            raise InvalidInputError(f"seen_pred must have shape ({n},), got {seen_pred.shape}")
        if seen_pred.dtype != bool:  # probabilities of 'seen'
            if not np.all((seen_pred >= 0.0) & (seen_pred <= 1.0)):
                raise InvalidInputError("seen_pred must be bools or probabilities of 'seen' in [0, 1]")
            seen_pred = seen_pred >= 0.5
    return pred, target, seen, seen_pred


def mem_rpe(
    pred: np.ndarray, target: np.ndarray, seen: np.ndarray, seen_pred: np.ndarray | None = None
) -> MemRpe:
    """Mem-RPE of answers `pred` (N, 3) to queries with targets `target` (N, 3), both (x m, y m, yaw rad).

    `seen` (N,) bool: whether each query shows a place seen earlier (the ground-truth label). `seen_pred`
    (N,): the model's own call, True = "I have seen this" (bools, or probabilities of 'seen' thresholded
    at 0.5); None when the model makes no such call. Pose scores use the seen queries only; see the
    module docstring for the thresholds and how missing (NaN) answers count.
    """
    pred, target, seen, seen_pred = _check_inputs(pred, target, seen, seen_pred)
    position, heading = pose_errors(pred[seen], target[seen])
    missing = np.isnan(position) | np.isnan(heading)
    position, heading = np.where(missing, np.inf, position), np.where(missing, np.inf, heading)
    within = {(m, d): (position <= m + THRESHOLD_EPS) & (heading <= d + THRESHOLD_EPS) for m, d in THRESHOLDS}
    unseen_detected = seen_false_alarm = math.nan
    if seen_pred is not None:
        unseen_detected = _percent(~seen_pred[~seen])
        seen_false_alarm = _percent(~seen_pred[seen])
    return MemRpe(
        seen_count=int(seen.sum()),
        within_1m_10deg_pct=_percent(within[(1.0, 10.0)]),
        within_1m_90deg_pct=_percent(within[(1.0, 90.0)]),
        within_2m_90deg_pct=_percent(within[(2.0, 90.0)]),
        median_position_m=_median(position),
        median_heading_deg=_median(heading),
        unseen_count=int((~seen).sum()),
        unseen_detected_pct=unseen_detected,
        seen_false_alarm_pct=seen_false_alarm,
    )


_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (header, MemRpe field, format)
    ("seen n", "seen_count", "d"),
    ("<=1 m, 10 deg %", "within_1m_10deg_pct", ".1f"),
    ("<=1 m, 90 deg %", "within_1m_90deg_pct", ".1f"),
    ("<=2 m, 90 deg %", "within_2m_90deg_pct", ".1f"),
    ("median pos m", "median_position_m", ".2f"),
    ("median head deg", "median_heading_deg", ".1f"),
    ("unseen n", "unseen_count", "d"),
    ("unseen detected %", "unseen_detected_pct", ".1f"),
    ("seen false alarm %", "seen_false_alarm_pct", ".1f"),
)


def _cell(value: float | int, fmt: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, fmt)


def table(rows: dict[str, MemRpe]) -> str:
    """A Markdown table with one row per model (name -> MemRpe), in the dict's order; NaN shows as '-'."""
    for name, row in rows.items():
        if not isinstance(row, MemRpe):
            raise InvalidInputError(f"row {name!r} must be a MemRpe, got {type(row).__name__}")
    header = "| model | " + " | ".join(h for h, _, _ in _COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(_COLUMNS)
    lines = [header, rule]
    for name, row in rows.items():
        cells = (_cell(getattr(row, f), fmt) for _, f, fmt in _COLUMNS)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
