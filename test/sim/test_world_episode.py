"""Episodes in generated worlds: reproducible steps, sound frames and odometry, recorded in both formats and
read back, the CLI, queries, and clear errors."""

from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from spatial_memory.cli import main
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert
from spatial_memory.msgs.conversions import msg_to_matrix
from spatial_memory.sim.bag import jazzy_typestore, read_bag_metadata
from spatial_memory.sim.dataset import BagReader, CompactEpisode, open_episode
from spatial_memory.sim.episode import HEAD_CAMERA, WRIST_CAMERA, step_differences
from spatial_memory.sim.episode_view import query_poses, write_overview
from spatial_memory.sim.odometry import WheelOdometryConfig
from spatial_memory.sim.presets import world_preset
from spatial_memory.sim.recorder import record_episode
from spatial_memory.sim.world_episode import (
    WorldEpisodeConfig,
    WorldEpisodeScene,
    dataset_robot,
    record_world_episode,
)
from spatial_memory.sim.world_tour import coverage
from spatial_memory.sim.worlds import World, generate_world

STEPS = 200


def _config(seed: int = 2, **changes) -> WorldEpisodeConfig:
    base = WorldEpisodeConfig(
        world=world_preset("house", seed), robot=dataset_robot(64, 64), queries=None, texture_px=32
    )
    return dataclasses.replace(base, **changes)


