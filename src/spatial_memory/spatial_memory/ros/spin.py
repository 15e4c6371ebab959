"""Run a node until Ctrl-C or shutdown, the same way for every executable (Humble and Jazzy compatible).

A `SpatialMemoryError` raised while building the node (bad parameters, a description that does not
match) is logged in one line and gives exit code 1; Ctrl-C and external shutdown exit cleanly with 0,
also when they catch a callback in the middle of publishing.

Shutdown: once the node stops spinning, further SIGINTs are ignored while the executor stops and the node
is destroyed. One Ctrl-C reaches rclpy twice (its context shuts down, then Python raises KeyboardInterrupt a
moment later) and a terminal's Ctrl-C reaches every process of the launch's group: without this, the late
KeyboardInterrupt cut `destroy_node` short (launch: "process has died, exit code -2") and with it whatever a
node does there (memory_node and spatial_context_node save their state with `state.save_on_shutdown`).

Logs: the core library logs with Python's `logging` under `spatial_memory` (silent by default, as a library
should be); a node forwards those records, INFO and above, to its ROS logger (`RosLogHandler`), so what the
core says ("the robot was carried away: the memory restarts", a model that runs eagerly) reaches the
console, /rosout and the launch log like the node's own lines.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from spatial_memory.errors import SpatialMemoryError

LIBRARY_LOGGER = "spatial_memory"


class RosLogHandler(logging.Handler):
    """Forwards Python log records to an rclpy logger (anything with debug/info/warning/error/fatal)."""

    def __init__(self, ros_logger: Any, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[{record.name}] {self.format(record)}"
            if record.levelno >= logging.CRITICAL:
                self.ros_logger.fatal(text)
            elif record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # noqa: BLE001 - a log line must never take the node down
            self.handleError(record)


@contextlib.contextmanager
def library_logs_to(ros_logger: Any, level: int = logging.INFO):  # noqa: ANN201 - a context manager
    """While inside, the core library's log records (`spatial_memory.*`, `level` and above) go to
    `ros_logger`."""
    library = logging.getLogger(LIBRARY_LOGGER)
    handler, before = RosLogHandler(ros_logger, level), library.level
    library.addHandler(handler)
    if library.level == logging.NOTSET or library.level > level:
        library.setLevel(level)
    try:
        yield handler
    finally:
        library.removeHandler(handler)
        library.setLevel(before)


def spin_node(
    make_node: Callable[[], Node], name: str, args: list[str] | None = None, threads: int = 1
) -> int:
    """Init rclpy, build the node with `make_node`, spin it (`threads` > 1: a multi-threaded executor)."""
    rclpy.init(args=args)
    with library_logs_to(rclpy.logging.get_logger(name)):
        return _spin(make_node, name, threads)


def _spin(make_node: Callable[[], Node], name: str, threads: int) -> int:
    """`spin_node` once rclpy is up: build, spin, and stop cleanly (the module docstring)."""
    node = None
    executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
    try:
        node = make_node()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SpatialMemoryError as exc:
        rclpy.logging.get_logger(name).fatal(str(exc))
        return 1
    except Exception:
        if rclpy.ok():
            raise
        # Ctrl-C shut the context down while a callback was publishing (RCLError "publisher's context
        # is invalid"): that callback's work is moot, the node stops cleanly
    finally:
        # Ignore SIGINT from now on (see the module docstring). The KeyboardInterrupt still pending from the
        # signal that stopped the node may fire here: then try again (once the handler is SIG_IGN, Python
        # drops a pending one). Inline, not in a function: a call is itself a point where it can fire.
        while True:
            try:
                if threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                break
            except KeyboardInterrupt:
                continue
        with contextlib.suppress(KeyboardInterrupt):  # (cannot come now, but never skip the cleanup for it)
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
