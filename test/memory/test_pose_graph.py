"""ViewPoseGraph: loop closures correct drifted view poses (a square driven with a biased odometry), gates
refuse what drift cannot explain, and the graph stays bounded."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_memory.geometry import invert
from spatial_memory.memory.pose_graph import ViewPoseGraph, lift, planar


def _camera(x: float, y: float, heading: float, z: float = 1.2, pitch: float = 0.0) -> np.ndarray:
    """A camera pose (REP-103 optical frame: z forward, y down) at (x, y, z), looking along `heading`,
    pitched down by `pitch` rad."""
    forward = np.array(
        [math.cos(heading) * math.cos(pitch), math.sin(heading) * math.cos(pitch), -math.sin(pitch)]
    )
    right = np.array([math.sin(heading), -math.cos(heading), 0.0])
    down = np.cross(forward, right)
    T = np.eye(4)
    T[:3, :3] = np.column_stack([right, down, forward])
    T[:3, 3] = [x, y, z]
    return T


def _square(n_per_side: int = 20, side_m: float = 4.0) -> list[np.ndarray]:
    """True planar camera poses around a square, anticlockwise, back to the start."""
    poses, step = [], side_m / n_per_side
    x = y = heading = 0.0
    for _ in range(4):
        for _ in range(n_per_side):
            poses.append(np.array([x, y, heading]))
            x, y = x + step * math.cos(heading), y + step * math.sin(heading)
        heading += math.pi / 2
    poses.append(np.array([x, y, heading % (2 * math.pi)]))
    return poses


def _odometry(true: list[np.ndarray], bias_rad_per_m: float = 0.012) -> list[np.ndarray]:
    """The same path integrated with a heading bias (a drifting wheel odometry)."""
    out = [true[0].copy()]
    for a, b in zip(true, true[1:], strict=False):
        c, s = math.cos(a[2]), math.sin(a[2])
        dx, dy = b[0] - a[0], b[1] - a[1]
        fwd, left = c * dx + s * dy, -s * dx + c * dy
        turn = b[2] - a[2] + bias_rad_per_m * math.hypot(dx, dy)
        p = out[-1]
        c, s = math.cos(p[2]), math.sin(p[2])
        out.append(np.array([p[0] + c * fwd - s * left, p[1] + s * fwd + c * left, p[2] + turn]))
    return out


def _relative_errors(
    graph: ViewPoseGraph, true: list[np.ndarray], now_true: np.ndarray, now_odom: np.ndarray
):
    """Position error (m) of each view relative to the camera now: what a refined answer inherits."""
    estimates = graph.estimates()
    errors = []
    for view_id, (est, _) in estimates.items():
        rel_true = invert(_camera(*now_true)) @ _camera(*true[view_id])
        rel_est = invert(_camera(*now_odom)) @ _camera(*est)
        errors.append(float(np.linalg.norm(rel_true[:3, 3] - rel_est[:3, 3])))
    return np.array(errors)


def _drive(graph: ViewPoseGraph, odom: list[np.ndarray], every: int = 2) -> None:
    for i, p in enumerate(odom[:-1]):
        if i % every == 0:
            graph.add_view(i, int(i * 1e9), _camera(*p))
        else:
            graph.moved(_camera(*p))
    graph.moved(_camera(*odom[-1]))


def _around(
    bias_rad_per_m: float = 0.012, **graph
) -> tuple[list[np.ndarray], list[np.ndarray], ViewPoseGraph]:
    """Once around the square: true poses, the odometry's, and a graph fed with them."""
    true = _square()
    odom = _odometry(true, bias_rad_per_m)
    driven = ViewPoseGraph(**graph)
    _drive(driven, odom)
    return true, odom, driven


def _sees_the_start(graph: ViewPoseGraph, true, odom, stamp_ns: int = int(1e12)):
    """The camera, back at the start, sees view 0: PnP's drift-free pose between them, as a closure."""
    T_view_query = invert(_camera(*true[0])) @ _camera(*true[-1])
    return graph.close(0, _camera(*graph.estimates()[0][0]), T_view_query, _camera(*odom[-1]), stamp_ns)


