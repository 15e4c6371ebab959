"""SpatialContext: FK and given poses, mobile base composition, promotion, errors, map and watermarks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_memory.context import ContextConfig, KeyframeSelector, MapConfig, SpatialContext
from spatial_memory.context.palette import keyframe_color
from spatial_memory.context.watermark import watermark_box
from spatial_memory.errors import ConfigError, InvalidInputError, UnknownFrameError
from spatial_memory.geometry import make_pose, pose_from_xyz_rpy, yaw_pose

T_BODY_OPTICAL = make_pose(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))


def cam(x=0.0, y=0.0, z=1.0, yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
    return pose_from_xyz_rpy((x, y, z), (roll, pitch, yaw)) @ T_BODY_OPTICAL


class FakeArm:
    """q = (x, y, z, roll, pitch, yaw[, ...]) of the camera in the base frame; checks the frame name."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    def forward(self, q: np.ndarray, frame: str) -> np.ndarray:
        self.frames.append(frame)
        if frame != "wrist_camera_optical_frame":
            raise KeyError(f"unknown frame {frame}")
        if len(q) != 7:
            raise InvalidInputError(f"expected 7 joints, got {len(q)}")
        return cam(*q[:3], yaw=q[5], pitch=q[4], roll=q[3])


def q(x=0.0, y=0.0, z=0.5, roll=0.0, pitch=0.0, yaw=0.0) -> np.ndarray:
    return np.array([x, y, z, roll, pitch, yaw, 0.0])


def test_add_frame_through_fk_and_mobile_composition():
    arm = FakeArm()
    ctx = SpatialContext(kinematics=arm)
    f0 = ctx.add_frame(q(0.5, 0.0, 0.4, pitch=0.3))
    assert f0 == 0 and arm.frames == ["wrist_camera_optical_frame"]
    np.testing.assert_allclose(
        ctx.frame(f0).T_world_cam, arm.forward(q(0.5, 0.0, 0.4, pitch=0.3), arm.frames[0])
    )
    assert ctx.frame(f0).T_world_base is None
    base = yaw_pose(2.0, 1.0, math.pi / 2)
    f1 = ctx.add_frame(q(0.5, 0.0, 0.4), T_world_base=base)
    np.testing.assert_allclose(ctx.frame(f1).T_world_cam, base @ cam(0.5, 0.0, 0.4))
    np.testing.assert_allclose(ctx.frame(f1).T_world_base, base)
    np.testing.assert_allclose(ctx.frame(f1).T_world_cam[:3, 3], [2.0, 1.5, 0.4])
    assert ctx.latest_frame_id == 1 and len(ctx) == 2


def test_add_frame_with_given_camera_pose_and_stored_copies():
    ctx = SpatialContext()
    T = cam(1.0, 2.0)
    fid = ctx.add_frame(T_world_cam=T, stamp_ns=5)
    T[0, 3] = 99.0  # the caller's array changing later does not change the history
    assert ctx.frame(fid).T_world_cam[0, 3] == 1.0
    assert not ctx.frame(fid).T_world_cam.flags.writeable
    assert ctx.frame(fid).stamp_ns == 5


