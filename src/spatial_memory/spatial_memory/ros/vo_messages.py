"""vo_node's messages, pure (no rclpy): camera and depth images in, Odometry / Path / status out.

Built through a `conversions.MessageFactory`, so the same functions serve rclpy and the rosbags typestores
the tests check them against.

| topic | type | QoS | content |
|---|---|---|---|
| `vo/odometry` | nav_msgs/Odometry | reliable, 10 | `base_link` in `odom`, twist in `base_link`, covariance |
| `vo/path` | nav_msgs/Path | reliable, 1 | the newest `path_length` poses, at `path_rate_hz` |
| `vo/status` | std_msgs/String | reliable, 10 | JSON: rates, dropped frames, losses, motion sources |
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from spatial_memory.errors import InvalidInputError
from spatial_memory.msgs import conversions as conv
from spatial_memory.vo.odometry import OdometryStep

IMAGE_ENCODINGS = ("rgb8", "bgr8", "mono8")
DEPTH_ENCODINGS = ("32FC1", "16UC1")  # metres; millimetres (REP-118), 0 = no reading
MM = 1e-3


def vo_image(msg: Any) -> np.ndarray:
    """A camera image for the VO: (H, W, 3) RGB from rgb8/bgr8, (H, W) from mono8; InvalidInputError else."""
    if str(msg.encoding) not in IMAGE_ENCODINGS:
        raise InvalidInputError(f"image encoding must be one of {IMAGE_ENCODINGS}, got {msg.encoding!r}")
    return conv.image_to_numpy(msg)


def depth_metres(msg: Any) -> np.ndarray:
    """A depth image as float32 metres (0 or NaN: no reading) from 32FC1 or 16UC1 (millimetres)."""
    if str(msg.encoding) not in DEPTH_ENCODINGS:
        raise InvalidInputError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {msg.encoding!r}")
    pixels = conv.image_to_numpy(msg)
    return pixels.astype(np.float32) * np.float32(MM) if pixels.dtype == np.uint16 else pixels


def odometry_message(
    step: OdometryStep, odom_frame: str, base_frame: str, factory: conv.MessageFactory
) -> Any:
    """nav_msgs/Odometry of one VO step."""
    return conv.make_odometry(
        step.T_odom_base,
        step.stamp_ns,
        odom_frame,
        base_frame,
        factory=factory,
        twist=step.twist,
        pose_covariance=step.pose_covariance,
        twist_covariance=step.twist_covariance,
    )


def path_message(
    poses: Iterable[tuple[int, np.ndarray]], stamp_ns: int, frame_id: str, factory: conv.MessageFactory
) -> Any:
    """nav_msgs/Path of (stamp ns, T_frame_base) poses, oldest first."""
    return factory.new(
        "nav_msgs/msg/Path",
        header=conv.make_header(stamp_ns, frame_id, factory),
        poses=[conv.matrix_to_pose_stamped(T, s, frame_id, factory=factory) for s, T in poses],
    )


def status_json(status: dict[str, Any]) -> str:
    """vo/status payload: compact sorted JSON."""
    return json.dumps(status, sort_keys=True, separators=(",", ":"))
