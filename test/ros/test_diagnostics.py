"""A node's status on /diagnostics through rclpy: judged, named as ROS tools expect, once a second."""

from __future__ import annotations

import sys
import time

import pytest

pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

from spatial_memory.health import HealthChecks  # noqa: E402
from spatial_memory.msgs import topics  # noqa: E402
from spatial_memory.ros.diagnostics import attach_diagnostics  # noqa: E402

pytestmark = pytest.mark.ros


def _spin_until(executor, done, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return done()


@pytest.mark.parametrize("path", ["diagnostic_updater", "own publisher"])
def test_status_reaches_diagnostics_and_a_grown_counter_warns(ros, path, monkeypatch):
    from diagnostic_msgs.msg import DiagnosticArray

    if path == "own publisher":
        monkeypatch.setitem(sys.modules, "diagnostic_updater", None)  # as where it is not installed
    else:
        pytest.importorskip("diagnostic_updater")

    node, listener = Node("diag_test_node"), Node("diag_listener")
    status = {"rate_hz": 15.0, "dropped": 0, "last_problem": ""}
    diag = attach_diagnostics(
        node,
        lambda: dict(status),
        HealthChecks(min_rates={"rate_hz": 10.0}, bad_counters=("dropped",)),
        period_s=0.2,
    )
    assert (diag.updater is None) == (path == "own publisher")
    got: list = []
    listener.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, got.append, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(listener)
    try:
        assert _spin_until(executor, lambda: any(s.name == diag.name for m in got for s in m.status))
        first = next(s for m in got for s in m.status if s.name == diag.name)
        assert first.name == "diag_test_node: status"
        assert first.level == b"\x00" and first.message == "ok"
        assert {kv.key: kv.value for kv in first.values}["rate_hz"] == "15"
        status["dropped"] = 4
        n = len(got)
        assert _spin_until(executor, lambda: len(got) > n + 1)
        warned = [s for m in got[n:] for s in m.status if s.level == b"\x01"]
        assert warned and "dropped +4" in warned[0].message
    finally:
        executor.shutdown()
        node.destroy_node()
        listener.destroy_node()
