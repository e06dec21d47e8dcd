"""bfloat16 dot products (``tunelab.models.fused_bf16``): the packed layout, and both matmuls
(the AVX-512 BF16 one where the CPU has it, the plain loops everywhere) against float32
math on the rounded inputs, at every remainder of the register tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunelab.models.fused import round_bf16
from tunelab.models.fused_bf16 import (
    HAS_DPBF16,
    matmul_dot,
    matmul_dot_plain,
    pack_dot,
    round_pairs,
)

SHAPES = [
    (1, 16, 2),
    (1, 64, 9),
    (1, 320, 128),
    (2, 64, 7),
    (3, 100, 33),
    (5, 80, 256),
    (8, 256, 128),
]


def _reference(X: torch.Tensor, W: torch.Tensor) -> np.ndarray:
    return (round_bf16(X).double() @ round_bf16(W).double().T).float().numpy()


def test_pack_dot_layout():
    W = torch.arange(3 * 17 * 5, dtype=torch.float32).reshape(3, 17, 5)  # exact in bfloat16
    p = pack_dot(W)
    assert p.shape == (3, 2, 3, 16, 2) and p.dtype == np.uint16
    as_float = torch.from_numpy(p.astype(np.int32) << 16).view(torch.float32)
    assert as_float[1, 1, 2, 0, 0] == W[1, 16, 4]  # block 1, lane 0 = output 16; pair 2 = input 4
    assert as_float[1, 1, 2, 0, 1] == 0  # input 5 does not exist: padded
    assert as_float[2, 0, 1, 3, 1] == W[2, 3, 3]
    assert (as_float[:, 1, :, 1:] == 0).all()  # outputs 17..31: padded


def test_round_pairs_rounds_as_torch_does():
    X = torch.randn(3, 9) * torch.logspace(-3, 3, 9)
    X[0, 0] = 1 + 2**-8  # a tie: to even (1.0)
    X[0, 1] = 1 + 3 * 2**-8  # a tie: to even (1 + 2**-6)
    Xb = np.full((4, 6), 7, np.uint32)  # a wider scratch: only [:3, :5] is written
    round_pairs(X.numpy(), Xb, 5)
    assert (Xb[3] == 7).all() and (Xb[:, 5] == 7).all()
    bits = Xb[:3, :5].astype(np.int64)
    lo = torch.from_numpy(((bits & 0xFFFF) << 16).astype(np.int32)).view(torch.float32)
    hi = torch.from_numpy(((bits >> 16) << 16).astype(np.int32)).view(torch.float32)
    got = torch.stack([lo, hi], -1).flatten(1)[:, :9]
    torch.testing.assert_close(got, round_bf16(X), rtol=0, atol=0)
    assert got[0, 0] == 1.0 and got[0, 1] == 1 + 2**-6


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_plain_matmul_equals_float32_math_on_rounded_inputs(m, n, k):
    torch.manual_seed(m * n + k)
    X, W = torch.randn(m, k), torch.randn(n, k) / k**0.5
    Z = np.full((m, n), np.nan, np.float32)
    matmul_dot_plain(X.numpy(), pack_dot(W), Z, np.empty((m, k), np.uint32))
    np.testing.assert_allclose(Z, _reference(X, W), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not HAS_DPBF16, reason="this CPU has no AVX-512 BF16")
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_dot_instruction_matmul_equals_float32_math_on_rounded_inputs(m, n, k):
    torch.manual_seed(m * n + k)
    X, W = torch.randn(m, k), torch.randn(n, k) / k**0.5
    Z = np.full((m, n), np.nan, np.float32)
    matmul_dot(X.numpy(), pack_dot(W), Z, np.empty((m + 1, k), np.uint32))
    np.testing.assert_allclose(Z, _reference(X, W), rtol=1e-5, atol=1e-5)
