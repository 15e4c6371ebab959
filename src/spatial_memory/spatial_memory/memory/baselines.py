"""The baselines Kinaema is measured against, behind the same `MemoryModel` interface.

All read the same encoder tokens and odometry, and the trained ones share Kinaema's query head (`QueryHead`)
and odometry encoder, so they differ only in how the past is kept; default sizes put their parameter counts
within 2x of Kinaema's (the tests check it).

- GRUMemory: a GRU cell over [flattened frame tokens + motion]; its hidden vector, cut into tokens, is the
  context the query head reads. Memory size is tied to parameter count (the point of comparing).
- EMAMemory: N slots like Kinaema, m = d * correct(m, motion) + (1 - d) * write(obs), with a per-slot decay d
  (learned by default) and no transformer over the memory. It gets Kinaema's correction step so that it can
  move its memory with the robot too; without it the baseline would be handicapped by design, not by its
  update rule. (1 - d) scales the write so the memory stays a convex average and cannot grow.
- TruncatedHistoryTransformer: keeps the token sets and poses of the last `window` frames; the query head
  attends over all their tokens, each tagged with the frame's pose relative to now.
- FullHistoryTransformer: the same over every frame; state and query cost grow linearly with T.
- KeyframeRetrieval: non-parametric; stores each frame's pooled, normalised embedding and its pose; answers
  with the cosine nearest neighbour's pose relative to now, confidence = similarity. Nothing to train.

History models integrate the odometry into a pose (x, y, yaw) in the episode's start frame; the pose of a
stored frame relative to now is computed at query time (`se2_relative`), so the answer is in the current
base frame like every other model's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import Tensor, nn

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.interface import (
    HistoryState,
    MemoryConfig,
    MemoryModel,
    QueryOutput,
    check_fraction,
    check_positive,
    planar_features,
    se2_compose,
    se2_relative,
)
from spatial_memory.memory.kinaema import Correction, OdometryEncoder, QueryHead
from spatial_memory.memory.layers import CrossBlock

# ---------------------------------------------------------------------------------------------------------
# GRU


@dataclass(frozen=True)
class GRUConfig(MemoryConfig):
    hidden: int = 256  # state size; read by the query head as hidden / context_dim tokens
    input_dim: int = 256
    context_dim: int = 128
    heads: int = 4
    odometry_frequencies: int = 4
    odometry_scale: float = 0.25
    query_layers: int = 1
    query_hidden: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "hidden", "input_dim", "context_dim", "heads", "odometry_frequencies")
        check_positive(self, "query_layers", "query_hidden")
        if self.hidden % self.context_dim or self.context_dim % self.heads:
            raise ConfigError("GRUConfig: hidden must be a multiple of context_dim, context_dim of heads")
        if not self.odometry_scale > 0:
            raise ConfigError("GRUConfig.odometry_scale must be > 0")
        check_fraction(self, "dropout")


class GRUMemory(MemoryModel):
    name = "gru"

    def __init__(self, config: GRUConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GRUConfig()
        self.h0 = nn.Parameter(torch.zeros(config.hidden))
        self.obs = nn.Linear(config.tokens_per_frame * config.token_dim, config.input_dim)
        self.odometry = OdometryEncoder(config.input_dim, config.odometry_frequencies, config.odometry_scale)
        self.cell = nn.GRUCell(config.input_dim, config.hidden)
        self.head = QueryHead(
            config, config.context_dim, config.heads, config.query_layers, config.query_hidden, config.dropout
        )

    def init_state(self, batch: int) -> Tensor:
        _check_batch(batch)
        return self.h0.expand(batch, -1).clone()

    def _update(self, state: Tensor, tokens: Tensor, odometry: Tensor) -> Tensor:
        _check_tensor_state(state, (self.config.hidden,), "GRUMemory")
        x = F.gelu(self.obs(tokens.flatten(1))) + self.odometry(odometry)
        return self.cell(x, state)

    def _query(self, state: Tensor, query_tokens: Tensor) -> QueryOutput:
        _check_tensor_state(state, (self.config.hidden,), "GRUMemory")
        context = state.view(state.shape[0], -1, self.config.context_dim)
        return self.head(query_tokens, context)


# ---------------------------------------------------------------------------------------------------------
# EMA


@dataclass(frozen=True)
class EMAConfig(MemoryConfig):
    slots: int = 64
    dim: int = 128
    heads: int = 4
    decay: float = 0.9  # initial (or fixed) per-slot decay
    learn_decay: bool = True
    odometry_frequencies: int = 4
    odometry_scale: float = 0.25
    correction_hidden: int = 256
    query_layers: int = 1
    query_hidden: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "slots", "dim", "heads", "odometry_frequencies", "correction_hidden")
        check_positive(self, "query_layers", "query_hidden")
        if self.dim % self.heads:
            raise ConfigError(f"EMAConfig.dim {self.dim} must be divisible by heads {self.heads}")
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"EMAConfig.decay must be in (0, 1), got {self.decay}")
        if not self.odometry_scale > 0:
            raise ConfigError("EMAConfig.odometry_scale must be > 0")
        check_fraction(self, "dropout")


class EMAMemory(MemoryModel):
    name = "ema"

    def __init__(self, config: EMAConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EMAConfig()
        E = config.dim
        self.memory_init = nn.Parameter(torch.randn(config.slots, E) * 0.02)
        self.write_queries = nn.Parameter(torch.randn(config.slots, E) * 0.02)
        self.write = CrossBlock(E, config.heads, context_dim=config.token_dim, dropout=config.dropout)
        self.odometry = OdometryEncoder(E, config.odometry_frequencies, config.odometry_scale)
        self.correction = Correction(E, config.correction_hidden)
        logit = torch.full((config.slots, 1), math.log(config.decay / (1.0 - config.decay)))
        self.decay_logit = nn.Parameter(logit, requires_grad=config.learn_decay)
        self.head = QueryHead(
            config, E, config.heads, config.query_layers, config.query_hidden, config.dropout
        )

    def init_state(self, batch: int) -> Tensor:
        _check_batch(batch)
        return self.memory_init.expand(batch, -1, -1).clone()

    def _update(self, state: Tensor, tokens: Tensor, odometry: Tensor) -> Tensor:
        _check_tensor_state(state, (self.config.slots, self.config.dim), "EMAMemory")
        old = self.correction(state, self.odometry(odometry))
        new = self.write(self.write_queries.expand(tokens.shape[0], -1, -1), tokens)
        decay = torch.sigmoid(self.decay_logit)
        return decay * old + (1.0 - decay) * new

    def _query(self, state: Tensor, query_tokens: Tensor) -> QueryOutput:
        _check_tensor_state(state, (self.config.slots, self.config.dim), "EMAMemory")
        return self.head(query_tokens, state)


# ---------------------------------------------------------------------------------------------------------
# history transformers (truncated and full)


@dataclass(frozen=True)
class HistoryTransformerConfig(MemoryConfig):
    dim: int = 128
    heads: int = 4
    query_layers: int = 2  # cross-attention blocks of the query over the stored tokens
    query_hidden: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "dim", "heads", "query_layers", "query_hidden")
        if self.dim % self.heads:
            raise ConfigError(f"{type(self).__name__}.dim {self.dim} must be divisible by heads {self.heads}")
        check_fraction(self, "dropout")


@dataclass(frozen=True)
class TruncatedHistoryConfig(HistoryTransformerConfig):
    window: int = 16  # frames kept

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "window")


class FullHistoryTransformer(MemoryModel):
    """Attention over every stored frame's tokens, each tagged with its pose relative to now."""

    name = "full"

    def __init__(self, config: HistoryTransformerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or HistoryTransformerConfig()
        self.frame_proj = nn.Linear(config.token_dim, config.dim)
        self.pose_embed = nn.Sequential(
            nn.Linear(4, config.dim), nn.GELU(), nn.Linear(config.dim, config.dim)
        )
        self.head = QueryHead(
            config, config.dim, config.heads, config.query_layers, config.query_hidden, config.dropout
        )

    @property
    def window(self) -> int | None:
        return None

    def init_state(self, batch: int) -> HistoryState:
        ref = self.frame_proj.weight
        return _empty_history(batch, (self.config.tokens_per_frame, self.config.token_dim), ref)

    def _update(self, state: HistoryState, tokens: Tensor, odometry: Tensor) -> HistoryState:
        return _append(state, tokens, odometry, self.window)

    def _query(self, state: HistoryState, query_tokens: Tensor) -> QueryOutput:
        _check_history(state)
        relative = se2_relative(state.pose[:, None, :], state.poses)  # (B, T, 3) stored frames seen from now
        tags = self.pose_embed(planar_features(relative, self.config.position_scale))  # (B, T, E)
        context = self.frame_proj(state.frames) + tags[:, :, None, :]  # (B, T, K, E)
        return self.head(query_tokens, context.flatten(1, 2))


class TruncatedHistoryTransformer(FullHistoryTransformer):
    """FullHistoryTransformer over the last `config.window` frames only: state and cost stop growing."""

    name = "truncated"

    def __init__(self, config: TruncatedHistoryConfig | None = None) -> None:
        super().__init__(config or TruncatedHistoryConfig())

    @property
    def window(self) -> int | None:
        return self.config.window


# ---------------------------------------------------------------------------------------------------------
# keyframe retrieval


@dataclass(frozen=True)
class KeyframeConfig(MemoryConfig):
    seen_threshold: float = 0.8  # cosine similarity at which seen_logit crosses zero
    seen_sharpness: float = 20.0  # seen_logit = sharpness * (similarity - threshold)
    # planar pose (x, y, yaw of the optical axis) of the camera in the base frame: answers are camera poses
    # (as memory.poses.planar_target defines them), stored poses are base poses
    camera_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pose_mode != "planar":
            raise ConfigError("KeyframeRetrieval answers planar poses only (odometry is planar)")
        if not -1.0 <= self.seen_threshold <= 1.0 or not self.seen_sharpness > 0:
            raise ConfigError("KeyframeConfig: seen_threshold must be in [-1, 1] and seen_sharpness > 0")
        if len(self.camera_offset) != 3 or not all(math.isfinite(v) for v in self.camera_offset):
            raise ConfigError(f"KeyframeConfig.camera_offset must be 3 finite numbers: {self.camera_offset}")


class KeyframeRetrieval(MemoryModel):
    """Nearest stored frame by cosine similarity of mean-pooled tokens; its camera pose relative to now."""

    name = "keyframes"

    def __init__(self, config: KeyframeConfig | None = None) -> None:
        super().__init__()
        self.config = config or KeyframeConfig()
        self.register_buffer("_ref", torch.zeros(()), persistent=False)  # device and dtype of new states

    def init_state(self, batch: int) -> HistoryState:
        return _empty_history(batch, (self.config.token_dim,), self._ref)

    def _update(self, state: HistoryState, tokens: Tensor, odometry: Tensor) -> HistoryState:
        return _append(state, _pooled(tokens), odometry, None)

    def _query(self, state: HistoryState, query_tokens: Tensor) -> QueryOutput:
        _check_history(state)
        similarity = torch.einsum("bd,btd->bt", _pooled(query_tokens), state.frames)
        best_sim, best = similarity.max(dim=1)
        best_pose = torch.gather(state.poses, 1, best[:, None, None].expand(-1, 1, 3))[:, 0]
        camera = torch.tensor(self.config.camera_offset, dtype=best_pose.dtype, device=best_pose.device)
        relative = se2_relative(state.pose, se2_compose(best_pose, camera.expand_as(best_pose)))
        c = best_sim.clamp(1e-4, 1.0 - 1e-4)
        seen_logit = self.config.seen_sharpness * (best_sim - self.config.seen_threshold)
        return QueryOutput(planar_features(relative), torch.log((1.0 - c) / c), seen_logit)


# ---------------------------------------------------------------------------------------------------------
# helpers


def _check_batch(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidInputError(f"batch must be a positive integer, got {batch!r}")


def _check_tensor_state(state: Tensor, tail: tuple[int, ...], owner: str) -> None:
    if not isinstance(state, Tensor) or tuple(state.shape[1:]) != tail:
        got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
        raise InvalidInputError(f"{owner} state must have shape (B, {', '.join(map(str, tail))}), got {got}")


def _check_history(state: HistoryState) -> None:
    if not isinstance(state, HistoryState):
        raise InvalidInputError(f"expected a HistoryState, got {type(state).__name__}")
    if state.length == 0:
        raise InvalidInputError("no frame stored yet: update the memory before querying it")


def _empty_history(batch: int, frame_shape: tuple[int, ...], ref: Tensor) -> HistoryState:
    _check_batch(batch)
    kw = {"device": ref.device, "dtype": ref.dtype}
    return HistoryState(
        frames=torch.zeros(batch, 0, *frame_shape, **kw),
        poses=torch.zeros(batch, 0, 3, **kw),
        pose=torch.zeros(batch, 3, **kw),
    )


def _append(state: HistoryState, frame: Tensor, odometry: Tensor, window: int | None) -> HistoryState:
    """Move to the new pose, then store the frame taken there (dropping the oldest beyond `window`)."""
    if not isinstance(state, HistoryState) or tuple(state.frames.shape[2:]) != tuple(frame.shape[1:]):
        raise InvalidInputError("state is not a history state of this model")
    pose = se2_compose(state.pose, odometry)
    frames = torch.cat([state.frames, frame[:, None]], dim=1)
    poses = torch.cat([state.poses, pose[:, None]], dim=1)
    if window is not None and frames.shape[1] > window:
        frames, poses = frames[:, -window:], poses[:, -window:]
    return HistoryState(frames=frames, poses=poses, pose=pose)


def _pooled(tokens: Tensor) -> Tensor:
    return F.normalize(tokens.mean(dim=1), dim=-1)