def test_a_loop_closure_takes_the_drift_out_of_the_views_relative_to_now():
    true, odom, graph = _around()
    now_true, now_odom, stamp = true[-1], odom[-1], int(len(true) * 1e9)
    before = _relative_errors(graph, true, now_true, now_odom)
    assert before.max() > 0.5  # the biased odometry drifted (the first views are farthest off)
    result = _sees_the_start(graph, true, odom, stamp)
    assert result.accepted, result.reason
    drift_deg = math.degrees(odom[-1][2] - true[-1][2])  # the heading the biased odometry gained
    assert result.correction_deg == pytest.approx(abs(drift_deg), abs=0.5)
    after = _relative_errors(graph, true, now_true, now_odom)
    assert after[0] < 0.05  # the view it closed against is exact relative to now
    assert after.max() < 0.4 * before.max() and np.median(after) < 0.5 * np.median(before)
    # view 0's drift now counts from the closure, not from the start; a late view keeps its own stamp
    assert graph.estimates()[0][1] == stamp
    last = max(graph.estimates())
    assert graph.estimates()[last][1] == int(last * 1e9)


def test_a_correction_larger_than_drift_can_explain_is_refused():
    true, odom, graph = _around(bias_rad_per_m=0.0, max_correction_m=1.0)
    before = graph.estimates()
    T_far = invert(_camera(*true[0])) @ _camera(2.5, 0.0, 0.0)  # "sees view 0" from 2.5 m away: a look-alike
    result = graph.close(0, _camera(*true[0]), T_far, _camera(*odom[-1]), int(1e12))
    assert not result.accepted and "too large" in result.reason and result.correction_m > 2.0
    assert graph.closures == 0
    for view_id, (est, _) in graph.estimates().items():
        np.testing.assert_allclose(est, before[view_id][0])


def test_a_look_alike_the_drift_cannot_explain_is_refused_though_within_the_size_gates():
    true = [np.array([0.2 * i, 0.0, 0.0]) for i in range(16)]  # 3 m straight ahead, odometry exact
    graph = ViewPoseGraph(max_correction_m=1.5)
    _drive(graph, true)
    now = _camera(*true[-1])
    right = invert(_camera(*true[0])) @ now
    look_alike = invert(_camera(*true[0])) @ _camera(3.0, 0.9, 0.0)  # 0.9 m aside: not 3 m of drift
    refused = graph.close(0, _camera(*true[0]), look_alike, now, int(1e12))
    assert not refused.accepted and "drifted" in refused.reason and refused.chi2 > 16.3
    assert graph.closures == 0
    accepted = graph.close(0, _camera(*true[0]), right, now, int(1e12))
    assert accepted.accepted and accepted.chi2 < 1.0
    ungated = ViewPoseGraph(max_correction_m=1.5, max_chi2=0.0)
    _drive(ungated, true)
    assert ungated.close(0, _camera(*true[0]), look_alike, now, int(1e12)).accepted  # the gate did it


def test_standing_still_adds_one_closure_not_one_a_second():
    true, odom, graph = _around()
    first = _sees_the_start(graph, true, odom)
    again = _sees_the_start(graph, true, odom, int(1e12 + 1e9))
    assert first.accepted and not again.accepted and "not moved" in again.reason
    assert graph.closures == 1


def test_an_evicted_view_hands_its_loop_closure_to_its_neighbour():
    true, odom, graph = _around()
    assert _sees_the_start(graph, true, odom).accepted
    kept = graph.estimates()
    graph.remove_view(0)
    assert 0 not in graph.estimates() and graph.closures == 1
    graph._solve()  # the closure still holds through view 2
    for view_id, (est, _) in graph.estimates().items():
        np.testing.assert_allclose(est[:2], kept[view_id][0][:2], atol=0.02)


def test_closures_are_bounded():
    true, odom, graph = _around(max_closures=2, min_move_m=0.0, min_turn_deg=0.0)
    for k in range(4):
        assert _sees_the_start(graph, true, odom, int(1e12 + k)).accepted
    assert graph.closures == 2 and len(graph) == len(graph.estimates()) + 2


@settings(max_examples=50, deadline=None)
@given(
    st.tuples(*[st.floats(-5, 5)] * 2, st.floats(-math.pi, math.pi)),
    st.tuples(*[st.floats(-5, 5)] * 2, st.floats(-math.pi, math.pi)),
    st.floats(-0.4, 0.4),
)
def test_lift_moves_a_camera_to_a_planar_pose_keeping_height_and_tilt(old, new, pitch):
    T = _camera(*old, z=1.1, pitch=pitch)
    moved = lift(planar(T), np.array(new)) @ T
    got = planar(moved)
    assert got[:2] == pytest.approx(new[:2], abs=1e-9)
    assert math.remainder(got[2] - new[2], 2 * math.pi) == pytest.approx(0.0, abs=1e-9)
    assert moved[2, 3] == pytest.approx(1.1)  # height kept
    assert moved[2, :3] == pytest.approx(T[2, :3])  # tilt against the vertical kept