def _steps(config: WorldEpisodeConfig, n: int) -> list:
    with WorldEpisodeScene(config, n) as scene:
        return [scene.step(t) for t in range(n)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A T = 200 episode (40 s at 5 Hz) recorded to a bag and compact arrays, and the scene's own steps."""
    out = tmp_path_factory.mktemp("world") / "episode"
    config = _config()
    with WorldEpisodeScene(config, STEPS) as scene:
        steps = []

        class Keep:  # the Scene protocol, keeping each step for the comparison
            metadata = scene.metadata

            def step(self, t):
                steps.append(scene.step(t))
                assert scene.sim.pose_is_free(*scene.sim.pose2d)  # MuJoCo: no contact, no penetration
                return steps[-1]

            def close(self):
                pass

        result = record_episode(Keep(), out, STEPS, formats=("bag", "compact"), progress=False)
        stats = scene.stats
    return config, result, steps, stats


# ---------------------------------------------------------------------------------------------- recording
def test_a_200_step_episode_is_recorded_and_read_back(recorded):
    config, result, steps, stats = recorded
    assert result.steps == STEPS and stats.collided_ticks == 0 and stats.ticks == 3 * (STEPS - 1)
    with BagReader(result.files["bag"]) as bag, CompactEpisode(result.files["compact"]) as compact:
        assert len(bag) == len(compact) == STEPS
        for i in (0, 1, 99, STEPS - 1):
            assert step_differences(steps[i], compact.step(i)) == []
            assert step_differences(steps[i], bag.step(i), pose_atol=1e-12) == []
        assert compact.array("camera.rgb").shape == (STEPS, 64, 64, 3)
        md = bag.metadata
    assert md.scene == "world" and md.seed == 2 and md.rate_hz == 5.0
    assert World.from_dict(md.world["world"]) == generate_world(config.world)  # the world rebuilds exactly
    assert [s.stamp_ns for s in steps[:3]] == [0, 200_000_000, 400_000_000]
    with open_episode(result.out_dir) as source:
        assert source.metadata.to_dict() == md.to_dict()


def test_the_robot_tours_the_house_and_the_frames_agree_with_its_pose(recorded):
    config, result, steps, _ = recorded
    with CompactEpisode(result.files["compact"]) as compact:
        md = compact.metadata
    base = np.array([s.T_world_base for s in steps])
    cov = coverage(generate_world(config.world), base[:, :2, 3])
    # 40 s: the tour has left the start room and come back (seed 2: two rooms, two revisits)
    assert len(cov.rooms_visited) >= 2 and cov.revisits >= 1 and cov.path_length_m > 5.0
    near = generate_world(config.world).occupancy(inflate_m=config.robot.footprint_radius_m - 0.02)
    assert near.free_at(base[:, :2, 3]).all()  # the base never enters a wall or furniture
    head, wrist = md.camera(HEAD_CAMERA), md.camera(WRIST_CAMERA)
    assert (head.parent_frame, wrist.parent_frame) == ("base_link", "wrist_camera_link")
    np.testing.assert_allclose(md.T_world_odom, base[0], atol=1e-12)
    from spatial_memory.robot.kinematics import FR3Kinematics

    kin = FR3Kinematics()
    (arm_mount,) = md.static_transforms
    assert (arm_mount.parent, arm_mount.child) == ("base_link", "base")
    T_base_arm = arm_mount.T_parent_child
    for s in steps[::20]:
        np.testing.assert_allclose(
            s.camera(HEAD_CAMERA).T_world_cam, s.T_world_base @ head.T_parent_cam, atol=1e-9
        )
        fk = kin.forward_all(s.joint_positions)
        wrist_pose = s.T_world_base @ T_base_arm @ fk["wrist_camera_link"] @ wrist.T_parent_cam
        np.testing.assert_allclose(s.camera(WRIST_CAMERA).T_world_cam, wrist_pose, atol=1e-9)
        odo = md.T_world_odom @ s.odometry.T_odom_base
        assert np.linalg.norm(odo[:2, 3] - s.T_world_base[:2, 3]) < 1.0  # drifts, but not wildly
    depths = np.array([s.camera(HEAD_CAMERA).depth for s in steps[::10]])
    assert np.isfinite(depths).all() and depths.min() > 0.02 and depths.max() < 20.0
    wrist_joints = np.array([s.joint_positions for s in steps])
    assert np.ptp(wrist_joints, axis=0).max() > 0.3  # the arm scans


def test_bag_tf_static_holds_the_whole_fixed_tree(recorded):
    _, result, _, _ = recorded
    store = jazzy_typestore()
    with Reader(result.files["bag"]) as reader:
        conns = [c for c in reader.connections if c.topic == "/tf_static"]
        (msg,) = [store.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    md = read_bag_metadata(result.files["bag"])
    edges = {(e.header.frame_id, e.child_frame_id): msg_to_matrix(e) for e in msg.transforms}
    head = md.camera(HEAD_CAMERA)
    assert set(edges) == {
        ("world", "odom"),
        ("base_link", head.frame_id),
        ("wrist_camera_link", md.camera(WRIST_CAMERA).frame_id),
        ("base_link", "base"),
    }
    np.testing.assert_allclose(edges["base_link", "base"], md.static_transforms[0].T_parent_child, atol=1e-12)
    np.testing.assert_allclose(edges["base_link", head.frame_id], head.T_parent_cam, atol=1e-12)


def test_sim_view_draws_the_world_with_paths(recorded, tmp_path):
    _, result, _, _ = recorded
    with open_episode(result.out_dir) as source:
        steps, T_world_query, seen = query_poses(source)
        assert len(steps) == 0 and T_world_query.shape == (0, 4, 4)
        out = write_overview(source, tmp_path / "view.png", frames=4)
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 600


# ---------------------------------------------------------------------------------------------- seeds
def test_same_seed_same_world_path_and_images_different_seed_different():
    a, b = _steps(_config(7), 12), _steps(_config(7), 12)
    for x, y in zip(a, b, strict=True):
        assert step_differences(x, y) == []
    c = _steps(_config(8), 12)
    assert not np.array_equal(a[-1].camera(HEAD_CAMERA).rgb, c[-1].camera(HEAD_CAMERA).rgb)
    assert not np.allclose(a[-1].T_world_base, c[-1].T_world_base)


def test_the_step_rate_subsamples_the_same_path():
    """Control runs at 15 Hz whatever the recording rate: a 15 Hz episode holds the 5 Hz one's poses."""
    slow = _steps(_config(3, rate_hz=5.0), 6)
    fast = _steps(_config(3, rate_hz=15.0), 16)
    for k, step in enumerate(slow):
        np.testing.assert_allclose(step.T_world_base, fast[3 * k].T_world_base, atol=1e-12)


# ---------------------------------------------------------------------------------------------- queries
def test_queries_come_every_n_steps_with_ground_truth():
    from spatial_memory.sim.queries import QueryConfig

    steps = _steps(_config(2, queries=QueryConfig(every_n_steps=10, min_age_steps=5)), 41)
    asked = [t for t, s in enumerate(steps) if s.query is not None]
    assert asked and set(asked) <= {10, 20, 30, 40}
    for t in asked:
        q = steps[t].query
        assert q.rgb.shape == (64, 64, 3)
        T_world_query = steps[t].T_world_base @ q.T_base_query
        assert np.isfinite(T_world_query).all() and abs(T_world_query[2, 3] - 1.0) < 0.8


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_records_a_world_episode_and_views_it(tmp_path, capsys):
    out = tmp_path / "room"
    args = ["sim", "record", "--world", "room", "--steps", "5", "--resolution", "64x48", "--out", str(out)]
    assert main([*args, "--queries-every", "0", "--seed", "1"]) == 0
    with CompactEpisode(out / "compact") as compact, BagReader(out / "bag") as bag:
        assert len(compact) == len(bag) == 5 and compact.metadata.scene == "world"
        assert compact.array("wrist_camera.rgb").shape == (5, 48, 64, 3)
        assert len(World.from_dict(compact.metadata.world["world"]).rooms) == 1
    assert main(["sim", "view", str(out), "--out", str(tmp_path / "v.png"), "--frames", "2"]) == 0
    assert (tmp_path / "v.png").is_file()
    for name in ("w.json", "w.png"):
        assert (
            main(["sim", "world", "--world", "room", "--out", str(tmp_path / name), "--behaviours", "5"]) == 0
        )
    assert World.load(tmp_path / "w.json") == generate_world(world_preset("room"))
    assert "wrote" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors(tmp_path, caplog):
    with pytest.raises(InvalidInputError, match="at least one step"):
        WorldEpisodeScene(_config(), 0)
    with pytest.raises(InvalidInputError, match="steps must be a positive int"):
        record_world_episode(tmp_path / "x", 0)
    with pytest.raises(ConfigError, match="unknown world preset 'castle'"):
        record_world_episode(tmp_path / "x", 3, world="castle")
    with pytest.raises(ConfigError, match="rate_hz"):
        _config(rate_hz=30.0)
    with pytest.raises(ConfigError, match="odometry must be"):
        _config(odometry="noisy")
    with WorldEpisodeScene(_config(), 2) as scene:
        scene.step(0)
        with pytest.raises(InvalidInputError, match="steps run in order"):
            scene.step(0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):  # argparse: unknown --world choice
        main(["sim", "record", "--world", "castle", "--out", str(tmp_path / "y")])
    with caplog.at_level(logging.ERROR):
        assert main(["sim", "record", "--world", "room", "--steps", "0", "--out", str(tmp_path / "z")]) == 2
        assert main(["sim", "world", "--out", str(tmp_path / "w.txt")]) == 2
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("steps must be a positive int" in m for m in messages) and any(
        ".json or .png" in m for m in messages
    )


def test_exact_odometry_is_the_true_motion_from_the_start_pose():
    exact = _steps(_config(2, odometry=WheelOdometryConfig(0.0, 0.0, 0.0, 0.0)), 8)
    for s in exact:
        odo = exact[0].T_world_base @ s.odometry.T_odom_base
        np.testing.assert_allclose(odo, s.T_world_base, atol=1e-9)
    assert np.allclose(invert(exact[0].T_world_base) @ exact[-1].T_world_base, exact[-1].odometry.T_odom_base)


def test_query_min_age_reaches_the_query_sampler():
    from spatial_memory.sim.world_episode import _query_config

    assert _query_config(5).min_age_steps == 20  # the sampler's default
    cfg = _query_config(5, 40)
    assert (cfg.every_n_steps, cfg.min_age_steps) == (5, 40)
    assert _query_config(0, 40) is None  # no queries at all
