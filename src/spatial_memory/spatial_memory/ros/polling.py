"""Subscriptions a node reads itself, at its own pace, instead of one executor callback per message.

An rclpy executor wake-up costs about 0.5 ms of CPU on our 2-core VM (a no-op 50 Hz timer: 2.4 % of a
core), so a 1 kHz topic handled by callbacks costs half a core before any work. For a stream where only
the newest message matters (joint_states for TF), subscribe keep-last 1 in a `PolledCallbackGroup`: no
executor ever waits on or runs it, the middleware keeps just the newest sample, and the node takes it with
`take_newest` when it wants one (fk_node: from a thread at twice its TF rate).
"""

from __future__ import annotations

from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.subscription import Subscription


class PolledCallbackGroup(CallbackGroup):
    """A callback group no executor runs: its subscriptions are left to `take_newest`."""

    def can_execute(self, entity: Any) -> bool:
        return False

    def beginning_execution(self, entity: Any) -> bool:
        return False

    def ending_execution(self, entity: Any) -> None:
        pass


def take_newest(subscription: Subscription) -> Any | None:
    """The newest message waiting on `subscription` (older ones are taken and dropped), or None.

    Uses the subscription handle's `take_message`, as rclpy's own executors and `wait_for_message` do.
    """
    newest = None
    while True:
        with subscription.handle:
            taken = subscription.handle.take_message(subscription.msg_type, subscription.raw)
        if taken is None:
            return newest
        newest = taken[0]
