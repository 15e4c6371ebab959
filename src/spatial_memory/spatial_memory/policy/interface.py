"""What a high-level policy sees and says, once a second: `Observation` in, `Decision` out.

The policy is the top of the stack (MemER's high level, Spatial-MemER's map reader). It is called at about
1 Hz by a loop that owns everything with a clock: the ROS `policy_node`, or the in-process Mem-Nav harness
and demo. The loop gathers an `Observation` (the task, the recent frames, the watermarked keyframes and the
map with its numbered legend, the memory's latest answers), calls `HighLevelPolicy.decide`, and acts on the
`Decision`: it promotes the nominated keyframes, sends `goal` to the motion layer (nav2's `goal_pose`, or our
goal follower in simulation), asks the memory about the pictures in `ask`, and ends the task when `status`
says so.

Frames (REP-103/105): planar poses are (x, y, yaw) tuples; x forward, y left, yaw counter-clockwise. A
`MemoryReading` is relative to the robot's base when the memory answered; with the odometry pose at that
time (`odom_base`) and now (`Observation.odom_base`) `MemoryReading.relative_to` moves it to the base now,
so a goal stays on the place while the robot drives (the memory answers relative to "now", and now moves).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import finite_float, wrap_angle

GOAL_PICTURE = "goal"  # the id under which the loop asks the memory about the task's goal picture
VERIFIED_BACKEND = "refined"  # the memory's backend name of answers verified by PnP (memory.service.REFINED)


class Pose2D(NamedTuple):
    """A planar pose: metres and radians (yaw counter-clockwise from x)."""

    x: float
    y: float
    yaw: float

    def compose(self, other: Pose2D) -> Pose2D:
        """self * other: `other` (given in self's frame) expressed in self's parent frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return Pose2D(
            self.x + c * other.x - s * other.y,
            self.y + s * other.x + c * other.y,
            wrap_angle(self.yaw + other.yaw),
        )

    def inverse(self) -> Pose2D:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return Pose2D(-c * self.x - s * self.y, s * self.x - c * self.y, wrap_angle(-self.yaw))

    @property
    def distance(self) -> float:
        """Distance of the position from the frame's origin."""
        return math.hypot(self.x, self.y)


def pose2d(value: object, name: str) -> Pose2D:
    """A finite (x, y, yaw) triple as a Pose2D, or InvalidInputError naming `name`."""
    try:
        x, y, yaw = value  # type: ignore[misc]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be (x, y, yaw), got {value!r}") from exc
    return Pose2D(
        finite_float(x, f"{name}.x"), finite_float(y, f"{name}.y"), finite_float(yaw, f"{name}.yaw")
    )


# ---------------------------------------------------------------------------------------------- observation
@dataclass(frozen=True, eq=False)
class Task:
    """What to do: free text and/or a goal picture ("go to where this picture was taken")."""

    text: str = ""
    goal_image: np.ndarray | None = None  # RGB uint8 (H, W, 3)
    name: str = ""  # the loop's label for the task (e.g. the picture's file); used in logs and results

    @property
    def is_go_to_picture(self) -> bool:
        return self.goal_image is not None


@dataclass(frozen=True, eq=False)
class Frame:
    """A camera frame the loop kept (one per policy tick): its id in the spatial context and its image."""

    frame_id: int
    stamp_ns: int
    image: np.ndarray  # RGB uint8 (H, W, 3)


@dataclass(frozen=True, eq=False)
class KeyframeView:
    """A keyframe as the policy sees it: its number on the map, its watermarked image, where it is now."""

    number: int  # 1..K, the marker's number on the map and the watermark's
    frame_id: int
    image: np.ndarray | None  # watermarked RGB, None if the loop has no image for it
    position: tuple[float, float] | None = None  # (forward, left) metres in the base frame now
    color: tuple[int, int, int] = (0, 0, 0)


@dataclass(frozen=True)
class MemoryReading:
    """The memory's latest answer about one picture (`memory.engine.MemoryAnswer`, planar, stamped)."""

    picture: str  # the loop's id of the picture (GOAL_PICTURE for the task's goal)
    stamp_ns: int  # robot time the answer refers to ("relative to the robot now" = at this stamp)
    pose: Pose2D  # the pictured camera in the base frame at stamp_ns
    sigma_m: float  # 1-sigma position error the memory reports (inf: unknown)
    seen_probability: float
    confidence: float
    backend: str
    inliers: int = -1  # refined answers: PnP inliers (-1: no refinement)
    odom_base: Pose2D | None = None  # the odometry's base pose at stamp_ns (to move the answer to now)

    @property
    def verifiable(self) -> bool:
        """The memory tried to verify this answer against RGB-D views (it serves `refined` answers)."""
        return self.inliers >= 0

    @property
    def verified(self) -> bool:
        """The answer was measured by PnP against a view, not guessed by a model."""
        return self.backend == VERIFIED_BACKEND

    def relative_to(self, odom_base_now: Pose2D | None) -> Pose2D:
        """The answer in the base frame now: unchanged without odometry on either side."""
        if odom_base_now is None or self.odom_base is None:
            return self.pose
        place_in_odom = self.odom_base.compose(self.pose)
        return odom_base_now.inverse().compose(place_in_odom)


@dataclass(frozen=True, eq=False)
class Observation:
    """Everything the policy may look at on one tick (the loop fills what it has; the rest stays empty)."""

    stamp_ns: int
    task: Task = field(default_factory=Task)
    recent: tuple[Frame, ...] = ()  # oldest first; MemER's positions are 1-indexed into this
    keyframes: tuple[KeyframeView, ...] = ()  # the map's legend: numbers match the map's markers
    map_image: np.ndarray | None = None  # the egocentric BEV map (RGB)
    answers: Mapping[str, MemoryReading] = field(default_factory=dict)  # latest per picture id
    odom_base: Pose2D | None = None  # the odometry's base pose now
    memory_available: bool = True  # False when the memory cannot be asked (node gone, no service)

    @property
    def current(self) -> Frame | None:
        return self.recent[-1] if self.recent else None


# ---------------------------------------------------------------------------------------------- decision
class Status(enum.Enum):
    """Where the task stands. Everything but RUNNING ends it."""

    RUNNING = "running"
    ARRIVED = "arrived"
    NOT_SEEN = "not_seen"  # the memory says the pictured place was never seen
    GAVE_UP = "gave_up"  # out of time, or the policy cannot go on (reason says why)

    @property
    def done(self) -> bool:
        return self is not Status.RUNNING


@dataclass(frozen=True)
class Goal:
    """Where to drive: a pose in the base frame at `Decision.stamp_ns`, and where it came from."""

    pose: Pose2D
    source: str  # e.g. "memory:kinaema", "keyframe 3", "explore"
    sigma_m: float = math.inf


@dataclass(frozen=True)
class Decision:
    """A policy's answer for one tick.

    `keyframe_positions` follow MemER's contract: 1-indexed positions into `Observation.recent` of frames the
    policy nominates as keyframes (`nominated_frame_ids` are the same frames by id). `goal` None means "hold
    still" unless `explore` is set, in which case the motion layer may look around on its own. `ask`: ids of
    pictures the loop should ask the memory about before the next tick. `source` names who decided
    ("scripted", "vlm", ...); `stale` is True when the decision is an earlier one re-issued while a slower
    policy is still thinking.
    """

    stamp_ns: int
    subtask: str = ""
    keyframe_positions: tuple[int, ...] = ()
    nominated_frame_ids: tuple[int, ...] = ()
    goal: Goal | None = None
    explore: bool = False
    ask: tuple[str, ...] = ()
    status: Status = Status.RUNNING
    reason: str = ""
    source: str = ""
    stale: bool = False
    goal_keyframe: int | None = None  # VLM policies: the keyframe number the goal was taken from


@runtime_checkable
class HighLevelPolicy(Protocol):
    """A policy called at about 1 Hz. `decide` must return quickly (the loop's tick is 1 s); a slow model
    thinks beside the loop and re-issues its last decision, marked stale, until it has a new one."""

    name: str

    def decide(self, observation: Observation) -> Decision: ...

    def reset(self) -> None:
        """Forget the task in progress (a new task starts)."""
        ...
