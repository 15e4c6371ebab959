"""SpatialContext save / load / reset (issue 13): the pose history, the keyframes and their images come back
exactly; a file of another robot, a truncated one or one with a flipped byte is refused and changes
nothing; a kill -9 during a save leaves the old file; a context resumed in a new session (new odometry
frame, new clock) draws the same map and keeps its keyframes in place relative to the robot."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spatial_memory import atomic
from spatial_memory.context import ContextConfig, SpatialContext
from spatial_memory.context.history import PoseHistory
from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import invert, make_pose, yaw_pose
from spatial_memory.saved_state import GIVEN_POSE, SAME_FRAME, Resume

T_BASE_CAM = make_pose(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), [-0.2, 0.0, 1.45])
ROBOT = {"mode": "mobile", "world_frame": "odom", "base_frame": "base_link"}
IMAGES = np.random.default_rng(0).integers(0, 256, (12, 24, 32, 3), dtype=np.uint8)
S = 10**9


def _drive(ctx: SpatialContext, n: int = 10, promote: tuple[int, ...] = ()) -> None:
    """n frames along a curve, 5 a second from t = 5 s; frames in `promote` become keyframes as they come."""
    for i in range(n):
        base = yaw_pose(0.4 * i, 0.1 * i * i, 0.25 * i)
        cam = base @ T_BASE_CAM
        fid = ctx.add_frame(T_world_cam=cam, T_world_base=base, stamp_ns=5 * S + i * S // 5, image=IMAGES[i])
        if fid in promote:
            ctx.promote_to_keyframe(fid)


def _explored(tmp_path: Path) -> tuple[SpatialContext, Path]:
    ctx = SpatialContext(ContextConfig(max_images=6))
    _drive(ctx, promote=(1, 4, 8))
    path = tmp_path / "context.state"
    header = ctx.save(path, ROBOT)
    assert header["frames"] == 10 and header["keyframes"] == 3 and header["robot"]["camera_frame"]
    return ctx, path


def _state(ctx: SpatialContext) -> tuple:
    """Everything observable: frames, poses, stamps, images, keyframes and the drawn map."""
    recs = ctx.history.records()
    images = ctx.history.images()
    return (
        [(r.frame_id, r.T_world_cam.tobytes(), r.T_world_base.tobytes(), r.stamp_ns) for r in recs],
        {k: v.tobytes() for k, v in images.items()},
        [(k.frame_id, k.number, k.T_world_cam.tobytes(), k.stamp_ns) for k in ctx.keyframes],
        [None if i is None else i.tobytes() for i in ctx.keyframe_images()],
        ctx.generate_map()[0].tobytes(),
        ctx.history.next_id,
    )  # fmt: skip


def test_save_and_load_give_back_the_same_context(tmp_path):
    ctx, path = _explored(tmp_path)
    other = SpatialContext(ContextConfig(max_images=6))
    header = other.load(path, ROBOT)
    assert header["saved_at"] and header["next_frame_id"] == 10
    assert _state(other) == _state(ctx)
    assert len(other.history.images()) == 6 and all(i is not None for i in other.keyframe_images())
    # the same session goes on: the next frame is added as it would have been to the original
    for c in (ctx, other):
        base = yaw_pose(4.5, 8.0, 2.5)
        c.add_frame(T_world_cam=base @ T_BASE_CAM, T_world_base=base, stamp_ns=7 * S, image=IMAGES[10])
    assert _state(other) == _state(ctx)


def test_a_smaller_history_keeps_the_newest_frames_and_every_keyframe(tmp_path):
    ctx, path = _explored(tmp_path)
    small = SpatialContext(ContextConfig(history_capacity=4, max_images=2))
    small.load(path, ROBOT)
    assert [r.frame_id for r in small.history.records()] == [6, 7, 8, 9]
    assert sorted(small.history.images()) == [8, 9]
    assert [k.frame_id for k in small.keyframes] == [1, 4, 8] and all(
        i is not None for i in small.keyframe_images()
    )


def test_reset_forgets_everything(tmp_path):
    ctx, _ = _explored(tmp_path)
    ctx.reset()
    assert len(ctx) == 0 and ctx.keyframes == [] and ctx.latest_frame_id is None
    assert ctx.add_frame(T_world_cam=np.eye(4), stamp_ns=1) == 0  # stamps and ids start again


def test_a_file_of_another_robot_is_refused_naming_every_difference(tmp_path):
    ctx, path = _explored(tmp_path)
    other = SpatialContext(ContextConfig(camera_frame="other_camera_optical_frame"))
    _drive(other, 2)
    before = _state(other)
    robot = {**ROBOT, "world_frame": "map"}
    with pytest.raises(InvalidInputError) as caught:
        other.load(path, robot)
    message = str(caught.value)
    assert "another robot" in message and str(path) in message and "Nothing was changed" in message
    assert "world_frame 'odom' (this node: 'map')" in message and "camera_frame" in message
    assert _state(other) == before


def _cuts(size: int, count: int = 30) -> list[int]:
    rng = np.random.default_rng(size)
    return sorted({0, 1, size - 1, *rng.integers(2, size - 1, count).tolist()})


def test_truncated_or_bit_flipped_files_are_refused_and_change_nothing(tmp_path):
    _, path = _explored(tmp_path)
    data = path.read_bytes()
    ctx = SpatialContext()
    _drive(ctx, 3)
    before = _state(ctx)
    damaged = tmp_path / "damaged.state"
    for length in _cuts(len(data)):
        damaged.write_bytes(data[:length])
        with pytest.raises(InvalidInputError, match="damaged.state"):
            ctx.load(damaged, ROBOT)
    rng = np.random.default_rng(1)
    for position in rng.integers(0, len(data), 40):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        damaged.write_bytes(bytes(flipped))
        with pytest.raises(InvalidInputError, match="damaged.state"):
            ctx.load(damaged, ROBOT)
    assert _state(ctx) == before
    ctx.load(path, ROBOT)  # the whole file still loads
    assert len(ctx) == 10


SAVE_LOOP = """
import sys
import numpy as np
from spatial_memory.context import SpatialContext
from spatial_memory.geometry import yaw_pose
ctx = SpatialContext()
image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
for i in range(100000):
    ctx.add_frame(T_world_cam=yaw_pose(0.01 * i, 0.0, 0.0), stamp_ns=i + 1, image=image)
    ctx.save(sys.argv[1])
    print(i, flush=True)
