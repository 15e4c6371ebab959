"""The machine a benchmark, evaluation or training run ran on, recorded next to its numbers."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path


def machine(**versions: str) -> dict:
    """CPU model, cores, pinned core, platform, Python and the given library versions, date, load.

    Other processes slow a pinned core down too, so the 1-minute load average at the start is kept.
    """
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "pinned_to": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
