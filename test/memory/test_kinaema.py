"""Kinaema: shapes, constant state, gradients, per-slot gates, odometry, determinism, MIM, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.encoder import ImageEncoder
from spatial_memory.memory.interface import query_loss
from spatial_memory.memory.kinaema import Kinaema, KinaemaConfig

B = 2
LATENT = {"anchors": False, "recall": 0, "gate_bias": -1.0}  # the purely latent memory of the paper's figure


def make(seed: int = 0, **kwargs) -> Kinaema:
    torch.manual_seed(seed)
    return Kinaema(KinaemaConfig(**kwargs)).eval()


def tokens(seed: int, batch: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 8, 128, generator=g)


def step_odometry(batch: int = B) -> torch.Tensor:
    return torch.tensor([[0.2, 0.0, 0.1]]).expand(batch, 3).clone()


def run(model: Kinaema, steps: int, last_odometry: torch.Tensor | None = None) -> torch.Tensor:
    state = model.init_state(B)
    for t in range(steps):
        odo = last_odometry if (last_odometry is not None and t == steps - 1) else step_odometry()
        state = model.update(state, tokens(t), odo)
    return state


@pytest.mark.parametrize("kwargs", [{}, LATENT], ids=["shipped", "latent"])
def test_shapes_and_per_slot_gates(kwargs):
    model = make(**kwargs)
    cfg = model.config
    state = model.init_state(B)
    assert state.shape == (B, cfg.state_rows, cfg.state_dim)
    state, gates = model.update_with_gates(state, tokens(0), step_odometry())
    assert state.shape == (B, cfg.state_rows, cfg.state_dim)
    assert gates.shape == (B, cfg.slots, 1)  # one gate per memory embedding
    assert ((gates > 0) & (gates < 1)).all() and gates.std(dim=1).min() > 0  # slots move at their own speed
    out = model.query(state, tokens(99))
    assert out.pose.shape == (B, 4) and out.log_sigma.shape == (B,) and out.seen_logit.shape == (B,)
    torch.testing.assert_close(out.pose[:, 2:].norm(dim=-1), torch.ones(B))  # unit (sin, cos)


def test_state_size_is_constant_and_independent_of_episode_length():
    model = make(**LATENT)
    state = model.init_state(B)
    sizes = set()
    with torch.no_grad():
        for t in range(50):
            state = model.update(state, tokens(t), step_odometry())
            sizes.add((tuple(state.shape), model.state_nbytes(state)))
    cfg = model.config
    assert sizes == {((B, cfg.slots, cfg.dim), B * cfg.slots * cfg.dim * 4)}
    assert torch.isfinite(state).all()


def test_query_loss_reaches_encoder_gates_and_initial_memory():
    torch.manual_seed(0)
    encoder, model = ImageEncoder(), Kinaema()
    images = torch.randint(0, 256, (3, B, 3, 64, 64), dtype=torch.uint8)
    state = model.init_state(B)
    for t in range(3):
        state = model.update(state, encoder(images[t]).tokens, step_odometry())
    out = model.query(state, encoder(images[0]).tokens)
    loss = query_loss(out, torch.tensor([[-0.4, 0.1, -0.2]] * B))["total"]
    loss.backward()
    for name, param in [
        ("encoder conv", encoder.backbone[0][0].weight),
        ("encoder compression", encoder.queries),
        ("gate", model.gate.proj.weight),
        ("initial memory", model.memory_init),
        ("correction", model.correction.mlp[0].weight),
        ("odometry", model.odometry.mlp[0].weight),
    ]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_a_turn_changes_the_answer():
    model = make()
    with torch.no_grad():
        straight = model.query(run(model, 5, torch.zeros(B, 3)), tokens(1))
        turned = model.query(run(model, 5, torch.tensor([[0.0, 0.0, math.pi / 2]] * B)), tokens(1))
    assert not torch.allclose(straight.pose, turned.pose, atol=1e-4)


def test_determinism_with_a_fixed_seed():
    a, b = make(seed=3), make(seed=3)
    with torch.no_grad():
        out_a = a.query(run(a, 4), tokens(7))
        out_b = b.query(run(b, 4), tokens(7))
    torch.testing.assert_close(out_a.pose, out_b.pose, rtol=0, atol=0)
    torch.testing.assert_close(out_a.log_sigma, out_b.log_sigma, rtol=0, atol=0)


def test_mim_loss_trains_memory_and_encoder():
    torch.manual_seed(0)
    encoder, model = ImageEncoder(), Kinaema()
    images = torch.randint(0, 256, (B, 3, 64, 64), dtype=torch.uint8)
    frame = encoder(images)
    state = model.update(model.init_state(B), frame.tokens, step_odometry())
    state = model.update(state, tokens(1), step_odometry())
    g = torch.Generator().manual_seed(0)
    loss = model.mim_loss(state, frame.patches, encoder.patch_pixels(images), lag=1, generator=g)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.memory_init.grad.abs().sum() > 0 and encoder.backbone[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(InvalidInputError, match="lag"):
        model.mim_loss(state, frame.patches, encoder.patch_pixels(images), lag=99)


def test_mim_from_memory_alone():
    model = make(mim_mask_ratio=1.0)
    patches, pixels = torch.randn(B, 64, 128), torch.randn(B, 64, 192)
    assert torch.isfinite(model.mim_loss(model.init_state(B), patches, pixels, lag=torch.tensor([0, 3])))


def test_se3_answers():
    model = make(pose_mode="se3", **LATENT)
    out = model.query(model.init_state(B), tokens(0))
    assert out.pose.shape == (B, 9)
    target = torch.eye(4).expand(B, 4, 4).clone()
    target[:, :3, 3] = torch.tensor([1.0, -0.5, 0.2])
    assert torch.isfinite(query_loss(out, target)["total"])


def test_bad_inputs_are_refused():
    model = make()
    state = model.init_state(B)
    nan_odometry = step_odometry()
    nan_odometry[1, 2] = float("nan")
    bad_calls = [
        lambda: model.update(state, tokens(0), nan_odometry),
        lambda: model.update(state, tokens(0), torch.zeros(B, 2)),
        lambda: model.update(state, torch.randn(B, 7, 128), step_odometry()),
        lambda: model.update(state, tokens(0, batch=3), step_odometry(3)),
        lambda: model.update(state[:, :5], tokens(0), step_odometry()),
        lambda: model.query(state, torch.full((B, 8, 128), float("inf"))),
        lambda: model.init_state(0),
        lambda: query_loss(model.query(state, tokens(0)), torch.zeros(B, 4)),
    ]
    for call in bad_calls:
        with pytest.raises(InvalidInputError):
            call()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dim": 130},
        {"slots": 0},
        {"mim_mask_ratio": 0.0},
        {"pose_mode": "6dof"},
        {"dropout": -0.1},
        {"anchors": True, "pose_mode": "se3"},
        {"anchors": "yes"},
        {"anchor_scale": 0.0},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ConfigError):
        KinaemaConfig(**kwargs)


def test_parameter_counts_add_up():
    counts = make().parameter_counts()
    assert counts["update"] + counts["query"] + counts["mim"] == counts["total"]
    assert counts["total"] < 2_000_000  # the shipped size stays small


# -- anchored slots -----------------------------------------------------------------------------------------


def test_anchored_state_is_constant_and_carries_a_pose_per_slot():
    model = make(anchors=True, recall=0)
    cfg = model.config
    state = model.init_state(B)
    assert state.shape == (B, cfg.slots, cfg.dim + 3) and cfg.state_dim == cfg.dim + 3
    torch.testing.assert_close(state[..., cfg.dim :], torch.zeros(B, cfg.slots, 3))  # all start at the robot
    with torch.no_grad():
        for t in range(20):
            state = model.update(state, tokens(t), step_odometry())
    assert state.shape == (B, cfg.slots, cfg.dim + 3) and torch.isfinite(state).all()
    assert model.state_nbytes(state) == B * cfg.slots * (cfg.dim + 3) * 4
    with pytest.raises(InvalidInputError, match="131"):
        model.update(state[..., : cfg.dim], tokens(0), step_odometry())


def test_anchors_move_exactly_with_the_odometry():
    """With the gate shut (bias -30), an update only moves the anchors: anchor <- odometry^-1 o anchor."""
    model = make(anchors=True, recall=0, gate_bias=-30.0)
    E = model.config.dim
    state = model.init_state(B)
    state[..., E:] = torch.tensor([1.0, 0.5, 0.3])
    odometry = torch.tensor([[0.4, -0.1, 0.5], [0.0, 0.2, -1.0]])
    with torch.no_grad():
        moved = model.update(state, tokens(0), odometry)
    cos, sin = torch.cos(odometry[:, 2]), torch.sin(odometry[:, 2])
    dx, dy = 1.0 - odometry[:, 0], 0.5 - odometry[:, 1]
    want = torch.stack([cos * dx + sin * dy, -sin * dx + cos * dy, 0.3 - odometry[:, 2]], dim=-1)
    torch.testing.assert_close(
        moved[..., E:], want[:, None, :].expand(B, model.config.slots, 3), atol=1e-5, rtol=0
    )


def test_an_open_gate_pulls_the_anchor_to_the_robot():
    model = make(anchors=True, recall=0, gate_bias=30.0)
    E = model.config.dim
    state = model.init_state(B)
    state[..., E:] = torch.tensor([2.0, -1.0, 2.5])
    with torch.no_grad():
        moved = model.update(state, tokens(0), torch.zeros(B, 3))
    torch.testing.assert_close(moved[..., E:], torch.zeros_like(moved[..., E:]), atol=1e-5, rtol=0)


def test_anchored_answer_is_the_attended_anchor_when_the_residual_is_zero():
    model = make(anchors=True)
    E = model.config.dim
    with torch.no_grad():
        model.head.out[-1].weight.zero_()
        model.head.out[-1].bias.zero_()
        state = model.init_state(B)
        state[..., E:] = torch.tensor([1.5, -0.7, 2.0])  # every slot anchored at the same pose
        out = model.query(state, tokens(3))
    want = torch.tensor([1.5, -0.7, math.sin(2.0), math.cos(2.0)]).expand(B, 4)
    torch.testing.assert_close(out.pose, want, atol=1e-5, rtol=0)


def test_anchored_query_loss_reaches_the_anchor_parts():
    model = make(anchors=True).train()
    state = model.init_state(B)
    for t in range(3):
        state = model.update(state, tokens(t), step_odometry())
    loss = query_loss(model.query(state, tokens(0)), torch.tensor([[-0.4, 0.1, -0.2]] * B))["total"]
    loss = loss + model.mim_loss(state, torch.randn(B, 64, 128), torch.randn(B, 64, 192), lag=1)
    loss.backward()
    for name, param in [
        ("anchor embedding", model.anchor_embed.mlp[0].weight),
        ("readout keys", model.anchor_readout.k.weight),
        ("gate", model.gate.proj.weight),
    ]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


# -- the recall ring --------------------------------------------------------------------------------------

RING = {"anchors": True, "recall": 4, "recall_every": 3, "recall_write": "clock", "slot_update": "always"}


def test_recall_ring_state_layout_and_write_schedule():
    model = make(**RING)
    cfg = model.config
    state = model.init_state(B)
    assert state.shape == (B, cfg.slots + 4 + 1, cfg.dim + 3) and cfg.state_rows == cfg.slots + 5
    with torch.no_grad():
        for t in range(7):  # writes at steps 0, 3 and 6 fill entries 0, 1 and 2
            state = model.update(state, tokens(t), step_odometry())
    keys, _, counter = model._ring(state)
    assert counter.tolist() == [7.0] * B
    filled = keys.abs().sum(-1) > 0
    assert filled.tolist() == [[True, True, True, False]] * B
    torch.testing.assert_close(keys[:, 2], model._key(tokens(6)))  # entry 2 holds step 6's key
    with torch.no_grad():
        for t in range(7, 13):  # writes at 9 (entry 3) and 12 (entry 0 again: the oldest)
            state = model.update(state, tokens(t), step_odometry())
    keys = model._ring(state)[0]
    torch.testing.assert_close(keys[:, 3], model._key(tokens(9)))
    torch.testing.assert_close(keys[:, 0], model._key(tokens(12)))
    assert model.state_nbytes(state) == B * (cfg.slots + 5) * (cfg.dim + 3) * 4  # constant


def test_recall_ring_anchors_move_exactly_with_the_odometry():
    model = make(**RING)
    state = model.init_state(B)
    odometry = torch.tensor([[0.3, 0.1, 0.4], [0.0, -0.2, -0.6]])
    with torch.no_grad():
        state = model.update(state, tokens(0), torch.zeros(B, 3))  # written at step 0, at the robot
        state = model.update(state, tokens(1), odometry)
    anchors = model._ring(state)[1][:, 0]
    cos, sin = torch.cos(odometry[:, 2]), torch.sin(odometry[:, 2])
    want = torch.stack(
        [
            -cos * odometry[:, 0] - sin * odometry[:, 1],
            sin * odometry[:, 0] - cos * odometry[:, 1],
            -odometry[:, 2],
        ],
        dim=-1,
    )
    torch.testing.assert_close(anchors, want, atol=1e-6, rtol=0)


def test_a_picture_in_the_ring_is_answered_with_its_anchor():
    """With the slots' scores and the residual zeroed, a query whose picture is in the ring gets that entry's
    anchor: the ring reads the picture from the first step, no training needed."""
    model = make(**RING)
    with torch.no_grad():
        model.head.out[-1].weight.zero_()
        model.head.out[-1].bias.zero_()
        model.anchor_readout.q.weight.zero_()
        model.anchor_readout.q.bias.zero_()
        model.key_log_temperature.fill_(math.log(1000.0))
        state = model.init_state(B)
        turn = torch.tensor([[0.25, 0.0, 0.3]] * B)
        for t in range(7):  # steps 0, 3, 6 written; step 3's picture is the query
            state = model.update(state, tokens(t), turn)
        out = model.query(state, tokens(3))
    anchor = model._ring(state)[1][:, 1]  # entry 1 = step 3
    want = torch.cat([anchor[:, :2], torch.sin(anchor[:, 2:]), torch.cos(anchor[:, 2:])], dim=-1)
    torch.testing.assert_close(out.pose, want, atol=1e-4, rtol=0)
    assert anchor[:, :2].norm(dim=-1).min() > 0.5  # a real place, not the robot's own pose


def test_empty_ring_entries_are_never_candidates():
    model = make(**RING)
    state = model.update(model.init_state(B), tokens(0), step_odometry())
    logits, _ = model._recalled(state, tokens(5))
    assert torch.isfinite(logits[:, 0]).all() and torch.isinf(logits[:, 1:]).all()


@pytest.mark.parametrize(
    "kwargs", [{"recall": 4, "anchors": False}, {**RING, "recall_every": 0}, {**RING, "recall": -1}]
)
def test_bad_recall_config_is_refused(kwargs):
    with pytest.raises(ConfigError):
        KinaemaConfig(**kwargs)


# -- novelty writes: a robot standing still cannot flush what it saw -----------------------------------------

NOVELTY = {"recall_write": "novelty", "slot_update": "novelty"}


def _ring_rows(model: Kinaema, state: torch.Tensor) -> torch.Tensor:
    N, R = model.config.slots, model.config.recall
    return state[:, N : N + R]


def _tour_then_stand(model: Kinaema, stand: int) -> tuple[torch.Tensor, torch.Tensor]:
    """20 distinct frames while moving, then `stand` identical frames without motion."""
    state = model.init_state(B)
    for t in range(20):
        state = model.update(state, tokens(t), step_odometry())
    before = state.clone()
    still = torch.zeros(B, 3)
    for _ in range(stand):
        state = model.update(state, tokens(19), still)
    return before, state


def test_novelty_writes_keep_memory_through_a_long_standstill():
    model = make(**NOVELTY)
    before, after = _tour_then_stand(model, 500)
    N, R = model.config.slots, model.config.recall
    torch.testing.assert_close(after[:, : N + R], before[:, : N + R])  # slots and ring untouched
    assert (after[:, N + R, 0] - before[:, N + R, 0] == 500).all()  # steps are still counted
    assert (after[:, N + R, 1] == before[:, N + R, 1]).all()  # but nothing was written


def test_clock_writes_flush_the_ring_during_a_standstill():
    """The failure the novelty rule fixes: with clock writes, 500 identical frames fill every ring entry."""
    model = make(recall=64, recall_write="clock", slot_update="always")  # the issue-4 design
    _, after = _tour_then_stand(model, 500)
    keys = _ring_rows(model, after)[..., : model.config.dim]
    same = torch.einsum("bre,be->br", keys, model._key(tokens(19)))
    assert (same > 0.999).all()  # every entry now holds the standstill frame


def test_novelty_writes_when_moved_turned_or_the_view_changes():
    model = make(**NOVELTY, recall=8)
    N, R = model.config.slots, model.config.recall

    def writes(state: torch.Tensor) -> torch.Tensor:
        return state[:, N + R, 1]

    state = model.update(model.init_state(B), tokens(0), torch.zeros(B, 3))
    assert (writes(state) == 1).all()  # the first frame is always written
    state = model.update(state, tokens(0), torch.tensor([[0.1, 0.0, 0.0]]).expand(B, 3))
    assert (writes(state) == 1).all()  # 0.1 m, same view: nothing new
    state = model.update(state, tokens(0), torch.tensor([[0.25, 0.0, 0.0]]).expand(B, 3))
    assert (writes(state) == 2).all()  # 0.35 m from the newest entry: written
    state = model.update(state, tokens(0), torch.tensor([[0.0, 0.0, math.radians(25)]]).expand(B, 3))
    assert (writes(state) == 3).all()  # turned 25 deg
    state = model.update(state, tokens(7), torch.zeros(B, 3))
    assert (
        writes(state) == 4
    ).all()  # a different view where the robot stands (carried, or the scene changed)
    ring = _ring_rows(model, state)
    torch.testing.assert_close(
        ring[:, 3, model.config.dim :], torch.zeros(B, 3)
    )  # newest anchored at the robot


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recall_write": "sometimes"},
        {"recall_write": "clock", "slot_update": "novelty"},  # needs the ring's novelty writes
        {"novelty_move_m": 0.0},
        {"novelty_turn_deg": float("inf")},
        {"novelty_max_cosine": 1.5},
        {"recall_confidence": "yes"},
        {"readout": "ring", "recall": 0},
    ],
)
def test_novelty_config_is_checked(kwargs):
    with pytest.raises(ConfigError):
        KinaemaConfig(**kwargs)


def test_recall_confidence_reads_how_well_the_query_matches_the_ring():
    """With recall_confidence, a picture the ring holds is more 'seen' and surer than one it never saw."""
    model = make(**NOVELTY, recall_confidence=True)
    state = model.init_state(1)
    for t in range(10):
        state = model.update(state, tokens(t, 1), step_odometry(1))
    held, new = model.query(state, tokens(3, 1)), model.query(state, tokens(500, 1))
    assert held.seen_logit > new.seen_logit and held.log_sigma < new.log_sigma
    loss = query_loss(held, torch.zeros(1, 3))["total"]
    loss.backward()
    assert model.match_seen.grad is not None and torch.isfinite(model.match_seen.grad).all()


def test_readout_ablations_answer_from_the_slots_or_the_ring_alone():
    state = run(make(), 12)
    answers = {}
    for readout in ("both", "slots", "ring"):
        torch.manual_seed(0)
        model = Kinaema(KinaemaConfig(readout=readout)).eval()  # same weights: same seed, no new parameters
        answers[readout] = model.query(state, tokens(100)).pose  # a picture no entry holds exactly
    assert not torch.allclose(answers["both"], answers["slots"])
    assert not torch.allclose(answers["both"], answers["ring"])
    assert not torch.allclose(answers["slots"], answers["ring"])
    with pytest.raises(ConfigError, match="readout"):
        KinaemaConfig(readout="ring", recall=0)


# -- which entry a full ring gives up, how sharply it is read, and the sigma of look-alike places ------------


def _walk(model: Kinaema, xs: list[float]) -> torch.Tensor:
    """One unchanging view (only movement writes) seen at positions `xs` along a straight line."""
    state, at = model.init_state(1), 0.0
    for x in xs:
        state = model.update(state, tokens(0, 1), torch.tensor([[x - at, 0.0, 0.0]]))
        at = x
    return state


def _ring_positions(model: Kinaema, state: torch.Tensor, at: float) -> list[float]:
    """The ring's entries as world x positions (the robot ended at x = `at`, facing +x)."""
    return sorted(round(at + float(a[0]), 3) for a in model._ring(state)[1][0].detach())


