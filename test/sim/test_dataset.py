"""Episode files: the bag against an independent MCAP reader and rosbags' deserialiser, the compact
format's round trip, and bad input that must leave nothing behind."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import cv2
import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from rosbags.rosbag2 import Reader

from spatial_memory.errors import InvalidInputError
from spatial_memory.msgs import conversions as conv
from spatial_memory.sim import dataset as ds
from spatial_memory.sim.episode import (
    HEAD_CAMERA,
    WRIST_CAMERA,
    step_differences,
    synthetic_episode,
)
from spatial_memory.sim.episode_view import write_overview

STEPS, WIDTH, HEIGHT, QUERY_EVERY = 8, 32, 24, 3


@pytest.fixture(scope="module")
def episode():
    return synthetic_episode(STEPS, WIDTH, HEIGHT, seed=4, query_every=QUERY_EVERY)


@pytest.fixture(scope="module")
def bag(episode, tmp_path_factory):
    metadata, steps = episode
    return ds.write_bag(tmp_path_factory.mktemp("bag") / "episode", metadata, steps)


@pytest.fixture(scope="module")
def compact(episode, tmp_path_factory):
    metadata, steps = episode
    return ds.write_compact(tmp_path_factory.mktemp("compact") / "episode", metadata, steps)


def _mcap_file(bag):
    files = sorted(bag.glob("*.mcap"))
    assert [f.name for f in files] == ["episode.mcap"]
    return files[0]


# ----------------------------------------------------------------------------------------------------
# Bag
# ----------------------------------------------------------------------------------------------------


def test_bag_has_the_standard_topics_types_and_counts_for_an_independent_reader(bag, episode):
    metadata, steps = episode
    queries = sum(s.query is not None for s in steps)
    expected = {
        "joint_states": ("sensor_msgs/msg/JointState", STEPS),
        "/tf": ("tf2_msgs/msg/TFMessage", STEPS),
        "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
        "odom": ("nav_msgs/msg/Odometry", STEPS),
        "ground_truth/base_pose": ("geometry_msgs/msg/PoseStamped", STEPS),
        "queries/image": ("sensor_msgs/msg/Image", queries),
        "queries/pose": ("geometry_msgs/msg/PoseStamped", queries),
        "queries/info": ("std_msgs/msg/String", queries),
    }
    for cam in (HEAD_CAMERA, WRIST_CAMERA):
        expected |= {
            f"{cam}/image": ("sensor_msgs/msg/Image", STEPS),
            f"{cam}/depth": ("sensor_msgs/msg/Image", STEPS),
            f"{cam}/camera_info": ("sensor_msgs/msg/CameraInfo", STEPS),
            f"ground_truth/{cam}_pose": ("geometry_msgs/msg/PoseStamped", STEPS),
        }
    with _mcap_file(bag).open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        counts = summary.statistics.channel_message_counts
        found = {
            ch.topic: (summary.schemas[ch.schema_id].name, counts.get(cid, 0))
            for cid, ch in summary.channels.items()
        }
        encodings = {
            (ch.message_encoding, summary.schemas[ch.schema_id].encoding) for ch in summary.channels.values()
        }
        records = {m.name: m.metadata for m in reader.iter_metadata()}
    assert found == expected
    assert encodings == {("cdr", "ros2msg")}
    # the episode metadata travels inside the .mcap too, not only in metadata.yaml
    assert ds.METADATA_KEY in records["rosbag2"]["serialized_metadata"]
    assert queries == len(range(QUERY_EVERY - 1, STEPS, QUERY_EVERY))


def test_bag_messages_decode_with_rosbags_to_exactly_the_recorded_values(bag, episode):
    metadata, steps = episode
    store = ds.jazzy_typestore()
    by_stamp = {s.stamp_ns: s for s in steps}
    seen = set()
    with Reader(bag) as reader:
        for conn, t, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            step = by_stamp[t]
            if conn.topic == "wrist_camera/image":
                cam = step.camera(WRIST_CAMERA)
                assert (msg.encoding, msg.width, msg.height, msg.header.frame_id) == (
                    "rgb8",
                    WIDTH,
                    HEIGHT,
                    "wrist_camera_optical_frame",
                )
                assert bytes(msg.data) == cam.rgb.tobytes()
                assert conv.stamp_to_ns(msg.header.stamp) == t
            elif conn.topic == "camera/depth":
                assert msg.encoding == "32FC1"
                np.testing.assert_array_equal(
                    np.frombuffer(bytes(msg.data), "<f4").reshape(HEIGHT, WIDTH),
                    step.camera(HEAD_CAMERA).depth,
                )
            elif conn.topic == "camera/camera_info":
                assert msg.distortion_model == "plumb_bob"
                np.testing.assert_array_equal(np.reshape(msg.k, (3, 3)), step.camera(HEAD_CAMERA).K)
                np.testing.assert_array_equal(np.reshape(msg.p, (3, 4))[:, :3], step.camera(HEAD_CAMERA).K)
                np.testing.assert_array_equal(msg.d, np.zeros(5))
            elif conn.topic == "ground_truth/base_pose":
                assert msg.header.frame_id == "world"
                np.testing.assert_allclose(conv.msg_to_matrix(msg), step.T_world_base, atol=1e-12)
            elif conn.topic == "joint_states":
                assert list(msg.name) == list(step.joint_names)
                np.testing.assert_array_equal(msg.position, step.joint_positions)
            elif conn.topic == "odom":
                assert (msg.header.frame_id, msg.child_frame_id) == ("odom", "base_link")
                np.testing.assert_allclose(
                    conv.msg_to_matrix(msg.pose), step.odometry.T_odom_base, atol=1e-12
                )
                np.testing.assert_array_equal(conv.twist_to_vector(msg.twist.twist), step.odometry.twist)
            elif conn.topic == "/tf":
                (tf,) = msg.transforms
                assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "base_link")
                np.testing.assert_allclose(conv.msg_to_matrix(tf), step.odometry.T_odom_base, atol=1e-12)
            elif conn.topic == "/tf_static":
                edges = {(e.header.frame_id, e.child_frame_id): conv.msg_to_matrix(e) for e in msg.transforms}
                assert set(edges) == {("world", "odom"), ("base_link", "camera_optical_frame")}
                T = metadata.camera(HEAD_CAMERA).T_parent_cam
                np.testing.assert_allclose(edges["base_link", "camera_optical_frame"], T, atol=1e-12)
            elif conn.topic == "queries/pose":
                assert msg.header.frame_id == "base_link"
                np.testing.assert_allclose(conv.msg_to_matrix(msg), step.query.T_base_query, atol=1e-12)
            elif conn.topic == "queries/info":
                q = step.query
                assert json.loads(msg.data) == {
                    "stamp_ns": t,
                    "seen": q.seen,
                    "overlap": None if math.isnan(q.overlap) else q.overlap,
                    "source_step": q.source_step,
                }
            seen.add(conn.topic)
    assert {"wrist_camera/image", "camera/depth", "odom", "/tf_static", "queries/info"} <= seen


def test_tf_static_is_offered_latched(bag):
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 9 and info["storage_identifier"] == "mcap"
    qos = {
        t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
        for t in info["topics_with_message_count"]
    }
    assert qos["/tf_static"][0]["durability"] == "transient_local"


def test_bag_reader_gives_back_every_step(bag, episode):
    metadata, steps = episode
    with ds.BagReader(bag) as reader:
        assert reader.metadata.to_dict() == metadata.to_dict()
        assert len(reader) == STEPS
        back = list(reader)
        assert len(back) == STEPS
        for a, b in zip(steps, back, strict=True):
            assert step_differences(a, b, pose_atol=1e-12) == []
        assert step_differences(reader.step(5), steps[5], pose_atol=1e-12) == []
        assert step_differences(reader.step(-1), steps[-1], pose_atol=1e-12) == []
        poses = reader.poses()
        np.testing.assert_allclose(
            poses["wrist_camera.T_world_cam"][3], steps[3].cameras[1].T_world_cam, atol=1e-12
        )
        with pytest.raises(InvalidInputError, match="out of range"):
            reader.step(STEPS)


def test_unmeasured_twist_survives_the_bag(episode, tmp_path):
    metadata, steps = episode
    still = [dataclasses.replace(s, odometry=dataclasses.replace(s.odometry, twist=None)) for s in steps[:2]]
    with ds.BagReader(ds.write_bag(tmp_path / "b", metadata, still)) as reader:
        assert [s.odometry.twist for s in reader] == [None, None]


# ----------------------------------------------------------------------------------------------------
# Compact
# ----------------------------------------------------------------------------------------------------


def test_compact_round_trip_is_exact(compact, episode):
    metadata, steps = episode
    with ds.CompactEpisode(compact) as ep:
        assert ep.metadata.to_dict() == metadata.to_dict()
        assert len(ep) == STEPS
        for a, b in zip(steps, ep, strict=True):
            assert step_differences(a, b) == []
        rgb = ep.array("camera.rgb")
        assert isinstance(rgb, np.memmap) and rgb.shape == (STEPS, HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8
        assert ep.array("query_step").tolist() == [i for i, s in enumerate(steps) if s.query is not None]
        np.testing.assert_array_equal(ep.stamps_ns, [s.stamp_ns for s in steps])
        with pytest.raises(InvalidInputError, match="no array"):
            ep.array("camera.normals")


def test_compact_float16_depth_is_close(episode, tmp_path):
    metadata, steps = episode
    path = ds.write_compact(tmp_path / "c16", metadata, steps, depth_dtype="float16")
    with ds.CompactEpisode(path) as ep:
        assert ep.array("camera.depth").dtype == np.float16
        depth = ep.step(2).camera(HEAD_CAMERA).depth
        assert depth.dtype == np.float32
        np.testing.assert_allclose(depth, steps[2].camera(HEAD_CAMERA).depth, rtol=1e-3)


def test_compact_with_a_tampered_array_is_rejected(compact, tmp_path):
    copy = shutil.copytree(compact, tmp_path / "copy")
    np.save(copy / "T_world_base.npy", np.zeros((3, 4, 4)))
    with pytest.raises(InvalidInputError, match="T_world_base"):
        ds.CompactEpisode(copy)


def test_open_episode_finds_either_format(bag, compact, tmp_path):
    assert isinstance(ds.open_episode(compact), ds.CompactEpisode)
    reader = ds.open_episode(bag)
    assert isinstance(reader, ds.BagReader) and len(reader) == STEPS
    reader.close()
    with pytest.raises(InvalidInputError, match="no episode"):
        ds.open_episode(tmp_path)


# ----------------------------------------------------------------------------------------------------
# Bad input leaves nothing behind
# ----------------------------------------------------------------------------------------------------


def _bad_step(episode):
    """A valid step that does not fit the episode: the wrist camera renders at another size."""
    metadata, steps = episode
    _, other = synthetic_episode(1, WIDTH + 8, HEIGHT)
    return dataclasses.replace(steps[2], cameras=(steps[2].cameras[0], other[0].cameras[1]))


@pytest.mark.parametrize("fmt", ["bag", "compact"])
def test_a_step_that_does_not_fit_writes_nothing(episode, tmp_path, fmt):
    metadata, steps = episode
    target = tmp_path / "out"
    bad = [*steps[:2], _bad_step(episode), *steps[3:]]
    with pytest.raises(InvalidInputError, match=f"is {WIDTH + 8}x{HEIGHT}"):
        if fmt == "bag":
            ds.write_bag(target, metadata, bad)
        else:
            ds.write_compact(target, metadata, bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["bag", "compact"])
def test_out_of_order_stamps_write_nothing(episode, tmp_path, fmt):
    metadata, steps = episode
    swapped = [steps[1], steps[0]]
    writer = ds.write_bag if fmt == "bag" else ds.write_compact
    with pytest.raises(InvalidInputError, match="stamps must increase"):
        writer(tmp_path / "out", metadata, swapped)
    assert list(tmp_path.iterdir()) == []


def test_writers_refuse_to_overwrite_and_to_write_short_episodes(episode, bag, tmp_path):
    metadata, steps = episode
    with pytest.raises(InvalidInputError, match="exists already"):
        ds.write_bag(bag, metadata, steps)
    with (
        pytest.raises(InvalidInputError, match="only 2 of the declared 5"),
        ds.CompactWriter(tmp_path / "c", metadata, 5) as w,
    ):
        for s in steps[:2]:
            w.write(s)
    with pytest.raises(InvalidInputError, match="no steps were written"):
        ds.write_bag(tmp_path / "empty", metadata, [])
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_bag_is_a_clear_error(bag, tmp_path):
    copy = shutil.copytree(bag, tmp_path / "truncated")
    mcap_file = _mcap_file(copy)
    mcap_file.write_bytes(mcap_file.read_bytes()[: mcap_file.stat().st_size // 2])
    with pytest.raises(InvalidInputError, match="cannot open bag"):
        ds.BagReader(copy)


def test_metadata_of_a_foreign_bag_is_a_clear_error(tmp_path):
    (tmp_path / "metadata.yaml").write_text("rosbag2_bagfile_information: {custom_data: null}\n")
    with pytest.raises(InvalidInputError, match="no spatial_memory episode metadata"):
        ds.BagReader(tmp_path)


def test_overview_png_from_a_bag(bag, tmp_path):
    with ds.BagReader(bag) as reader:
        out = write_overview(reader, tmp_path / "sheet.png", frames=3)
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 300
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]