def _snapshot(ctx: SpatialContext):
    return (len(ctx), ctx.latest_frame_id, ctx.history.last_stamp_ns, [k.frame_id for k in ctx.keyframes])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # neither
        {"robot_state": q(), "T_world_cam": np.eye(4)},  # both
        {"T_world_cam": np.full((4, 4), np.nan)},
        {"T_world_cam": np.diag([2.0, 1.0, 1.0, 1.0])},  # not rigid
        {"T_world_cam": np.eye(3)},
        {"T_world_cam": np.eye(4), "T_world_base": np.diag([1.0, 1.0, -1.0, 1.0])},  # reflection
        {"robot_state": q()[:5]},  # FK rejects the length
        {"robot_state": np.array([np.nan] * 7)},
        {"robot_state": np.zeros((7, 2))},
        {"robot_state": ["a"] * 7},
        {"T_world_cam": np.eye(4), "stamp_ns": 100},  # not after the last stamp (100)
        {"T_world_cam": np.eye(4), "stamp_ns": 50},
        {"T_world_cam": np.eye(4), "stamp_ns": 1.5e9},
        {"T_world_cam": np.eye(4), "image": np.zeros((48, 64, 3), np.float32)},
        {"T_world_cam": np.eye(4), "image": np.zeros((48, 64, 2), np.uint8)},
        {"T_world_cam": cam(1e160, 0.0)},  # finite but absurd: beyond max_pose_distance_m
        {"T_world_cam": cam(0.0, 1001.0)},
        {"T_world_cam": np.eye(4), "T_world_base": yaw_pose(1e30, 0.0, 0.0)},
        {"robot_state": q(), "T_world_base": yaw_pose(0.0, -2e3, 0.0)},
    ],
)
def test_bad_input_raises_and_leaves_state_unchanged(kwargs):
    ctx = SpatialContext(kinematics=FakeArm())
    ctx.add_frame(T_world_cam=cam(1.0, 0.0), stamp_ns=100)
    ctx.promote_to_keyframe(0)
    ctx.add_frame(T_world_cam=cam())
    before, map_before = _snapshot(ctx), ctx.generate_map()[0]
    with pytest.raises(InvalidInputError):
        ctx.add_frame(**kwargs)
    assert _snapshot(ctx) == before
    assert (ctx.generate_map()[0] == map_before).all()


def test_the_pose_bound_is_configurable_and_names_the_pose():
    with pytest.raises(InvalidInputError, match=r"T_world_cam is 1e\+300 m from the world origin"):
        SpatialContext().add_frame(T_world_cam=cam(1e300, 0.0))
    far = SpatialContext(ContextConfig(max_pose_distance_m=1e4))
    assert far.add_frame(T_world_cam=cam(5e3, 0.0)) == 0  # within the raised bound
    for bad in (0.0, -1.0, math.inf, math.nan, True):
        with pytest.raises(ConfigError, match="max_pose_distance_m"):
            ContextConfig(max_pose_distance_m=bad)


def test_robot_state_needs_kinematics():
    with pytest.raises(InvalidInputError, match="kinematics"):
        SpatialContext().add_frame(q())


def test_fk_value_errors_become_invalid_input():
    class Picky(FakeArm):
        def forward(self, q, frame):
            raise ValueError("joint 3 out of limits")

    with pytest.raises(InvalidInputError, match="joint 3 out of limits"):
        SpatialContext(kinematics=Picky()).add_frame(q())


def test_promote_after_the_fact_and_aged_out_errors():
    ctx = SpatialContext(ContextConfig(history_capacity=16))
    for i in range(40):
        ctx.add_frame(T_world_cam=cam(0.1 * i))
    ctx.promote_to_keyframe(30)
    ctx.promote_to_keyframe(27)  # an older frame, promoted later: numbers follow frame order
    ctx.promote_to_keyframe(30)  # idempotent
    assert [(k.number, k.frame_id) for k in ctx.keyframes] == [(1, 27), (2, 30)]
    with pytest.raises(
        UnknownFrameError, match=r"frame 12 has aged out of the pose history \(oldest kept: 24, capacity 16\)"
    ):
        ctx.promote_to_keyframe(12)
    with pytest.raises(UnknownFrameError, match="frame 99999 was never added"):
        ctx.promote_to_keyframe(99999)
    for _ in range(40):  # the keyframes outlive the history's ring buffer
        ctx.add_frame(T_world_cam=cam())
    assert [k.frame_id for k in ctx.keyframes] == [27, 30]
    assert ctx.keyframes[0].T_world_cam[0, 3] == pytest.approx(2.7)
    with pytest.raises(UnknownFrameError, match="not a keyframe"):
        ctx.remove_keyframe(5)
    ctx.remove_keyframe(27)
    assert [(k.number, k.frame_id) for k in ctx.keyframes] == [(1, 30)]  # renumbered
    assert ctx.keyframes[0].rgb == keyframe_color(1).rgb


