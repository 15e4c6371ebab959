"""Start and stop `ros2 launch spatial_memory sim.launch.py` from a benchmark script (needs ROS 2 sourced).

The launch runs in its own process group (setsid), its output in a log file; `stop()` sends SIGINT to the
group as Ctrl-C would (nodes shut down cleanly, state.save_on_shutdown saves), then SIGTERM and SIGKILL
only if it does not end in time. Use it as a context manager so a failing script never leaves nodes behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class SimLaunch:
    """One `ros2 launch spatial_memory sim.launch.py <arguments>` in its own process group."""

    def __init__(self, arguments: list[str], log: Path) -> None:
        self.arguments, self.log = list(arguments), Path(log)
        self.process: subprocess.Popen | None = None

    def start(self) -> SimLaunch:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("w")
        command = ["ros2", "launch", "spatial_memory", "sim.launch.py", *self.arguments]
        self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        return self

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Ctrl-C the whole launch (SIGINT to its group); escalate only if it does not end in time."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        pgid = os.getpgid(self.process.pid)
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        time.sleep(1.0)  # the group's other processes (the nodes) end after the launch process
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return self.process.returncode
        os.killpg(pgid, signal.SIGKILL)  # a node that outlived the launch
        return self.process.returncode

    def __enter__(self) -> SimLaunch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
