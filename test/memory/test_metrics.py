"""Mem-RPE on hand-made answers: thresholds (inclusive), wrapped headings, seen/unseen, the table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.memory.metrics import MemRpe, mem_rpe, table

D = math.radians


def _queries():
    """Five seen queries at known errors and three unseen ones (whose answers must not count)."""
    target = np.array([[1.0, 2.0, D(175.0)]] * 8)
    pred = target.copy()
    pred[0] += (0.5, 0.0, 0.0)  # 0.5 m, 0 deg      -> within all three
    pred[1] += (1.0, 0.0, D(10.0))  # exactly 1 m, 10 deg -> within all (inclusive)
    pred[2] += (0.0, 0.0, D(20.0))  # 0 m, 20 deg across +-180 -> (1 m, 90) and (2 m, 90)
    pred[3] += (1.2, 1.6, 0.0)  # 2 m exactly, 0 deg -> (2 m, 90) only
    pred[4] += (3.0, 0.0, D(100.0))  # 3 m, 100 deg     -> none
    pred[5:] += (10.0, 10.0, 3.0)  # unseen: wild answers, ignored
    seen = np.array([True] * 5 + [False] * 3)
    return pred, target, seen


def test_thresholds_are_inclusive_and_headings_wrap():
    pred, target, seen = _queries()
    r = mem_rpe(pred, target, seen)
    assert r.seen_count == 5 and r.unseen_count == 3
    assert r.within_1m_10deg_pct == pytest.approx(40.0)
    assert r.within_1m_90deg_pct == pytest.approx(60.0)
    assert r.within_2m_90deg_pct == pytest.approx(80.0)
    assert r.median_position_m == pytest.approx(1.0)
    assert r.median_heading_deg == pytest.approx(10.0)
    assert math.isnan(r.unseen_detected_pct) and math.isnan(r.seen_false_alarm_pct)


def test_detection_and_false_alarm_rates():
    pred, target, seen = _queries()
    said_seen = np.array([True, True, True, True, False, False, False, True])
    r = mem_rpe(pred, target, seen, said_seen)
    assert r.unseen_detected_pct == pytest.approx(200.0 / 3.0)
    assert r.seen_false_alarm_pct == pytest.approx(20.0)
    probabilities = np.where(said_seen, 0.9, 0.1)
    assert mem_rpe(pred, target, seen, probabilities) == r


def test_missing_answers_are_misses():
    pred, target, seen = _queries()
    pred[0] = np.nan
    r = mem_rpe(pred, target, seen)
    assert r.seen_count == 5
    assert r.within_2m_90deg_pct == pytest.approx(60.0)
    pred[:5] = np.nan
    r = mem_rpe(pred, target, seen)
    assert r.within_1m_10deg_pct == 0.0 and math.isinf(r.median_position_m)


def test_no_queries_of_a_kind_gives_nan():
    pred, target, seen = _queries()
    r = mem_rpe(pred[5:], target[5:], seen[5:], np.zeros(3, bool))
    assert r.seen_count == 0 and math.isnan(r.within_1m_10deg_pct) and math.isnan(r.median_position_m)
    assert r.unseen_detected_pct == 100.0 and math.isnan(r.seen_false_alarm_pct)
    empty = mem_rpe(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, bool))
    assert empty.seen_count == 0 and empty.unseen_count == 0


def test_to_dict_is_json_and_round_trips():
    pred, target, seen = _queries()
    r = mem_rpe(pred, target, seen)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["unseen_detected_pct"] is None
    back = MemRpe.from_dict(d)
    assert back.within_1m_90deg_pct == r.within_1m_90deg_pct and math.isnan(back.unseen_detected_pct)
    with pytest.raises(InvalidInputError):
        MemRpe.from_dict({**d, "bogus": 1})


def test_table_has_one_row_per_model():
    pred, target, seen = _queries()
    rows = {"kinaema": mem_rpe(pred, target, seen), "oracle": mem_rpe(target, target, seen, seen)}
    text = table(rows)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model |")
    assert lines[2].startswith("| kinaema | 5 | 40.0 | 60.0 | 80.0 | 1.00 | 10.0 | 3 | - | - |")
    assert lines[3].startswith("| oracle | 5 | 100.0 |")
    with pytest.raises(InvalidInputError):
        table({"x": 1.0})


@pytest.mark.parametrize(
    "args",
    [
        (np.zeros((3, 3)), np.zeros((3, 3)), np.ones(3)),  # seen not bool
        (np.zeros((3, 2)), np.zeros((3, 3)), np.ones(3, bool)),
        (np.zeros((3, 3)), np.full((3, 3), np.nan), np.ones(3, bool)),
        (np.zeros((3, 3)), np.zeros((3, 3)), np.ones(3, bool), np.full(3, 2.0)),
        (np.zeros((3, 3)), np.zeros((3, 3)), np.ones(3, bool), np.ones(2, bool)),
    ],
)
def test_bad_input(args):
    with pytest.raises(InvalidInputError):
        mem_rpe(*args)
