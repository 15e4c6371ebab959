"""A node's saved state over ROS: the `save` / `load` / `reset` services, the load at startup and the save at
shutdown, the same for memory_node and spatial_context_node (their core objects do the work).

Services (in the node's default, mutually exclusive callback group, so they never run beside an image
callback that changes the same state):
    `<prefix>/save` (spatial_memory_interfaces/srv/SaveState): write the state to the request's path, or
        to `state.path` when it names none; atomic (a crash mid-save keeps the old file).
    `<prefix>/load` (LoadState): replace the state with a saved one; `resume` says how the next camera frame
        continues the saved poses (`saved_state.Resume`: the robot stands where it was saved, the same frame,
        or the base pose given in the saved frame). A missing, damaged or foreign file (another model or
        robot) is refused with the reason and nothing changes.
    `<prefix>/reset` (std_srvs/Trigger): forget everything.
`state.load_on_start` loads `state.path` when the node starts (the robot where it was saved; no file yet:
start empty); `state.save_on_shutdown` saves it when the node is destroyed (Ctrl-C or the launch stopping:
`spin_node` destroys the node on the way out). A file refused at startup is never overwritten at shutdown:
the node says so and keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rclpy.node import Node
from std_srvs.srv import Trigger

from spatial_memory.errors import InvalidInputError
from spatial_memory.msgs import conversions as conv
from spatial_memory.node_configs import StateFileConfig
from spatial_memory.saved_state import GIVEN_POSE, SAME_FRAME, SAVED_POSE, Resume
from spatial_memory_interfaces.srv import LoadState, SaveState

RESUME_MODES = {
    LoadState.Request.RESUME_SAVED_POSE: SAVED_POSE,
    LoadState.Request.RESUME_SAME_FRAME: SAME_FRAME,
    LoadState.Request.RESUME_GIVEN_POSE: GIVEN_POSE,
}


def resume_of(request: Any) -> Resume:
    """The LoadState request's `resume` (and `pose` for RESUME_GIVEN_POSE); InvalidInputError otherwise."""
    mode = RESUME_MODES.get(int(request.resume))
    if mode is None:
        raise InvalidInputError(f"resume must be one of {sorted(RESUME_MODES)}, got {request.resume}")
    pose = conv.pose_to_matrix(request.pose) if mode == GIVEN_POSE else None
    return Resume(mode, pose)


class NodeState:
    """The save / load / reset services of one node, its startup load and shutdown save, and a status dict.

    `save(path) -> header`, `load(path, resume) -> header` and `reset()` act on the node's core object;
    `counts() -> (steps, keyframes)` says what it holds now (for the responses)."""

    def __init__(
        self,
        node: Node,
        prefix: str,
        config: StateFileConfig,
        save: Callable[[str], dict[str, Any]],
        load: Callable[[str, Resume], dict[str, Any]],
        reset: Callable[[], None],
        counts: Callable[[], tuple[int, int]],
    ) -> None:
        self.node, self.config = node, config
        self._save, self._load, self._reset, self._counts = save, load, reset, counts
        self._shutdown_save = config.save_on_shutdown
        self.status: dict[str, Any] = {
            "state_path": config.file,
            "state_saved_at": "",  # when this node last saved (the file's saved_at)
            "state_loaded": "",  # the file last loaded and when it had been saved
            "state_problem": "",
        }
        node.create_service(SaveState, f"{prefix}/save", self._on_save)
        node.create_service(LoadState, f"{prefix}/load", self._on_load)
        node.create_service(Trigger, f"{prefix}/reset", self._on_reset)

    def _path(self, requested: str) -> str:
        path = str(Path(requested).expanduser()) if requested else self.config.file
        if not path:
            raise InvalidInputError("no path given and the node's state.path is empty")
        return path

    def _log(self, text: str, error: bool = False) -> None:
        if error:  # (rclpy wants one severity per call site)
            self.node.get_logger().error(text)
            self.status["state_problem"] = text
        else:
            self.node.get_logger().info(text)

    # -- services -----------------------------------------------------------------------------------

    def _on_save(self, request: Any, response: Any) -> Any:
        try:
            path = self._path(request.path)
            header = self._save(path)
        except (InvalidInputError, OSError) as exc:
            response.success, response.message = False, f"not saved: {exc}"
            self._log(response.message, error=True)
            return response
        self.status["state_saved_at"] = header.get("saved_at", "")
        response.steps, response.keyframes = self._counts()
        response.success, response.path, response.saved_at = True, path, header.get("saved_at", "")
        response.message = f"saved to {path} ({response.steps} steps, {response.keyframes} keyframes/views)"
        self._log(response.message)
        return response

    def _on_load(self, request: Any, response: Any) -> Any:
        try:
            path = self._path(request.path)
            header = self._load(path, resume_of(request))
        except (InvalidInputError, OSError) as exc:
            response.success, response.message = False, f"not loaded: {exc}"
            self._log(response.message, error=True)
            return response
        response.steps, response.keyframes = self._counts()
        response.success, response.path, response.saved_at = True, path, header.get("saved_at", "")
        response.message = (
            f"loaded {path}, saved at {response.saved_at} ({response.steps} steps, {response.keyframes} "
            "keyframes/views); the next camera frame continues it"
        )
        self.status["state_loaded"] = f"{path} (saved at {response.saved_at})"
        self._log(response.message)
        return response

    def _on_reset(self, request: Any, response: Any) -> Any:
        self._reset()
        response.success, response.message = True, "forgot everything"
        self._log(f"reset: {response.message}")
        return response

    # -- startup and shutdown -----------------------------------------------------------------------

    def load_on_start(self) -> None:
        """`state.load_on_start`: load `state.path`, the robot where it was saved (no file: start empty). A
        refused file is kept: the shutdown save is turned off so it is not overwritten."""
        if not self.config.load_on_start:
            return
        path = self.config.file
        if not Path(path).exists():
            self._log(f"state.load_on_start: no saved state at {path} yet, starting empty")
            return
        try:
            header = self._load(path, Resume())
        except (InvalidInputError, OSError) as exc:
            keep = " it is kept: state.save_on_shutdown is off for this run" if self._shutdown_save else ""
            self._shutdown_save = False
            self._log(f"state.load_on_start: not loaded, starting empty: {exc};{keep}", error=True)
            return
        steps, keyframes = self._counts()
        self.status["state_loaded"] = f"{path} (saved at {header.get('saved_at', '')})"
        saved_at = header.get("saved_at", "")
        self._log(
            f"loaded {path} (saved at {saved_at}, {steps} steps, {keyframes} keyframes/views); it assumes "
            "the robot stands where it was saved"
        )

    def save_on_shutdown(self) -> None:
        """`state.save_on_shutdown`: save to `state.path` (once)."""
        if not self._shutdown_save:
            return
        self._shutdown_save = False
        path = self.config.file
        try:
            header = self._save(path)
        except (InvalidInputError, OSError) as exc:
            self._log(f"state.save_on_shutdown: not saved: {exc}", error=True)
            return
        steps, keyframes = self._counts()
        saved_at = header.get("saved_at", "")
        self._log(f"saved to {path} at shutdown ({steps} steps, {keyframes} keyframes/views, {saved_at})")
