"""Property-based tests of SpatialContext (issue 14): any sequence of valid poses and stamps, mixed with
absurd ones, never corrupts the context. Valid frames are kept, every refused one raises
`InvalidInputError` (or `UnknownFrameError` for a frame id) and leaves the state exactly as it was, and the
map can always be drawn with every keyframe inside it at a finite place."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spatial_memory.context import ContextConfig, SpatialContext
from spatial_memory.errors import InvalidInputError, UnknownFrameError
from spatial_memory.geometry import pose_from_xyz_rpy

LIMIT_M = 1000.0  # ContextConfig.max_pose_distance_m
CONFIG = ContextConfig(history_capacity=12, max_images=4, max_pose_distance_m=LIMIT_M)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# positions up to the limit (per axis, so some of them lie beyond it by up to sqrt(3)) and tiny steps
coordinate = st.floats(-LIMIT_M, LIMIT_M, allow_nan=False) | st.floats(-1e-6, 1e-6, allow_nan=False)
angle = st.floats(-math.pi, math.pi)
absurd_coordinate = st.floats(1.001 * LIMIT_M, 1e300) | st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def poses(draw: st.DrawFn) -> np.ndarray:
    """A 4x4 rigid transform anywhere up to the limit, or one that is absurd (far, NaN, not rigid)."""
    xyz = [draw(coordinate) for _ in range(3)]
    rpy = tuple(draw(angle) for _ in range(3))
    kind = draw(st.sampled_from(["valid", "valid", "valid", "far", "not rigid"]))
    if kind == "far":
        xyz[draw(st.integers(0, 2))] = draw(absurd_coordinate) * draw(st.sampled_from([1, -1]))
    with np.errstate(invalid="ignore", over="ignore"):  # math on inf/NaN is the point here
        T = pose_from_xyz_rpy((0.0, 0.0, 0.0), rpy)
        T[:3, 3] = xyz
    if kind == "not rigid":
        T[:3, :3] *= draw(st.floats(1.01, 10.0))
    return T


@st.composite
def steps(draw: st.DrawFn) -> dict[str, Any]:
    """One thing a caller does: add a frame (a camera pose, maybe a base pose, a stamp step, maybe an
    image), or set the keyframes to some frame ids (some never added or aged out)."""
    if draw(st.integers(0, 3)) == 0:
        return {"keyframes": draw(st.lists(st.integers(-2, 40), max_size=4))}
    image = draw(st.sampled_from([None, (16, 16, 3), (4, 4, 3), (16, 16, 2)]))
    return {
        "T_world_cam": draw(poses()),
        "T_world_base": draw(st.none() | poses()),
        "stamp_step": draw(st.integers(-2, 3) | st.just(10**9)),
        "image": None if image is None else np.zeros(image, np.uint8),
    }


def _state(ctx: SpatialContext) -> tuple:
    """Everything a refused call must leave as it was."""
    kf = [(k.frame_id, k.T_world_cam.tobytes(), k.stamp_ns) for k in ctx.keyframes]
    latest = ctx.latest_frame_id
    last = None if latest is None else ctx.frame(latest)
    return len(ctx), latest, None if last is None else (last.T_world_cam.tobytes(), last.stamp_ns), kf


def _apply(ctx: SpatialContext, step: dict[str, Any], stamp: int) -> int:
    """Do `step`; returns the stamp of the newest frame (refused calls leave state and stamp alone)."""
    before = _state(ctx)
    try:
        if "keyframes" in step:
            ctx.set_keyframes(step["keyframes"])
            return stamp
        new_stamp = stamp + step["stamp_step"]
        fid = ctx.add_frame(
            T_world_cam=step["T_world_cam"],
            T_world_base=step["T_world_base"],
            stamp_ns=new_stamp,
            image=step["image"],
        )
    except (InvalidInputError, UnknownFrameError):
        assert _state(ctx) == before, "a refused call changed the context"
        return stamp
    assert ctx.latest_frame_id == fid and ctx.frame(fid).stamp_ns == new_stamp
    for T in (ctx.frame(fid).T_world_cam, ctx.frame(fid).T_world_base):
        assert T is None or (np.isfinite(T).all() and math.hypot(*T[:3, 3]) <= LIMIT_M)
    return new_stamp


def _check_map(ctx: SpatialContext) -> None:
    """The map draws, and every keyframe marker is inside the image at a finite place."""
    image, styles = ctx.generate_map()
    size = CONFIG.map.size_px
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert len(styles) == len(ctx.keyframes)
    layout = ctx.map_layout()
    for name in ("marker_px", "true_px", "rel_m", "distance_m"):
        assert np.isfinite(getattr(layout, name)).all(), name
    centre = np.asarray(layout.center_px)
    assert (np.linalg.norm(layout.true_px - centre, axis=1) <= layout.edge_radius_px + 1e-6).all()
    assert ((layout.marker_px >= 0) & (layout.marker_px < size)).all()
    inlier = ~layout.outlier  # drawn to scale, the farthest one setting it (no collapse onto the robot)
    radius_px = np.linalg.norm(layout.true_px[inlier] - centre, axis=1)
    np.testing.assert_allclose(radius_px, layout.distance_m[inlier] * layout.scale_px_per_m, atol=1e-6)
    if inlier.any() and layout.extent_m > CONFIG.map.min_extent_m:
        farthest = radius_px.max() * (1.0 + CONFIG.map.scale_margin)
        assert math.isclose(farthest, layout.edge_radius_px, rel_tol=1e-9)
    assert math.isfinite(layout.scale_bar_m) and layout.scale_bar_m > 0


@SETTINGS
@given(sequence=st.lists(steps(), min_size=1, max_size=20))
def test_any_sequence_of_calls_never_corrupts_the_context(sequence: list[dict[str, Any]]) -> None:
    ctx = SpatialContext(CONFIG)
    stamp = 0
    for step in sequence:
        stamp = _apply(ctx, step, stamp)
        if ctx.latest_frame_id is not None and "keyframes" not in step:
            ctx.promote_to_keyframe(ctx.latest_frame_id)  # keep many keyframes: the map must hold them
    assert len(ctx) <= CONFIG.history_capacity
    _check_map(ctx)


@SETTINGS
@given(far=st.lists(poses(), min_size=1, max_size=6), near=st.lists(poses(), min_size=1, max_size=6))
def test_the_map_keeps_every_keyframe_inside_however_far(
    far: list[np.ndarray], near: list[np.ndarray]
) -> None:
    """Keyframes spread from millimetres to the limit, kept as keyframes after the history moved on."""
    ctx = SpatialContext(CONFIG)
    stamp = 0
    for T in [*far, *near]:
        stamp = _apply(ctx, {"T_world_cam": T, "T_world_base": None, "stamp_step": 1, "image": None}, stamp)
        if ctx.latest_frame_id is not None:
            ctx.promote_to_keyframe(ctx.latest_frame_id)
    _check_map(ctx)
