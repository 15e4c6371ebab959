"""LatestSlot (drop, don't queue) and StampedBuffer (nearest stamp within a tolerance)."""

from __future__ import annotations

import threading
import time

import pytest

from spatial_memory.errors import ConfigError
from spatial_memory.stamps import LatestSlot, StampedBuffer, WaitingFrames


def test_the_slot_keeps_the_newest_item_and_counts_what_it_dropped():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.take() is None
    slot.put(1)
    assert slot.take() == 1 and slot.take() is None
    for i in range(2, 6):
        slot.put(i)
    assert slot.take() == 5
    assert (slot.received, slot.dropped) == (5, 3)


def test_the_slot_loses_no_count_under_concurrent_producers():
    slot: LatestSlot[int] = LatestSlot()
    taken = []
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            item = slot.take()
            if item is not None:
                taken.append(item)

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=lambda: [slot.put(i) for i in range(2000)]) for _ in range(3)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    stop.set()
    consumer.join()
    left = slot.take()
    assert slot.received == 6000
    assert len(taken) + (left is not None) + slot.dropped == slot.received


def test_the_buffer_answers_the_nearest_stamp_within_the_tolerance():
    buf: StampedBuffer[str] = StampedBuffer(3)
    assert buf.nearest(100, 10**9) is None
    for stamp, value in ((100, "a"), (200, "b"), (300, "c")):
        buf.add(stamp, value)
    assert buf.nearest(190, 20) == "b" and buf.nearest(260, 50) == "c"
    assert buf.nearest(150, 10) is None  # 50 ns from the nearest
    buf.add(400, "d")  # capacity 3: "a" goes
    assert len(buf) == 3 and buf.nearest(100, 60) is None
    buf.add(250, "late")  # delivered out of order: placed by stamp, the oldest goes
    assert buf.nearest(240, 20) == "late" and buf.nearest(200, 1) is None
    buf.clear()
    assert len(buf) == 0
    with pytest.raises(ConfigError):
        StampedBuffer(0)


def test_a_lookup_can_wait_for_a_value_that_is_on_its_way():
    buf: StampedBuffer[str] = StampedBuffer(4)
    late = threading.Timer(0.05, lambda: buf.add(1000, "depth"))
    late.start()
    start = time.monotonic()
    assert buf.nearest(1000, 0) is None  # not there yet, and no waiting asked for
    assert buf.nearest(1000, 0, wait_s=2.0) == "depth"
    assert time.monotonic() - start < 1.0  # woken by the arrival, not the timeout
    start = time.monotonic()
    assert buf.nearest(5000, 10, wait_s=0.1) is None  # nothing near comes: gives up after the wait
    assert 0.09 < time.monotonic() - start < 1.0
    late.join()


def test_waiting_frames_go_out_oldest_first_and_expire_after_the_wait():
    waiting: WaitingFrames[str] = WaitingFrames(max_wait_s=0.5, capacity=3)
    assert waiting.head() is None and not waiting.expired(0.0) and len(waiting) == 0
    assert waiting.push(100, "a", now_s=10.0) is None
    assert waiting.push(200, "b", now_s=10.2) is None
    assert waiting.head() == (100, "a")
    assert not waiting.expired(10.49) and waiting.expired(10.5)  # the oldest has waited 0.5 s
    assert waiting.pop(10.3) == (100, "a", pytest.approx(0.3))
    assert waiting.head() == (200, "b") and not waiting.expired(10.6)  # b arrived at 10.2
    assert waiting.push(300, "c", 10.7) is None and waiting.push(400, "d", 10.8) is None
    assert waiting.push(500, "e", 10.9) == "b"  # full: the oldest is given up for the newest
    assert [waiting.pop(11.0)[1] for _ in range(len(waiting))] == ["c", "d", "e"]
    assert waiting.push(1, "x", 0.0) is None and waiting.clear() == 1 and waiting.head() is None
    with pytest.raises(ConfigError):
        WaitingFrames(max_wait_s=-1.0, capacity=3)
    with pytest.raises(ConfigError):
        WaitingFrames(max_wait_s=0.5, capacity=0)
