"""QueryPose and memory/status messages for and from a MemoryEngine; pure (no rclpy, no torch).

memory_node fills its `memory/query` responses here, spatial_context_node forwards them as its `/query_pose`
answer, and tests check the same functions against the rosbags typestores. Messages are built through a
`conversions.MessageFactory`, so one code path serves rclpy and rosbags.

The response pose is a PoseWithCovarianceStamped in the robot's current base frame: the query camera's
levelled optical frame (see `memory.engine.MemoryAnswer`). Covariance (row-major 6x6 over x, y, z, roll,
pitch, yaw): sigma^2 on x and y from the model's predicted position error; 0 on z, roll and pitch, which
are fixed by construction (camera height from the config, a level camera); the models predict no heading
uncertainty, so yaw gets `YAW_VARIANCE_UNKNOWN` (pi^2: anything up to a half turn). Refined answers
(backend 'refined', verified by PnP against stored RGB-D views) measure the heading: yaw gets their
calibrated heading variance, `inliers` the PnP inlier count, and the message says how the answer was made.

What the numbers mean: `confidence` is 1 / (1 + sigma_m), a monotone view of the covariance's sigma (0.5 at
one metre of expected position error); how well sigma covers the real error is measured, per motion
scenario, by `spatial-memory eval mem-rpe-live`. `seen_probability` is the memory's own estimate that the
pictured place was observed at all: below 0.5 the answer is a guess about a place it never saw.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from spatial_memory.errors import InvalidInputError
from spatial_memory.msgs import conversions as conv

if TYPE_CHECKING:  # annotations only: importing the engine would load torch
    from spatial_memory.memory.engine import MemoryAnswer

YAW_VARIANCE_UNKNOWN = math.pi**2
NO_KEYFRAME = -1  # the memory matches no spatial-context keyframe: it has its own notion of places
QUERY_ENCODINGS = ("rgb8", "bgr8", "mono8")
QUERY_RESPONSE_FIELDS = (
    "success",
    "message",
    "pose",
    "confidence",
    "seen_probability",
    "matched_keyframe_id",
    "inliers",
)


def query_image_rgb(msg: Any) -> np.ndarray:
    """The query image as (H, W, 3) uint8 RGB: rgb8 and bgr8 as they are, mono8 repeated on 3 channels.

    Raises InvalidInputError for other encodings or a malformed message (conversions.image_to_numpy).
    """
    encoding = str(msg.encoding)
    if encoding not in QUERY_ENCODINGS:
        raise InvalidInputError(f"query encoding must be one of {QUERY_ENCODINGS}, got {encoding!r}")
    pixels = conv.image_to_numpy(msg)
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def searching_since_ns(request: Any) -> int | None:
    """A QueryPose request's `searching_since` in nanoseconds; None when zero (the asker is not searching).
    Raises InvalidInputError for a malformed stamp."""
    since = conv.stamp_to_ns(request.searching_since)
    return since or None


def camera_image_rgb(msg: Any) -> np.ndarray:
    """A camera image for a memory update: rgb8 or bgr8 only (the models read colour), as RGB."""
    encoding = str(msg.encoding)
    if encoding not in ("rgb8", "bgr8"):
        raise InvalidInputError(f"camera image encoding must be rgb8 or bgr8, got {encoding!r}")
    return conv.image_to_numpy(msg)


def answer_covariance(answer: MemoryAnswer) -> np.ndarray:
    """6x6 pose covariance of an answer (see the module docstring)."""
    variance = float(answer.sigma_m) ** 2
    yaw = answer.sigma_yaw_rad
    yaw_variance = yaw**2 if math.isfinite(yaw) else YAW_VARIANCE_UNKNOWN
    return np.diag([variance, variance, 0.0, 0.0, 0.0, yaw_variance])


def fill_query_response(
    response: Any, answer: MemoryAnswer, *, frame_id: str, stamp_ns: int, factory: conv.MessageFactory
) -> Any:
    """Set a QueryPose response from an answer: success, summary, pose with covariance, confidence."""
    response.success = True
    response.message = (
        f"{answer.backend}: x {answer.x:+.2f} m, y {answer.y:+.2f} m, "
        f"yaw {math.degrees(answer.yaw):+.0f} deg, confidence {answer.confidence:.2f}, "
        f"seen {answer.seen_probability:.2f} (memory of {answer.steps} steps)"
        + (f"; {answer.note}" if answer.note else "")
    )
    response.pose = factory.new(
        "geometry_msgs/msg/PoseWithCovarianceStamped",
        header=conv.make_header(stamp_ns, frame_id, factory),
        pose=factory.new(
            "geometry_msgs/msg/PoseWithCovariance",
            pose=conv.matrix_to_pose(answer.T_base_query, factory=factory),
            covariance=factory.float64_array(answer_covariance(answer).reshape(-1)),
        ),
    )
    response.confidence = float(answer.confidence)
    response.seen_probability = float(answer.seen_probability)
    response.matched_keyframe_id = NO_KEYFRAME
    response.inliers = int(answer.inliers)
    return response


def fill_query_failure(
    response: Any, message: str, *, frame_id: str, stamp_ns: int, factory: conv.MessageFactory
) -> Any:
    """Set a QueryPose response to 'no answer': success false, the reason, identity pose, confidence 0."""
    response.success = False
    response.message = message
    response.pose = factory.new(
        "geometry_msgs/msg/PoseWithCovarianceStamped",
        header=conv.make_header(stamp_ns, frame_id, factory),
        pose=factory.new(
            "geometry_msgs/msg/PoseWithCovariance",
            pose=conv.matrix_to_pose(np.eye(4), factory=factory),
            covariance=factory.float64_array(np.zeros(36)),
        ),
    )
    response.confidence = 0.0
    response.seen_probability = 0.0
    response.matched_keyframe_id = NO_KEYFRAME
    response.inliers = -1
    return response


def copy_query_response(source: Any, target: Any) -> Any:
    """Copy every QueryPose response field from `source` to `target` (forwarding an answer)."""
    for name in QUERY_RESPONSE_FIELDS:
        setattr(target, name, getattr(source, name))
    return target


def query_response_summary(response: Any) -> dict[str, Any]:
    """The planar answer in a QueryPose response, as plain data (x, y, yaw from the pose; sigma from the
    covariance), e.g. for logs, tools and tests."""
    pose = response.pose.pose
    T = conv.pose_to_matrix(pose.pose)
    yaw = math.atan2(T[1, 2], T[0, 2])  # heading of the optical axis (the frame's z)
    covariance = np.asarray(pose.covariance, dtype=np.float64)
    return {
        "success": bool(response.success),
        "message": str(response.message),
        "frame_id": str(response.pose.header.frame_id),
        "stamp_ns": conv.stamp_to_ns(response.pose.header.stamp),
        "x": float(T[0, 3]),
        "y": float(T[1, 3]),
        "z": float(T[2, 3]),
        "yaw": float(yaw),
        "sigma_m": float(math.sqrt(max(covariance[0], 0.0))) if covariance.size == 36 else float("nan"),
        "confidence": float(response.confidence),
        "inliers": int(response.inliers),
        "seen_probability": float(response.seen_probability),
        "matched_keyframe_id": int(response.matched_keyframe_id),
    }


def status_json(status: dict[str, Any]) -> str:
    """memory/status payload: the engine's status plus the node's counters, as compact sorted JSON."""
    return json.dumps(status, sort_keys=True, separators=(",", ":"))
