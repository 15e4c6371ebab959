"""Images that wait for TF at their stamp instead of being dropped, without blocking the executor.

A node that poses each camera image by TF at the image's stamp (spatial_context_node in mobile mode,
memory_node) often gets the image before the transform: a visual odometry publishes odom -> base_link for
an image tens of ms after the image (it computes it from that image), and at startup TF is not there at
all yet. `lookup_transform` then raises "Lookup would require extrapolation into the future"; waiting
inside the callback (tf2's `timeout`) sleeps in an executor thread.

`TfWaiter` parks such an image (`stamps.WaitingFrames`, in order, at most `max_wait_s` of wall time and
`capacity` images) and tries the oldest again on a short steady-clock timer (only while images wait), with
non-blocking lookups. What is still dropped is counted by reason:

- `tf_timeout`: TF at the image's stamp did not come within `max_wait_s` (extrapolation into the future);
- `tf_missing`: the frames were not connected (a frame unknown, no path) within `max_wait_s`;
- `tf_too_old`: the stamp is older than the TF buffer holds (extrapolation into the past: no wait helps);
- `tf_error`: any other TF failure;
- `queue_full`: more than `capacity` images waited (the oldest is given up);
- plus the node's own reasons, returned by its `use` callback (e.g. `invalid`: the core refused the frame).

The timer and the callbacks run in the node's default, mutually exclusive group, so an image is used by
the same thread discipline as before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from tf2_ros import ConnectivityException, ExtrapolationException, LookupException, TransformException

from spatial_memory.stamps import WaitingFrames

WAIT = "wait"  # the transform may still come: keep waiting
TF_TIMEOUT, TF_MISSING, TF_TOO_OLD, TF_ERROR, QUEUE_FULL = (
    "tf_timeout",
    "tf_missing",
    "tf_too_old",
    "tf_error",
    "queue_full",
)
RETRY_S = 0.01  # how often parked images try TF again (steady clock)
_SINGLE_SAMPLE = re.compile(r"at time ([0-9.]+), but only time ([0-9.]+)")


def classify(exc: TransformException) -> tuple[str, str]:
    """(whether to wait, the drop reason if the wait runs out) of a failed lookup."""
    text = str(exc)
    if isinstance(exc, ExtrapolationException):
        # tf2's texts: "... into the future. Requested time A but the latest data is at time B", "... into
        # the past ...", and with one sample only "... at time A, but only time B is in the buffer"
        single = _SINGLE_SAMPLE.search(text)
        if "future" in text or (single is not None and float(single[1]) > float(single[2])):
            return WAIT, TF_TIMEOUT
        if "past" in text or single is not None:
            return TF_TOO_OLD, TF_TOO_OLD
        return TF_ERROR, TF_ERROR
    if isinstance(exc, (LookupException, ConnectivityException)):
        return WAIT, TF_MISSING
    return TF_ERROR, TF_ERROR


class TfWaiter:
    """Parks images until `lookup(stamp)` (non-blocking TF) succeeds, then calls `use(stamp, item, pose)`.

    `use` returns None when the frame was used, else the reason it was not (counted with the TF drops).
    `status()` gives the counters for the node's status dict."""

    def __init__(
        self,
        node: Node,
        max_wait_s: float,
        capacity: int,
        lookup: Callable[[int], Any],
        use: Callable[[int, Any, Any], str | None],
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.queue: WaitingFrames[Any] = WaitingFrames(max_wait_s, capacity)
        self._lookup, self._use, self._on_problem = lookup, use, on_problem
        self.used = 0
        self.dropped: dict[str, int] = {}
        self.waited = 0  # images used after waiting for TF
        self._wait_total_s = 0.0
        self._wait_max_s = 0.0
        self._timer = node.create_timer(RETRY_S, self.drain, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._timer.cancel()

    def offer(self, stamp_ns: int, item: Any) -> None:
        """A new image: used now if its TF is there (and none waits before it), else parked."""
        given_up = self.queue.push(stamp_ns, item, time.monotonic())
        if given_up is not None:
            self._drop(
                QUEUE_FULL, f"more than {self.queue.capacity} images waited for TF: the oldest given up"
            )
        self.drain()

    def drain(self) -> None:
        """Use the waiting images whose TF has come, oldest first; drop those that waited too long."""
        while (head := self.queue.head()) is not None:
            stamp, _ = head
            now = time.monotonic()
            try:
                pose = self._lookup(stamp)
            except TransformException as exc:
                action, reason = classify(exc)
                if action == WAIT and not self.queue.expired(now):
                    break
                self.queue.pop(now)
                self._drop(reason, f"image not used ({reason}): {exc}")
                continue
            _, item, waited_s = self.queue.pop(now)
            verdict = self._use(stamp, item, pose)
            self.count(verdict)
            if verdict is None and waited_s > 0.0005:
                self.waited += 1
                self._wait_total_s += waited_s
                self._wait_max_s = max(self._wait_max_s, waited_s)
        if len(self.queue) and self._timer.is_canceled():
            self._timer.reset()
        elif not len(self.queue) and not self._timer.is_canceled():
            self._timer.cancel()

    def count(self, verdict: str | None) -> None:
        """Count a frame used (None) or dropped for `verdict` (also for frames that needed no TF)."""
        if verdict is None:
            self.used += 1
        else:
            self.dropped[verdict] = self.dropped.get(verdict, 0) + 1

    def _drop(self, reason: str, text: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if self._on_problem is not None:
            self._on_problem(text)

    def status(self) -> dict[str, Any]:
        """Counters for a status dict: images used, dropped by reason, how many waited and how long."""
        return {
            "images_used": self.used,
            "images_dropped": dict(sorted(self.dropped.items())),
            "images_waiting": len(self.queue),
            "tf_waited": self.waited,
            "tf_wait_mean_ms": round(1e3 * self._wait_total_s / self.waited, 1) if self.waited else 0.0,
            "tf_wait_max_ms": round(1e3 * self._wait_max_s, 1),
        }
