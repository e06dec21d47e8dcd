"""int8 dot products (``tunelab.models.fused_vnni``): the packed layout, the per-row
quantisation of the inputs, and both matmuls (VNNI where the CPU has it, plain loops
everywhere) against float32 math on the dequantised inputs and weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunelab.models.fused_int8 import quantise_int8
from tunelab.models.fused_vnni import (
    HAS_VNNI,
    matmul_vnni,
    matmul_vnni_plain,
    pack_vnni,
    quantise_rows,
    round_rows_int8,
)

SHAPES = [(1, 16, 3), (1, 64, 9), (1, 320, 128), (2, 64, 7), (3, 100, 33), (5, 80, 256)]


def test_pack_vnni_layout_and_correction():
    q = (torch.arange(17 * 5, dtype=torch.float32).reshape(17, 5) * 7) % 255 - 127
    s = torch.linspace(0.5, 2.0, 17)
    w, sw, corr, fixed = pack_vnni(q, s)
    assert w.shape == (2, 2, 16, 4) and w.dtype == np.int8
    assert w[1, 1, 0, 0] == q[16, 4] and w[1, 1, 0, 1] == 0  # output 16, input 4; 5: padding
    assert w[0, 0, 3, 2] == q[3, 2] and (w[1, :, 1:] == 0).all()
    assert sw[16] == s[16] and sw[17] == 1 and corr[3] == 128 * q[3].sum() and fixed[0] == 0


def test_quantise_rows_as_the_reference_rounds():
    X = torch.randn(3, 37) * torch.logspace(-2, 2, 37)
    X[2] = 0  # an all-zero row: scale 1, every input 0
    X[0, 1] = X[0].abs().max() / 127 * 2.5  # a tie: to even (2)
    Xb = np.zeros((3, 11), np.uint32)
    quantise_rows(X.numpy(), Xb, 10, np.float32(0))
    codes = Xb[:, :10].view(np.uint8).reshape(3, 40).astype(np.int64) - 128
    s = Xb[:, 10].view(np.float32)
    got = torch.from_numpy(codes[:, :37] * s[:, None].astype(np.float64)).float()
    torch.testing.assert_close(got, round_rows_int8(X), rtol=1e-6, atol=0)
    assert (codes[:, 37:] == 0).all() and codes[0, 1] == 2 and s[2] == 1


@pytest.mark.parametrize("vnni", [False, True])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_int8_matmuls_equal_float32_math_on_dequantised_values(vnni, m, n, k):
    if vnni and not HAS_VNNI:
        pytest.skip("this CPU has no AVX-512 VNNI")
    torch.manual_seed(m * n + k)
    X, W = torch.randn(m, k), torch.randn(n, k) / k**0.5
    q, s = quantise_int8(W)
    ref = (round_rows_int8(X).double() @ (q * s[:, None]).double().T).float().numpy()
    Z = np.full((m, n), np.nan, np.float32)
    matmul = matmul_vnni if vnni else matmul_vnni_plain
    w, sw, corr, fixed = pack_vnni(q, s)
    matmul(X.numpy(), w, sw, corr, fixed[0], Z, np.zeros((m + 1, k + 2), np.uint32))
    np.testing.assert_allclose(Z, ref, rtol=1e-5, atol=1e-5)
