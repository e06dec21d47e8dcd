"""The few building blocks the model families share.

Rotary positions (RoPE) are computed from the absolute position on the fly, so
there is no table and no hard limit on sequence length; only relative offsets
survive the dot product q·k, which is what lets a sliding key/value window work.
"""

from __future__ import annotations

import torch
from torch import nn


def rotary_cos_sin(
    positions: torch.Tensor, dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for rotary embeddings. positions: LongTensor[T] -> (FloatTensor[T, dim/2] x2).

    Angles are computed in float64 so far-away positions (long generations) keep
    their precision before the cast.
    """
    inv_freq = base ** (
        -torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim
    )
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :d/2], x[..., d/2:]). x: [B, H, T, D]; cos/sin: [T, D/2]."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # no-ops in fp32; keeps bf16/fp16 under autocast
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class MLP(nn.Module):
    """Position-wise feed-forward block: Linear -> GELU -> Linear -> Dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., dim] -> [..., dim]"""
        return self.drop(self.proj(nn.functional.gelu(self.fc(x))))
