"""The trainer: it learns, is deterministic by seed, resumes exactly, refuses a foreign run folder, writes its
log and plot, and trains every model; plus the `spatial-memory train` command line."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from spatial_memory.cli import main
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.data import DatasetSpec, SequenceDataset, build_dataset, collate_windows
from spatial_memory.memory.encoder import EncoderConfig
from spatial_memory.memory.interface import query_loss
from spatial_memory.memory.registry import load_checkpoint
from spatial_memory.memory.train import (
    TRAINABLE,
    TrainConfig,
    _build,
    _episodes,
    learning_rate,
    read_log,
    run_window,
    train,
)

SPEC = DatasetSpec(preset="room", train_seeds=(0, 1), val_seeds=(1000,), steps=30, width=32, height=32)
TINY_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)
TINY_KINAEMA = {
    "slots": 8,
    "dim": 32,
    "heads": 2,
    "correction_hidden": 32,
    "query_hidden": 32,
    "mim_max_lag": 4,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data") / "ds"
    build_dataset(SPEC, root, progress=False)
    return root


def _config(dataset, **kw) -> TrainConfig:
    base = {
        "data": str(dataset),
        "model_overrides": TINY_KINAEMA,
        "encoder": TINY_ENCODER,
        "window": 10,
        "batch_size": 2,
        "steps": 5,
        "warmup_steps": 2,
        "eval_every": 0,
        "checkpoint_every": 100,
        "log_every": 1,
        "threads": 1,
    }
    return TrainConfig(**{**base, **kw})


def _weights(path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    model = {f"model.{k}": v for k, v in ckpt.model.state_dict().items()}
    return model | {f"encoder.{k}": v for k, v in ckpt.encoder.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_overfits_a_fixed_batch(dataset):
    config = _config(dataset)
    torch.set_num_threads(1)
    model, encoder = _build(config)
    data = SequenceDataset.from_dataset(dataset, "train", 10, in_memory=True)
    batch = collate_windows([data[data.index(0, 1)], data[data.index(1, 1)]])
    params = [*model.parameters(), *encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=3e-3)

    def loss() -> torch.Tensor:
        _, out, target, seen, _ = run_window(model, encoder, batch, model.init_state(2))
        return query_loss(out, target, seen)["total"]

    first = loss().item()
    for _ in range(25):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.7 * first


def test_same_seed_same_weights_and_seed_matters(dataset, tmp_path):
    train(_config(dataset, steps=3), tmp_path / "a", progress=False)
    train(_config(dataset, steps=3), tmp_path / "b", progress=False)
    train(_config(dataset, steps=3, seed=1), tmp_path / "c", progress=False)
    a, b, c = (_weights(tmp_path / name / "last.pt") for name in "abc")
    assert _same(a, b)
    assert not _same(a, c)


def test_resume_continues_and_matches_an_uninterrupted_run(dataset, tmp_path):
    config = _config(dataset, steps=6)
    whole = train(config, tmp_path / "whole", progress=False)
    first = train(config, tmp_path / "parts", progress=False, stop_at=4)
    assert first.step == 4
    assert load_checkpoint(tmp_path / "parts" / "last.pt").extra["step"] == 4
    second = train(config, tmp_path / "parts", progress=False)
    assert whole.step == second.step == 6
    assert _same(_weights(tmp_path / "whole" / "last.pt"), _weights(tmp_path / "parts" / "last.pt"))
    assert [r["step"] for r in read_log(tmp_path / "parts" / "log.jsonl")] == [1, 2, 3, 4, 5, 6]
    again = train(config, tmp_path / "parts", progress=False)  # finished: nothing more to do
    assert again.step == 6


def test_a_different_config_in_the_same_folder_is_refused(dataset, tmp_path):
    train(_config(dataset, steps=2), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="lr"):
        train(_config(dataset, steps=2, lr=5e-4), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="already holds"):
        train(_config(dataset, steps=2), tmp_path / "run", resume=False, progress=False)


def test_writes_log_plot_and_best_checkpoint(dataset, tmp_path):
    result = train(_config(dataset, steps=4, eval_every=2), tmp_path / "run", progress=False)
    out = tmp_path / "run"
    assert (out / "loss.png").stat().st_size > 1000
    records = read_log(out / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    val = records[1]["val"]
    assert {"loss", "mem_rpe", "pose0_mem_rpe"} <= set(val)
    assert val["mem_rpe"]["seen_count"] + val["mem_rpe"]["unseen_count"] == val["queries"]
    assert {"lr", "wall_s", "train"} <= set(records[0])
    assert {"total", "position_nll", "seen", "mim", "grad_norm"} <= set().union(
        *(r["train"] for r in records)
    )
    best = load_checkpoint(out / "best.pt")
    assert best.extra["step"] in (2, 4) and best.extra["train_config"]["steps"] == 4
    assert result.val == records[-1]["val"]
    json.dumps(result.val)  # plain data


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(dataset, tmp_path):
    with pytest.raises(ConfigError, match="no CUDA device"):
        train(_config(dataset, device="cuda"), tmp_path, progress=False)
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("name", [*TRAINABLE, "kinaema_anchored"])
def test_every_model_trains(dataset, tmp_path, name):
    overrides = TINY_KINAEMA if name == "kinaema" else {}
    if name == "kinaema_anchored":
        name, overrides = "kinaema", {**TINY_KINAEMA, "anchors": True}
    result = train(_config(dataset, model=name, model_overrides=overrides, steps=2), tmp_path, progress=False)
    assert result.step == 2
    assert load_checkpoint(tmp_path / "last.pt").model.name == name


def test_config_is_checked():
    with pytest.raises(ConfigError, match="model must be"):
        TrainConfig(model="keyframes")
    with pytest.raises(ConfigError, match="unknown kinaema config"):
        TrainConfig(model_overrides={"nope": 1})
    with pytest.raises(ConfigError, match="window"):
        TrainConfig(window=0)
    with pytest.raises(ConfigError, match="not a torch device"):
        TrainConfig(device="tpu-please")
    config = TrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 10) == pytest.approx(1e-3)
    assert learning_rate(config, 100) == pytest.approx(1e-4)


def test_cli_train(dataset, tmp_path, capsys):
    args = ["train", "--data", str(dataset), "--model", "gru", "--out", str(tmp_path / "cli")]
    args += ["--steps", "1", "--batch", "2", "--window", "10", "--threads", "1", "--no-progress"]
    args += ["--set", "encoder.image_size=32", "--set", "encoder.widths=[8,16]", "--set", "model.hidden=64"]
    args += ["--set", "model.context_dim=32", "--set", "encoder.token_dim=32", "--set", "encoder.heads=2"]
    args += ["--set", "lr=3e-4"]  # YAML 1.1 would read a string; the help's own example
    assert main(args) == 0
    assert "trained to step 1" in capsys.readouterr().out
    ckpt = load_checkpoint(tmp_path / "cli" / "last.pt")
    assert ckpt.extra["train_config"]["model_overrides"] == {"hidden": 64, "context_dim": 32}
    assert ckpt.extra["train_config"]["lr"] == 3e-4
    assert main([*args[:-2], "--set", "encoder.heads=4"]) == 2  # another config: refused, one-line error


def test_several_dataset_folders_train_together(dataset, tmp_path):
    """`data` with two folders (os.pathsep; the CLI's `--data A B`) trains on the episodes of both: a second
    folder of other worlds changes the weights; a folder that is not a dataset is refused."""
    other = tmp_path / "other"
    build_dataset(dataclasses.replace(SPEC, train_seeds=(2, 3), val_seeds=(1001,)), other, progress=False)
    both = os.pathsep.join([str(dataset), str(other)])
    assert [len(_episodes(_config(d), "train", 10).episodes) for d in (dataset, both)] == [2, 4]
    assert len(_episodes(_config(both), "val", None).episodes) == 2
    train(_config(dataset, steps=3), tmp_path / "one", progress=False)
    train(_config(both, steps=3), tmp_path / "two", progress=False)
    assert not _same(_weights(tmp_path / "one" / "last.pt"), _weights(tmp_path / "two" / "last.pt"))
    args = ["train", "--data", str(dataset), str(other), "--model", "gru", "--out", str(tmp_path / "cli")]
    args += ["--steps", "1", "--batch", "2", "--window", "10", "--threads", "1", "--no-progress"]
    args += ["--set", "encoder.image_size=32", "--set", "encoder.widths=[8,16]", "--set", "model.hidden=64"]
    args += ["--set", "model.context_dim=32", "--set", "encoder.token_dim=32", "--set", "encoder.heads=2"]
    assert main(args) == 0
    assert load_checkpoint(tmp_path / "cli" / "last.pt").extra["train_config"]["data"] == both
    with pytest.raises(InvalidInputError, match="not a memory dataset"):
        train(_config(os.pathsep.join([str(dataset), str(tmp_path / "nothing")])), tmp_path / "bad")


def test_init_from_starts_at_the_checkpoint_weights(dataset, tmp_path):
    train(_config(dataset, steps=2), tmp_path / "base", progress=False)
    base = tmp_path / "base" / "last.pt"
    config = _config(dataset, steps=2, seed=5, init_from=str(base))
    model, encoder = _build(config)
    started = {f"model.{k}": v for k, v in model.state_dict().items()}
    started |= {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    assert _same(started, _weights(base))  # not the seed-5 weights
    fresh, _ = _build(_config(dataset, steps=2, seed=5))
    assert not torch.equal(next(iter(fresh.state_dict().values())), next(iter(model.state_dict().values())))
    result = train(config, tmp_path / "tuned", progress=False)
    assert result.step == 2
    ckpt = load_checkpoint(tmp_path / "tuned" / "last.pt")
    assert ckpt.extra["train_config"]["init_from"] == str(base)
    assert not _same(_weights(tmp_path / "tuned" / "last.pt"), _weights(base))  # it trained on


def test_init_from_a_checkpoint_that_does_not_fit_is_refused(dataset, tmp_path):
    train(_config(dataset, steps=1), tmp_path / "base", progress=False)
    base = str(tmp_path / "base" / "last.pt")
    with pytest.raises(ConfigError, match="no checkpoint"):
        _build(_config(dataset, init_from=str(tmp_path / "missing.pt")))
    with pytest.raises(ConfigError, match="do not fit"):
        _build(_config(dataset, init_from=base, model_overrides={**TINY_KINAEMA, "slots": 4}))
    with pytest.raises(InvalidInputError, match="expected 'gru'"):
        _build(_config(dataset, init_from=base, model="gru", model_overrides={}))
