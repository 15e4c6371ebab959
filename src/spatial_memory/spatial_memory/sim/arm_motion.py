"""Scripted arm motions for the stationary scene: smooth joint-space sweeps that look around the table.

A sweep is a sum of slow sinusoids around a "look-out" pose: joint 1 pans the whole arm across the
table, joints 2, 4 and 6 tilt the wrist camera between the table top and the room. Slow, smooth and
periodic, so places are revisited, which is what keyframe selection and a memory are tested on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatial_memory.errors import ConfigError

# Wrist camera about 0.6 m above the table, 0.4 m in front of the base, looking 50 degrees down at the
# objects (the optical axis meets the table about 0.85 m out): shoulder back, elbow folded, wrist tilted.
LOOKOUT_POSE = np.array([0.0, -1.0, 0.0, -2.7, 0.0, 2.4, 0.785])


@dataclass(frozen=True)
class SweepConfig:
    """Amplitudes (rad) and periods (s) of the sweep around `LOOKOUT_POSE`."""

    pan_amplitude: float = 1.6  # joint 1: across the table, left to right
    pan_period_s: float = 40.0
    tilt_amplitude: float = 0.35  # joints 2/4/6 together: near table <-> far room
    tilt_period_s: float = 13.0
    roll_amplitude: float = 0.5  # joint 7: camera roll, which the map must ignore
    roll_period_s: float = 9.0

    def __post_init__(self) -> None:
        for name in ("pan_period_s", "tilt_period_s", "roll_period_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")


def sweep(times_s: np.ndarray, config: SweepConfig = SweepConfig()) -> np.ndarray:
    """Joint angles (N, 7) of the sweep at the given times; within the FR3 limits for the defaults."""
    t = np.asarray(times_s, dtype=np.float64)[:, None]
    pan = config.pan_amplitude * np.sin(2 * np.pi * t / config.pan_period_s)
    tilt = config.tilt_amplitude * np.sin(2 * np.pi * t / config.tilt_period_s)
    roll = config.roll_amplitude * np.sin(2 * np.pi * t / config.roll_period_s)
    q = np.repeat(LOOKOUT_POSE[None], len(t), axis=0)
    q[:, 0:1] += pan
    q[:, 1:2] += 0.6 * tilt
    q[:, 3:4] += 0.8 * tilt
    q[:, 5:6] -= 0.5 * tilt
    q[:, 6:7] += roll
    return q
