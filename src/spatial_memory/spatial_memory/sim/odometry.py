"""Simulated wheel odometry: the true planar base motion, integrated with seeded noise and a heading bias.

Each update takes the true `T_world_base` and turns the motion since the last one into a planar increment
in the previous base frame (forward/sideways distance and rotation). Noise is drawn per increment with a
variance proportional to its size (a random walk): after D metres the distance error has standard deviation
`linear_noise * sqrt(D)` whatever the update rate. Rotation noise is likewise proportional to the rotation
and to the distance (wheel slip), and a systematic heading bias (rad per metre, e.g. unequal wheel radii)
bends straight drives. `T_odom_base` starts at identity at the first true pose, as REP-105's odom frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import check_pose, invert

log = logging.getLogger(__name__)

PLANAR_TOL = 1e-6  # the base's z axis must be this close to vertical, and its height this constant (m)


@dataclass(frozen=True)
class WheelOdometryConfig:
    """Noise of the wheel odometry; all zero gives exact odometry (the ground truth re-expressed in odom).

    linear_noise: std of the distance error per sqrt(metre) driven (m / sqrt(m)).
    angular_noise: std of the rotation error per sqrt(radian) turned (rad / sqrt(rad)).
    heading_noise: std of the rotation error per sqrt(metre) driven (rad / sqrt(m)), slip while driving.
    heading_bias: systematic rotation error per metre driven (rad / m), signed (+ = drifts left).
    """

    linear_noise: float = 0.02
    angular_noise: float = 0.02
    heading_noise: float = 0.005
    heading_bias: float = 0.002
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("linear_noise", "angular_noise", "heading_noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a number within [0, 1], got {value!r}")
        bias = self.heading_bias
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not abs(bias) <= 1.0:
            raise ConfigError(f"heading_bias must be a number within [-1, 1] rad/m, got {bias!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def exact(self) -> bool:
        """True when every noise term and the bias are zero."""
        return not (self.linear_noise or self.angular_noise or self.heading_noise or self.heading_bias)


def _planar_pose(x: float, y: float, yaw: float) -> np.ndarray:
    """4x4 pose of a planar (x, y, yaw), written out (scipy's Rotation costs 20 us per call here)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0, x], [s, c, 0.0, y], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def planar_increment(T_prev: np.ndarray, T_cur: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, dyaw) of `T_cur` in the frame of `T_prev`, both planar base poses."""
    D = invert(T_prev) @ T_cur
    return float(D[0, 3]), float(D[1, 3]), math.atan2(D[1, 0], D[0, 0])


class WheelOdometry:
    """Integrates true base motion with noise into `T_odom_base`; reproducible from `config.seed`."""

    def __init__(self, config: WheelOdometryConfig = WheelOdometryConfig()) -> None:
        if not isinstance(config, WheelOdometryConfig):
            raise ConfigError(f"config must be a WheelOdometryConfig, got {type(config).__name__}")
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget the motion so far; the next update starts a new odom frame and re-seeds the noise."""
        self._rng = np.random.default_rng(self.config.seed)
        self._T_world_prev: np.ndarray | None = None
        self._stamp_ns: int | None = None
        self._xyyaw = (0.0, 0.0, 0.0)  # planar odometry state; T_odom_base is built from it
        self._twist = np.zeros(6)
        self.distance_m = 0.0
        self.rotation_rad = 0.0

    @property
    def T_odom_base(self) -> np.ndarray:
        """The odometry pose now; identity before and at the first update."""
        return _planar_pose(*self._xyyaw)

    @property
    def pose2d(self) -> tuple[float, float, float]:
        """(x, y, yaw) of the base in the odom frame (yaw unwrapped: it counts whole turns)."""
        return self._xyyaw

    @property
    def twist(self) -> np.ndarray:
        """Measured (vx, vy, vz, wx, wy, wz) in the base frame: the last noisy increment over its duration
        (zeros before the second update), as nav_msgs/Odometry's twist reports it."""
        return self._twist.copy()

    @property
    def stamp_ns(self) -> int | None:
        """Time of the last update (None before the first)."""
        return self._stamp_ns

    def update(self, T_world_base: np.ndarray, stamp_ns: int) -> np.ndarray:
        """Add the true motion to `T_world_base` (a planar base pose) at `stamp_ns`; returns `T_odom_base`.

        Stamps must increase strictly; a non-rigid or non-planar pose is an InvalidInputError, and a refused
        update leaves the odometry as it was.
        """
        T = check_pose(T_world_base, "T_world_base")
        if abs(T[2, 2] - 1.0) > PLANAR_TOL:
            raise InvalidInputError("T_world_base is not planar: wheel odometry needs a base with z up")
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise InvalidInputError(f"stamp_ns must be an integer (nanoseconds), got {stamp_ns!r}")
        if self._stamp_ns is not None and stamp_ns <= self._stamp_ns:
            raise InvalidInputError(f"stamp {stamp_ns} ns is not after the last update {self._stamp_ns} ns")
        if self._T_world_prev is not None and abs(T[2, 3] - self._T_world_prev[2, 3]) > PLANAR_TOL:
            raise InvalidInputError("T_world_base changed height: wheel odometry needs a planar base")
        if self._T_world_prev is not None:
            dt_s = (int(stamp_ns) - self._stamp_ns) * 1e-9
            dx, dy, dyaw = self._integrate(*planar_increment(self._T_world_prev, T))
            self._twist = np.array([dx / dt_s, dy / dt_s, 0.0, 0.0, 0.0, dyaw / dt_s])
        self._T_world_prev = T.copy()
        self._stamp_ns = int(stamp_ns)
        return self.T_odom_base

    def carried(self, T_world_base: np.ndarray) -> None:
        """The robot was lifted and put down at `T_world_base` (a kidnap): the wheels did not turn, so the
        odometry pose stays where it was and the next update measures motion from the new pose."""
        if self._T_world_prev is None:
            raise InvalidInputError("carried() before the first update: there is no pose to move from")
        T = check_pose(T_world_base, "T_world_base")
        if abs(T[2, 2] - 1.0) > PLANAR_TOL or abs(T[2, 3] - self._T_world_prev[2, 3]) > PLANAR_TOL:
            raise InvalidInputError("T_world_base must be a planar pose at the base's height")
        self._T_world_prev = T.copy()

    def _integrate(self, dx: float, dy: float, dyaw: float) -> tuple[float, float, float]:
        """Compose one noisy increment onto `T_odom_base`; returns the noisy increment."""
        cfg = self.config
        dist, turn = math.hypot(dx, dy), abs(dyaw)
        self.distance_m += dist
        self.rotation_rad += turn
        if not cfg.exact:
            e_dist, e_rot = self._rng.standard_normal(2)
            scale = 1.0 + cfg.linear_noise * math.sqrt(dist) * e_dist / dist if dist > 0 else 1.0
            dx, dy = dx * scale, dy * scale
            sigma_rot = math.sqrt(cfg.angular_noise**2 * turn + cfg.heading_noise**2 * dist)
            dyaw = dyaw + cfg.heading_bias * dist + sigma_rot * e_rot
        x, y, yaw = self._xyyaw
        c, s = math.cos(yaw), math.sin(yaw)
        self._xyyaw = (x + c * dx - s * dy, y + s * dx + c * dy, yaw + dyaw)
        return dx, dy, dyaw
