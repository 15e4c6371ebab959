"""The rclpy context for the node tests: skipped where rclpy is absent (CI has no ROS 2 build)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ros():
    """rclpy, initialised for the module's tests and shut down after them."""
    rclpy = pytest.importorskip("rclpy")
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()
