"""Property-based tests of MemoryEngine (issue 14): in any sequence of base poses, the physically absurd
ones (beyond `max_distance_m`, a step faster than `max_speed_m_s` allows, NaN) are refused with
`InvalidInputError` and change nothing; every accepted one keeps the memory finite and answering."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import yaw_pose
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.engine import USED, EngineConfig, MemoryEngine
from spatial_memory.memory.registry import build_model, save_checkpoint

# a tiny model (as test_engine.py builds): updates take a millisecond
SMALL_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)
SMALL_KINAEMA = {"slots": 8, "dim": 32, "heads": 2, "correction_hidden": 32, "query_hidden": 32}
BOUNDS = EngineConfig()  # max_distance_m 1 km, max_speed_m_s 5, step_slack_m 1 m
IMAGES = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> MemoryEngine:
    """One engine for every example (each starts with `reset()`): loading a checkpoint costs more than
    a dozen updates."""
    torch.manual_seed(0)
    encoder = ImageEncoder(SMALL_ENCODER)
    model = build_model("kinaema", SMALL_KINAEMA, encoder_config=SMALL_ENCODER)
    path = tmp_path_factory.mktemp("engine_properties") / "kinaema.pt"
    save_checkpoint(path, model, encoder)
    # lost_check off: an untrained model's answers about its own frames are noise, and the lost check
    # (test_lost.py, test_engine.py) would reset it; these properties are about poses and stamps
    return MemoryEngine(EngineConfig(checkpoint=str(path), resize="none", threads=1, lost_check=False))


# a step as a share of what the top speed allows (never within 5 % of the bound: no rounding question),
# a base pose far beyond max_distance_m, or a pose that is not a number
plausible = st.floats(0.0, 0.95)
too_fast = st.floats(1.05, 1e28)
far = st.floats(1.001 * BOUNDS.max_distance_m, 1e300)
moves = st.one_of(
    st.tuples(st.just("step"), plausible),
    st.tuples(st.just("step"), plausible),
    st.tuples(st.just("step"), too_fast),
    st.tuples(st.just("far"), far),
    st.tuples(st.just("nan"), st.just(math.nan)),
)
motions = st.lists(
    st.tuples(moves, st.floats(-math.pi, math.pi), st.floats(0.05, 2.0), st.integers(0, len(IMAGES) - 1)),
    min_size=1,
    max_size=12,
)


def _snapshot(engine: MemoryEngine) -> tuple[Any, ...]:
    """Everything an update may change."""
    state = engine.state
    tensors = (
        [state]
        if isinstance(state, torch.Tensor)
        else [getattr(state, f.name) for f in dataclasses.fields(state)]
    )
    return [t.clone() for t in tensors], engine.steps, engine.last_stamp_ns


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a[0], b[0], strict=True)) and a[1:] == b[1:]


def _finite(engine: MemoryEngine) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in _snapshot(engine)[0])


def _target(kind: str, amount: float, heading: float, last: np.ndarray | None, dt: float) -> np.ndarray:
    """The base pose a move asks for, from the last pose the memory used, `dt` seconds after it."""
    x, y = (0.0, 0.0) if last is None else (float(last[0, 3]), float(last[1, 3]))
    if kind == "far":
        return yaw_pose(amount * math.cos(heading), amount * math.sin(heading), heading)
    if kind == "nan":
        return yaw_pose(math.nan, y, heading)
    length = amount * (BOUNDS.max_speed_m_s * dt + BOUNDS.step_slack_m)
    return yaw_pose(x + length * math.cos(heading), y + length * math.sin(heading), heading)


@SETTINGS
@given(sequence=motions)
def test_absurd_poses_are_refused_and_the_memory_stays_finite(engine: MemoryEngine, sequence: list) -> None:
    engine.reset()
    last_T, last_stamp, stamp = None, 0, 0
    for (kind, amount), heading, dt, image in sequence:
        stamp += round(dt * 1e9)
        T = _target(kind, amount, heading, last_T, (stamp - last_stamp) * 1e-9)  # since the last one used
        beyond = math.hypot(*T[:3, 3]) > BOUNDS.max_distance_m  # a fast first move can get there
        absurd = kind in ("far", "nan") or beyond or (last_T is not None and amount > 1.0)
        before = _snapshot(engine)
        try:
            result = engine.update(IMAGES[image], T_world_base=T, stamp_ns=stamp)
        except InvalidInputError:
            assert absurd, f"a plausible {kind} move was refused"
            assert _same(_snapshot(engine), before), "a refused update changed the memory"
            continue
        assert not absurd, f"an absurd {kind} move ({amount:.3g}) was accepted"
        assert result == USED and _finite(engine)
        last_T, last_stamp = T, stamp
    if engine.steps:
        answer = engine.query(IMAGES[0])
        assert all(math.isfinite(v) for v in (answer.x, answer.y, answer.yaw))
