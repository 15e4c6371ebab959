"""Bounded pose history: ids, capacity, aged-out vs never-added errors, stamps, image retention."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_memory.context.history import PoseHistory
from spatial_memory.errors import InvalidInputError, UnknownFrameError
from spatial_memory.geometry import yaw_pose


def _fill(h: PoseHistory, n: int, **kw) -> list[int]:
    return [h.append(yaw_pose(float(i), 0.0, 0.0), **kw) for i in range(n)]


def test_ids_increase_from_zero_and_records_round_trip():
    h = PoseHistory(capacity=8)
    assert h.latest_id is None and h.latest() is None and len(h) == 0
    ids = _fill(h, 5)
    assert ids == [0, 1, 2, 3, 4]
    assert h.latest_id == 4 and len(h) == 5
    assert h.get(3).T_world_cam[0, 3] == 3.0
    assert 3 in h and 5 not in h


def test_capacity_and_aged_out_message():
    h = PoseHistory(capacity=1024)
    _fill(h, 2061)
    assert len(h) == 1024 and h.oldest_id == 1037
    with pytest.raises(UnknownFrameError) as err:
        h.get(12)
    assert str(err.value) == "frame 12 has aged out of the pose history (oldest kept: 1037, capacity 1024)"
    assert h.get(1037).frame_id == 1037
    assert h.get(2060).T_world_cam[0, 3] == 2060.0


def test_never_added_message_differs_from_aged_out():
    h = PoseHistory(capacity=4)
    _fill(h, 10)
    with pytest.raises(UnknownFrameError, match=r"^frame 99999 was never added"):
        h.get(99999)
    with pytest.raises(UnknownFrameError, match="was never added"):
        h.get(-1)
    with pytest.raises(UnknownFrameError, match="aged out"):
        h.get(5)
    with pytest.raises(UnknownFrameError):
        h.get("3")  # type: ignore[arg-type]
    assert isinstance(UnknownFrameError("x"), KeyError)


def test_stamps_must_increase_and_errors_leave_state_untouched():
    h = PoseHistory(capacity=4)
    h.append(np.eye(4), stamp_ns=100)
    for bad in (100, 99, -5, 1.5, True):
        with pytest.raises(InvalidInputError):
            h.append(np.eye(4), stamp_ns=bad)
    assert h.latest_id == 0 and h.last_stamp_ns == 100
    assert h.append(np.eye(4), stamp_ns=np.int64(101)) == 1
    assert h.append(np.eye(4)) == 2  # stamps are optional
    with pytest.raises(InvalidInputError, match="goes backwards"):
        h.append(np.eye(4), stamp_ns=50)


def test_images_kept_by_reference_for_newest_frames_only():
    h = PoseHistory(capacity=10, max_images=2)
    imgs = [np.full((8, 8, 3), i, np.uint8) for i in range(4)]
    for img in imgs:
        h.append(np.eye(4), image=img)
    assert h.image(0) is None and h.image(1) is None
    assert h.image(3) is imgs[3]  # by reference, not copied
    assert h.get(0).T_world_cam is not None  # the pose outlives the image


def test_invalid_construction():
    with pytest.raises(InvalidInputError):
        PoseHistory(capacity=0)
    with pytest.raises(InvalidInputError):
        PoseHistory(capacity=4, max_images=-1)
    assert PoseHistory(capacity=4, max_images=64).max_images == 4


def test_frame_at_finds_the_frame_nearest_a_stamp_within_the_tolerance():
    h = PoseHistory(capacity=4)
    for k in range(6):  # ids 0..5, stamps 100, 200, ...; ids 0 and 1 age out
        h.append(np.eye(4), stamp_ns=100 * (k + 1))
    assert h.frame_at(390, tolerance_ns=50) == 3 and h.frame_at(420, tolerance_ns=50) == 3
    assert h.frame_at(460, tolerance_ns=50) == 4
    with pytest.raises(UnknownFrameError):
        h.frame_at(200, tolerance_ns=50)  # frame 1 aged out
    with pytest.raises(UnknownFrameError):
        h.frame_at(350, tolerance_ns=40)  # between frames, too far from both
