"""Scripted arm motions for the stationary scene: a tour of viewpoints over the table.

The arm looks at one part of the table, dwells there (as it would while manipulating), then moves
smoothly (minimum-jerk in joint space) to the next viewpoint. Viewpoints pan across the table at
different tilts and camera rolls, and the tour returns to places it has seen, so keyframe selection and
the map are exercised on distinct places and on revisits. The default tour lasts 60 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatial_memory.errors import ConfigError

# Wrist camera about 0.6 m above the table, 0.4 m in front of the base, looking 50 degrees down at the
# objects (the optical axis meets the table about 0.85 m out): shoulder back, elbow folded, wrist tilted.
LOOKOUT_POSE = np.array([0.0, -1.0, 0.0, -2.7, 0.0, 2.4, 0.785])


@dataclass(frozen=True)
class TourConfig:
    """Viewpoints as (pan, tilt, roll) offsets (rad) from `LOOKOUT_POSE`, and the timing of the tour.

    pan turns joint 1 (across the table), tilt moves joints 2, 4 and 6 together (near table <-> far
    room), roll turns joint 7 (camera roll, which the map must ignore). The tour loops if the episode
    is longer than one pass.
    """

    pans: tuple[float, ...] = (-1.5, -0.8, 0.0, 0.8, 1.5, 0.9, 0.3, -0.4, -1.0, -1.4)
    tilts: tuple[float, ...] = (0.0, 0.3, -0.3, 0.2, 0.0, -0.3, 0.3, 0.1, 0.0, 0.25)
    rolls: tuple[float, ...] = (0.0, 0.4, -0.3, 0.0, 0.5, -0.4, 0.2, 0.0, -0.5, 0.3)
    dwell_s: float = 3.5  # looking at one place
    move_s: float = 2.5  # moving to the next

    def __post_init__(self) -> None:
        if not len(self.pans) == len(self.tilts) == len(self.rolls) >= 1:
            raise ConfigError("pans, tilts and rolls must be non-empty and of one length")
        if self.dwell_s < 0 or self.move_s <= 0:
            raise ConfigError("dwell_s must be >= 0 and move_s > 0")

    def viewpoints(self) -> np.ndarray:
        """Joint vectors (V, 7) of the viewpoints."""
        offsets = np.zeros((len(self.pans), 7))
        offsets[:, 0] = self.pans
        tilt = np.asarray(self.tilts)
        offsets[:, 1] = 0.6 * tilt
        offsets[:, 3] = 0.8 * tilt
        offsets[:, 5] = -0.5 * tilt
        offsets[:, 6] = self.rolls
        return LOOKOUT_POSE[None] + offsets


def _min_jerk(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk profile on [0, 1]: zero velocity and acceleration at both ends."""
    return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


def tour(times_s: np.ndarray, config: TourConfig = TourConfig()) -> np.ndarray:
    """Joint angles (N, 7) of the tour at the given times; within the FR3 limits for the defaults."""
    views = config.viewpoints()
    period = config.dwell_s + config.move_s
    t = np.asarray(times_s, dtype=np.float64)
    leg = np.floor(t / period).astype(int)
    phase = t - leg * period
    start = views[leg % len(views)]
    end = views[(leg + 1) % len(views)]
    s = np.clip((phase - config.dwell_s) / config.move_s, 0.0, 1.0)
    return start + _min_jerk(s)[:, None] * (end - start)
