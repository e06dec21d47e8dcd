"""int8 weights for the fused generators: symmetric per-output-channel quantisation (the
matmuls that read them: ``fused_vnni`` for WaveNet's and SampleRNN's dot products, whose
inputs are quantised too; ``fused.matmul_i8`` for SampleRNN's GRU, whose are not).

A matrix W[n, k] becomes Q[n, k] int8 and a scale s[n] (float32), W ~ Q * s[:, None] with
s = max|W[o]| / 127: a quarter of float32's bytes, half of bfloat16's. ``matmul_i8``
converts each int8 to float32 as it loads it and keeps float32 arithmetic: the result equals
float32 math on the dequantised matrix (``round_int8``), up to the order of the sums.
"""

from __future__ import annotations

import torch


def quantise_int8(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t[..., n, k] -> (q, s): q the int8 values (as t's float dtype), s[..., n] the scales."""
    s = t.abs().amax(dim=-1) / 127.0
    s = torch.where(s > 0, s, torch.ones_like(s))  # an all-zero row: any scale, q = 0
    return torch.round(t / s[..., None]).clamp_(-127, 127), s


def round_int8(t: torch.Tensor) -> torch.Tensor:
    """t with each row dequantised from its int8 copy: the values an int8 kernel multiplies by."""
    q, s = quantise_int8(t)
    return q * s[..., None]
