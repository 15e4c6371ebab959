"""Baselines behind the shared interface: shapes, state growth, parameter budgets, exact keyframe answers."""

from __future__ import annotations

import math

import pytest
import torch

from spatial_memory.errors import InvalidInputError
from spatial_memory.memory.encoder import ImageEncoder
from spatial_memory.memory.interface import (
    HistoryState,
    planar_features,
    query_loss,
    se2_compose,
    se2_relative,
)
from spatial_memory.memory.registry import MODELS, build_model

B = 2
TRAINED = ["gru", "ema", "truncated", "full"]


def tokens(seed: int, batch: int = B) -> torch.Tensor:
    return torch.randn(batch, 8, 128, generator=torch.Generator().manual_seed(seed))


def odometry(dx: float = 0.2, dy: float = 0.0, dyaw: float = 0.1) -> torch.Tensor:
    return torch.tensor([[dx, dy, dyaw]]).expand(B, 3).clone()


def rollout(model, steps: int, last=None):
    state = model.init_state(B)
    for t in range(steps):
        state = model.update(state, tokens(t), last if (last is not None and t == steps - 1) else odometry())
    return state


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_answers_through_the_same_interface(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        out = model.query(rollout(model, 3), tokens(1))
    assert out.pose.shape == (B, 4) and out.log_sigma.shape == (B,) and out.seen_logit.shape == (B,)
    assert torch.isfinite(out.pose).all() and ((out.confidence > 0) & (out.confidence < 1)).all()


@pytest.mark.parametrize("name", ["gru", "ema", "kinaema"])
def test_recurrent_state_is_constant(name):
    model = build_model(name).eval()
    with torch.no_grad():
        sizes = {model.state_nbytes(rollout(model, t)) for t in (1, 5, 20)}
    assert len(sizes) == 1


def test_history_state_grows_to_the_window_then_stays_and_full_keeps_growing():
    truncated, full = build_model("truncated", window=4).eval(), build_model("full").eval()
    with torch.no_grad():
        t_len = [rollout(truncated, t).length for t in (2, 4, 9)]
        f_len = [rollout(full, t).length for t in (2, 4, 9)]
        sizes = [full.state_nbytes(rollout(full, t)) for t in (2, 4)]
    assert t_len == [2, 4, 4] and f_len == [2, 4, 9]
    assert sizes[1] - sizes[0] == 2 * B * (8 * 128 + 3) * 4  # two more frames: tokens and pose


def test_parameter_counts_within_2x_of_kinaema():
    kinaema = build_model("kinaema").num_parameters()
    for name in TRAINED:
        count = build_model(name).num_parameters()
        assert kinaema / 2 <= count <= 2 * kinaema, (name, count, kinaema)
    assert build_model("keyframes").num_parameters() == 0  # non-parametric on top of the encoder


def test_odometry_is_integrated_into_the_pose():
    model = build_model("full")
    state = model.init_state(B)
    for _ in range(4):  # drive a 1 m square, turning left at each corner
        state = model.update(state, tokens(0), odometry(1.0, 0.0, math.pi / 2))
    torch.testing.assert_close(state.pose, torch.zeros(B, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(state.poses[0, 0], torch.tensor([1.0, 0.0, math.pi / 2]))


def test_se2_relative_inverts_compose():
    a = torch.tensor([[1.0, -2.0, 0.7], [0.0, 3.0, -2.5]])
    b = torch.tensor([[0.3, 0.4, 1.1], [-1.0, 0.5, 3.0]])
    torch.testing.assert_close(se2_relative(a, se2_compose(a, b)), b)
    c = torch.tensor([[0.0, 0.0, 3.0]])
    torch.testing.assert_close(se2_compose(c, c)[0, 2], torch.tensor(6.0 - 2 * math.pi))  # wrapped


def test_keyframes_return_the_stored_frames_relative_pose():
    torch.manual_seed(0)
    encoder, model = ImageEncoder().eval(), build_model("keyframes")
    images = torch.randint(0, 256, (6, B, 3, 64, 64), dtype=torch.uint8)
    steps = torch.randn(6, B, 3, generator=torch.Generator().manual_seed(1)) * torch.tensor([0.5, 0.5, 0.8])
    state = model.init_state(B)
    with torch.no_grad():
        frames = [encoder(images[t]) for t in range(6)]
        for t in range(6):
            state = model.update(state, frames[t].tokens, steps[t])
        out = model.query(state, frames[2].tokens)
    want = planar_features(se2_relative(state.pose, state.poses[:, 2]))
    torch.testing.assert_close(out.pose, want)
    assert (out.confidence > 0.99).all() and (out.seen_logit > 0).all()
    offset = (0.1, -0.05, 0.3)  # a camera mounted off the base centre: the answer is the camera's pose
    with_mount = build_model("keyframes", camera_offset=offset).query(state, frames[2].tokens)
    camera = se2_compose(state.poses[:, 2], torch.tensor(offset).expand(B, 3))
    torch.testing.assert_close(with_mount.pose, planar_features(se2_relative(state.pose, camera)))


def test_queries_before_any_frame_are_refused():
    for name in ("keyframes", "truncated", "full"):
        model = build_model(name)
        with pytest.raises(InvalidInputError, match="no frame stored"):
            model.query(model.init_state(B), tokens(0))


@pytest.mark.parametrize("name", ["truncated", "full", "ema", "gru"])
def test_a_turn_changes_the_answer(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        straight = model.query(rollout(model, 4, torch.zeros(B, 3)), tokens(1))
        turned = model.query(rollout(model, 4, torch.tensor([[0.0, 0.0, math.pi / 2]] * B)), tokens(1))
    assert not torch.allclose(straight.pose, turned.pose, atol=1e-4)


@pytest.mark.parametrize("name", TRAINED)
def test_query_loss_trains_the_baselines(name):
    torch.manual_seed(0)
    model = build_model(name)
    loss = query_loss(model.query(rollout(model, 3), tokens(0)), torch.tensor([[0.5, 0.2, 0.3]] * B))["total"]
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) >= 0.8 * len(grads)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bad_inputs_are_refused_and_state_kept(name):
    model = build_model(name)
    state = rollout(model, 2)
    nan = odometry()
    nan[0, 0] = float("nan")
    with pytest.raises(InvalidInputError):
        model.update(state, tokens(0), nan)
    with pytest.raises(InvalidInputError):
        model.update(state, torch.randn(B, 8, 64), odometry())
    with pytest.raises(InvalidInputError):
        model.query(state, torch.randn(B + 1, 8, 128))
    if isinstance(state, HistoryState):
        assert state.length == 2
