"""Memory datasets: building (resumable, validated), reading episodes, TBPTT windows, query ground truth."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from spatial_memory import cli
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert
from spatial_memory.memory import data
from spatial_memory.memory.data import (
    DatasetSpec,
    EpisodeArrays,
    SequenceDataset,
    TbpttBatchSampler,
    build_dataset,
    collate_windows,
    open_dataset,
    parse_seeds,
    split_windows,
)
from spatial_memory.memory.poses import integrate_increments, planar_pose, planar_target, wrap_angle
from spatial_memory.sim.compact import CompactEpisode
from spatial_memory.sim.queries import QueryConfig

STEPS = 30
SPEC = DatasetSpec(train_seeds=(0,), val_seeds=(1000,), steps=STEPS, width=32, height=32, queries_every=5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory_data") / "ds"
    build_dataset(SPEC, root, progress=False)
    return root


def _no_recording(*args, **kwargs):
    raise AssertionError("this build should not record anything")


# ---------------------------------------------------------------------------------------------- spec
@pytest.mark.parametrize(
    "changes",
    [
        {"train_seeds": (0, 1), "val_seeds": (1, 2)},  # validation worlds not held out
        {"steps": 0},
        {"train_seeds": (0, 0)},
        {"train_seeds": (), "val_seeds": ()},
        {"train_seeds": (-1,)},
        {"preset": "castle"},
        {"width": 8},
        {"rate_hz": 0.0},
        {"queries_every": 0},
        {"depth_dtype": "int8"},
    ],
)
def test_bad_specs(changes):
    with pytest.raises(ConfigError):
        DatasetSpec(**{**SPEC.to_dict(), **changes})


def test_parse_seeds():
    assert parse_seeds("0-3") == (0, 1, 2, 3)
    assert parse_seeds(["1000-1002", "7,9"]) == (1000, 1001, 1002, 7, 9)
    assert parse_seeds([]) == ()
    for bad in ("3-1", "a-b", "1-2-3"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_naming_presets_loads_no_mujoco():
    code = "import sys, spatial_memory.sim.presets; assert 'mujoco' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spec_round_trips():
    assert DatasetSpec.from_dict(json.loads(json.dumps(SPEC.to_dict()))) == SPEC
    with pytest.raises(ConfigError):
        DatasetSpec.from_dict({**SPEC.to_dict(), "bogus": 1})


# ---------------------------------------------------------------------------------------------- build
def test_index_lists_both_splits(dataset):
    index = open_dataset(dataset)
    assert index.spec == SPEC and not index.missing()
    (train,), (val,) = index.entries("train"), index.entries("val")
    assert (train.seed, val.seed) == (0, 1000) and train.steps == STEPS
    assert index.paths("val") == [dataset / "val" / "seed_01000" / "compact"]
    assert train.queries >= 1 and train.seen_queries <= train.queries


def test_rebuild_skips_existing_episodes(dataset, monkeypatch):
    monkeypatch.setattr(data, "_record", _no_recording)
    before = (dataset / "dataset.json").read_text()
    build_dataset(SPEC, dataset, progress=False)
    assert json.loads((dataset / "dataset.json").read_text()) == json.loads(before)


def test_episode_finished_before_a_crash_is_indexed_not_rerecorded(dataset, monkeypatch):
    index_path = dataset / "dataset.json"
    doc = json.loads(index_path.read_text())
    full = list(doc["episodes"])
    doc["episodes"] = [e for e in full if e["split"] == "train"]  # as if killed before the val entry
    index_path.write_text(json.dumps(doc))
    monkeypatch.setattr(data, "_record", _no_recording)
    index = build_dataset(SPEC, dataset, progress=False)
    assert [e.seed for e in index.entries("val")] == [1000]
    assert index.entries("val")[0].record_s is None


def test_other_recording_settings_are_refused(dataset, monkeypatch):
    monkeypatch.setattr(data, "_record", _no_recording)
    with pytest.raises(ConfigError):
        build_dataset(DatasetSpec(**{**SPEC.to_dict(), "steps": 31}), dataset, progress=False)
    with pytest.raises(ConfigError):  # seed 1000 is a validation world of this folder
        build_dataset(DatasetSpec(**{**SPEC.to_dict(), "train_seeds": (1000,), "val_seeds": ()}), dataset)


def test_cli_build_is_a_no_op_on_a_finished_dataset(dataset, monkeypatch, capsys):
    monkeypatch.setattr(data, "_record", _no_recording)
    argv = ["dataset", "build", "--train-seeds", "0", "--val-seeds", "1000", "--steps", str(STEPS)]
    argv += ["--resolution", "32x32", "--out", str(dataset), "--no-progress"]
    assert cli.main(argv) == 0
    assert "train: 1 episodes" in capsys.readouterr().out
    bad = ["dataset", "build", "--train-seeds", "0-2", "--val-seeds", "2", "--out", str(dataset)]
    assert cli.main(bad) == 2


# ---------------------------------------------------------------------------------------------- reading
@pytest.fixture(scope="module")
def episode(dataset):
    return EpisodeArrays.load(open_dataset(dataset).paths("train")[0])


def test_episode_arrays(dataset, episode):
    assert episode.rgb.shape == (STEPS, 32, 32, 3) and episode.rgb.dtype == np.uint8
    assert episode.odometry.shape == (STEPS, 3) and np.all(episode.odometry[0] == 0)
    assert episode.query_rgb.shape == (episode.num_queries, 32, 32, 3)
    assert episode.query_target.shape == (episode.num_queries, 3)
    assert np.all(episode.query_step % SPEC.queries_every == 0)
    # The odometry is the noisy one: close to the truth, not equal to it.
    assert not np.allclose(episode.odometry, episode.true_odometry)
    assert np.abs(episode.odometry - episode.true_odometry).max() < 0.05


def test_odometry_integrates_to_the_recorded_odometry(episode):
    with CompactEpisode(episode.path) as ep:
        T_odom_base = np.array(ep.array("T_odom_base"))
    poses = integrate_increments(episode.odometry, start=planar_pose(T_odom_base[0]))
    expected = planar_pose(T_odom_base)
    np.testing.assert_allclose(poses[:, :2], expected[:, :2], atol=1e-9)
    np.testing.assert_allclose(wrap_angle(poses[:, 2] - expected[:, 2]), 0.0, atol=1e-9)


def test_seen_query_targets_lie_near_their_source_view(episode):
    """Ground truth: a seen query is its source frame moved 0.2-0.6 m and turned 5-30 deg (QueryConfig)."""
    cfg = QueryConfig()
    with CompactEpisode(episode.path) as ep:
        cam, sources = np.array(ep.array("camera.T_world_cam")), np.array(ep.array("query_source_step"))
    checked = 0
    for k in np.flatnonzero(episode.query_seen):
        t, s = episode.query_step[k], sources[k]
        source = planar_target(invert(episode.T_world_base[t]) @ cam[s])  # source view in the base now
        target = episode.query_target[k]
        distance = math.hypot(*(target[:2] - source[:2]))
        turn = abs(math.degrees(wrap_angle(target[2] - source[2])))
        assert cfg.offset_m[0] - 1e-6 <= distance <= cfg.offset_m[1] + 1e-6
        assert cfg.yaw_offset_deg[0] - 1e-6 <= turn <= cfg.yaw_offset_deg[1] + 1e-6
        checked += 1
    assert checked >= 1


# ---------------------------------------------------------------------------------------------- windows
def test_split_windows():
    assert split_windows(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert split_windows(10, None) == [(0, 10)] == split_windows(10, 50)
    for bad in ((0, 4), (10, 0), (10, -1)):
        with pytest.raises(InvalidInputError):
            split_windows(*bad)


def test_windows_cover_the_episode_and_carry_its_queries(dataset, episode):
    ds = SequenceDataset([episode.path], window=8)
    assert len(ds) == 4  # 8 + 8 + 8 + 6 steps
    items = [ds[i] for i in range(len(ds))]
    rgb = torch.cat([it["rgb"] for it in items])
    assert rgb.dtype == torch.uint8 and rgb.shape == (STEPS, 3, 32, 32)
    assert torch.equal(rgb, torch.from_numpy(np.array(episode.rgb)).permute(0, 3, 1, 2))
    np.testing.assert_allclose(
        torch.cat([it["odometry"] for it in items]).numpy(), episode.odometry, atol=1e-6
    )
    steps = torch.cat([it["query_index"] + it["start"] for it in items]).numpy()
    np.testing.assert_array_equal(steps, episode.query_step)
    targets = torch.cat([it["query_target"] for it in items]).numpy()
    np.testing.assert_allclose(targets, episode.query_target, atol=1e-6)
    seen = torch.cat([it["query_seen"] for it in items]).numpy()
    np.testing.assert_array_equal(seen, episode.query_seen)
    q_rgb = torch.cat([it["query_rgb"] for it in items])
    assert torch.equal(q_rgb, torch.from_numpy(np.array(episode.query_rgb)).permute(0, 3, 1, 2))
    assert [it["first"] for it in items] == [True, False, False, False]


def test_tbptt_batches_continue_their_episodes(dataset):
    path = SequenceDataset.from_dataset(dataset, "train", window=10).episodes[0].path
    ds = SequenceDataset([path, path], window=10, in_memory=True)  # the same episode twice, to batch two
    sampler = TbpttBatchSampler(ds, batch_size=2, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate_windows)
    starts = []
    for batch in loader:
        assert batch["rgb"].shape == (2, 10, 3, 32, 32)
        mask = batch["query_mask"]
        assert torch.all(batch["query_index"][~mask] == -1) and torch.all(batch["query_index"][mask] >= 0)
        starts.append(batch["start"].tolist())
    assert starts == [[0, 0], [10, 10], [20, 20]]
    sampler.set_epoch(1)
    reshuffled = list(sampler)
    assert sorted(sorted(b) for b in reshuffled) == sorted(sorted(b) for b in batches)
    assert list(sampler) == reshuffled  # deterministic by seed and epoch


def test_sampler_refuses_mixed_lengths(dataset, episode):
    ds = SequenceDataset([episode.path, episode.path], window=10)
    ds.windows[1] = ds.windows[1][:2]
    with pytest.raises(InvalidInputError):
        TbpttBatchSampler(ds, batch_size=2)


def test_an_episode_without_queries_still_serves_windows(tmp_path):
    spec = DatasetSpec(train_seeds=(2,), steps=4, width=32, height=32, queries_every=5)
    (path,) = build_dataset(spec, tmp_path / "short", progress=False).paths("train")
    episode = EpisodeArrays.load(path, mmap=False)
    assert episode.num_queries == 0 and episode.query_target.shape == (0, 3)
    batch = collate_windows([SequenceDataset([path], window=2)[1]])
    assert batch["rgb"].shape == (1, 2, 3, 32, 32) and batch["query_mask"].shape == (1, 0)
