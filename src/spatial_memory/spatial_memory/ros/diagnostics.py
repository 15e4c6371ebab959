"""Every node's health on /diagnostics (diagnostic_msgs/DiagnosticArray), for rqt_robot_monitor and friends.

`attach_diagnostics(node, status, checks)` reports the node's status dict once a second: through
`diagnostic_updater.Updater` where that package is installed (it then also honours the
`diagnostic_updater.period` parameter), otherwise with a publisher of its own that writes the same
messages (status name "<node>: <task>", as the updater names them). The judging (rates below their floor,
counters of bad events that grew, new problems) is `spatial_memory.health`, tested without ROS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from spatial_memory.health import Health, HealthChecks, HealthMonitor
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.ros.tf_wait import QUEUE_FULL, TF_ERROR, TF_MISSING, TF_TIMEOUT, TF_TOO_OLD

PERIOD_S = 1.0
# Images a TF-posed node gave up, by reason (the `images_dropped` of TfWaiter.status), as counters to watch
IMAGE_DROP_COUNTERS = tuple(
    f"images_dropped.{reason}"
    for reason in (TF_TIMEOUT, TF_MISSING, TF_TOO_OLD, TF_ERROR, QUEUE_FULL, "invalid", "late")
)


class NodeDiagnostics:
    """One diagnostic task of a node: its status dict, judged by `checks`, published every `period_s`."""

    def __init__(
        self,
        node: Node,
        status: Callable[[], Mapping[str, Any]],
        checks: HealthChecks,
        task: str = "status",
        hardware_id: str = "",
        period_s: float = PERIOD_S,
    ) -> None:
        self.node, self.status, self.task = node, status, task
        self.hardware_id = hardware_id or node.get_name()
        self.monitor = HealthMonitor(checks)
        self.last: Health | None = None
        self._factory = conv.RclpyFactory()
        try:
            from diagnostic_updater import Updater
        except ImportError:
            self.updater = None
            self._pub = node.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
            self._timer = node.create_timer(period_s, self.publish)
        else:
            self.updater = Updater(node, period=period_s)
            self.updater.setHardwareID(self.hardware_id)
            self.updater.add(task, self._fill)

    @property
    def name(self) -> str:
        """The status name ROS tools show: "<node>: <task>"."""
        return f"{self.node.get_name()}: {self.task}"

    def assess(self) -> Health:
        """Judge the node's status now (kept as `last`)."""
        self.last = self.monitor.assess(self.status())
        return self.last

    def publish(self) -> None:
        """Without diagnostic_updater: one DiagnosticArray with this task's status."""
        health = self.assess()
        status = conv.diagnostic_status(
            self.name, health.level, health.message, health.values, self.hardware_id, factory=self._factory
        )
        stamp = self.node.get_clock().now().nanoseconds
        self._pub.publish(conv.diagnostic_array([status], stamp, factory=self._factory))

    def _fill(self, stat: Any) -> Any:
        """diagnostic_updater's task callback: fill its DiagnosticStatusWrapper."""
        health = self.assess()
        stat.summary(bytes([health.level]), health.message)
        for key, value in health.values:
            stat.add(key, value)
        return stat


def attach_diagnostics(
    node: Node, status: Callable[[], Mapping[str, Any]], checks: HealthChecks, **kwargs: Any
) -> NodeDiagnostics:
    """Report `status()` of `node` on /diagnostics, judged by `checks` (see `NodeDiagnostics`)."""
    return NodeDiagnostics(node, status, checks, **kwargs)
