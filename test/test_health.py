"""A node's status dict judged for /diagnostics: levels, summaries, flattened values."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from spatial_memory.health import ERROR, OK, WARN, HealthChecks, HealthMonitor, flatten_status


def test_a_quiet_status_is_ok_and_every_value_is_reported():
    monitor = HealthMonitor(HealthChecks(min_rates={"rate_hz": 10.0}, bad_counters=("dropped",)))
    health = monitor.assess({"rate_hz": 14.97, "dropped": 3, "last_problem": "", "nested": {"a": None}})
    assert (health.level, health.message, health.level_name) == (OK, "ok", "OK")
    assert dict(health.values) == {"rate_hz": "14.97", "dropped": "3", "last_problem": "", "nested.a": "null"}


def test_a_rate_below_its_floor_warns_and_an_unmeasured_one_does_not():
    monitor = HealthMonitor(HealthChecks(min_rates={"rate_hz": 10.0}))
    assert monitor.assess({"rate_hz": None}).level == OK
    assert monitor.assess({"rate_hz": math.nan}).level == OK
    health = monitor.assess({"rate_hz": 4.0})
    assert health.level == WARN and "rate_hz 4 < 10" in health.message


def test_a_bad_counter_warns_only_when_it_grew_since_the_last_report():
    monitor = HealthMonitor(HealthChecks(bad_counters=("dropped", "stats.timeouts")))
    assert (
        monitor.assess({"dropped": 5, "stats": {"timeouts": 1}}).level == OK
    )  # the first report: a baseline
    assert monitor.assess({"dropped": 5, "stats": {"timeouts": 1}}).level == OK
    health = monitor.assess({"dropped": 7, "stats": {"timeouts": 2}})
    assert health.level == WARN
    assert "dropped +2" in health.message and "stats.timeouts +1" in health.message
    assert monitor.assess({"dropped": 7, "stats": {"timeouts": 2}}).level == OK


def test_a_new_problem_warns_once():
    monitor = HealthMonitor(HealthChecks())
    assert monitor.assess({"last_problem": ""}).level == OK
    health = monitor.assess({"last_problem": "camera_info not used: K is singular"})
    assert (health.level, health.message) == (WARN, "camera_info not used: K is singular")
    assert monitor.assess({"last_problem": "camera_info not used: K is singular"}).level == OK


def test_error_flags_beat_warnings():
    monitor = HealthMonitor(HealthChecks(error_flags=("no_memory",), warn_flags=("no_map",)))
    assert monitor.assess({"no_memory": False, "no_map": True}).level == WARN
    health = monitor.assess({"no_memory": True, "no_map": True})
    assert health.level == ERROR and health.message == "no memory; no map"


def test_flatten_status_writes_strings_ros_can_carry():
    values = dict(flatten_status({"b": 1.23456789, "a": [1, 2], "c": True, "d": {"e": "x"}}))
    assert values == {"a": "[1, 2]", "b": "1.235", "c": "true", "d.e": "x"}


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30))
def test_a_counter_warns_exactly_when_it_grows(values):
    monitor = HealthMonitor(HealthChecks(bad_counters=("n",)))
    levels = [monitor.assess({"n": v}).level for v in values]
    expected = [OK] + [WARN if b > a else OK for a, b in zip(values, values[1:], strict=False)]
    assert levels == expected
