"""Planar poses and memory readings: an answer stays on its place while the robot drives on."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spatial_memory.errors import InvalidInputError
from spatial_memory.policy.interface import MemoryReading, Pose2D, Status, pose2d

coord = st.floats(-50, 50)
angle = st.floats(-math.pi, math.pi)
poses = st.builds(Pose2D, coord, coord, angle)


def close(a: Pose2D, b: Pose2D, tol: float = 1e-9) -> bool:
    dyaw = (a.yaw - b.yaw + math.pi) % (2 * math.pi) - math.pi
    return abs(a.x - b.x) < tol and abs(a.y - b.y) < tol and abs(dyaw) < tol


@given(poses, poses, poses)
def test_compose_is_associative_and_inverse_undoes_it(a, b, c):
    assert close(a.compose(b).compose(c), a.compose(b.compose(c)), 1e-6)
    assert close(a.compose(a.inverse()), Pose2D(0.0, 0.0, 0.0), 1e-9)


def test_compose_by_hand():
    p = Pose2D(1.0, 2.0, math.pi / 2).compose(Pose2D(1.0, 0.0, 0.0))  # one metre ahead of a robot facing +y
    assert close(p, Pose2D(1.0, 3.0, math.pi / 2))


@given(poses, poses, poses)
def test_a_reading_moved_to_now_points_at_the_same_place(odom_then, answer, odom_now):
    reading = MemoryReading("goal", 0, answer, 0.1, 0.9, 0.9, "kinaema", odom_base=odom_then)
    place = odom_then.compose(answer)
    assert close(odom_now.compose(reading.relative_to(odom_now)), place, 1e-6)


def test_without_odometry_the_reading_is_left_as_answered():
    reading = MemoryReading("goal", 0, Pose2D(2.0, 1.0, 0.3), 0.1, 0.9, 0.9, "kinaema")
    assert reading.relative_to(Pose2D(5.0, 5.0, 1.0)) == Pose2D(2.0, 1.0, 0.3)


def test_pose2d_checks_its_input():
    assert pose2d([1, 2, 3], "p") == Pose2D(1.0, 2.0, 3.0)
    for bad in ([1, 2], [1, 2, float("nan")], "abc", None, [1, True, 0]):
        with pytest.raises(InvalidInputError):
            pose2d(bad, "p")


def test_only_running_is_not_done():
    assert [s for s in Status if not s.done] == [Status.RUNNING]
