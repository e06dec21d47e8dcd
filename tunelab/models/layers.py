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


def rnn_layers(cell: str, input_size: int, hidden: int, layers: int) -> nn.ModuleList:
    """L stacked ``nn.GRU``/``nn.LSTM`` (batch_first), one module per layer so every layer's
    output can reach the head (``run_rnn_layers(skip=True)``)."""
    rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
    return nn.ModuleList(
        rnn_cls(input_size if i == 0 else hidden, hidden, batch_first=True) for i in range(layers)
    )


def run_rnn_layers(
    rnns: nn.ModuleList,
    drop: nn.Module,
    h: torch.Tensor,
    state: list | None,
    skip: bool,
    weight_drop: float = 0.0,
) -> tuple[torch.Tensor, list]:
    """Run the layers of ``rnn_layers`` over h [B, T, In], dropout after each.

    state: per layer h [B, H] (GRU) or (h, c) (LSTM) to start from (None: zeros).
    weight_drop: DropConnect on each layer's hidden-to-hidden matrix (AWD-LSTM's weight drop):
    one mask per call, so every sequence and time step of the batch loses the same recurrent
    connections. It regularises the recurrence itself, which dropout between layers cannot
    reach, without touching the fast cuDNN/oneDNN kernels. Pass 0 outside training.
    Returns (the head's input: every layer's output [B, T, L*H] with ``skip``, else the last
    layer's [B, T, H]; the state after the last position, same layout as ``state``).
    """
    outs, new = [], []
    for i, rnn in enumerate(rnns):
        lstm = isinstance(rnn, nn.LSTM)
        h0 = None
        if state is not None:
            s = state[i]
            h0 = (s[0][None], s[1][None]) if lstm else s[None]
        if weight_drop > 0:
            w = nn.functional.dropout(rnn.weight_hh_l0, weight_drop, training=True)
            h, hn = torch.func.functional_call(rnn, {"weight_hh_l0": w}, (h, h0))
        else:
            h, hn = rnn(h, h0)
        new.append((hn[0][0], hn[1][0]) if lstm else hn[0])
        h = drop(h)
        outs.append(h)
    return (torch.cat(outs, dim=-1) if skip else h), new


def stft_magnitude(
    x: torch.Tensor, n: int, center: bool = False, min_mag: float = 1e-7
) -> torch.Tensor:
    """|STFT| of x [B, L] (Hann window n, hop n/4; ``center``: reflect-padded by n/2),
    floored at ``min_mag``: FloatTensor[B, n/2 + 1, frames]."""
    w = torch.hann_window(n, dtype=x.dtype, device=x.device)
    s = torch.stft(x, n, n // 4, window=w, center=center, return_complex=True)
    return s.abs().clamp(min=min_mag)


def stft_distance(
    a: torch.Tensor,
    b: torch.Tensor,
    sizes: list[int],
    floor: float = 0.0,
    center: bool = False,
    min_mag: float = 1e-7,
) -> torch.Tensor:
    """Multi-resolution STFT distance of a to b, FloatTensor[B, L] each -> [B].

    Per resolution n, with magnitudes A, B (``stft_magnitude``): spectral convergence
    ||B - A||_F / ||B||_F plus mean |log(B + e) - log(A + e)| (Yamamoto et al., Parallel
    WaveGAN, 2020); the mean over the resolutions. Without ``center``, a resolution longer
    than L is left out (ValueError when none fits). ``floor``: e is the magnitude that white
    noise of RMS ``floor`` gets in a bin (floor * ||window||), so bins quieter than that
    noise count as silent; 0: e is ``min_mag``, the floor of every magnitude and of ||B||."""
    terms = []
    for n in sizes:
        if not center and n > a.shape[-1]:
            continue
        A = stft_magnitude(a, n, center, min_mag)
        Bm = stft_magnitude(b, n, center, min_mag)
        sc = torch.linalg.norm((Bm - A).flatten(1), dim=1)
        sc = sc / torch.linalg.norm(Bm.flatten(1), dim=1).clamp(min=min_mag)
        e = floor * (3 * n / 8) ** 0.5  # ||hann(n)||: the bin magnitude of unit white noise
        if e > 0:
            A, Bm = A + e, Bm + e
        terms.append(sc + (Bm.log() - A.log()).abs().flatten(1).mean(dim=1))
    if not terms:
        raise ValueError(f"no STFT size in {sizes} fits a window of {a.shape[-1]} samples")
    return torch.stack(terms).mean(dim=0)
