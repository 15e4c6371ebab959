"""The image encoder every memory model reads through: a small CNN, then a learned token compression.

Why this shape: the memory runs on a CPU budget, so images are low resolution (64x64 by default) and a
three-stage strided CNN turns them into a grid of patch tokens (8x8 = 64 by default) in a few milliseconds on
one core. Feeding 64 tokens per frame into the memory would make every update expensive, so K learned query
tokens cross-attend to the patch tokens and keep only K of them (in the spirit of AstraNav-Memory's learned
compression; the ratio P/K is the `tokens_per_frame` setting). The uncompressed patch tokens are returned as
well: Kinaema's masked-image-modelling loss uses the visible ones as context.

The encoder is trained with the memory. A user may start from their own pretrained CNN weights with
`load_backbone(path)` (a local state-dict file; nothing is ever downloaded).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.interface import check_positive
from spatial_memory.memory.layers import CrossBlock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderConfig:
    """Image size, CNN widths (each stage halves the resolution), token width and compression."""

    image_size: int = 64  # square RGB input, pixels
    widths: tuple[int, ...] = (32, 64, 128)  # channels per stride-2 stage: 64 px -> 8x8 patch grid
    token_dim: int = 128  # D
    tokens_per_frame: int = 8  # K: 64 patch tokens compressed 8:1
    heads: int = 4  # of the compression cross-attention
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_positive(self, "image_size", "token_dim", "tokens_per_frame", "heads")
        if not self.widths or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths
        ):
            raise ConfigError(f"EncoderConfig.widths must be positive integers, got {self.widths!r}")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"image_size {self.image_size} must be divisible by 2**len(widths) = {self.patch_size}"
            )
        if self.tokens_per_frame > self.num_patches:
            raise ConfigError(
                f"tokens_per_frame {self.tokens_per_frame} exceeds the {self.num_patches} patch tokens"
            )
        if self.token_dim % self.heads:
            raise ConfigError(f"token_dim {self.token_dim} must be divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def patch_size(self) -> int:
        """Pixels per patch side: each stride-2 stage doubles it."""
        return 2 ** len(self.widths)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2

    @property
    def patch_pixel_dim(self) -> int:
        return 3 * self.patch_size**2


class EncodedFrame(NamedTuple):
    """tokens: (B, K, D) compressed tokens the memory reads; patches: (B, P, D) the patch tokens before it."""

    tokens: Tensor
    patches: Tensor


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    """One stride-2 stage: two 3x3 convolutions with GroupNorm (batch-size independent) and GELU."""
    groups = 8 if c_out % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.GroupNorm(groups, c_out),
        nn.GELU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.GroupNorm(groups, c_out),
        nn.GELU(),
    )


class ImageEncoder(nn.Module):
    """(B, 3, H, W) images, uint8 in [0, 255] or float in [0, 1] -> EncodedFrame."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EncoderConfig()
        chans = (3, *config.widths)
        self.backbone = nn.Sequential(*[_stage(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.to_tokens = nn.Conv2d(config.widths[-1], config.token_dim, 1)
        self.patch_pos = nn.Parameter(torch.randn(config.num_patches, config.token_dim) * 0.02)
        self.queries = nn.Parameter(torch.randn(config.tokens_per_frame, config.token_dim) * 0.02)
        self.compress = CrossBlock(config.token_dim, config.heads, dropout=config.dropout)
        self.norm = nn.LayerNorm(config.token_dim)

    def forward(self, images: Tensor) -> EncodedFrame:
        x = self._as_float(images)
        features = self.to_tokens(self.backbone((x - 0.5) / 0.25))  # (B, D, g, g)
        patches = features.flatten(2).transpose(1, 2) + self.patch_pos  # (B, P, D), row-major over the grid
        queries = self.queries.expand(x.shape[0], -1, -1)
        tokens = self.norm(self.compress(queries, patches))
        return EncodedFrame(tokens=tokens, patches=patches)

    def _as_float(self, images: Tensor) -> Tensor:
        """Check shape and values; uint8 is scaled to [0, 1]."""
        size = self.config.image_size
        if not isinstance(images, Tensor):
            raise InvalidInputError(f"images must be a tensor, got {type(images).__name__}")
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InvalidInputError(
                f"images must have shape (B, 3, {size}, {size}), got {tuple(images.shape)}"
            )
        if images.dtype == torch.uint8:
            return images.float() / 255.0
        if not images.is_floating_point():
            raise InvalidInputError(f"images must be uint8 or float, got {images.dtype}")
        if not torch.isfinite(images).all():
            raise InvalidInputError("images contain NaN or infinite values")
        return images

    def patch_pixels(self, images: Tensor) -> Tensor:
        """(B, P, 3*p*p) pixel patches, each normalised to zero mean and unit variance (MAE targets).

        Same row-major patch order as `EncodedFrame.patches`.
        """
        x = self._as_float(images)
        B, g, p = x.shape[0], self.config.grid, self.config.patch_size
        patches = x.reshape(B, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(B, g * g, 3 * p * p)
        mean = patches.mean(-1, keepdim=True)
        var = patches.var(-1, keepdim=True)
        return (patches - mean) / (var + 1e-6).sqrt()

    def load_backbone(self, path: str | Path) -> None:
        """Load CNN weights (keys as in `self.backbone.state_dict()`) from a local file; refuse mismatches."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"backbone file {path} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            raise InvalidInputError(f"cannot read backbone weights from {path}: {exc}") from exc
        if isinstance(state, Mapping) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise InvalidInputError(f"{path} holds a {type(state).__name__}, not a state dict")
        problems = state_dict_mismatch(self.backbone.state_dict(), state)
        if problems:
            raise InvalidInputError(
                f"backbone weights in {path} do not fit EncoderConfig {self.config}: {problems}"
            )
        bad = nonfinite_entries(state)
        if bad:
            raise InvalidInputError(f"backbone weights in {path} hold NaN or infinite values ({bad})")
        self.backbone.load_state_dict(state)
        logger.info("loaded backbone weights from %s", path)


def state_dict_mismatch(expected: Mapping[str, Tensor], given: Mapping[str, object]) -> str:
    """A readable list of missing, unexpected and wrongly shaped entries ('' when they fit)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [
        f"{k}: {tuple(getattr(given[k], 'shape', ()))} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and (not isinstance(given[k], Tensor) or given[k].shape != v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
    if unexpected:
        parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    if shapes:
        parts.append(f"wrong shapes {shapes[:5]}")
    return "; ".join(parts)


def nonfinite_entries(state: Mapping[str, object]) -> str:
    """The entries of a state dict holding NaN or infinite values, as a short readable list ('' when none):
    such weights answer NaN for every input, so loaders refuse them."""
    bad = sorted(
        k
        for k, v in state.items()
        if isinstance(v, Tensor) and (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()
    )
    return f"{bad[:5]}{'...' if len(bad) > 5 else ''}" if bad else ""
