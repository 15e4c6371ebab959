"""Tests for spatial_memory.timing: what a node's status says about the time its work takes."""

from __future__ import annotations

import threading
import time

import pytest

from spatial_memory.timing import Stopwatch


def test_empty_watch_says_nothing_was_timed():
    assert Stopwatch().summary() == {"n": 0}


def test_percentiles_over_the_window_only():
    watch = Stopwatch(window=4)
    for ms in (1000.0, 1.0, 2.0, 3.0, 4.0):  # the 1000 ms call falls out of the window
        watch.add(ms, ms / 2)
    s = watch.summary()
    assert s["n"] == 4 and watch.count == 5
    assert s["wall_max"] == 4.0 and s["wall_p50"] == 2.5 and s["cpu_p50"] == 1.2  # 1.25 rounded (half-even)
    assert 3.0 < s["wall_p95"] <= 4.0 and s["cpu_p95"] <= 2.0


def test_sleeping_is_wall_time_not_cpu_time():
    watch = Stopwatch()
    with watch.time():
        time.sleep(0.05)
    s = watch.summary()
    assert s["wall_p50"] >= 45.0 and s["cpu_p50"] < 20.0


def test_spinning_is_cpu_time():
    watch = Stopwatch()
    with watch.time():
        end = time.thread_time() + 0.03
        while time.thread_time() < end:
            pass
    assert watch.summary()["cpu_p50"] >= 29.0


def test_a_call_that_raises_is_timed_and_the_error_kept():
    watch = Stopwatch()
    with pytest.raises(RuntimeError), watch.time():
        raise RuntimeError("refused")
    assert watch.summary()["n"] == 1


@pytest.mark.parametrize("window", [0, -1, 1.5, True])
def test_window_must_be_a_positive_integer(window):
    with pytest.raises(ValueError, match="window"):
        Stopwatch(window)


def test_reading_while_another_thread_times_is_safe():
    """A node's status is read by its timer while a service thread adds calls."""
    watch, stop = Stopwatch(window=50), threading.Event()

    def add() -> None:
        while not stop.is_set():
            watch.add(1.0, 0.5)

    writer = threading.Thread(target=add)
    writer.start()
    try:
        summaries = [watch.summary() for _ in range(2000)]
    finally:
        stop.set()
        writer.join()
    assert all(s["n"] <= 50 for s in summaries) and watch.summary()["n"] == 50
