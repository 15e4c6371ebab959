"""What every memory model shares: the base class, the query answer, input checks, planar pose maths and the
query loss.

A memory model folds a stream of (observation tokens, odometry) into a state and answers "where was this
image taken, relative to me now?". Kinaema and all baselines subclass `MemoryModel`, so training, metrics and
the MemoryEngine treat them alike (`registry.build_model` makes one by name; `registry.save_checkpoint` and
`load_checkpoint` store it with its config). The state is whatever the model needs (a tensor for recurrent
models, a `HistoryState` for the models that keep their history); callers treat it as opaque and never edit
it in place.

Conventions:
- odometry is (dx, dy, dyaw) of the robot base since the previous step, expressed in the previous base frame
  (metres, radians; REP-103: x forward, y left, yaw counter-clockwise);
- a relative pose answer is the pose of the place the query image shows (the base pose at which it was taken)
  in the current base frame. 'planar' answers are (x, y, sin yaw, cos yaw); 'se3' answers are
  (x, y, z, r11, r21, r31, r12, r22, r32): the translation and the first two rotation-matrix columns (the
  continuous 6D rotation representation of Zhou et al., 2019).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import Tensor, nn

from spatial_memory.errors import ConfigError, InvalidInputError

POSE_MODES = ("planar", "se3")
POSE_DIMS = {"planar": 4, "se3": 9}


class QueryOutput(NamedTuple):
    """The answer to a batch of queries.

    pose: (B, 4) planar (x, y, sin, cos) or (B, 9) se3, see the module docstring; metres.
    log_sigma: (B,) predicted log standard deviation (metres) of the position error; lower is surer.
    seen_logit: (B,) logit that the queried place was observed at all ("not seen" when negative).
    """

    pose: Tensor
    log_sigma: Tensor
    seen_logit: Tensor

    @property
    def confidence(self) -> Tensor:
        """A (0, 1) score, 1 / (1 + sigma): 0.5 at one metre of expected error."""
        return torch.sigmoid(-self.log_sigma)

    @property
    def heading(self) -> Tensor:
        """(B,) relative yaw in radians for planar answers."""
        if self.pose.shape[-1] != POSE_DIMS["planar"]:
            raise InvalidInputError("heading is defined for planar answers only")
        return torch.atan2(self.pose[..., 2], self.pose[..., 3])


@dataclass(frozen=True)
class MemoryConfig:
    """Fields every memory model shares: the observation it reads and the answer it gives.

    token_dim and tokens_per_frame must match the image encoder's (build_model fills them in from it).
    position_scale is a typical distance in metres: heads predict positions in these units, so outputs stay
    O(1) for the network whatever the scene size.
    """

    token_dim: int = 128  # D: the encoder's token width
    tokens_per_frame: int = 8  # K: compressed tokens per image
    pose_mode: str = "planar"  # 'planar' (x, y, sin, cos) or 'se3' (xyz + 6D rotation)
    position_scale: float = 5.0  # metres; a house-sized scene

    def __post_init__(self) -> None:
        check_positive(self, "token_dim", "tokens_per_frame")
        if self.pose_mode not in POSE_MODES:
            raise ConfigError(f"pose_mode must be one of {POSE_MODES}, got {self.pose_mode!r}")
        if not self.position_scale > 0:
            raise ConfigError(f"position_scale must be > 0, got {self.position_scale}")

    @property
    def pose_dim(self) -> int:
        return POSE_DIMS[self.pose_mode]


def check_positive(config: Any, *names: str) -> None:
    """Raise ConfigError unless every named integer field is >= 1."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{type(config).__name__}.{name} must be a positive integer, got {value!r}")


def check_fraction(config: Any, name: str, low_open: bool = False) -> None:
    """Raise ConfigError unless the named field is in [0, 1) (or (0, 1] with low_open)."""
    value = getattr(config, name)
    ok = 0.0 < value <= 1.0 if low_open else 0.0 <= value < 1.0
    if not ok:
        span = "(0, 1]" if low_open else "[0, 1)"
        raise ConfigError(f"{type(config).__name__}.{name} must be in {span}, got {value!r}")