@pytest.mark.parametrize(
    "evict, kept", [("oldest", [1.0, 2.0, 2.4, 3.4]), ("redundant", [0.0, 1.0, 2.4, 3.4])]
)
def test_a_full_ring_gives_up_its_oldest_or_its_most_redundant_entry(evict, kept):
    """Entries at x = 0, 1, 2, 2.4 fill a 4-entry ring; the write at 3.4 replaces the one at 0 ('oldest') or
    one of the closest pair, 2 and 2.4 ('redundant'; then the newest is still found for the novelty rule)."""
    model = make(**NOVELTY, recall=4, recall_evict=evict)
    state = _walk(model, [0.0, 1.0, 2.0, 2.4, 3.4])
    assert _ring_positions(model, state, at=3.4) == pytest.approx(kept, abs=1e-4)
    N, R = model.config.slots, model.config.recall
    still = model.update(state, tokens(0, 1), torch.tensor([[0.1, 0.0, 0.0]]))
    assert still[0, N + R, 1] == state[0, N + R, 1]  # 0.1 m from the newest entry (3.4): nothing written
    moved = model.update(state, tokens(0, 1), torch.tensor([[0.35, 0.0, 0.0]]))
    assert moved[0, N + R, 1] == state[0, N + R, 1] + 1


def test_redundant_eviction_counts_heading_as_well_as_position():
    """Two entries at one spot facing apart see different things: not the pair a full ring gives up."""
    model = make(**NOVELTY, recall=3, recall_evict="redundant")
    state = model.init_state(1)
    for odo in ([0.0, 0.0, 0.0], [0.0, 0.0, math.pi / 2], [0.5, 0.0, 0.0], [0.35, 0.0, 0.0]):
        state = model.update(state, tokens(0, 1), torch.tensor([odo]))
    # entries: (0, 0) facing +x, (0, 0) facing +y, 0.5 m along +y. The 4th write replaces one of the pair
    # 0.5 m apart (1.7 in novelty units), not one of the pair at one spot 90 deg apart (4.5): the entry
    # facing +x stays (relative to the robot, now facing +y: -90 deg). By position alone it would go.
    yaws = sorted(round(math.degrees(float(a[2])) % 360) for a in model._ring(state)[1][0].detach())
    assert yaws == [0, 0, 270]