"""


def test_kill_9_during_saves_leaves_a_whole_file(tmp_path, monkeypatch):
    path = tmp_path / "context.state"
    rng = np.random.default_rng(0)
    for _ in range(2):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3):
            assert child.stdout.readline(), "the save loop died on its own"
        time.sleep(float(rng.uniform(0.0, 0.05)))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        ctx = SpatialContext()
        ctx.load(path)  # the last file saved in full
        assert len(ctx) >= 3 and len(ctx.history.images()) == len(ctx)
    monkeypatch.setattr(atomic, "STALE_GRACE_S", 0.0)
    SpatialContext().save(path)  # the next save removes the partials of killed saves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["context.state"]


def _relative_keyframes(ctx: SpatialContext) -> list[np.ndarray]:
    """Each keyframe's camera relative to the newest base: what the robot and the map see."""
    T_base = ctx.history.latest().T_world_base
    return [invert(T_base) @ k.T_world_cam for k in ctx.keyframes]


def test_a_resumed_context_continues_in_a_new_odometry_frame_and_clock(tmp_path):
    """Restarted robot: its odometry frame starts where it stands and its clock at 0. Standing where it was
    saved, the first frame ties the sessions: keyframes stay where they were relative to the robot, stamps
    keep their order before the new frame, and the map is drawn as before."""
    ctx, path = _explored(tmp_path)
    last = ctx.history.latest()
    resumed = SpatialContext(ContextConfig(max_images=6))
    resumed.load(path, ROBOT, resume=Resume())
    assert resumed.resume_pending
    base = np.eye(4)  # the new odometry frame starts at the robot
    fid = resumed.add_frame(T_world_cam=base @ T_BASE_CAM, T_world_base=base, stamp_ns=10**6, image=IMAGES[0])
    assert fid == 10 and not resumed.resume_pending
    before = [invert(last.T_world_base) @ k.T_world_cam for k in ctx.keyframes]
    np.testing.assert_allclose(np.array(_relative_keyframes(resumed)), np.array(before), atol=1e-9)
    stamps = [r.stamp_ns for r in resumed.history.records()]
    assert stamps == sorted(stamps) and stamps[-2] == 10**6 - 1 and stamps[0] == 10**6 - 1 - (9 * S // 5)
    ctx.add_frame(T_world_cam=last.T_world_base @ T_BASE_CAM, T_world_base=last.T_world_base, stamp_ns=8 * S,
                  image=IMAGES[0])  # fmt: skip
    assert resumed.generate_map()[0].tobytes() == ctx.generate_map()[0].tobytes()
    # a refused first frame leaves it waiting (nothing moved)
    again = SpatialContext()
    again.load(path, ROBOT, resume=Resume())
    before = _state(again)
    far = yaw_pose(2000.0, 0.0, 0.0)  # beyond max_pose_distance_m: refused
    with pytest.raises(InvalidInputError):
        again.add_frame(T_world_cam=far @ T_BASE_CAM, T_world_base=far, stamp_ns=1)
    assert again.resume_pending and _state(again) == before


def test_resume_in_the_same_frame_or_at_a_given_pose(tmp_path):
    ctx, path = _explored(tmp_path)
    last = ctx.history.latest()
    same = SpatialContext()
    same.load(path, ROBOT, resume=Resume(SAME_FRAME))
    base = last.T_world_base @ yaw_pose(0.3, 0.0, 0.0)
    same.add_frame(T_world_cam=base @ T_BASE_CAM, T_world_base=base, stamp_ns=9 * S)
    assert [k.T_world_cam.tobytes() for k in same.keyframes] == [
        k.T_world_cam.tobytes() for k in ctx.keyframes
    ]
    assert same.history.records()[0].stamp_ns == 5 * S  # the clock ran on: stamps unchanged
    # told where the robot is in the saved frame (a relocalisation): 1 m ahead of the saved pose, facing back
    T_saved_base = last.T_world_base @ yaw_pose(1.0, 0.0, math.pi)
    told = SpatialContext()
    told.load(path, ROBOT, resume=Resume(GIVEN_POSE, T_saved_base))
    told.add_frame(T_world_cam=T_BASE_CAM, T_world_base=np.eye(4), stamp_ns=1)
    expected = [invert(T_saved_base) @ k.T_world_cam for k in ctx.keyframes]
    np.testing.assert_allclose(np.array(_relative_keyframes(told)), np.array(expected), atol=1e-9)


def test_restored_history_checks_its_frame_ids():
    rec = SpatialContext()
    rec.add_frame(T_world_cam=np.eye(4), stamp_ns=1)
    records = rec.history.records()
    with pytest.raises(InvalidInputError, match="consecutive"):
        PoseHistory.restored(8, 2, records, {}, next_id=5, last_stamp_ns=1)
