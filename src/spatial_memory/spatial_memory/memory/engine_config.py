"""`EngineConfig`: how a `MemoryEngine` is set up (backend, checkpoint, image policy, answer geometry).

Kept apart from `memory.engine` (which re-exports it) because it imports no torch: the ROS node configs
nest it (`memory_node`'s `engine.*` parameters), and every node and test that reads those configs would
otherwise load torch (~1 s and ~150 MB) for nothing. Checks that need the model registry (is `backend` a
known model) run when the engine is built.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from spatial_memory.errors import ConfigError, ResourceNotFoundError
from spatial_memory.memory.lost import LostMonitor, ViewJumpCheck
from spatial_memory.resources import share_path

RESIZE_POLICIES = ("none", "crop", "stretch")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _help(text: str) -> dict[str, str]:
    """Field metadata carrying the ROS parameter description (see `ros.params`)."""
    return {"help": text}


@dataclass(frozen=True)
class EngineConfig:
    """Backend, checkpoint and input/answer conventions of a MemoryEngine; every field has a default.

    Image size policy: the model reads square images of its encoder's `image_size` (64 px for the shipped
    models). 'crop' (the default: any common camera works) takes the largest centred square and resizes it
    with cv2 INTER_AREA (keeps the aspect ratio: the training cameras are square); 'stretch' resizes the
    whole image (INTER_AREA) to the square; `resize='none'` refuses any other size (InvalidInputError).
    `image_size` > 0 additionally states the size the checkpoint must have (0 = whatever it has).

    Motion bounds: a base pose beyond `max_distance_m` from its frame's origin, or a step between frames
    longer than `max_speed_m_s` x the time gap + `step_slack_m`, is physically absurd and refused (one such
    frame turned the whole state NaN for good). The gap counts from the last frame used, so a real jump of
    the odometry frame is accepted once enough time has passed to explain it.
    """

    backend: str = field(
        default="kinaema",
        metadata=_help("memory model: 'kinaema', 'keyframes' or any registry name (gru, ema, ...)"),
    )
    checkpoint: str = field(
        default="",
        metadata=_help(
            "local checkpoint file (registry.save_checkpoint); 'keyframes' reads the encoder inside any "
            "model checkpoint; '' = none (the engine refuses to start)"
        ),
    )
    image_size: int = field(
        default=0, metadata=_help("expected square input size of the checkpoint's encoder (px); 0 = any")
    )
    resize: str = field(
        default="crop",
        metadata=_help("images of another size: 'crop' = centre square, 'stretch', 'none' = refuse"),
    )
    camera_height_m: float = field(
        default=0.0, metadata=_help("z of the answered camera pose in the base frame (the models are planar)")
    )
    keyframe_camera_offset: tuple[float, float, float] = field(
        default=(0.0, 0.0, 0.0),
        metadata=_help(
            "'keyframes' built from an encoder: camera (x m, y m, yaw rad) in the base frame, so answers "
            "are camera poses"
        ),
    )
    min_query_contrast: float = field(
        default=2.0,
        metadata=_help(
            "a query picture whose grey levels vary less than this (standard deviation, 0-255) shows "
            "nothing to recognise (black, uniform, lens cap on): refused; 0 accepts every picture"
        ),
    )
    time_jump_reset_s: float = field(
        default=1.0,
        metadata=_help(
            "a frame stamped more than this before the last one means time jumped back (a restarted sim or "
            "bag): the memory resets; a frame less late is out of order: dropped and counted"
        ),
    )
    lost_check: bool = field(
        default=False,
        metadata=_help(
            "before each frame is folded in, ask the memory where it was taken; when it keeps putting what "
            "the camera sees now far from the robot (carried away, a kidnap), reset it (`memory.lost`). Off: "
            "with the shipped model, look-alike places reset it as often as kidnaps do (README)"
        ),
    )
    lost_distance_m: float = field(
        default=2.0, metadata=_help("lost check: an answer this far from the robot (and > 2 sigma) is a vote")
    )
    lost_min_seen: float = field(
        default=0.8, metadata=_help("lost check: only answers at least this sure the place was seen vote")
    )
    lost_window: int = field(
        default=5, metadata=_help("lost check: votes remembered (at most one per 0.3 m or 20 deg)")
    )
    lost_votes: int = field(
        default=4, metadata=_help("lost check: this many inconsistent votes of the window mean lost")
    )
    lost_ignore_newest: int = field(
        default=20,
        metadata=_help(
            "lost check: the recall ring's newest entries left out (the way here, ~0.3 m each): the view is "
            "matched against what the memory held before"
        ),
    )
    jump_check: bool = field(
        default=False,
        metadata=_help(
            "reset the memory when two consecutive textured frames share no image motion while the odometry "
            "says the robot barely moved: it was carried off between them (`memory.lost.ViewJumpCheck`)"
        ),
    )
    jump_min_features: int = field(
        default=100, metadata=_help("view jump check: only frames with at least this many SIFT features each")
    )
    jump_min_inliers: int = field(
        default=12, metadata=_help("view jump check: fewer matches than this on one homography: a jump")
    )
    jump_max_motion_m: float = field(
        default=0.25, metadata=_help("view jump check: only when the odometry moved at most this far...")
    )
    jump_max_turn_deg: float = field(
        default=8.0,
        metadata=_help(
            "view jump check: ...and turned at most this much between the frames (a faster spin before a "
            "plain wall shares too few features between frames: view_jump_T800.md)"
        ),
    )
    jump_flow_inliers: int = field(
        default=80,
        metadata=_help(
            "view jump check: this many optical-flow tracks agreeing on one homography clear the pair "
            "without SIFT (about 1 ms against 7); 0: SIFT judges every pair"
        ),
    )
    max_distance_m: float = field(
        default=1000.0,
        metadata=_help(
            "a base pose farther than this from the origin of its fixed frame is physically absurd (a "
            "corrupt pose or unit mix-up): the frame is refused and the memory kept as it was"
        ),
    )
    max_speed_m_s: float = field(
        default=5.0,
        metadata=_help(
            "the robot's top speed: a step between two frames longer than max_speed_m_s x their time gap + "
            "step_slack_m is refused as a jump (later frames are measured from the last one used)"
        ),
    )
    step_slack_m: float = field(
        default=1.0, metadata=_help("metres of step allowed on top of max_speed_m_s x the time gap")
    )
    device: str = field(default="cpu", metadata=_help("torch device of the model ('cpu')"))
    threads: int = field(default=0, metadata=_help("torch intra-op threads; 0 = leave torch's default"))
    trace: bool = field(
        default=True,
        metadata=_help(
            "run the encoder and the model's update as TorchScript traces, checked against the eager model "
            "at start (`memory.traced`): ~1.3 ms less per frame on a CPU core; false: eager"
        ),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.backend, str) or not _NAME.match(self.backend):
            raise ConfigError(
                f"EngineConfig.backend must be a model name such as 'kinaema', got {self.backend!r}"
            )
        if self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"EngineConfig.resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 0:
            raise ConfigError(f"EngineConfig.image_size must be an integer >= 0, got {self.image_size!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"EngineConfig.threads must be an integer >= 0, got {self.threads!r}")
        if not isinstance(self.trace, bool):
            raise ConfigError(f"EngineConfig.trace must be true or false, got {self.trace!r}")
        if not math.isfinite(self.camera_height_m):
            raise ConfigError(f"EngineConfig.camera_height_m must be finite, got {self.camera_height_m!r}")
        offset = tuple(float(v) for v in self.keyframe_camera_offset)
        if len(offset) != 3 or not all(math.isfinite(v) for v in offset):
            raise ConfigError(
                f"EngineConfig.keyframe_camera_offset must be three finite numbers, got "
                f"{self.keyframe_camera_offset!r}"
            )
        object.__setattr__(self, "keyframe_camera_offset", offset)
        contrast = self.min_query_contrast
        if (
            isinstance(contrast, bool)
            or not isinstance(contrast, (int, float))
            or not 0.0 <= contrast <= 255.0
        ):
            raise ConfigError(f"EngineConfig.min_query_contrast must be within [0, 255], got {contrast!r}")
        jump = self.time_jump_reset_s
        if isinstance(jump, bool) or not isinstance(jump, (int, float)) or not 0.0 <= jump < math.inf:
            raise ConfigError(f"EngineConfig.time_jump_reset_s must be a finite number >= 0, got {jump!r}")
        for name in ("max_distance_m", "max_speed_m_s", "step_slack_m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < math.inf:
                raise ConfigError(f"EngineConfig.{name} must be a finite number > 0, got {value!r}")
        if not isinstance(self.lost_check, bool):
            raise ConfigError(f"EngineConfig.lost_check must be true or false, got {self.lost_check!r}")
        LostMonitor(self.lost_distance_m, self.lost_min_seen, self.lost_window, self.lost_votes)  # checks
        if not isinstance(self.jump_check, bool):
            raise ConfigError(f"EngineConfig.jump_check must be true or false, got {self.jump_check!r}")
        self.view_jump_check()  # checks its settings
        ignore = self.lost_ignore_newest
        if isinstance(ignore, bool) or not isinstance(ignore, int) or ignore < 0:
            raise ConfigError(f"EngineConfig.lost_ignore_newest must be an integer >= 0, got {ignore!r}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"EngineConfig.device must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    def view_jump_check(self) -> ViewJumpCheck:
        """The view jump check these `jump_*` settings describe (ConfigError when they are invalid)."""
        return ViewJumpCheck(
            self.jump_min_features,
            self.jump_min_inliers,
            self.jump_max_motion_m,
            self.jump_max_turn_deg,
            self.jump_flow_inliers,
        )


def resolve_checkpoint(path: str) -> str:
    """`path` as given when that file exists; else a shipped model of that relative name
    (e.g. 'models/kinaema_indoor64.pt' from `share/spatial_memory/`); else `path` unchanged (the loader then
    reports it missing)."""
    if not path or Path(path).is_file() or Path(path).is_absolute():
        return path
    try:
        return str(share_path(path))
    except ResourceNotFoundError:
        return path
