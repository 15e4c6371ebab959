"""The scripted viewpoint tour: inside the FR3 limits, smooth, dwelling at its viewpoints."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_memory.errors import ConfigError
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.sim.arm_motion import TourConfig, tour

RATE_HZ = 15.0


@pytest.fixture(scope="module")
def joints() -> np.ndarray:
    config = TourConfig()
    period = len(config.pans) * (config.dwell_s + config.move_s)
    return tour(np.arange(0.0, 2 * period, 1.0 / RATE_HZ), config)


def test_every_pose_is_within_the_fr3_limits(joints):
    FR3Kinematics().check_joints_batch(joints)  # raises on any joint outside its limits


def test_motion_is_smooth_and_dwells_at_each_viewpoint(joints):
    config = TourConfig()
    speed = np.abs(np.diff(joints, axis=0)).max(axis=0) * RATE_HZ
    fr3_velocity_limits = np.array([2.62, 2.62, 2.62, 2.62, 5.26, 5.26, 5.26])  # rad/s, Franka datasheet
    assert np.all(speed < 0.5 * fr3_velocity_limits), f"joint speeds {speed.round(2)} rad/s"
    views = config.viewpoints()
    period = config.dwell_s + config.move_s
    for leg in range(len(views)):
        start = int(round(leg * period * RATE_HZ))
        dwell = joints[start : start + int(config.dwell_s * RATE_HZ)]
        np.testing.assert_allclose(dwell, np.repeat(views[leg][None], len(dwell), axis=0), atol=1e-12)


def test_the_tour_loops_back_to_its_first_viewpoint(joints):
    config = TourConfig()
    period = len(config.pans) * (config.dwell_s + config.move_s)
    np.testing.assert_allclose(joints[int(period * RATE_HZ)], config.viewpoints()[0], atol=1e-12)


def test_bad_tours_are_rejected():
    with pytest.raises(ConfigError):
        TourConfig(pans=(0.0, 1.0), tilts=(0.0,), rolls=(0.0, 0.0))
    with pytest.raises(ConfigError):
        TourConfig(move_s=0.0)