def test_set_keyframes_is_all_or_nothing():
    ctx = SpatialContext(ContextConfig(history_capacity=8))
    for i in range(20):
        ctx.add_frame(T_world_cam=cam(0.1 * i))
    ctx.set_keyframes([13, 15])
    for _ in range(6):
        ctx.add_frame(T_world_cam=cam())
    with pytest.raises(UnknownFrameError):
        ctx.set_keyframes([13, 22, 3])  # 3 has aged out
    assert [k.frame_id for k in ctx.keyframes] == [13, 15]
    ctx.set_keyframes([15, 22])  # 15 is held as a keyframe although it left the history
    assert [k.frame_id for k in ctx.keyframes] == [15, 22]
    sel = KeyframeSelector()
    sel.nominate([22, 24, 25])
    ctx.set_keyframes(sel.keyframes())
    assert [k.frame_id for k in ctx.keyframes] == [24]


def test_generate_map_is_rgb_and_colours_match_keyframes():
    ctx = SpatialContext()
    for x, y in [(1.0, 0.0), (0.0, 1.0), (-1.0, -0.5)]:
        ctx.promote_to_keyframe(ctx.add_frame(T_world_cam=cam(x, y)))
    ctx.add_frame(T_world_cam=cam(yaw=0.2))
    img, styles = ctx.generate_map()
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    assert [(s.number, s.frame_id) for s in styles] == [(1, 0), (2, 1), (3, 2)]
    layout = ctx.map_layout()
    for s, p in zip(styles, layout.marker_px, strict=True):
        assert s.rgb == keyframe_color(s.number).rgb
        u, v = np.round(p + [0.0, 0.75 * layout.marker_radius_px]).astype(int)
        assert tuple(img[v, u]) == s.rgb
    u, v = np.round(layout.marker_px[0]).astype(int)
    assert v < 256 - 50  # keyframe 1 is ahead


def test_mobile_map_follows_the_base():
    ctx = SpatialContext(kinematics=FakeArm())
    ctx.promote_to_keyframe(ctx.add_frame(T_world_cam=cam(2.0, 3.0)))
    # base at (2, 1) facing +y; the wrist camera looks sideways: the map still faces the base's heading
    ctx.add_frame(q(0.3, 0.0, 0.5, yaw=-1.5), T_world_base=yaw_pose(2.0, 1.0, math.pi / 2))
    lay = ctx.map_layout()
    assert lay.ego.heading_source == "base"
    assert lay.marker_px[0][0] == pytest.approx(256.0, abs=1e-6) and lay.marker_px[0][1] < 256 - 50


def test_watermarks_and_keyframe_images():
    ctx = SpatialContext(ContextConfig(max_images=2, map=MapConfig(watermark_corner="top_right")))
    imgs = [np.full((60, 80, 3), 40 * i, np.uint8) for i in range(4)]
    ids = [ctx.add_frame(T_world_cam=cam(0.5 * i), image=im) for i, im in enumerate(imgs)]
    ctx.promote_to_keyframe(ids[0])  # its image was dropped (max_images=2)
    ctx.promote_to_keyframe(ids[3])
    kimgs = ctx.keyframe_images()
    assert kimgs[0] is None and kimgs[1] is imgs[3]
    _, styles = ctx.generate_map()
    with pytest.raises(InvalidInputError, match="no image"):
        ctx.watermark_keyframes(kimgs, styles)
    out = ctx.watermark_keyframes([np.zeros((60, 80), np.uint8), imgs[3]], styles)
    assert out[0].shape == (60, 80, 3) and (imgs[3] == 120).all()  # inputs untouched
    x0, y0, side = watermark_box(out[1].shape, ctx.config.map)
    assert x0 + side > 70  # top right corner
    assert tuple(out[1][y0 + side // 2, x0 + side // 16 + 1]) == styles[1].rgb


def test_map_before_any_frame_and_is_keyframe():
    ctx = SpatialContext()
    img, styles = ctx.generate_map()
    assert img.shape == (512, 512, 3) and styles == []
    assert ctx.latest_frame_id is None and len(ctx) == 0
    fid = ctx.add_frame(T_world_cam=np.eye(4))
    assert not ctx.is_keyframe(fid)
    ctx.promote_to_keyframe(fid)
    assert ctx.is_keyframe(fid) and ctx.is_keyframe(np.int64(fid))
    for bad in ([0], "0", 0.0, True, None):  # malformed ids are one clear error, not a TypeError or False
        with pytest.raises(InvalidInputError, match="frame ids are integers"):
            ctx.is_keyframe(bad)  # type: ignore[arg-type]
