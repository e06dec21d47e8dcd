"""What the fused generators share: weights rounded to bfloat16 as torch rounds them, packed
copies the kernels read (contiguous float32, or bfloat16 pairs), and the weights option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunelab.models import fused


def test_round_bf16_equals_torchs_bfloat16_rounding_in_the_input_dtype():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(64, 33, generator=g) * 10.0 ** torch.randint(-6, 6, (64, 1), generator=g)
    r = fused.round_bf16(t)
    assert r.dtype == torch.float32 and r.shape == t.shape
    assert torch.equal(r, t.to(torch.bfloat16).float())
    assert not torch.equal(r, t)  # float32 values do not all survive the rounding
    assert torch.equal(fused.round_bf16(r), r)  # rounding twice changes nothing


def test_rounded_copy_rounds_the_named_matrices_of_a_copy_only():
    torch.manual_seed(0)
    model = torch.nn.Linear(7, 5)
    before = model.weight.detach().clone()
    copy = fused.rounded_copy(model, lambda m: [m.weight])
    assert torch.equal(model.weight, before)  # the original is untouched
    assert torch.equal(copy.weight, fused.round_bf16(before))
    assert torch.equal(copy.bias, model.bias)  # not named: kept whole


def test_pack_returns_a_contiguous_float32_copy():
    t = torch.randn(6, 4, dtype=torch.float64).t()  # not contiguous, not float32
    p = fused.pack(t)
    assert p.dtype == np.float32 and p.flags["C_CONTIGUOUS"] and p.shape == (4, 6)
    np.testing.assert_array_equal(p, t.float().numpy())
    p[0, 0] = 123.0
    assert t[0, 0] != 123.0  # a copy: the kernel's array does not alias the weight


@pytest.mark.parametrize("k", [6, 7])
def test_pack_bf16_holds_the_rounded_weights_in_pairs(k):
    w = torch.randn(3, k)
    p = fused.pack(w, "bfloat16")
    h = k // 2
    assert p.dtype == np.uint32 and p.flags["C_CONTIGUOUS"] and p.shape == (3, h + k % 2)
    # high half: column j, low half: column h + j; an odd k's last column alone, high half
    halves = np.concatenate([p[:, :h] >> 16, p[:, :h] & 0xFFFF, p[:, h:] >> 16], axis=1)
    unpacked = (halves.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(unpacked, fused.round_bf16(w).numpy())
    if k % 2:
        assert np.all(p[:, h:] & 0xFFFF == 0)


def test_check_weights_names_the_choices():
    for w in ("float32", "bfloat16", "int8"):
        assert fused.check_weights(w) == w
    with pytest.raises(ValueError, match="'float32', 'bfloat16', 'int8', got 'fp16'"):
        fused.check_weights("fp16")


def test_pack_int8_holds_each_row_within_half_a_step_of_its_scale():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 5, 9, generator=g) * torch.logspace(-3, 2, 5)[:, None]  # rows of any size
    w[0, 1] = 0.0  # an all-zero row: q = 0, whatever the scale
    q, s = fused.pack(w, "int8")
    assert q.dtype == np.int8 and s.dtype == np.float32 and q.shape == (2, 5, 9)
    assert s.shape == (2, 5) and np.abs(q).max() == 127
    back = q.astype(np.float32) * s[..., None]
    np.testing.assert_array_equal(back, fused.round_int8(w).numpy())
    assert np.all(np.abs(back - w.numpy()) <= s[..., None] / 2 * (1 + 1e-6))
    assert np.all(back[0, 1] == 0)
    assert np.array_equal(np.abs(q).max(axis=-1)[s != 1], np.full((s != 1).sum(), 127))


def test_rounded_copy_takes_the_weights_it_rounds_to():
    torch.manual_seed(0)
    model = torch.nn.Linear(7, 5)
    int8 = fused.rounded_copy(model, lambda m: [m.weight], "int8")
    assert torch.equal(int8.weight, fused.round_int8(model.weight.detach()))
    assert not torch.equal(int8.weight, model.weight)
    same = fused.rounded_copy(model, lambda m: [m.weight], "float32")
    assert torch.equal(same.weight, model.weight)