@dataclass(frozen=True)
class HistoryState:
    """State of the models that keep their observations: what is stored, and where the robot is.

    frames: (B, T, ...) stored per-frame features (token sets, or pooled embeddings for keyframes).
    poses: (B, T, 3) base pose (x, y, yaw) of each stored frame in the odometry frame of the episode start.
    pose: (B, 3) current base pose in the same frame, integrated from the odometry increments.
    """

    frames: Tensor
    poses: Tensor
    pose: Tensor

    @property
    def length(self) -> int:
        return self.frames.shape[1]


class MemoryModel(nn.Module):
    """Base class: the one interface of Kinaema and every baseline.

    Subclasses set `name` (the registry key), keep their dataclass in `self.config`, and implement
    `init_state`, `_update` and `_query`; the public `update`/`query` check inputs first, so a bad call never
    produces a corrupted state.
    """

    name: ClassVar[str] = ""
    config: MemoryConfig

    def init_state(self, batch: int) -> Any:
        raise NotImplementedError

    def update(self, state: Any, tokens: Tensor, odometry: Tensor) -> Any:
        """Fold one observation (tokens (B, K, D)) and the motion since the last step (B, 3) in."""
        self.check_update(state, tokens, odometry)
        return self._update(state, tokens, odometry.to(tokens.dtype))

    def check_update(self, state: Any, tokens: Tensor, odometry: Tensor) -> None:
        """Raise InvalidInputError unless tokens and odometry fit the config and the state's batch."""
        check_tokens(tokens, self.config, state_batch(state))
        check_odometry(odometry, tokens.shape[0])

    def query(self, state: Any, query_tokens: Tensor) -> QueryOutput:
        """Where was the image behind `query_tokens` (B, K, D) taken, relative to the robot now?"""
        check_tokens(query_tokens, self.config, state_batch(state))
        return self._query(state, query_tokens)

    def _update(self, state: Any, tokens: Tensor, odometry: Tensor) -> Any:
        raise NotImplementedError

    def _query(self, state: Any, query_tokens: Tensor) -> QueryOutput:
        raise NotImplementedError

    def state_nbytes(self, state: Any) -> int:
        """Bytes the state occupies (tensors only); constant over time for recurrent models."""
        return state_nbytes(state)

    def num_parameters(self) -> int:
        return count_parameters(self)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def state_nbytes(state: Any) -> int:
    if isinstance(state, Tensor):
        return state.numel() * state.element_size()
    if dataclasses.is_dataclass(state):
        return sum(state_nbytes(getattr(state, f.name)) for f in dataclasses.fields(state))
    if isinstance(state, (tuple, list)):
        return sum(state_nbytes(s) for s in state)
    return 0


def state_batch(state: Any) -> int:
    """Batch size of a state (the first dimension of its first tensor)."""
    if isinstance(state, Tensor):
        return state.shape[0]
    if isinstance(state, HistoryState):
        return state.pose.shape[0]
    raise InvalidInputError(f"not a memory state: {type(state).__name__}")


# ---------------------------------------------------------------------------------------------------------
# input checks


def check_tokens(tokens: Tensor, config: MemoryConfig, batch: int | None = None) -> None:
    """Observation or query tokens must be a finite float (B, K, D) tensor matching the config."""
    if not isinstance(tokens, Tensor) or not tokens.is_floating_point():
        raise InvalidInputError(f"tokens must be a float tensor, got {type(tokens).__name__}")
    want = (config.tokens_per_frame, config.token_dim)
    if tokens.dim() != 3 or tuple(tokens.shape[1:]) != want:
        raise InvalidInputError(
            f"tokens must have shape (B, {want[0]}, {want[1]}), got {tuple(tokens.shape)}"
        )
    if batch is not None and tokens.shape[0] != batch:
        raise InvalidInputError(f"tokens have batch {tokens.shape[0]} but the memory state has batch {batch}")
    if not torch.isfinite(tokens).all():
        raise InvalidInputError("tokens contain NaN or infinite values")


def check_odometry(odometry: Tensor, batch: int) -> None:
    """Odometry must be a finite (B, 3) tensor of (dx, dy, dyaw)."""
    if not isinstance(odometry, Tensor) or not odometry.is_floating_point():
        raise InvalidInputError(f"odometry must be a float tensor, got {type(odometry).__name__}")
    if tuple(odometry.shape) != (batch, 3):
        raise InvalidInputError(
            f"odometry must have shape ({batch}, 3) = (dx, dy, dyaw), got {tuple(odometry.shape)}"
        )
    if not torch.isfinite(odometry).all():
        raise InvalidInputError("odometry contains NaN or infinite values")


