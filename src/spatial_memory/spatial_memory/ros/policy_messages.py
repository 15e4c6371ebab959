"""What policy_node converts: /query_pose answers into `MemoryReading`s, keyframe markers into the map's
legend, decisions into JSON. Pure: no rclpy here (messages come in duck-typed, as rclpy or rosbags made them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from spatial_memory.memory.poses import planar_target
from spatial_memory.msgs import conversions as conv
from spatial_memory.policy.interface import Decision, MemoryReading, Pose2D
from spatial_memory.ros import memory_messages as mm

KEYFRAME_ARROWS = "keyframe_arrows"  # the namespace of conversions.keyframe_markers' arrows (id = number)
MARKER_ADD = 0


def planar(T: np.ndarray) -> Pose2D:  # noqa: N803 - the project's pose naming
    """(x, y, yaw) of a 4x4 pose's position and its x axis' heading."""
    return Pose2D(float(T[0, 3]), float(T[1, 3]), float(math.atan2(T[1, 0], T[0, 0])))


def goal_with_covariance(
    T_frame_goal: np.ndarray,  # noqa: N803 - the project's pose naming
    sigma_m: float,
    stamp_ns: int,
    frame_id: str,
    factory: conv.MessageFactory,
) -> Any:
    """The goal as geometry_msgs/PoseWithCovarianceStamped for RViz: x and y variance sigma^2 (the memory's
    1-sigma; 0 when the goal is the robot's own pose), the orientation's variance not estimated (0)."""
    variance = float(sigma_m) ** 2 if math.isfinite(sigma_m) else 0.0
    covariance = np.diag([variance, variance, 0.0, 0.0, 0.0, 0.0])
    return factory.new(
        "geometry_msgs/msg/PoseWithCovarianceStamped",
        header=conv.make_header(stamp_ns, frame_id, factory),
        pose=factory.new(
            "geometry_msgs/msg/PoseWithCovariance",
            pose=conv.matrix_to_pose(T_frame_goal, factory=factory),
            covariance=factory.float64_array(covariance.reshape(-1)),
        ),
    )


def reading_from_response(
    picture: str, response: Any, odom_base: Pose2D | None, backend: str = ""
) -> MemoryReading | None:
    """A QueryPose answer as the policy reads it; None for success=false. `odom_base`: the odometry's base
    pose at the answer's stamp (moves the answer to now), None when TF did not have it; `backend`: the one
    asked ('' = memory_node's default, reported as 'memory')."""
    if not response.success:
        return None
    summary = mm.query_response_summary(response)
    T = conv.msg_to_matrix(response.pose.pose.pose)  # noqa: N806
    x, y, yaw = (float(v) for v in planar_target(T))
    sigma = summary["sigma_m"]
    return MemoryReading(
        picture=picture,
        stamp_ns=summary["stamp_ns"],
        pose=Pose2D(x, y, yaw),
        sigma_m=sigma if math.isfinite(sigma) else math.inf,
        seen_probability=float(response.seen_probability),
        confidence=float(response.confidence),
        backend=backend or "memory",
        inliers=int(response.inliers),
        odom_base=odom_base,
    )


Legend = list[tuple[int, tuple[float, float], tuple[int, int, int]]]


def keyframe_legend(markers: Any, T_base_frame: np.ndarray) -> Legend:  # noqa: N803
    """(number, (forward, left) metres in the base frame now, RGB colour) of each keyframe arrow in a
    MarkerArray from spatial_context_node; `T_base_frame` maps the markers' frame into the base frame."""
    out = []
    for m in markers.markers:
        if m.ns != KEYFRAME_ARROWS or m.action != MARKER_ADD:
            continue
        p = T_base_frame @ np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z, 1.0])
        rgb = tuple(int(round(255 * float(c))) for c in (m.color.r, m.color.g, m.color.b))
        out.append((int(m.id), (float(p[0]), float(p[1])), rgb))
    return sorted(out)


def decision_json(decision: Decision, extra: Mapping[str, Any] | None = None) -> str:
    """A decision as one line of JSON (policy/decision): status, subtask, goal, nominations, who decided."""
    goal = decision.goal
    payload = {
        "stamp_ns": decision.stamp_ns,
        "status": decision.status.value,
        "reason": decision.reason,
        "subtask": decision.subtask,
        "source": decision.source,
        "stale": decision.stale,
        "explore": decision.explore,
        "keyframe_positions": list(decision.keyframe_positions),
        "nominated_frame_ids": list(decision.nominated_frame_ids),
        "ask": list(decision.ask),
        "goal": None
        if goal is None
        else {
            "x": round(goal.pose.x, 4),
            "y": round(goal.pose.y, 4),
            "yaw": round(goal.pose.yaw, 4),
            "source": goal.source,
            "sigma_m": goal.sigma_m if math.isfinite(goal.sigma_m) else None,
        },
        "goal_keyframe": decision.goal_keyframe,
        **(extra or {}),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))
