"""Recording episodes: the Scene protocol, the tabletop scene and the CLI."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from spatial_memory.cli import main
from spatial_memory.errors import InvalidInputError
from spatial_memory.sim.dataset import BagReader, CompactEpisode
from spatial_memory.sim.episode import HEAD_CAMERA, WRIST_CAMERA, step_differences, synthetic_episode
from spatial_memory.sim.recorder import (
    TabletopEpisodeConfig,
    TabletopEpisodeScene,
    record_episode,
)
from spatial_memory.sim.tabletop import TabletopConfig

# ----------------------------------------------------------------------------------------------------
# The Scene protocol: any world plugs in
# ----------------------------------------------------------------------------------------------------


class ListScene:
    """A Scene replaying prepared steps; fails at step `fail_at` if given."""

    def __init__(self, steps: int, fail_at: int | None = None) -> None:
        self.metadata, self.steps = synthetic_episode(steps, 24, 16, query_every=2)
        self.fail_at = fail_at

    def step(self, t: int):
        if t == self.fail_at:
            raise InvalidInputError("the simulated world blew up")
        return self.steps[t]

    def close(self) -> None:
        pass


def test_record_episode_writes_any_scene_in_both_formats(tmp_path):
    scene = ListScene(4)
    result = record_episode(scene, tmp_path, 4, progress=False)
    assert (result.steps, result.queries) == (4, 2)
    with BagReader(result.files["bag"]) as bag, CompactEpisode(result.files["compact"]) as compact:
        for a, b, c in zip(scene.steps, bag, compact, strict=True):
            assert step_differences(a, b, pose_atol=1e-12) == []
            assert step_differences(a, c) == []


def test_a_failing_scene_leaves_no_episode(tmp_path):
    with pytest.raises(InvalidInputError, match="blew up"):
        record_episode(ListScene(4, fail_at=2), tmp_path, 4, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidInputError, match="formats must be"):
        record_episode(ListScene(1), tmp_path, 1, formats=("hdf5",))


def test_outputs_are_checked_first_and_a_killed_recordings_partials_removed(tmp_path):
    """Issue 14: a file where the folder should be is one clear error before any step; the hidden staging
    folders a recording killed with -9 left behind (its process gone) are removed by the next one."""
    import os
    import subprocess
    import sys

    (tmp_path / "taken").write_text("not a folder")
    for out in (tmp_path / "taken", tmp_path / "taken" / "below"):
        with pytest.raises(InvalidInputError, match="recording folder"):
            record_episode(ListScene(2, fail_at=0), out, 2, progress=False)  # no step is taken
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    out = tmp_path / "episode"
    leftovers = [out / f".{name}.partial-{child.pid}-a1b2c3" for name in ("bag", "compact")]
    for partial in leftovers:
        (partial / "sub").mkdir(parents=True)
        (partial / "sub" / "data.npy").write_bytes(b"0" * 1024)
        for p in (partial, partial / "sub", partial / "sub" / "data.npy"):
            os.utime(p, (1e9, 1e9))  # 2001: long quiet
    record_episode(ListScene(2), out, 2, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["bag", "compact"]


# ----------------------------------------------------------------------------------------------------
# The tabletop scene
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tabletop():
    config = TabletopEpisodeConfig(scene=TabletopConfig(seed=5, width=48, height=32), query_every=2)
    with TabletopEpisodeScene(config, num_steps=3) as scene:
        yield scene, [scene.step(t) for t in range(3)]


def test_tabletop_steps_agree_with_forward_kinematics(tabletop):
    scene, steps = tabletop
    kin = scene.scene.kinematics
    for step in steps:
        scene.metadata.check_step(step)
        T_world_wrist = step.T_world_base @ kin.camera_pose(step.joint_positions)
        np.testing.assert_allclose(step.camera(WRIST_CAMERA).T_world_cam, T_world_wrist, atol=1e-9)
        odo_world = scene.metadata.T_world_odom @ step.odometry.T_odom_base
        assert np.linalg.norm(odo_world[:3, 3] - step.T_world_base[:3, 3]) < 0.01  # small drift only
    head = scene.metadata.camera(HEAD_CAMERA)
    np.testing.assert_allclose(steps[0].camera(HEAD_CAMERA).T_world_cam, head.T_parent_cam, atol=1e-12)
    assert head.parent_frame == "world"
    wrist = scene.metadata.camera(WRIST_CAMERA)
    fk = kin.forward_all(steps[1].joint_positions)
    np.testing.assert_allclose(
        fk["wrist_camera_link"] @ wrist.T_parent_cam, fk["wrist_camera_optical_frame"], atol=1e-9
    )
    assert [s.query is not None for s in steps] == [False, False, True]
    assert steps[2].query.rgb.shape == (32, 48, 3)


def test_tabletop_seen_means_the_wrist_camera_was_there(tabletop):
    scene, steps = tabletop
    here = steps[-1].camera(WRIST_CAMERA).T_world_cam
    assert scene._seen(here)
    away = here.copy()
    away[:3, 3] += (0.0, 0.5, 0.0)
    assert not scene._seen(away)
    turned = here @ np.diag([-1.0, 1.0, -1.0, 1.0])  # same place, looking the other way
    assert not scene._seen(turned)


def test_tabletop_steps_run_in_order(tabletop):
    scene, _ = tabletop
    with pytest.raises(InvalidInputError, match="steps run in order"):
        scene.step(0)


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "episode"
    args = ["sim", "record", "--seed", "3", "--steps", "5", "--resolution", "64x48", "--out", str(out)]
    assert main([*args, "--format", "both", "--query-every", "2"]) == 0
    return out


def test_cli_record_writes_both_formats_that_agree(recording):
    with BagReader(recording / "bag") as bag, CompactEpisode(recording / "compact") as compact:
        assert len(bag) == len(compact) == 5
        assert bag.metadata.world["tabletop"]["seed"] == 3
        assert compact.array("camera.rgb").shape == (5, 48, 64, 3)
        assert compact.array("query_step").tolist() == [2, 4]
        for a, b in zip(bag, compact, strict=True):
            assert step_differences(a, b, pose_atol=1e-12) == []


def test_cli_view_writes_a_png_and_says_where(recording, tmp_path, capsys):
    out = tmp_path / "view.png"
    assert main(["sim", "view", str(recording), "--out", str(out), "--frames", "3"]) == 0
    assert str(out) in capsys.readouterr().out
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 300
    assert main(["sim", "view", str(recording / "bag")]) == 0  # default: beside the episode's files
    assert (recording / "bag" / "overview.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sim", "record", "--steps", "2", "--format", "npz"], "pass --overwrite"),
        (["sim", "record", "--steps", "2", "--resolution", "64by48"], "--resolution must look like"),
        (["sim", "record", "--steps", "0"], "steps must be a positive int"),
        (["sim", "view"], "no episode at"),
        (["sim", "record", "--steps", "2", "--world", "room"], "is a file, not a folder"),
    ],
    ids=["exists", "resolution", "steps", "no-episode", "out-is-a-file"],
)
def test_cli_errors_are_one_line_and_exit_2(recording, tmp_path, caplog, args, message):
    target = recording if args[1] == "record" and args[-1] == "npz" else tmp_path / "new"
    if args[-1] == "room":
        target.write_text("a file where the recording folder should be")
    argv = [*args, "--out", str(target)] if args[1] == "record" else [*args, str(tmp_path)]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and message in errors[0].getMessage() and "\n" not in errors[0].getMessage()