def test_sharper_readout_answers_the_best_match_instead_of_averaging_look_alikes():
    """Two entries whose keys match a picture almost equally: the trained temperature averages their anchors,
    a sharp read-out answers the better one."""
    answers = {}
    for sharpness in (1.0, 1000.0):
        model = make(**NOVELTY, recall=8, recall_sharpness=sharpness, readout="ring")
        with torch.no_grad():
            model.head.out[-1].weight.zero_()
            model.head.out[-1].bias.zero_()  # no residual
            state = model.update(model.init_state(1), tokens(1, 1), torch.zeros(1, 3))
            state = model.update(state, tokens(2, 1), torch.tensor([[2.0, 0.0, 0.0]]))
            query = 0.55 * tokens(1, 1) + 0.45 * tokens(2, 1)
            answers[sharpness] = model.query(state, query).pose[0, 0].item()
    assert answers[1000.0] == pytest.approx(-2.0, abs=1e-3)  # entry 1, 2 m behind
    assert -1.9 < answers[1.0] < -0.1  # a blend of the two places


def test_sigma_spread_widens_the_sigma_when_look_alikes_lie_apart():
    model = make(**NOVELTY, recall=8, recall_sharpness=1000.0, readout="ring")
    spread = make(**NOVELTY, recall=8, recall_sharpness=1000.0, readout="ring", sigma_spread=True)
    with torch.no_grad():
        state = spread.update(spread.init_state(1), tokens(1, 1), torch.zeros(1, 3))
        state = spread.update(state, tokens(2, 1), torch.tensor([[3.0, 0.0, 0.0]]))
        blend = 0.5 * tokens(1, 1) + 0.5 * tokens(2, 1)
        wide, narrow = spread.query(state, blend), spread.query(state, tokens(2, 1))
        plain = model.query(state, blend)
    # the spread (m^2) adds to sigma^2: some of the weight lies on the candidate 3 m from the answer
    assert (torch.exp(2 * wide.log_sigma) - torch.exp(2 * plain.log_sigma)).item() > 1.0
    assert narrow.log_sigma < wide.log_sigma
    empty = spread.query(spread.init_state(1), tokens(1, 1))
    assert torch.isfinite(empty.log_sigma).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recall_evict": "newest"},
        {"recall_evict": "redundant", "recall_write": "clock", "slot_update": "always"},
        {"recall_sharpness": 0.0},
        {"recall_sharpness": float("nan")},
        {"sigma_spread": "yes"},
        {"sigma_spread": True, "recall": 0, "anchors": False},
    ],
)
def test_ring_read_out_config_is_checked(kwargs):
    with pytest.raises(ConfigError):
        KinaemaConfig(**kwargs)


def test_without_newest_empties_only_the_newest_ring_entries():
    """The lost check asks the memory as it was before the last few writes: those entries are emptied (never
    candidates), older ones and the slots are untouched, and the state itself is not changed."""
    model = make(**NOVELTY, recall=4)
    state = _walk(model, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # 6 writes into 4 entries: 2, 3, 4, 5 m remain
    before = state.clone()
    older = model.without_newest(state, 2)
    torch.testing.assert_close(state, before)
    keys, anchors, _ = model._ring(older)
    kept = sorted(
        round(5.0 + float(a[0])) for a, k in zip(anchors[0], keys[0], strict=True) if k.abs().sum() > 0
    )
    assert kept == [2, 3]  # the entries at 4 and 5 m (the newest two) are gone
    N = model.config.slots
    torch.testing.assert_close(older[:, :N], state[:, :N])
    logits, _ = model._recalled(older, tokens(0, 1))
    assert torch.isinf(logits).sum() == 2
    torch.testing.assert_close(model.without_newest(state, 0), state)
    assert torch.isinf(model._recalled(model.without_newest(state, 10), tokens(0, 1))[0]).all()
