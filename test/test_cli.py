"""`spatial-memory` against a careless user (issue 14): every ordinary mistake is one line, exit code 2,
and is found before the work starts (the work is never lost to a bad output path); an output folder that
is not empty is refused unless --overwrite, which replaces it whole."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from spatial_memory.cli import main
from spatial_memory.errors import SpatialMemoryError


def _tum(root: Path, n: int = 6) -> Path:
    """A tiny TUM folder of textured 64x48 frames (rgb.txt, depth.txt)."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (48, 96, 3), dtype=np.uint8)
    rgb, depth = ["# timestamp filename"], ["# timestamp filename"]
    for i in range(n):
        stamp = f"{100 + 0.1 * i:.6f}"
        cv2.imwrite(str(root / "rgb" / f"{stamp}.png"), texture[:, i : i + 64])
        cv2.imwrite(str(root / "depth" / f"{stamp}.png"), np.full((48, 64), 10000, np.uint16))
        rgb.append(f"{stamp} rgb/{stamp}.png")
        depth.append(f"{stamp} depth/{stamp}.png")
    (root / "rgb.txt").write_text("\n".join(rgb) + "\n")
    (root / "depth.txt").write_text("\n".join(depth) + "\n")
    return root


def _one_error(caplog: pytest.LogCaptureFixture, argv: list[str]) -> str:
    """Run the CLI, expect exit code 2 and exactly one one-line error; return its text."""
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any start of the real work fails the test: errors must come before it."""

    def work(*args, **kwargs):
        pytest.fail("the work started before the arguments were checked")

    import spatial_memory.memory.evaluate as evaluate
    import spatial_memory.pipeline as pipeline
    import spatial_memory.vo.patch_vo as patch_vo

    monkeypatch.setattr(patch_vo, "PatchVO", work)
    monkeypatch.setattr(pipeline, "StationaryPipeline", work)
    monkeypatch.setattr(pipeline, "MobilePipeline", work)
    monkeypatch.setattr(evaluate, "episodes_for", work)


# ---------------------------------------------------------------------------------------------------------
# vo


def test_vo_checks_its_output_before_the_work(tmp_path, caplog, no_work):
    tum = _tum(tmp_path / "rgbd_dataset_freiburg3_tiny")
    (tmp_path / "file").write_text("x")
    for out, match in [
        (tmp_path, "is a folder; give a file name"),
        (tmp_path / "file" / "t.txt", "is a file, not a folder"),
    ]:
        assert match in _one_error(caplog, ["vo", "--tum", str(tum), "--no-progress", "--out", str(out)])


def test_vo_refuses_a_read_only_output_folder_before_the_work(tmp_path, caplog, no_work, monkeypatch):
    tum = _tum(tmp_path / "rgbd_dataset_freiburg3_tiny")
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # root writes anyway: injected
    message = _one_error(caplog, ["vo", "--tum", str(tum), "--out", str(tmp_path / "ro" / "t.txt")])
    assert "cannot write to" in message and "read-only" in message


def test_vo_input_mistakes_are_one_line_naming_the_file(tmp_path, caplog, no_work):
    tum = _tum(tmp_path / "rgbd_dataset_freiburg3_tiny")
    out = ["--no-progress", "--out", str(tmp_path / "t.txt")]
    text = (tum / "rgb.txt").read_bytes()
    (tum / "rgb.txt").write_bytes(text.replace(b"rgb/100.200000", b"rgb/\xe9100.200000"))
    message = _one_error(caplog, ["vo", "--tum", str(tum), *out])
    assert "rgb.txt:4: byte 0xe9" in message and "not UTF-8" in message
    (tum / "rgb.txt").write_bytes(text)
    next(iter(sorted((tum / "rgb").iterdir()))).unlink()
    message = _one_error(caplog, ["vo", "--tum", str(tum), *out])
    assert "1 of the 6 colour images listed in" in message and "missing" in message
    assert not (tmp_path / "t.txt").exists()


def test_vo_checks_depth_images_when_it_reads_depth(tmp_path, caplog, no_work):
    tum = _tum(tmp_path / "rgbd_dataset_freiburg3_tiny")
    sorted((tum / "depth").iterdir())[-1].unlink()
    message = _one_error(caplog, ["vo", "--tum", str(tum), "--depth", "--out", str(tmp_path / "t.txt")])
    assert "1 of the 6 depth images listed in" in message


def test_vo_on_a_folder_without_a_sensor_name_takes_intrinsics(tmp_path, caplog, capsys):
    tum = _tum(tmp_path / "my_sequence")
    out = tmp_path / "t.txt"
    args = ["vo", "--tum", str(tum), "--depth", "--no-progress", "--out", str(out)]
    assert "--intrinsics fx,fy,cx,cy" in _one_error(caplog, args)
    assert "--intrinsics takes" in _one_error(caplog, [*args, "--intrinsics", "500,500"])
    assert main([*args, "--intrinsics", "80,80,31.5,23.5"]) == 0
    assert "6 frames, RGB-D (metric)" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 7  # a header and 6 poses
    assert main([*args, "--intrinsics", "freiburg1"]) == 0


# ---------------------------------------------------------------------------------------------------------
# demo


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--duration", "nan"], "--duration must be a positive number"),
        (["--duration", "-3"], "--duration must be a positive number"),
        (["--steps", "0", "--world", "house"], "--steps must be at least 1"),
        (["--resolution", "0x48"], "--resolution needs positive sizes"),
    ],
)
def test_demo_refuses_bad_values_before_building_a_scene(tmp_path, caplog, no_work, extra, match):
    assert match in _one_error(caplog, ["demo", "--out", str(tmp_path / "demo"), *extra])


def test_demo_refuses_an_output_that_is_a_file_or_read_only(tmp_path, caplog, no_work, monkeypatch):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "demo"):
        assert "is a file, not a folder" in _one_error(caplog, ["demo", "--out", str(out)])
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    assert "read-only" in _one_error(caplog, ["demo", "--out", str(tmp_path / "demo")])
    assert (tmp_path / "file").read_text() == "x"


def test_demo_refuses_a_non_empty_folder_without_overwrite(tmp_path, caplog, no_work):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    for extra in ([], ["--world", "house"], ["--task", "go-to-picture"]):
        message = _one_error(caplog, ["demo", "--out", str(out), *extra])
        assert "is not empty (notes.txt)" in message and "--overwrite" in message
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_demo_with_overwrite_replaces_the_folder_whole(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--resolution", "64x48", "--out", str(out)]
    assert main([*args, "--duration", "5"]) == 0
    assert len(list((out / "maps").iterdir())) == 5
    (out / "notes.txt").write_text("left from before")
    assert main([*args, "--duration", "2"]) == 2  # a rerun without --overwrite: refused, nothing touched
    assert len(list((out / "maps").iterdir())) == 5
    assert main([*args, "--duration", "2", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["map_0000.png", "map_0001.png"]
    assert not (out / "notes.txt").exists()
    assert '"policy_ticks": 2' in (out / "summary.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no hidden old folder left


@pytest.mark.parametrize("place", ["repository", "home", "working folder", "above home", "root"])
def test_overwrite_never_replaces_a_folder_a_user_cannot_mean(tmp_path, caplog, no_work, monkeypatch, place):
    home = tmp_path / "home" / "me"
    (home / "work").mkdir(parents=True)
    (home / "work" / "thesis.tex").write_text("years of work")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "work")
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    out = {
        "repository": tmp_path / "repo",
        "home": home,
        "working folder": Path("."),
        "above home": tmp_path / "home",
        "root": Path("/"),
    }[place]
    message = _one_error(caplog, ["demo", "--overwrite", "--out", str(out)])
    assert "is never replaced" in message
    assert (home / "work" / "thesis.tex").read_text() == "years of work"
    assert (tmp_path / "repo" / ".git").is_dir()


# ---------------------------------------------------------------------------------------------------------
# sim record, eval mem-rpe, the error contract


def test_sim_record_refuses_a_read_only_folder_before_the_scene(tmp_path, caplog, monkeypatch):
    import spatial_memory.sim.recorder as recorder

    monkeypatch.setattr(recorder, "TabletopEpisodeScene", lambda *a, **k: pytest.fail("scene built"))
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    message = _one_error(caplog, ["sim", "record", "--steps", "2", "--out", str(tmp_path / "rec")])
    assert "recording folder" in message and "read-only" in message


def test_sim_record_refuses_a_non_empty_folder_and_overwrite_replaces_it(tmp_path, caplog):
    out = tmp_path / "rec"
    out.mkdir()
    (out / "old.txt").write_text("an earlier run")
    args = ["sim", "record", "--steps", "2", "--resolution", "32x24", "--format", "npz", "--out", str(out)]
    assert "--overwrite" in _one_error(caplog, args)
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compact"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]


def test_eval_mem_rpe_checks_checkpoints_before_recording_episodes(tmp_path, caplog, no_work):
    argv = ["eval", "mem-rpe", "--seeds", "1000", "--length", "5", "--cache", str(tmp_path / "cache")]
    argv += ["--out", str(tmp_path / "rpe.json")]
    message = _one_error(caplog, [*argv, "--models", "keyframes", str(tmp_path / "missing.pt")])
    assert "--models" in message and "missing.pt" in message
    message = _one_error(caplog, [*argv, "--models", "keyframes", "--encoder", str(tmp_path / "enc.pt")])
    assert "--encoder" in message and "enc.pt" in message
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert "broken.pt" in _one_error(caplog, [*argv, "--models", str(broken)])
    assert not (tmp_path / "cache").exists()


def test_calibrate_sigma_fits_one_factor_over_every_preset_and_the_read_out_it_is_given(
    tmp_path, monkeypatch, capsys, caplog
):
    import spatial_memory.memory.evaluate as evaluate
    from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
    from spatial_memory.memory.registry import build_model, load_checkpoint, save_checkpoint

    model = build_model("kinaema")
    save_checkpoint(tmp_path / "in.pt", model, ImageEncoder(EncoderConfig(image_size=64)), {"step": 3})
    asked, fitted_on = [], []

    def episodes_for(seeds, length, preset, resolution, *args):
        asked.append((tuple(seeds), length, preset, resolution))
        return [f"{preset}-{seed}" for seed in seeds]

    def calibrate_sigma(model, encoder, episodes, length, coverage):
        assert model.config.recall_sharpness == 8.0  # fitted on the read-out that is written
        fitted_on.extend(episodes)
        return {"factor": 0.5, "coverage_before": 0.9, "answers": 40}

    monkeypatch.setattr(evaluate, "episodes_for", episodes_for)
    monkeypatch.setattr(evaluate, "calibrate_sigma", calibrate_sigma)
    argv = ["eval", "calibrate-sigma", "--checkpoint", str(tmp_path / "in.pt"), "--seeds", "1000-1001"]
    argv += ["--set", "recall_sharpness=8", "--out", str(tmp_path / "out.pt")]
    assert main([*argv, "--preset", "house", "apartment"]) == 0
    assert asked == [((1000, 1001), 200, "house", (64, 64)), ((1000, 1001), 200, "apartment", (64, 64))]
    assert fitted_on == ["house-1000", "house-1001", "apartment-1000", "apartment-1001"]
    out = load_checkpoint(tmp_path / "out.pt")
    assert out.model.config.sigma_scale == pytest.approx(0.5 * model.config.sigma_scale)
    assert out.extra["step"] == 3
    assert out.model.config.recall_sharpness == 8.0
    assert out.extra["sigma_calibration"]["presets"] == ["house", "apartment"]
    assert out.extra["sigma_calibration"]["set"] == {"recall_sharpness": 8}
    assert "house/apartment worlds [1000, 1001]" in capsys.readouterr().out
    assert "no_such_field" in _one_error(caplog, [*argv, "--set", "no_such_field=1"])


def test_verbose_adds_the_traceback_to_the_one_line(tmp_path, caplog, no_work):
    argv = ["demo", "--duration", "nan", "--out", str(tmp_path)]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2
        assert not caplog.records[-1].exc_info
        assert main(["-v", *argv]) == 2
        assert caplog.records[-1].exc_info


def test_set_values_read_as_yaml_with_numbers_as_python_reads_them():
    from spatial_memory.cli import _key_value

    assert _key_value("lr=3e-4") == ("lr", 3e-4)
    assert _key_value(" model.slots = 32") == ("model.slots", 32)
    assert _key_value("recall_write=clock") == ("recall_write", "clock")
    assert _key_value("encoder.widths=[8, 16]") == ("encoder.widths", [8, 16])
    assert _key_value("mim_weight=null") == ("mim_weight", None)
    assert _key_value("name='3e-4'") == ("name", "3e-4")  # quoted: the string stays a string
    with pytest.raises(SpatialMemoryError, match="KEY=VALUE"):
        _key_value("lr")


# ---------------------------------------------------------------------------------------------------------
# eval mem-rpe-live / mem-nav: the params file's sim_node section is the simulation they run


def test_mem_rpe_live_no_progress_reaches_the_evaluation(tmp_path, monkeypatch):
    import spatial_memory.eval.live_mem_rpe as live

    seen = {}

    def capture(**kwargs):
        seen.update(kwargs)
        return {"table": ""}

    monkeypatch.setattr(live, "compare_offline_live", capture)
    argv = ["eval", "mem-rpe-live", "--seeds", "1000", "--length", "10", "--out", str(tmp_path / "out.json")]
    assert main(argv) == 0 and seen["progress"] is True
    assert main([*argv, "--no-progress"]) == 0 and seen["progress"] is False


@pytest.mark.parametrize(
    ("command", "module", "function"),
    [
        (
            ["eval", "mem-rpe-live", "--seeds", "1000", "--length", "10"],
            "live_mem_rpe",
            "compare_offline_live",
        ),
        (["eval", "mem-nav", "--seeds", "1000"], "mem_nav", "run_mem_nav"),
    ],
)
def test_live_evals_run_the_sim_of_the_params_file(tmp_path, monkeypatch, command, module, function):
    import importlib

    import yaml

    from spatial_memory.resources import share_path

    params = yaml.safe_load(Path(share_path("config/sim.yaml")).read_text())
    odometry = params["sim_node"]["ros__parameters"]["sim"]["odometry"]
    odometry.update(linear_noise=0.0, angular_noise=0.0, heading_noise=0.0, heading_bias=0.0)
    path = tmp_path / "exact_odometry.yaml"
    path.write_text(yaml.safe_dump(params))
    seen = {}

    def capture(*args, **kwargs):
        seen["sim"] = kwargs.get("sim_config") or next(a for a in args if hasattr(a, "sim")).sim
        return {"table": ""}

    monkeypatch.setattr(importlib.import_module(f"spatial_memory.eval.{module}"), function, capture)
    assert main([*command, "--params", str(path), "--out", str(tmp_path / "out.json")]) == 0
    assert seen["sim"].odometry.exact  # sim.yaml's odometry is noisy
