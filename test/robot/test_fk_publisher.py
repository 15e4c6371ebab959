"""fk_node's core: when TF is published (rate limit, publish on change, keep-alive) and the edge arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert, pose_from_xyz_quat
from spatial_memory.robot.description import load_urdf, urdf_tf_edges
from spatial_memory.robot.fk_publisher import COMPUTE, RESTAMP, SKIP, FkEdges, TfThrottle
from spatial_memory.robot.kinematics import FR3Kinematics

T0 = 1_700_000_000 * 10**9
MS = 1_000_000
Q = np.array([0.1, -0.6, 0.2, -2.2, 0.1, 1.7, 0.6])


def _run(throttle: TfThrottle, stamps, qs) -> list[str]:
    return [throttle.offer(int(s), q) for s, q in zip(stamps, qs, strict=True)]


# ----------------------------------------------------------------------------------------------------
# TfThrottle
# ----------------------------------------------------------------------------------------------------


def test_rate_zero_computes_every_message_even_an_arm_at_rest():
    throttle = TfThrottle(0.0, 0.0, 1e-4)
    decisions = _run(throttle, T0 + np.arange(100) * MS, [Q] * 100)
    assert decisions == [COMPUTE] * 100
    assert throttle.counts["computed"] == 100 and throttle.counts["skipped"] == 0


def test_a_moving_arm_at_1khz_is_computed_at_the_rate_and_never_restamped():
    throttle = TfThrottle(50.0, 20.0, 1e-4)
    stamps = T0 + np.arange(1000) * MS  # 1 s at 1 kHz
    qs = [Q + 1e-3 * i for i in range(1000)]
    decisions = _run(throttle, stamps, qs)
    computed = [int(s) for s, d in zip(stamps, decisions, strict=True) if d == COMPUTE]
    assert len(computed) == 50 and RESTAMP not in decisions
    assert np.all(np.diff(computed) == 20 * MS)
    assert throttle.counts == {
        "received": 1000, "computed": 50, "restamped": 0, "skipped": 950, "late": 0, "restarts": 0
    }  # fmt: skip
    np.testing.assert_array_equal(throttle.computed_q, qs[980])


def test_an_arm_at_rest_is_computed_once_then_restamped_at_the_keepalive_rate():
    throttle = TfThrottle(50.0, 20.0, 1e-4)
    stamps = T0 + np.arange(1000) * MS
    noise = np.random.default_rng(0).uniform(-5e-5, 5e-5, (1000, 7))  # encoder noise below the tolerance
    decisions = _run(throttle, stamps, Q + noise)
    assert decisions[0] == COMPUTE and decisions.count(COMPUTE) == 1
    restamped = [int(s) for s, d in zip(stamps, decisions, strict=True) if d == RESTAMP]
    assert len(restamped) == 19 and np.all(np.diff(restamped) == 50 * MS)
    assert throttle.published_ns == restamped[-1]


def test_an_arm_that_starts_moving_is_computed_in_the_next_rate_slot():
    throttle = TfThrottle(50.0, 20.0, 1e-4)
    throttle.offer(T0, Q)
    assert throttle.offer(T0 + 5 * MS, Q + 0.01) == SKIP  # same 20 ms slot as the last publication
    assert throttle.offer(T0 + 19 * MS, Q + 0.01) == SKIP
    assert throttle.offer(T0 + 20 * MS, Q + 0.01) == COMPUTE
    assert throttle.offer(T0 + 41 * MS, Q + 0.01) == SKIP  # at rest again: the keep-alive is 50 ms
    assert throttle.offer(T0 + 52 * MS, Q + 0.01) == RESTAMP


def test_late_stamps_are_skipped_and_a_clock_restart_computes_at_once():
    throttle = TfThrottle(50.0, 20.0, 1e-4)
    throttle.offer(T0, Q)
    assert throttle.offer(T0 - 10 * MS, Q + 0.5) == SKIP  # late (out of order): not the newest
    assert throttle.offer(T0, Q + 0.5) == SKIP  # a duplicate stamp
    assert throttle.counts["late"] == 2
    assert throttle.offer(5 * 10**9, Q) == COMPUTE  # sim reset / bag looped: far back in time
    assert throttle.counts["restarts"] == 1 and throttle.published_ns == 5 * 10**9


@pytest.mark.parametrize(
    ("rate", "keepalive", "tolerance"),
    [(50.0, 0.0, 1e-4), (50.0, 60.0, 1e-4), (-1.0, 1.0, 1e-4), (float("nan"), 1.0, 1e-4), (50.0, 20.0, -1.0)],
)
def test_bad_rates_or_tolerance_are_refused(rate, keepalive, tolerance):
    with pytest.raises(ConfigError):
        TfThrottle(rate, keepalive, tolerance)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.floats(1.0, 500.0),
    keepalive_share=st.floats(0.01, 1.0),
    steps=st.lists(
        st.tuples(st.integers(1, 40 * MS), st.booleans(), st.floats(0.0, 1e-3)), min_size=1, max_size=400
    ),
)
def test_publications_are_rate_bounded_and_a_moved_or_resting_arm_is_never_left_stale(
    rate, keepalive_share, steps
):
    """For any increasing stamps and any motion: at most one publication per 1/rate slot (so at most
    rate + 2 per second of stamps), a moved arm is published within one rate slot, and the newest
    publication is never a keep-alive period behind the newest message."""
    tol = 1e-4
    throttle = TfThrottle(rate, rate * keepalive_share, tol)
    period, keepalive = round(1e9 / rate), round(1e9 / throttle.keepalive_hz)
    stamp, q = T0, Q.copy()
    published = []
    for gap, moves, step in steps:
        stamp += gap
        if moves:
            q = q + step * np.sign(np.sin(np.arange(7) + stamp))
        if throttle.offer(stamp, q) != SKIP:
            published.append(stamp)
        assert stamp - throttle.published_ns < keepalive
        if np.max(np.abs(q - throttle.computed_q)) > tol:
            assert stamp // period == throttle.published_ns // period
    slots = [s // period for s in published]
    assert len(set(slots)) == len(slots)
    pubs = np.array(published)
    for s in published:
        assert np.count_nonzero((pubs >= s) & (pubs < s + 10**9)) <= rate + 2


# ----------------------------------------------------------------------------------------------------
# FkEdges
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kinematics() -> FR3Kinematics:
    return FR3Kinematics()


def test_edge_arrays_equal_the_relative_fk_poses_of_the_moving_joints(kinematics):
    moving = [e for e in urdf_tf_edges(load_urdf(kinematics.mount)) if not e.fixed]
    assert len(moving) == 7
    edges = FkEdges(kinematics, moving, "fr3_hand_tcp")
    rng = np.random.default_rng(1)
    for q in rng.uniform(kinematics.lower, kinematics.upper, (50, 7)):
        xyz, quat, ee_xyz, ee_quat = edges.compute(q)
        poses = kinematics.forward_all(q)
        for i, edge in enumerate(moving):
            expected = invert(poses[edge.parent]) @ poses[edge.child]
            np.testing.assert_allclose(pose_from_xyz_quat(xyz[i], quat[i]), expected, atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(quat, axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(pose_from_xyz_quat(ee_xyz, ee_quat), poses["fr3_hand_tcp"], atol=1e-12)


def test_edge_arrays_refuse_bad_joints_and_unknown_frames(kinematics):
    moving = [e for e in urdf_tf_edges(load_urdf(kinematics.mount)) if not e.fixed]
    edges = FkEdges(kinematics, moving, "fr3_hand_tcp")
    with pytest.raises(InvalidInputError, match="outside its limits"):
        edges.compute(np.full(7, 10.0))
    with pytest.raises(InvalidInputError, match="unknown frame"):
        FkEdges(kinematics, moving, "no_such_link")
