"""int8 weights for the fused generators: symmetric per-output-channel quantisation, and the
matmul that reads them.

A matrix W[n, k] becomes Q[n, k] int8 and a scale s[n] (float32), W ~ Q * s[:, None] with
s = max|W[o]| / 127: a quarter of float32's bytes, half of bfloat16's. Only the weights are
quantised: the kernel converts each int8 to float32 as it loads it and the arithmetic stays
float32, so activations keep their precision and the result equals float32 math on the
dequantised matrix (``round_int8``), up to the order of the sums.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

_FM = {"contract", "reassoc"}  # as tunelab.models.fused: FMA and reordered sums vectorise


def quantise_int8(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t[..., n, k] -> (q, s): q the int8 values (as t's float dtype), s[..., n] the scales."""
    s = t.abs().amax(dim=-1) / 127.0
    s = torch.where(s > 0, s, torch.ones_like(s))  # an all-zero row: any scale, q = 0
    return torch.round(t / s[..., None]).clamp_(-127, 127), s


def round_int8(t: torch.Tensor) -> torch.Tensor:
    """t with each row dequantised from its int8 copy: the values an int8 kernel multiplies by."""
    q, s = quantise_int8(t)
    return q * s[..., None]


@numba.njit(cache=True, fastmath=_FM)
def matmul_i8(X, Q, s, Z):
    """Z[m, n] = X[m, k] @ (Q[n, k] * s[n]).T: Q int8, s float32, X and Z float32.

    Like ``fused.matmul``: contiguous dot products, 4 outputs x 2 streams at a time, with the
    int8 -> float32 conversion in the loop (it vectorises: a sign extension and a convert per
    16 weights) and the scale applied once per output.
    """
    m, k = X.shape
    n = Q.shape[0]
    n4 = n - n % 4
    for j in range(0, m - m % 2, 2):
        for o in range(0, n4, 4):
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0)
            for i in range(k):
                x, y = X[j, i], X[j + 1, i]
                w0, w1 = np.float32(Q[o, i]), np.float32(Q[o + 1, i])
                w2, w3 = np.float32(Q[o + 2, i]), np.float32(Q[o + 3, i])
                a0 += x * w0
                a1 += x * w1
                a2 += x * w2
                a3 += x * w3
                b0 += y * w0
                b1 += y * w1
                b2 += y * w2
                b3 += y * w3
            Z[j, o], Z[j, o + 1] = a0 * s[o], a1 * s[o + 1]
            Z[j, o + 2], Z[j, o + 3] = a2 * s[o + 2], a3 * s[o + 3]
            Z[j + 1, o], Z[j + 1, o + 1] = b0 * s[o], b1 * s[o + 1]
            Z[j + 1, o + 2], Z[j + 1, o + 3] = b2 * s[o + 2], b3 * s[o + 3]
        for o in range(n4, n):
            a0 = b0 = np.float32(0)
            for i in range(k):
                w0 = np.float32(Q[o, i])
                a0 += X[j, i] * w0
                b0 += X[j + 1, i] * w0
            Z[j, o], Z[j + 1, o] = a0 * s[o], b0 * s[o]
    if m % 2:
        j = m - 1
        for o in range(0, n4, 4):
            a0 = a1 = a2 = a3 = np.float32(0)
            for i in range(k):
                x = X[j, i]
                a0 += x * np.float32(Q[o, i])
                a1 += x * np.float32(Q[o + 1, i])
                a2 += x * np.float32(Q[o + 2, i])
                a3 += x * np.float32(Q[o + 3, i])
            Z[j, o], Z[j, o + 1] = a0 * s[o], a1 * s[o + 1]
            Z[j, o + 2], Z[j, o + 3] = a2 * s[o + 2], a3 * s[o + 3]
        for o in range(n4, n):
            a0 = np.float32(0)
            for i in range(k):
                a0 += X[j, i] * np.float32(Q[o, i])
            Z[j, o] = a0 * s[o]
