"""Episode step records: validation on construction, metadata JSON, comparison helpers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.sim.episode import (
    HEAD_CAMERA,
    WRIST_CAMERA,
    CameraFrame,
    CameraSpec,
    EpisodeMetadata,
    OdometrySample,
    Query,
    step_differences,
    synthetic_episode,
)


@pytest.fixture(scope="module")
def episode():
    return synthetic_episode(6, 16, 12, seed=1, query_every=3)


def _frame(**changes) -> CameraFrame:
    base = {
        "name": "camera",
        "rgb": np.zeros((12, 16, 3), np.uint8),
        "depth": np.ones((12, 16), np.float32),
        "K": np.array([[10.0, 0.0, 7.5], [0.0, 10.0, 5.5], [0.0, 0.0, 1.0]]),
        "frame_id": "camera_optical_frame",
        "T_world_cam": np.eye(4),
    }
    return CameraFrame(**(base | changes))


def test_synthetic_episode_is_valid_and_consistent(episode):
    metadata, steps = episode
    assert [s.query is not None for s in steps] == [False, False, True, False, False, True]
    for step in steps:
        metadata.check_step(step)
        assert step.camera_names == (HEAD_CAMERA, WRIST_CAMERA)
        assert step.camera(WRIST_CAMERA).frame_id == "wrist_camera_optical_frame"


def test_T_cam_query_composes_the_ground_truth(episode):
    _, steps = episode
    step = steps[2]
    T = step.T_cam_query(HEAD_CAMERA)
    T_world_query = step.T_world_base @ step.query.T_base_query
    np.testing.assert_allclose(step.camera(HEAD_CAMERA).T_world_cam @ T, T_world_query, atol=1e-12)
    with pytest.raises(InvalidInputError, match="has no query"):
        steps[0].T_cam_query()
    with pytest.raises(InvalidInputError, match="no camera 'left'"):
        step.camera("left")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"rgb": np.zeros((12, 16, 3), np.float32)}, "rgb must be uint8"),
        ({"rgb": np.zeros((12, 16), np.uint8)}, r"shape \(H, W, 3\)"),
        ({"depth": np.ones((12, 16), np.float64)}, "float32 metres"),
        ({"depth": np.ones((16, 12), np.float32)}, "image's shape"),
        ({"depth": -np.ones((12, 16), np.float32)}, "negative"),
        ({"T_world_cam": np.diag([2.0, 1.0, 1.0, 1.0])}, "not orthonormal"),
        ({"T_world_cam": np.full((4, 4), np.nan)}, "NaN"),
        ({"K": np.eye(3) * 2}, "not a pinhole"),
        ({"name": "cam/1"}, "ROS name token"),
        ({"frame_id": ""}, "ROS name token"),
    ],
    ids=[
        "rgb-float",
        "rgb-2d",
        "depth-float64",
        "depth-shape",
        "depth-negative",
        "scaled",
        "nan",
        "K",
        "name",
        "frame",
    ],
)
def test_bad_camera_frames_are_rejected(changes, match):
    with pytest.raises(InvalidInputError, match=match):
        _frame(**changes)


def test_bad_steps_are_rejected(episode):
    _, steps = episode
    good = steps[0]
    with pytest.raises(InvalidInputError, match="7 finite values"):
        dataclasses.replace(good, joint_positions=np.zeros(6))
    with pytest.raises(InvalidInputError, match="names must be unique"):
        dataclasses.replace(good, cameras=(good.cameras[0], good.cameras[0]))
    with pytest.raises(InvalidInputError, match="non-negative int"):
        dataclasses.replace(good, stamp_ns=-1)
    with pytest.raises(InvalidInputError, match="non-negative int"):
        dataclasses.replace(good, stamp_ns=1.5)
    with pytest.raises(InvalidInputError, match="T_world_base"):
        dataclasses.replace(good, T_world_base=np.eye(4) * 2)
    with pytest.raises(InvalidInputError, match="T_odom_base"):
        OdometrySample(T_odom_base=np.zeros((3, 3)))
    with pytest.raises(InvalidInputError, match="twist must be 6"):
        OdometrySample(T_odom_base=np.eye(4), twist=np.zeros(3))
    with pytest.raises(InvalidInputError, match="'seen' must be a bool"):
        Query(rgb=np.zeros((4, 4, 3), np.uint8), T_base_query=np.eye(4), seen=1)


def test_metadata_json_round_trip(episode):
    metadata, _ = episode
    back = EpisodeMetadata.from_json(metadata.to_json())
    assert back.to_dict() == metadata.to_dict()
    assert back.camera(HEAD_CAMERA).parent_frame == "base_link"
    assert back.camera(WRIST_CAMERA).T_parent_cam is None


def test_metadata_rejects_what_it_cannot_store(episode):
    metadata, _ = episode
    with pytest.raises(InvalidInputError, match="version 99"):
        EpisodeMetadata.from_dict(metadata.to_dict() | {"version": 99})
    with pytest.raises(InvalidInputError, match="incomplete"):
        EpisodeMetadata.from_dict({k: v for k, v in metadata.to_dict().items() if k != "cameras"})
    with pytest.raises(InvalidInputError, match="JSON-serialisable"):
        dataclasses.replace(metadata, world={"array": np.zeros(2)})
    with pytest.raises(InvalidInputError, match="parent_frame and T_parent_cam"):
        CameraSpec("camera", "camera_optical_frame", 16, 12, np.eye(3), parent_frame="base_link")


def test_check_step_catches_a_step_of_another_episode(episode):
    metadata, steps = episode
    other_meta, other_steps = synthetic_episode(1, 20, 12)
    with pytest.raises(InvalidInputError, match="is 20x12"):
        metadata.check_step(other_steps[0])
    renamed = dataclasses.replace(steps[0], joint_names=tuple(f"j{i}" for i in range(7)))
    with pytest.raises(InvalidInputError, match="has joints"):
        metadata.check_step(renamed)


def test_step_differences_sees_one_pixel_and_tolerates_tiny_pose_error(episode):
    _, steps = episode
    step = steps[1]
    assert step_differences(step, step) == []
    rgb = step.cameras[1].rgb.copy()
    rgb[3, 4, 1] ^= 1
    changed = dataclasses.replace(
        step, cameras=(step.cameras[0], dataclasses.replace(step.cameras[1], rgb=rgb))
    )
    assert step_differences(step, changed) == ["camera wrist_camera rgb: values differ (max abs 1)"]
    T = step.T_world_base.copy()
    T[0, 3] += 1e-14
    nudged = dataclasses.replace(step, T_world_base=T)
    assert step_differences(step, nudged, pose_atol=1e-12) == []
    assert step_differences(step, nudged) != []
