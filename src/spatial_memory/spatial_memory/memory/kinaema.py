"""Kinaema: a recurrent transformer memory of N embeddings that answers relative-pose queries.

After Sariyildiz et al., "Kinaema: a recurrent sequence model for memory and pose in motion" (NeurIPS 2025).
No code was published; only the figure-level design is known (N x E latent memory; observation and odometry
encoded and integrated through a correction step, contextualised by a transformer block, then embedding-wise
gating). The details below are our choices, each explained where it is made.

One update, in order (cost O(N + K) per step whatever the episode length):
  1. correction: the memory is moved with the robot. The motion since the last step is embedded (Fourier
     features of dx, dy, sin/cos dyaw -> MLP) and every slot gets a residual MLP of [its own content + the
     motion embedding]. Each slot thus transforms what it stores according to its content (a slot that holds
     "a door 2 m ahead" can learn to become "a door 1.5 m ahead, 10 degrees left") rather than sharing one
     global shift.
  2. contextualise: pre-norm transformer block(s) over [memory + slot ids; observation tokens; motion token];
     only the memory outputs are kept (then LayerNorm, which bounds the candidate memory).
  3. embedding-wise gate: each slot decides how fast it changes, g = sigmoid(w . [m_old; m_new] + b), one
     scalar per slot, and m = g * m_new + (1 - g) * m_old, with m_old the corrected memory. The bias starts
     negative so slots begin slow-changing (stable training over long episodes, the paper's goal G3).

Query: the query image's tokens plus a learned read-out token run a block with self-attention among
themselves and cross-attention to the memory; the read-out token gives the pose, a log-sigma (confidence)
and a "seen" logit. The state is the memory itself: N * E * 4 bytes, constant.

Anchored slots (`anchors=True`, our addition; the paper's memory is purely latent): each slot also carries a
planar pose, its anchor, in the current base frame. The correction step moves anchors exactly (anchor <-
odometry^-1 o anchor), so the network never has to learn SE(2) composition. Anchors are embedded (Fourier
features) into the slot's tokens, so the transformer and the query see where each slot's content was
observed. The gate mixes anchors as it mixes contents: a slot that takes g of the new observation moves its
anchor g of the way to the robot (positions linearly, headings on the unit circle). The query head reads
softmax weights over slots from its read-out token and answers the weighted anchor composed with a learned
residual (the query picture was taken near, not at, what the slot saw). State: N * (E + 3) floats, constant.

Recall ring (`recall=R > 0`, with anchors; ours): the latent slots learn slowly what to keep, and with a
CPU training budget they learn to answer from the state alone (the picture control of `memory.evaluate`
shows every learned memory here ignoring the query picture). The ring gives the read-out something it can
match a picture against from the first step: a written frame's key (a learned projection of its mean
token, unit length) and its anchor (the robot, pose 0) overwrite the oldest of R ring entries; ring
anchors move exactly with odometry like slot anchors. The query's key (same projection) scores each entry
by temperature * cosine, and those scores join the slots' in one softmax over candidate anchors. The ring
is a fixed-size keyframe buffer. State: (N + R + 1) * (E + 3) floats (one row counts steps and writes),
constant.

Which frames are written (`recall_write`): 'clock' writes every `recall_every` steps (our first design).
Live, a robot that stood still for 40 s filled the ring and, through the slots updated every step, the
whole memory with one view; every later answer was that view, whatever the picture. 'novelty' (the
default) writes a frame only when the robot has moved `novelty_move_m` or turned `novelty_turn_deg` from
the newest entry (read exactly from its anchor), or when its key is less similar than
`novelty_max_cosine` to every entry (the scene changed, or the robot was carried); with `slot_update =
'novelty'` the slots take only those frames too, so standing still changes nothing. Which entry a write
replaces once the ring is full (`recall_evict`): 'oldest' keeps the recent past (a robot that toured one
end of a house for long forgets the other end); 'redundant' replaces the entry whose nearest neighbour
(position in units of `novelty_move_m`, heading in units of `novelty_turn_deg`) is closest, so the ring
keeps covering every place it saw, however long ago. `recall_sharpness` multiplies the learned key
temperature when answering: the softmax trained over nearby candidates averages anchors of look-alike
places (a wall in the kitchen, one in the hall), and a sharper read-out answers the best match instead;
it changes no weight and is chosen on validation worlds. With `sigma_spread` the reported sigma also
holds how far from the answer the ring's candidates lie (softmax at the trained temperature): a picture
that matches look-alike places in several rooms gets a wide sigma, one place a narrow one. With
`recall_confidence` the seen logit and the sigma also read the best cosine between the query and the
ring: learned affine terms trained by the same losses. `readout` ('slots' or 'ring') answers from one kind
of candidate only: an ablation of one trained model. `sigma_scale` multiplies the reported sigma after a
calibration on validation worlds (`memory.evaluate.calibrate_sigma`).

Auxiliary masked-image modelling (MIM), to force the memory to hold what it saw: for a frame seen `lag` steps
ago, a random `mask_ratio` of its patches is hidden; queries (patch position + lag embedding) cross-attend to
[memory; the frame's visible patch tokens] and reconstruct the hidden patches' PIXELS (per-patch normalised,
as in MAE). Pixels, not encoder tokens, because the encoder trains jointly: token targets can collapse (a
constant encoder reconstructs itself perfectly), pixel targets cannot. With mask_ratio = 1 only the memory
is available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import Tensor, nn

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.interface import (
    MemoryConfig,
    MemoryModel,
    QueryOutput,
    check_fraction,
    check_positive,
    count_parameters,
    se2_relative,
)
from spatial_memory.memory.layers import Block, CrossBlock

RECALL_WRITES = ("clock", "novelty")
RECALL_EVICTS = ("oldest", "redundant")
SLOT_UPDATES = ("always", "novelty")
READOUTS = ("both", "slots", "ring")


@dataclass(frozen=True)
class KinaemaConfig(MemoryConfig):
    """Sizes of the memory, its update, query head and MIM head.

    The defaults are the shipped design (anchored slots, a 256-entry recall ring written by novelty, slots
    updated by the frames the ring takes, ring-match confidence); `anchors=False, recall=0, gate_bias=-1` is
    the purely latent memory of the paper's figure, kept for comparison. Without a ring (recall=0) the ring
    settings (recall_write, slot_update, recall_confidence, readout) have no effect: every frame updates
    the slots.
    """

    slots: int = 64  # N memory embeddings
    dim: int = 128  # E; the state is slots * dim * 4 bytes (32 KiB)
    heads: int = 4
    layers: int = 1  # transformer blocks per update
    odometry_frequencies: int = 4  # Fourier octaves of the odometry features
    odometry_scale: float = 0.25  # metres; a typical per-step translation
    correction_hidden: int = 256
    gate_bias: float = -2.0  # initial gate bias: sigmoid(-2) = 0.12, slots start slow-changing
    query_layers: int = 1
    query_hidden: int = 128
    mim_weight: float = 0.5  # the trainer adds mim_weight * mim_loss to the query loss
    mim_mask_ratio: float = 0.75
    mim_max_lag: int = 16  # frames up to this many steps back can be reconstructed
    num_patches: int = 64  # the encoder's patch count (build_model fills it in)
    patch_pixel_dim: int = 192  # 3 * patch_size**2 of the encoder (build_model fills it in)
    dropout: float = 0.0
    anchors: bool = True  # slots carry a pose moved exactly by odometry (module docstring); state N x (E+3)
    anchor_scale: float = 1.0  # metres; the unit of the anchors' Fourier features
    residual_scale: float = 1.0  # metres; the unit of the query's offset from the attended anchors
    recall: int = 256  # recall-ring entries (module docstring); 0 = none; needs anchors
    recall_every: int = 3  # 'clock' writes: steps between ring writes (the ring covers recall * every steps)
    recall_write: str = (
        "novelty"  # 'clock': every recall_every steps; 'novelty': when moved or the view is new
    )
    novelty_move_m: float = 0.3  # 'novelty': write once the robot is this far from the newest entry...
    novelty_turn_deg: float = 20.0  # ...or has turned this much from it...
    novelty_max_cosine: float = 0.9  # ...or the frame's key is less similar than this to every entry
    recall_evict: str = (
        "oldest"  # a write to a full ring replaces: 'oldest', or 'redundant' (module docstring)
    )
    recall_sharpness: float = 1.0  # x the learned key temperature when answering (1: as trained)
    sigma_spread: bool = False  # the reported sigma adds the spread of the ring's candidates (module doc)
    slot_update: str = "novelty"  # 'always': slots take every frame; 'novelty': only frames the ring takes
    recall_confidence: bool = True  # seen logit and sigma also read how well the query matches the ring
    readout: str = "both"  # candidates of the answer: 'both', or for ablations 'slots' or 'ring' only
    sigma_scale: float = 1.0  # calibration of the reported sigma, fitted after training (`calibrate_sigma`)

    # What a saved config that predates a field meant: checkpoints written before novelty writes existed
    # were trained with clock writes, slots updated every step and no ring-match confidence. The registry
    # fills these in for fields a saved config lacks, so an old file keeps its meaning under new defaults.
    ABSENT_MEANS: ClassVar[dict[str, Any]] = {
        "recall_write": "clock",
        "slot_update": "always",
        "recall_confidence": False,
        "readout": "both",
        "sigma_scale": 1.0,
        "recall_evict": "oldest",
        "recall_sharpness": 1.0,
        "sigma_spread": False,
    }

    @property
    def state_rows(self) -> int:
        """Rows of the state: the slots, plus the ring's entries and its step counter."""
        return self.slots + (self.recall + 1 if self.recall else 0)

    @property
    def state_dim(self) -> int:
        """Floats per slot in the state: the embedding, plus (x, y, yaw) with anchors."""
        return self.dim + 3 if self.anchors else self.dim

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(
            self, "slots", "dim", "heads", "layers", "odometry_frequencies", "correction_hidden",
            "query_layers", "query_hidden", "mim_max_lag", "num_patches", "patch_pixel_dim",
        )  # fmt: skip
        if self.dim % self.heads:
            raise ConfigError(f"KinaemaConfig.dim {self.dim} must be divisible by heads {self.heads}")
        if not self.odometry_scale > 0 or not self.mim_weight >= 0:
            raise ConfigError("KinaemaConfig.odometry_scale must be > 0 and mim_weight >= 0")
        if not isinstance(self.anchors, bool):
            raise ConfigError(f"KinaemaConfig.anchors must be true or false, got {self.anchors!r}")
        if not self.anchor_scale > 0 or not self.residual_scale > 0:
            raise ConfigError("KinaemaConfig.anchor_scale and residual_scale must be > 0")
        if isinstance(self.recall, bool) or not isinstance(self.recall, int) or self.recall < 0:
            raise ConfigError(f"KinaemaConfig.recall must be an integer >= 0, got {self.recall!r}")
        check_positive(self, "recall_every")
        if self.recall and not self.anchors:
            raise ConfigError("KinaemaConfig.recall entries are anchored: it needs anchors=True")
        if not isinstance(self.recall_confidence, bool):
            raise ConfigError(
                f"KinaemaConfig.recall_confidence must be true or false, got {self.recall_confidence!r}"
            )
        scale = self.sigma_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 < scale < math.inf:
            raise ConfigError(f"KinaemaConfig.sigma_scale must be a finite number > 0, got {scale!r}")
        if self.readout not in READOUTS or (self.readout != "both" and not self.recall):
            raise ConfigError(
                f"KinaemaConfig.readout must be one of {READOUTS} ('slots'/'ring' need recall > 0)"
            )
        if self.recall_write not in RECALL_WRITES:
            raise ConfigError(
                f"KinaemaConfig.recall_write must be one of {RECALL_WRITES}, got {self.recall_write!r}"
            )
        if self.recall_evict not in RECALL_EVICTS or (
            self.recall_evict == "redundant" and self.recall_write != "novelty"
        ):
            raise ConfigError(
                f"KinaemaConfig.recall_evict must be one of {RECALL_EVICTS} ('redundant' needs recall_write "
                f"'novelty'), got {self.recall_evict!r}"
            )
        sharp = self.recall_sharpness
        if isinstance(sharp, bool) or not isinstance(sharp, (int, float)) or not 0.0 < sharp < math.inf:
            raise ConfigError(f"KinaemaConfig.recall_sharpness must be a finite number > 0, got {sharp!r}")
        if not isinstance(self.sigma_spread, bool) or (self.sigma_spread and not self.recall):
            raise ConfigError(
                "KinaemaConfig.sigma_spread must be true or false (true needs recall > 0), "
                f"got {self.sigma_spread!r}"
            )
        if self.slot_update not in SLOT_UPDATES:
            raise ConfigError(
                f"KinaemaConfig.slot_update must be one of {SLOT_UPDATES}, got {self.slot_update!r}"
            )
        if self.recall and self.slot_update == "novelty" and self.recall_write != "novelty":
            raise ConfigError(
                "KinaemaConfig.slot_update 'novelty' follows the ring's novelty writes: it needs "
                "recall_write 'novelty'"
            )
        for name in ("novelty_move_m", "novelty_turn_deg"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < math.inf:
                raise ConfigError(f"KinaemaConfig.{name} must be a finite number > 0, got {value!r}")
        c = self.novelty_max_cosine
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not -1.0 <= c <= 1.0:
            raise ConfigError(f"KinaemaConfig.novelty_max_cosine must be within [-1, 1], got {c!r}")
        if self.anchors and self.pose_mode != "planar":
            raise ConfigError("KinaemaConfig.anchors holds planar poses: pose_mode must be 'planar'")
        check_fraction(self, "mim_mask_ratio", low_open=True)
        check_fraction(self, "dropout")
        if not math.isfinite(self.gate_bias):
            raise ConfigError(f"KinaemaConfig.gate_bias must be finite, got {self.gate_bias}")


# ---------------------------------------------------------------------------------------------------------
# pieces Kinaema is made of (the baselines reuse OdometryEncoder, Correction and QueryHead, so that they
# differ from Kinaema only in how the memory is updated)


class OdometryEncoder(nn.Module):
    """(B, 3) (dx, dy, dyaw) -> (B, E) motion embedding via Fourier features and an MLP."""

    def __init__(self, dim: int, frequencies: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.register_buffer("octaves", (2.0 ** torch.arange(frequencies)) * math.pi, persistent=False)
        n_in = 4 + 8 * frequencies
        self.mlp = nn.Sequential(nn.Linear(n_in, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, odometry: Tensor) -> Tensor:
        dyaw = odometry[:, 2:3]
        f = torch.cat([odometry[:, :2] / self.scale, torch.sin(dyaw), 1.0 - torch.cos(dyaw)], dim=-1)
        angles = f[:, :, None] * self.octaves  # (B, 4, F)
        feats = torch.cat([f, torch.sin(angles).flatten(1), torch.cos(angles).flatten(1)], dim=-1)
        return self.mlp(feats)


class Correction(nn.Module):
    """Move the memory with the robot: m + MLP(LN(m) + motion), per slot (see the module docstring)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, memory: Tensor, motion: Tensor) -> Tensor:
        return memory + self.mlp(self.norm(memory) + motion[:, None, :])


class SlotGate(nn.Module):
    """Embedding-wise gate: one scalar per slot, g = sigmoid(w . [m_old; m_new] + b)."""

    def __init__(self, dim: int, bias: float) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, 1)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.constant_(self.proj.bias, bias)

    def forward(self, old: Tensor, new: Tensor) -> Tensor:
        return torch.sigmoid(self.proj(torch.cat([old, new], dim=-1)))  # (B, N, 1)


class QueryHead(nn.Module):
    """Query tokens + a read-out token attend to a context (memory slots or stored frames) -> QueryOutput."""

    def __init__(
        self, config: MemoryConfig, dim: int, heads: int, layers: int, hidden: int, dropout: float
    ) -> None:
        super().__init__()
        self.pose_mode = config.pose_mode
        self.position_scale = config.position_scale
        self.proj = nn.Linear(config.token_dim, dim)
        self.readout = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, cross=True, dropout=dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, config.pose_dim + 2))

    def forward(self, query_tokens: Tensor, context: Tensor) -> QueryOutput:
        raw = self.out(self.read(query_tokens, context))
        pose, log_sigma, seen_logit = raw[:, :-2], raw[:, -2], raw[:, -1]
        return QueryOutput(self._pose(pose), self._log_sigma(log_sigma), seen_logit)

    def read(self, query_tokens: Tensor, context: Tensor) -> Tensor:
        """The read-out token (B, dim) after attending to the query tokens and the context."""
        x = torch.cat([self.readout.expand(query_tokens.shape[0], -1, -1), self.proj(query_tokens)], dim=1)
        for block in self.blocks:
            x = block(x, context)
        return self.norm(x[:, 0])

    def _pose(self, raw: Tensor) -> Tensor:
        """Positions in metres; planar headings as a unit (sin, cos) pair; se3 rotations as raw 6D."""
        if self.pose_mode == "planar":
            return torch.cat([raw[:, :2] * self.position_scale, F.normalize(raw[:, 2:4], dim=-1)], dim=-1)
        return torch.cat([raw[:, :3] * self.position_scale, raw[:, 3:]], dim=-1)

    def _log_sigma(self, raw: Tensor) -> Tensor:
        """log sigma in metres, softly bounded to scale * e^[-4, 4] so the Gaussian NLL cannot blow up."""
        return math.log(self.position_scale) + 4.0 * torch.tanh(raw / 4.0)


class AnchoredReadout(nn.Module):
    """Answer = (softmax-weighted anchor of the slots) o (learned residual), see the module docstring."""

    def __init__(self, dim: int, residual_scale: float) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.residual_scale = residual_scale

    def forward(
        self,
        read: Tensor,
        raw_pose: Tensor,
        context: Tensor,
        anchors: Tensor,
        more: tuple[Tensor, Tensor] | None = None,
        slots: bool = True,
    ) -> Tensor:
        """read (B, E) read-out token, raw_pose (B, 4), context (B, N, E) slot tokens, anchors (B, N, 3);
        `more`: (logits (B, R), anchors (B, R, 3)) of further candidates (the recall ring's); `slots=False`
        leaves the slots' candidates out (the 'ring only' ablation; needs `more`)."""
        logits = torch.einsum("be,bne->bn", self.q(read), self.k(context)) / math.sqrt(read.shape[-1])
        if more is not None and not slots:
            logits, anchors = more
        elif more is not None:
            logits, anchors = torch.cat([logits, more[0]], dim=1), torch.cat([anchors, more[1]], dim=1)
        xy_c, unit_c = anchors[..., :2], _unit(anchors[..., 2])
        w = torch.softmax(logits, dim=-1)[..., None]  # (B, N [+ R], 1)
        xy = (w * xy_c).sum(1)
        base = F.normalize((w * unit_c).sum(1), dim=-1, eps=1e-6)  # (sin, cos)
        # the residual starts at the identity: its heading is normalise(raw + (0, 1))
        res_xy = raw_pose[:, :2] * self.residual_scale
        res = F.normalize(raw_pose[:, 2:4] + raw_pose.new_tensor([0.0, 1.0]), dim=-1)
        s, c = base[:, 0:1], base[:, 1:2]
        x = xy[:, 0:1] + c * res_xy[:, 0:1] - s * res_xy[:, 1:2]
        y = xy[:, 1:2] + s * res_xy[:, 0:1] + c * res_xy[:, 1:2]
        sin = s * res[:, 1:2] + c * res[:, 0:1]
        cos = c * res[:, 1:2] - s * res[:, 0:1]
        return torch.cat([x, y, sin, cos], dim=-1)


def _unit(yaw: Tensor) -> Tensor:
    """(...) angles -> (..., 2) (sin, cos)."""
    return torch.stack([torch.sin(yaw), torch.cos(yaw)], dim=-1)


class MIMDecoder(nn.Module):
    """Reconstruct masked patches of a past frame from [memory; its visible patch tokens]."""

    def __init__(self, config: KinaemaConfig) -> None:
        super().__init__()
        E = config.dim
        self.pos = nn.Parameter(torch.randn(config.num_patches, E) * 0.02)
        self.lag = nn.Embedding(config.mim_max_lag + 1, E)
        self.visible = nn.Linear(config.token_dim, E)
        self.block = CrossBlock(E, config.heads, dropout=config.dropout)
        self.norm = nn.LayerNorm(E)
        self.out = nn.Linear(E, config.patch_pixel_dim)

    def forward(self, memory: Tensor, visible_patches: Tensor, masked_idx: Tensor, lag: Tensor) -> Tensor:
        queries = self.pos[masked_idx] + self.lag(lag)[:, None, :]  # (B, M, E)
        context = torch.cat([memory, self.visible(visible_patches)], dim=1)
        return self.out(self.norm(self.block(queries, context)))


def _mix_anchors(anchors: Tensor, g: Tensor) -> Tensor:
    """Gate the anchors toward the robot (pose 0) as the contents are gated toward the observation: positions
    by (1 - g), headings on the unit circle."""
    keep = 1.0 - g  # (B, N, 1)
    xy = keep * anchors[..., :2]
    sin = keep[..., 0] * torch.sin(anchors[..., 2])
    cos = keep[..., 0] * torch.cos(anchors[..., 2]) + g[..., 0]
    return torch.cat([xy, torch.atan2(sin, cos)[..., None]], dim=-1)


# ---------------------------------------------------------------------------------------------------------
# the model


class Kinaema(MemoryModel):
    """Recurrent latent memory: state (B, N, E), O(1) update and query in the episode length."""

    name = "kinaema"

    def __init__(self, config: KinaemaConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or KinaemaConfig()
        E = config.dim
        self.memory_init = nn.Parameter(torch.randn(config.slots, E) * 0.02)
        self.slot_ids = nn.Parameter(torch.randn(config.slots, E) * 0.02)
        self.odometry = OdometryEncoder(E, config.odometry_frequencies, config.odometry_scale)
        self.correction = Correction(E, config.correction_hidden)
        self.obs_proj = nn.Linear(config.token_dim, E)
        self.type_embed = nn.Parameter(torch.randn(2, E) * 0.02)  # 0: observation token, 1: motion token
        self.blocks = nn.ModuleList(
            [Block(E, config.heads, dropout=config.dropout) for _ in range(config.layers)]
        )
        self.norm = nn.LayerNorm(E)
        self.gate = SlotGate(E, config.gate_bias)
        self.head = QueryHead(
            config, E, config.heads, config.query_layers, config.query_hidden, config.dropout
        )
        self.mim = MIMDecoder(config)
        if config.anchors:
            self.anchor_embed = OdometryEncoder(E, config.odometry_frequencies, config.anchor_scale)
            self.anchor_readout = AnchoredReadout(E, config.residual_scale)
        if config.recall:
            self.key_proj = nn.Linear(config.token_dim, E)
            self.key_log_temperature = nn.Parameter(torch.tensor(math.log(20.0)))
        if config.recall and config.recall_confidence:
            # (scale, centre) of the best ring match, for the seen logit and for sigma
            self.match_seen = nn.Parameter(torch.tensor([10.0, 0.8]))
            self.match_sigma = nn.Parameter(torch.tensor([5.0, 0.8]))

    def init_state(self, batch: int) -> Tensor:
        """The learned initial memory, (batch, N, E)."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInputError(f"batch must be a positive integer, got {batch!r}")
        memory = self.memory_init.expand(batch, -1, -1)
        if self.config.anchors:  # every slot starts anchored at the robot
            memory = torch.cat([memory, memory.new_zeros(batch, self.config.slots, 3)], dim=-1)
        if self.config.recall:  # an empty ring (zero keys) and a step counter at 0
            memory = torch.cat([memory, memory.new_zeros(batch, self.config.recall + 1, memory.shape[-1])], 1)
        return memory.clone()

    def update_with_gates(self, state: Tensor, tokens: Tensor, odometry: Tensor) -> tuple[Tensor, Tensor]:
        """Like `update`, also returning the gates (B, N, 1), for analysis and tests."""
        self.check_update(state, tokens, odometry)
        return self._step(state, tokens, odometry.to(tokens.dtype))

    def _update(self, state: Tensor, tokens: Tensor, odometry: Tensor) -> Tensor:
        return self._step(state, tokens, odometry)[0]

    def _step(self, state: Tensor, tokens: Tensor, odometry: Tensor) -> tuple[Tensor, Tensor]:
        self._check_state(state)
        N = self.config.slots
        ring, wrote = self._ring_step(state, tokens, odometry) if self.config.recall else (None, None)
        content, anchors = self._split(state)
        motion = self.odometry(odometry)  # (B, E)
        old = self.correction(content, motion)  # 1. correction
        slots, obs = old + self.slot_ids, self.obs_proj(tokens) + self.type_embed[0]
        if anchors is not None:  # anchors move exactly; contents and observation learn where they are
            anchors = se2_relative(odometry[:, None, :], anchors)
            slots = slots + self._embed_anchors(anchors)
            obs = obs + self._embed_anchors(anchors.new_zeros(anchors.shape[0], 1, 3))
        x = torch.cat([slots, obs, (motion + self.type_embed[1])[:, None, :]], dim=1)  # 2. contextualise
        for block in self.blocks:
            x = block(x)
        new = self.norm(x[:, :N])
        g = self.gate(old, new)  # 3. embedding-wise gate
        if wrote is not None and self.config.slot_update == "novelty":
            # a frame the ring did not take (nothing new: the robot stood still, the view is the same)
            # leaves the contents alone; the anchors still move exactly with the odometry
            g = g * wrote[:, None, None]
            old = torch.where(wrote[:, None, None] > 0, old, content)
        content = g * new + (1.0 - g) * old
        if anchors is None:
            return content, g
        slots_out = torch.cat([content, _mix_anchors(anchors, g)], dim=-1)
        return (slots_out if ring is None else torch.cat([slots_out, ring], dim=1)), g

    def _split(self, state: Tensor) -> tuple[Tensor, Tensor | None]:
        """The slots' (contents (B, N, E), anchors (B, N, 3) or None)."""
        slots = state[:, : self.config.slots]
        if not self.config.anchors:
            return slots, None
        return slots[..., : self.config.dim], slots[..., self.config.dim :]

    def _ring(self, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The recall ring's keys (B, R, E), anchors (B, R, 3) and step counter (B,)."""
        N, R, E = self.config.slots, self.config.recall, self.config.dim
        ring = state[:, N : N + R]
        return ring[..., :E], ring[..., E:], state[:, N + R, 0]

    def _key(self, tokens: Tensor) -> Tensor:
        """(B, K, D) tokens -> (B, E) unit key of the frame (ring entries and queries alike)."""
        return F.normalize(self.key_proj(tokens.mean(1)), dim=-1, eps=1e-6)

    def _ring_step(self, state: Tensor, tokens: Tensor, odometry: Tensor) -> tuple[Tensor, Tensor]:
        """Move the ring's anchors with the odometry; write this frame's key, anchored at the robot, over the
        oldest entry when due (`recall_write`); count the step and the writes. Returns the ring rows
        (B, R+1, E+3) and whether this frame was written (B,) as 0/1."""
        R, every = self.config.recall, self.config.recall_every
        keys, anchors, counter = self._ring(state)
        writes = state[:, self.config.slots + R, 1]
        anchors = se2_relative(odometry[:, None, :], anchors)
        key = self._key(tokens)
        if self.config.recall_write == "clock":
            step = counter.round().long()  # the ring is part of the state: the counter is a float there
            write = (step % every == 0).to(keys.dtype)  # (B,)
            index = (step // every) % R
        else:
            newest = self._newest(state)
            write = self._novel(keys, anchors, writes, newest, key).to(keys.dtype)
            index = writes.round().long() % R
            if self.config.recall_evict == "redundant":
                index = torch.where(writes.round().long() < R, index, self._most_redundant(anchors))
        m = (F.one_hot(index, R).to(keys.dtype) * write[:, None])[..., None]  # (B, R, 1)
        keys = (1.0 - m) * keys + m * key[:, None, :]
        anchors = (1.0 - m) * anchors  # a written entry is anchored at the robot (pose 0)
        count = torch.zeros_like(state[:, -1:])
        count[..., 0] = (counter + 1.0)[:, None]
        count[..., 1] = (writes + write)[:, None]
        if self.config.recall_write == "novelty":  # where the newest entry is (read by `_novel`)
            newest_now = torch.where(write > 0, index, self._newest(state)).to(keys.dtype)
            count[..., 2] = newest_now[:, None]
        return torch.cat([torch.cat([keys, anchors], dim=-1), count], dim=1), write

    def without_newest(self, state: Tensor, count: int) -> Tensor:
        """A copy of `state` whose ring has its `count` newest entries emptied (nothing else changed): what
        the memory held before the robot's last few metres. The lost check (`memory.lost`) asks it where
        the current view is; the full state would answer from the entries just written on the way here.
        The ring is written in order only with 'oldest' evictions; with 'redundant' ones the state is
        returned as it is."""
        cfg = self.config
        if not cfg.recall or count <= 0 or cfg.recall_evict != "oldest" or cfg.recall_write != "novelty":
            return state
        N, R, E = cfg.slots, cfg.recall, cfg.dim
        writes = state[:, N + R, 1].round().long()  # (B,)
        index = torch.arange(R, device=state.device)
        age = torch.remainder(writes[:, None] - 1 - index[None, :], R)  # 0 = the newest entry
        recent = (age < count) & (index[None, :] < writes[:, None])  # (B, R)
        out = state.clone()
        out[:, N : N + R, :E] = out[:, N : N + R, :E] * (~recent)[..., None].to(state.dtype)
        return out

    def _newest(self, state: Tensor) -> Tensor:
        """(B,) long: the ring index of the newest entry. With 'oldest' evictions it follows from the write
        count; with 'redundant' ones the counter row keeps it (column 2)."""
        N, R = self.config.slots, self.config.recall
        if self.config.recall_evict == "oldest":
            return (state[:, N + R, 1].round().long() - 1) % R
        return state[:, N + R, 2].round().long() % R

    def _most_redundant(self, anchors: Tensor) -> Tensor:
        """(B,) long: the entry of a full ring whose nearest other entry is closest, distances measured in
        novelty units (position / novelty_move_m, heading / novelty_turn_deg): the one whose loss costs the
        ring the least coverage."""
        cfg = self.config
        xy = anchors[..., :2] / cfg.novelty_move_m
        d_xy = torch.cdist(xy, xy)  # (B, R, R)
        d_yaw = (
            torch.remainder(anchors[..., None, 2] - anchors[..., None, :, 2] + math.pi, 2 * math.pi) - math.pi
        )
        d = torch.hypot(d_xy, d_yaw / math.radians(cfg.novelty_turn_deg))
        d = d + torch.eye(cfg.recall, dtype=d.dtype, device=d.device) * 1e9  # not its own neighbour
        return d.amin(dim=2).argmin(dim=1)

    def _novel(self, keys: Tensor, anchors: Tensor, writes: Tensor, newest: Tensor, key: Tensor) -> Tensor:
        """(B,) bool: is this frame worth a ring entry? Yes for the first frame, once the robot has moved
        `novelty_move_m` or turned `novelty_turn_deg` from the newest entry, or when the frame's key is less
        similar than `novelty_max_cosine` to every entry (the scene changed, or the robot was carried
        somewhere else). A robot standing still in front of an unchanged scene writes nothing, so the ring
        keeps what it saw before, however long it stands."""
        cfg = self.config
        n = writes.round().long()
        newest = anchors[torch.arange(anchors.shape[0]), newest]  # (B, 3)
        moved = torch.hypot(newest[:, 0], newest[:, 1]) >= cfg.novelty_move_m
        turned = newest[:, 2].abs() >= math.radians(cfg.novelty_turn_deg)
        similarity = torch.einsum("be,bre->br", key, keys)
        similarity = similarity.masked_fill(keys.abs().sum(-1) == 0, -2.0).amax(dim=1)
        return (n == 0) | moved | turned | (similarity < cfg.novelty_max_cosine)

    def _recalled(self, state: Tensor, query_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (B, R) of the ring entries for a query (temperature * cosine; empty entries -inf) and their
        anchors (B, R, 3)."""
        keys, anchors, _ = self._ring(state)
        cos = torch.einsum("be,bre->br", self._key(query_tokens), keys)
        logits = self.key_log_temperature.exp() * self.config.recall_sharpness * cos
        empty = keys.abs().sum(-1) == 0
        return logits.masked_fill(empty, float("-inf")), anchors

    def _best_match(self, state: Tensor, query_tokens: Tensor) -> Tensor:
        """(B,) the highest cosine between the query's key and a ring entry (-1 for an empty ring).
        Computed apart from `_recalled`: its -inf logits would make the gradient NaN through the max."""
        keys = self._ring(state)[0]
        cos = torch.einsum("be,bre->br", self._key(query_tokens), keys)
        return cos.masked_fill(keys.abs().sum(-1) == 0, -1.0).amax(dim=1)

    def _embed_anchors(self, anchors: Tensor) -> Tensor:
        B, N = anchors.shape[:2]
        return self.anchor_embed(anchors.reshape(B * N, 3)).view(B, N, -1)

    def _context(self, state: Tensor) -> tuple[Tensor, Tensor | None]:
        """What the query and MIM heads read: slot contents (with their anchors embedded), and the anchors."""
        content, anchors = self._split(state)
        if anchors is None:
            return content, None
        return content + self._embed_anchors(anchors), anchors

    def _query(self, state: Tensor, query_tokens: Tensor) -> QueryOutput:
        self._check_state(state)
        context, anchors = self._context(state)
        if anchors is None:
            return self.head(query_tokens, context)
        read = self.head.read(query_tokens, context)
        raw = self.head.out(read)
        more = self._recalled(state, query_tokens) if self.config.recall else None
        readout = self.config.readout  # 'slots' / 'ring': ablations of one trained model
        ring = None if readout == "slots" else more
        pose = self.anchor_readout(
            read, raw[:, :4], context, anchors, ring, slots=readout != "ring" or more is None
        )
        log_sigma, seen_logit = raw[:, -2], raw[:, -1]
        if self.config.recall_confidence and more is not None:
            # How well the picture matches anything the ring holds: a picture of a place the ring saw has a
            # near neighbour (cosine near 1), a new place or a blank picture does not. Learned affine terms,
            # so the seen logit and sigma are calibrated by the same losses as before.
            best = self._best_match(state, query_tokens)
            seen_logit = seen_logit + self.match_seen[0] * (best - self.match_seen[1])
            log_sigma = log_sigma - self.match_sigma[0] * (best - self.match_sigma[1])
        log_sigma = self.head._log_sigma(log_sigma)
        if self.config.sigma_spread and more is not None:
            log_sigma = 0.5 * torch.log(torch.exp(2.0 * log_sigma) + self._spread(more, pose))
        log_sigma = log_sigma + math.log(self.config.sigma_scale)
        return QueryOutput(pose, log_sigma, seen_logit)

    def _spread(self, recalled: tuple[Tensor, Tensor], pose: Tensor) -> Tensor:
        """(B,) m^2: how far from the answer the ring's candidates lie, weighted by the softmax at the trained
        temperature: the mean squared distance of their anchors from the answer's position. Small when the
        picture matches entries of one place; large when look-alike places elsewhere match it about as well
        (the sharp read-out then picks one, and may pick wrong). Zero for an empty ring."""
        logits, anchors = recalled
        logits = logits / self.config.recall_sharpness
        any_entry = torch.isfinite(logits).any(dim=1)
        w = torch.softmax(logits.masked_fill(~any_entry[:, None], 0.0), dim=1)
        d2 = ((anchors[..., :2] - pose[:, None, :2]) ** 2).sum(-1)
        return torch.where(any_entry, (w * d2).sum(1), torch.zeros_like(d2[:, 0]))

    def _check_state(self, state: Tensor) -> None:
        want = (self.config.state_rows, self.config.state_dim)
        if not isinstance(state, Tensor) or state.dim() != 3 or tuple(state.shape[1:]) != want:
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise InvalidInputError(f"Kinaema state must have shape (B, {want[0]}, {want[1]}), got {got}")

    # -- auxiliary masked-image modelling ------------------------------------------------------------------

    def reconstruct(self, state: Tensor, visible_patches: Tensor, masked_idx: Tensor, lag: Tensor) -> Tensor:
        """Predicted pixels (B, M, patch_pixel_dim) of the patches at `masked_idx` (B, M) of a frame seen
        `lag` (B,) steps ago, from the memory and that frame's visible patch tokens (B, P - M, D)."""
        self._check_state(state)
        return self.mim(self._context(state)[0], visible_patches, masked_idx, lag)

    def mim_loss(
        self, state: Tensor, patches: Tensor, target_pixels: Tensor, lag: Tensor | int,
        generator: torch.Generator | None = None,
    ) -> Tensor:  # fmt: skip
        """Mean squared error of reconstructed masked patches of a past frame (unweighted: the trainer
        multiplies by `config.mim_weight`).

        patches: (B, P, D) that frame's patch tokens (`EncodedFrame.patches`); target_pixels: (B, P, 3*p*p)
        from `ImageEncoder.patch_pixels`; lag: steps between that frame and `state` (0..mim_max_lag).
        """
        B, P = patches.shape[:2]
        cfg = self.config
        if tuple(patches.shape[1:]) != (cfg.num_patches, cfg.token_dim) or patches.shape[0] != state.shape[0]:
            raise InvalidInputError(
                f"patches must be (B, {cfg.num_patches}, {cfg.token_dim}), got {tuple(patches.shape)}"
            )
        if tuple(target_pixels.shape) != (B, P, cfg.patch_pixel_dim):
            raise InvalidInputError(
                f"target_pixels must be ({B}, {P}, {cfg.patch_pixel_dim}), got {tuple(target_pixels.shape)}"
            )
        lag = torch.as_tensor(lag, device=patches.device).long().expand(B)
        if lag.min() < 0 or lag.max() > cfg.mim_max_lag:
            raise InvalidInputError(f"lag must be in [0, {cfg.mim_max_lag}], got {lag.tolist()}")
        n_masked = max(1, round(cfg.mim_mask_ratio * P))
        noise_device = generator.device if generator is not None else patches.device
        noise = torch.rand(B, P, generator=generator, device=noise_device).to(patches.device)
        order = noise.argsort(dim=1)
        masked_idx, visible_idx = order[:, :n_masked], order[:, n_masked:]
        visible = torch.gather(patches, 1, visible_idx[..., None].expand(-1, -1, patches.shape[-1]))
        target = torch.gather(target_pixels, 1, masked_idx[..., None].expand(-1, -1, target_pixels.shape[-1]))
        return F.mse_loss(self.reconstruct(state, visible, masked_idx, lag), target)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters by part: the update, the query head, the training-only MIM head, and the total."""
        mim, head = count_parameters(self.mim), count_parameters(self.head)
        total = count_parameters(self)
        return {"update": total - mim - head, "query": head, "mim": mim, "total": total}