# ---------------------------------------------------------------------------------------------------------
# planar (SE(2)) pose maths on (..., 3) tensors of (x, y, yaw)


def wrap_angle(angle: Tensor) -> Tensor:
    """Angles wrapped to [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2.0 * math.pi) - math.pi


def se2_compose(a: Tensor, b: Tensor) -> Tensor:
    """a ∘ b: pose b, given in frame a, expressed in a's parent frame (integrates one odometry step)."""
    cos, sin = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    x = a[..., 0] + cos * b[..., 0] - sin * b[..., 1]
    y = a[..., 1] + sin * b[..., 0] + cos * b[..., 1]
    return torch.stack([x, y, wrap_angle(a[..., 2] + b[..., 2])], dim=-1)


def se2_relative(a: Tensor, b: Tensor) -> Tensor:
    """a⁻¹ ∘ b: pose b expressed in frame a (both given in the same parent frame)."""
    cos, sin = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    dx, dy = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    x = cos * dx + sin * dy
    y = -sin * dx + cos * dy
    return torch.stack([x, y, wrap_angle(b[..., 2] - a[..., 2])], dim=-1)


def planar_features(pose: Tensor, position_scale: float = 1.0) -> Tensor:
    """(x, y, yaw) -> (x / scale, y / scale, sin yaw, cos yaw): the planar answer layout."""
    xy = pose[..., :2] / position_scale
    return torch.cat([xy, torch.sin(pose[..., 2:3]), torch.cos(pose[..., 2:3])], dim=-1)


# ---------------------------------------------------------------------------------------------------------
# the query loss, shared by every trained model


def query_loss(output: QueryOutput, target: Tensor, seen: Tensor | None = None) -> dict[str, Tensor]:
    """Relative-pose loss of a batch of queries; returns the terms and their sum under 'total'.

    target: (B, 3) planar (x, y, yaw) or (B, 4, 4) homogeneous poses for 'se3' answers, in the current base
    frame. seen: (B,) bool, whether the queried place was observed; pose terms use seen queries only, the
    'seen' term is a binary cross-entropy on all of them. Position: heteroscedastic Gaussian NLL with the
    predicted sigma (isotropic), so the model learns a calibrated confidence. Heading: 1 - cos of the error
    (planar) or squared error of the 6D rotation (se3).
    """
    batch = output.pose.shape[0]
    if seen is None:
        seen = torch.ones(batch, dtype=torch.bool, device=output.pose.device)
    if tuple(seen.shape) != (batch,):
        raise InvalidInputError(f"seen must have shape ({batch},), got {tuple(seen.shape)}")
    if output.pose.shape[-1] == POSE_DIMS["planar"]:
        if tuple(target.shape) != (batch, 3):
            raise InvalidInputError(f"planar targets must have shape ({batch}, 3), got {tuple(target.shape)}")
        pos_err, dims = output.pose[:, :2] - target[:, :2], 2
        rot = 1.0 - (
            output.pose[:, 2] * torch.sin(target[:, 2]) + output.pose[:, 3] * torch.cos(target[:, 2])
        )
    else:
        if tuple(target.shape) != (batch, 4, 4):
            raise InvalidInputError(f"se3 targets must have shape ({batch}, 4, 4), got {tuple(target.shape)}")
        pos_err, dims = output.pose[:, :3] - target[:, :3, 3], 3
        rot6 = target[:, :3, :2].transpose(1, 2).reshape(batch, 6)
        rot = ((output.pose[:, 3:] - rot6) ** 2).sum(-1)
    if not torch.isfinite(target).all():
        raise InvalidInputError("targets contain NaN or infinite values")
    log_sigma = output.log_sigma
    nll = 0.5 * (pos_err**2).sum(-1) * torch.exp(-2.0 * log_sigma) + dims * log_sigma
    weight = seen.to(nll.dtype)
    denom = weight.sum().clamp(min=1.0)
    terms = {
        "position_nll": (nll * weight).sum() / denom,
        "rotation": (rot * weight).sum() / denom,
        "seen": F.binary_cross_entropy_with_logits(output.seen_logit, weight),
    }
    terms["total"] = terms["position_nll"] + terms["rotation"] + terms["seen"]
    return terms
