"""Time order of stamped streams: the restart policy for clocks that jump back, and thread-safe buffers
between ROS callbacks and a node's worker. Pure (no rclpy), so tested without ROS; nodes only wire them.

`stamp_order` says whether a stamp is new, late (out of order: drop it and count it) or so far back that the
clock restarted (a bag played again, a simulation reset: start afresh). The memory engine and the visual
odometry node both decide with it, so one rule holds across the graph.

`LatestSlot` holds the newest unprocessed item: a producer that outruns the worker replaces the waiting
item (dropped and counted) instead of queueing, so a node that falls behind works on the newest frame.
`StampedBuffer` keeps the last few stamped values of a side stream (depth, joint states, wheel odometry)
and hands out the one nearest to a stamp within a tolerance, waiting a little for one that has not arrived
yet if asked (a camera driver publishes a frame's depth just after its colour image).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from typing import Generic, TypeVar

from spatial_memory.errors import ConfigError

T = TypeVar("T")

NEW, LATE, JUMPED_BACK = "new", "late", "jumped_back"
DEFAULT_TIME_JUMP_S = 1.0  # a stamp this far before the last: the clock restarted, not a late frame


def stamp_order(stamp_ns: int, last_ns: int | None, jump_back_s: float = DEFAULT_TIME_JUMP_S) -> str:
    """`NEW` after `last_ns` (or nothing yet); `LATE` at or before it by at most `jump_back_s` (a late burst,
    a duplicate); `JUMPED_BACK` further back than that (time restarted)."""
    if last_ns is None or stamp_ns > last_ns:
        return NEW
    return JUMPED_BACK if last_ns - stamp_ns > jump_back_s * 1e9 else LATE


class LatestSlot(Generic[T]):
    """One waiting item; `put` replaces (and counts as dropped) an item nobody took yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: T | None = None
        self.received = 0
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._lock:
            self.received += 1
            if self._item is not None:
                self.dropped += 1
            self._item = item

    def take(self) -> T | None:
        """The waiting item (now removed), or None."""
        with self._lock:
            item, self._item = self._item, None
            return item


class StampedBuffer(Generic[T]):
    """The newest `capacity` (stamp ns, value) pairs; lookups by nearest stamp."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"capacity must be >= 1, got {capacity}")
        self._changed = threading.Condition()
        self._items: deque[tuple[int, T]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def add(self, stamp_ns: int, value: T) -> None:
        """Add a value; one older than the newest is placed in stamp order (out-of-order delivery)."""
        with self._changed:
            if not self._items or stamp_ns >= self._items[-1][0]:
                self._items.append((int(stamp_ns), value))
            else:
                items = list(self._items)
                bisect.insort(items, (int(stamp_ns), value), key=lambda pair: pair[0])
                self._items = deque(items[-self._items.maxlen :], maxlen=self._items.maxlen)
            self._changed.notify_all()

    def _nearest(self, stamp_ns: int, max_dt_ns: int) -> tuple[int, T] | None:
        best = min(self._items, key=lambda pair: abs(pair[0] - stamp_ns), default=None)
        return best if best is not None and abs(best[0] - stamp_ns) <= max_dt_ns else None

    def nearest(self, stamp_ns: int, max_dt_ns: int, wait_s: float = 0.0) -> T | None:
        """The value stamped nearest to `stamp_ns` if within `max_dt_ns`, else None; with `wait_s`, wait up
        to that long (wall time) for one to arrive while none is in the buffer yet."""
        deadline = time.monotonic() + wait_s
        with self._changed:
            found = self._nearest(stamp_ns, max_dt_ns)
            while found is None and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
                found = self._nearest(stamp_ns, max_dt_ns)
        return None if found is None else found[1]

    def clear(self) -> None:
        with self._changed:
            self._items.clear()


class WaitingFrames(Generic[T]):
    """Frames parked until what they need at their stamp (TF) arrives, in arrival order, `max_wait_s` at most.

    A node whose pose comes from TF gets an image before the transform at the image's stamp when the pose's
    publisher is a little late (a visual odometry answers tens of ms after the image): the image waits here,
    without blocking the executor, and the node tries the oldest again when asked (a short timer). The oldest
    goes first and later frames wait behind it, so frames reach the memory in order. Beyond `capacity` the
    oldest is given up to make room. Times are the caller's (`now_s`: a monotonic clock); not thread-safe
    (a node's mutually exclusive callback group uses it).
    """

    def __init__(self, max_wait_s: float, capacity: int) -> None:
        if not max_wait_s >= 0.0 or capacity < 1:
            raise ConfigError(f"max_wait_s must be >= 0 and capacity >= 1, got {max_wait_s!r}, {capacity!r}")
        self.max_wait_s, self.capacity = float(max_wait_s), int(capacity)
        self._items: deque[tuple[int, float, T]] = deque()  # (stamp ns, arrival s, item)

    def __len__(self) -> int:
        return len(self._items)

    def push(self, stamp_ns: int, item: T, now_s: float) -> T | None:
        """Park `item`; returns the oldest item given up to make room (None when there was room)."""
        dropped = self._items.popleft()[2] if len(self._items) >= self.capacity else None
        self._items.append((int(stamp_ns), float(now_s), item))
        return dropped

    def head(self) -> tuple[int, T] | None:
        """(stamp, item) of the oldest waiting frame, None when none waits."""
        return (self._items[0][0], self._items[0][2]) if self._items else None

    def pop(self, now_s: float) -> tuple[int, T, float]:
        """Take the oldest: (stamp, item, seconds it waited)."""
        stamp, arrived, item = self._items.popleft()
        return stamp, item, max(0.0, now_s - arrived)

    def expired(self, now_s: float) -> bool:
        """Whether the oldest has waited `max_wait_s` or longer."""
        return bool(self._items) and now_s - self._items[0][1] >= self.max_wait_s

    def clear(self) -> int:
        """Give up every waiting frame; returns how many."""
        count = len(self._items)
        self._items.clear()
        return count
