"""How long a node's work takes, as it runs: the recent calls' wall and CPU time, for its status.

A latency measured by a client (a `/query_pose` caller) mixes three things: the work itself, the time the
request waited for the node's other callbacks, and the time the work waited for a CPU the other processes
of the graph were using. `Stopwatch` keeps the last `window` calls of one kind of work, each as wall time
and as the CPU time the calling thread spent, so a node's status tells them apart: CPU time is the work
(libraries' own worker threads, e.g. OpenCV's, are not counted), wall minus CPU is waiting for a core or
the GIL, and a client's latency minus the node's wall time is queueing and transport.

    watch = Stopwatch()
    with watch.time():
        answer = memory.query(image)
    status["query_ms"] = watch.summary()   # {"n": ..., "wall_p50": ..., "wall_p95": ..., "cpu_p50": ...}
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator

import numpy as np

__all__ = ["Stopwatch"]


class Stopwatch:
    """Wall and thread-CPU milliseconds of the last `window` timed calls; thread-safe (a node's status may
    be read in another thread than the one timed)."""

    def __init__(self, window: int = 200) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"Stopwatch window must be an integer >= 1, got {window!r}")
        self._wall: deque[float] = deque(maxlen=window)
        self._cpu: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.count = 0  # calls timed since construction (the window keeps the last `window`)

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        """Time the block (also when it raises: a refused input costs time too)."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(1e3 * (time.perf_counter() - wall), 1e3 * (time.thread_time() - cpu))

    def add(self, wall_ms: float, cpu_ms: float) -> None:
        """Record one call measured elsewhere."""
        with self._lock:
            self._wall.append(float(wall_ms))
            self._cpu.append(float(cpu_ms))
            self.count += 1

    def summary(self) -> dict[str, float | int]:
        """{"n", "wall_p50", "wall_p95", "wall_max", "cpu_p50", "cpu_p95"} in ms, rounded to 0.1, over the
        window; {"n": 0} before the first call."""
        with self._lock:
            wall, cpu = np.array(self._wall), np.array(self._cpu)
        if not wall.size:
            return {"n": 0}
        w50, w95 = np.percentile(wall, [50, 95])
        c50, c95 = np.percentile(cpu, [50, 95])
        values = {"wall_p50": w50, "wall_p95": w95, "wall_max": wall.max(), "cpu_p50": c50, "cpu_p95": c95}
        return {"n": len(wall), **{k: round(float(v), 1) for k, v in values.items()}}
