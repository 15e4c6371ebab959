"""Transformer pieces shared by the encoder, Kinaema and the baselines: attention, MLP and pre-norm blocks.

Written small on purpose (nanoGPT-like): attention goes through `scaled_dot_product_attention`, which picks
the fastest kernel torch has for the device, and every block is pre-LayerNorm with residuals, which keeps
recurrent updates stable over long episodes.
"""

from __future__ import annotations

import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention of `x` over `context` (self-attention when context is None)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        B, L, E = x.shape
        q = self.q(x).view(B, L, self.heads, E // self.heads).transpose(1, 2)
        k, v = (
            self.kv(context).view(B, context.shape[1], 2, self.heads, E // self.heads).permute(2, 0, 3, 1, 4)
        )
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, L, E))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int = 4, dropout: float = 0.0, out_dim: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, ratio * dim),
            nn.GELU(),
            nn.Linear(ratio * dim, out_dim or dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, then optional cross-attention to a context, then MLP."""

    def __init__(
        self, dim: int, heads: int, context_dim: int | None = None, cross: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout=dropout)
        self.cross = None
        if cross:
            self.norm_x = nn.LayerNorm(dim)
            self.norm_c = nn.LayerNorm(context_dim or dim)
            self.cross = Attention(dim, heads, context_dim, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dropout=dropout)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x))
        if self.cross is not None:
            if context is None:
                raise ValueError("a cross-attention block needs a context")
            x = x + self.cross(self.norm_x(x), self.norm_c(context))
        return x + self.mlp(self.norm2(x))


class CrossBlock(nn.Module):
    """Pre-norm cross-attention only (no self-attention), then MLP: learned queries reading a context."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_x = nn.LayerNorm(dim)
        self.norm_c = nn.LayerNorm(context_dim or dim)
        self.cross = Attention(dim, heads, context_dim, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dropout=dropout)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.cross(self.norm_x(x), self.norm_c(context))
        return x + self.mlp(self.norm2(x))
