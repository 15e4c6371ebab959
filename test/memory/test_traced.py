"""memory.traced: the traced encoder and update reproduce the eager ones (the shipped model included), other
shapes go to the eager modules, and a trace that would be wrong is caught at start and not used."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.engine import EngineConfig, MemoryEngine
from spatial_memory.memory.engine_config import resolve_checkpoint
from spatial_memory.memory.registry import build_model, load_checkpoint
from spatial_memory.memory.traced import trace_for_inference

SMALL_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)
SMALL_RING = {
    "slots": 8, "dim": 32, "heads": 2, "correction_hidden": 32, "query_hidden": 32, "anchors": True,
    "recall": 4,
}  # fmt: skip
CPU = torch.device("cpu")


def _small(name="kinaema", config=None):
    torch.manual_seed(0)
    encoder = ImageEncoder(SMALL_ENCODER).eval()
    model = build_model(name, SMALL_RING if config is None else config, encoder_config=SMALL_ENCODER).eval()
    return model, encoder


def _walk(n, seed=3):
    """n images (1, 3, 32, 32) and odometry steps (1, 3): moving, then standing still before one view."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 3, 32, 32), dtype=torch.uint8, generator=g)
    odometry = (torch.rand(n, 1, 3, generator=g) - 0.5) * 0.4
    odometry[n // 2 :] = 0.0
    images[n // 2 :] = images[n // 2]
    return images, odometry


@torch.no_grad()
def test_traced_small_kinaema_follows_the_eager_model_on_another_walk():
    model, encoder = _small()
    path = trace_for_inference(model, encoder, CPU)
    assert path is not None
    images, odometry = _walk(30)  # not the episode the trace was checked on
    eager = traced = model.init_state(1)
    for image, step in zip(images, odometry, strict=True):
        tokens = encoder(image).tokens
        assert torch.allclose(path.encode(image), tokens, atol=1e-5)
        eager = model.update(eager, tokens, step)
        traced = path.update(traced, tokens, step)
        assert torch.allclose(traced, eager, atol=1e-4)
    # the ring wrote while moving and not while standing still, in both
    writes = eager[0, SMALL_RING["slots"] + SMALL_RING["recall"], 1]
    assert 1 < float(writes) < 30
    assert float(traced[0, SMALL_RING["slots"] + SMALL_RING["recall"], 1]) == float(writes)


@torch.no_grad()
def test_other_shapes_run_eagerly():
    model, encoder = _small()
    path = trace_for_inference(model, encoder, CPU)
    state = model.init_state(2)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    tokens = path.encode(images)  # batch 2: not the traced shape
    assert torch.equal(tokens, encoder(images).tokens)
    step = torch.tensor([[0.1, 0.0, 0.2], [0.0, 0.1, -0.1]])
    assert torch.equal(path.update(state, tokens, step), model.update(state, tokens, step))


@torch.no_grad()
def test_traced_update_checks_its_inputs():
    model, encoder = _small()
    path = trace_for_inference(model, encoder, CPU)
    state = model.init_state(1)
    tokens = encoder(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).tokens
    with pytest.raises(Exception, match="NaN or infinite"):
        path.update(state, tokens * float("nan"), torch.zeros(1, 3))


def test_a_history_state_is_not_traced():
    model, encoder = _small("keyframes", {})
    assert trace_for_inference(model, encoder, CPU) is None


class _BranchingKinaema(torch.nn.Module):
    """Wraps a model's update in Python control flow on the data (skips standing-still frames): a trace
    records one branch only, so it is wrong for the other."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.name, self.config = model.name, model.config

    def init_state(self, batch):
        return self.inner.init_state(batch)

    def check_update(self, state, tokens, odometry):
        self.inner.check_update(state, tokens, odometry)

    def _update(self, state, tokens, odometry):
        if float(odometry.abs().sum()) == 0.0:
            return state
        return self.inner._update(state, tokens, odometry)


def test_a_trace_that_disagrees_is_refused(caplog):
    model, encoder = _small()
    with caplog.at_level(logging.WARNING, logger="spatial_memory.memory.traced"):
        assert trace_for_inference(_BranchingKinaema(model), encoder, CPU) is None
    assert "running eagerly" in caplog.text


@torch.no_grad()
def test_the_shipped_engine_answers_the_same_traced_and_eager():
    """The shipped checkpoint, through the engine as memory_node runs it: same states, same answers."""
    ckpt = resolve_checkpoint("models/kinaema_indoor64.pt")
    size = load_checkpoint(ckpt).encoder.config.image_size
    traced = MemoryEngine(EngineConfig(checkpoint=ckpt, resize="none"))
    eager = MemoryEngine(EngineConfig(checkpoint=ckpt, resize="none", trace=False))
    assert traced._traced is not None and eager._traced is None
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (40, size, size, 3), dtype=np.uint8)
    x = 0.0
    for i, image in enumerate(images):
        x += 0.1 if i < 25 else 0.0  # then standing still
        pose = np.eye(4)
        pose[0, 3] = x
        for engine in (traced, eager):
            engine.update(image, T_world_base=pose, stamp_ns=(i + 1) * 200_000_000)
    assert torch.allclose(traced.state, eager.state, atol=1e-4)
    for picture in images[::7]:
        a, b = traced.query(picture), eager.query(picture)
        assert abs(a.x - b.x) < 1e-4 and abs(a.y - b.y) < 1e-4 and abs(a.yaw - b.yaw) < 1e-4
        assert abs(a.seen_probability - b.seen_probability) < 1e-4


def test_engines_of_one_model_share_its_trace():
    ckpt = resolve_checkpoint("models/kinaema_indoor64.pt")
    a = MemoryEngine(EngineConfig(checkpoint=ckpt))
    b = MemoryEngine(EngineConfig(checkpoint=ckpt))
    assert a._traced.traced_update is b._traced.traced_update
    assert a._traced.model is a.model and b._traced.model is b.model  # each falls back on its own modules
    other = MemoryEngine(EngineConfig(checkpoint=ckpt), model_overrides={"recall_sharpness": 2.0})
    assert other._traced is not None and other._traced.traced_update is not a._traced.traced_update
