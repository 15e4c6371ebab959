"""ros.spin: the core library's log records reach the node's ROS logger while a node runs, and only then."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("rclpy")

from spatial_memory.ros.spin import LIBRARY_LOGGER, library_logs_to  # noqa: E402


class _Recorder:
    def __init__(self):
        self.lines = []

    def __getattr__(self, severity):
        return lambda text: self.lines.append((severity, text))


def test_library_records_go_to_the_ros_logger_at_their_severity():
    ros = _Recorder()
    core = logging.getLogger(f"{LIBRARY_LOGGER}.memory.engine")
    before = logging.getLogger(LIBRARY_LOGGER).level
    with library_logs_to(ros):
        core.debug("not forwarded")
        core.info("memory engine: %s", "kinaema")
        core.warning("the robot was carried away: the memory restarts")
        core.error("boom")
        logging.getLogger("someone.else").warning("not ours")
    core.warning("after the node: not forwarded")
    assert ros.lines == [
        ("info", "[spatial_memory.memory.engine] memory engine: kinaema"),
        ("warning", "[spatial_memory.memory.engine] the robot was carried away: the memory restarts"),
        ("error", "[spatial_memory.memory.engine] boom"),
    ]
    assert logging.getLogger(LIBRARY_LOGGER).level == before


def test_a_failing_ros_logger_does_not_raise(capsys):
    class Broken:
        def warning(self, text):
            raise RuntimeError("logger gone")

    with library_logs_to(Broken()):
        logging.getLogger(f"{LIBRARY_LOGGER}.x").warning("still fine")  # logging reports it on stderr
    assert "logger gone" in capsys.readouterr().err
