"""Shared building blocks: rotary positions keep only relative offsets, stacked RNN layers
chain exactly across a cut in the sequence, and weight drop touches the recurrence only."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tunelab.models.layers import MLP, apply_rotary, rnn_layers, rotary_cos_sin, run_rnn_layers


def _rotate(x, positions):
    cos, sin = rotary_cos_sin(torch.as_tensor(positions), x.shape[-1])
    return apply_rotary(x, cos, sin)


def test_rotary_keeps_norms_and_only_the_offset_survives_q_dot_k():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)
    dots = [(_rotate(q, [m]) * _rotate(k, [m - 3])).sum().item() for m in (3, 10, 5000)]
    assert dots == pytest.approx([dots[0]] * 3, rel=1e-4)
    other = (_rotate(q, [50]) * _rotate(k, [10])).sum().item()  # another offset, another dot
    assert abs(other - dots[0]) > 0.05
    torch.testing.assert_close(_rotate(q, [123456]).norm(), q.norm())
    torch.testing.assert_close(_rotate(q, [0]), q)  # position 0 is no rotation


def test_far_positions_keep_their_precision():
    cos, sin = rotary_cos_sin(torch.tensor([10_000_019]), 8)
    want = [10_000_019 * 10000.0 ** (-i / 8) for i in range(0, 8, 2)]
    assert cos[0].tolist() == pytest.approx([math.cos(a) for a in want], abs=1e-6)
    assert sin[0].tolist() == pytest.approx([math.sin(a) for a in want], abs=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_layers_chain_exactly_across_a_cut(cell):
    torch.manual_seed(0)
    rnns = rnn_layers(cell, 5, 8, 3)
    assert [type(r) for r in rnns] == [nn.GRU if cell == "gru" else nn.LSTM] * 3
    x = torch.randn(2, 12, 5)
    whole, state = run_rnn_layers(rnns, nn.Identity(), x, None, skip=True)
    assert whole.shape == (2, 12, 3 * 8) and len(state) == 3
    a, mid = run_rnn_layers(rnns, nn.Identity(), x[:, :7], None, skip=True)
    b, end = run_rnn_layers(rnns, nn.Identity(), x[:, 7:], mid, skip=True)
    torch.testing.assert_close(torch.cat([a, b], dim=1), whole)
    for s, t in zip(end, state, strict=True):
        torch.testing.assert_close(s, t)
    last, _ = run_rnn_layers(rnns, nn.Identity(), x, None, skip=False)
    torch.testing.assert_close(last, whole[..., -8:])  # without skip: the last layer only


def test_weight_drop_masks_the_recurrence_for_one_call_and_trains_through_it():
    torch.manual_seed(1)
    rnns = rnn_layers("gru", 4, 16, 1)
    x = torch.randn(3, 10, 4)
    before = rnns[0].weight_hh_l0.detach().clone()
    plain, _ = run_rnn_layers(rnns, nn.Identity(), x, None, skip=False)
    dropped, _ = run_rnn_layers(rnns, nn.Identity(), x, None, skip=False, weight_drop=0.5)
    assert not torch.allclose(plain, dropped)
    torch.testing.assert_close(plain[:, 0], dropped[:, 0])  # h0 = 0: step 0 never sees W_hh
    assert torch.equal(rnns[0].weight_hh_l0, before)  # the weights themselves are untouched
    dropped.sum().backward()
    assert rnns[0].weight_hh_l0.grad is not None and rnns[0].weight_hh_l0.grad.abs().sum() > 0


def test_mlp_keeps_the_shape():
    assert MLP(8, 32)(torch.randn(2, 5, 8)).shape == (2, 5, 8)
