"""Transformer: the KV cache (growing and ring buffer) equals forward(), and a sliding window
forgets what lies beyond its reach."""

from __future__ import annotations

import torch

from tests.models.test_models import V, _model, _run_steps
from tunelab.models import build_model

torch.set_num_threads(1)


def test_transformer_kv_cache_long():
    """Growing cache (window None) past its first capacity, and a ring buffer wrapped many times."""
    torch.manual_seed(0)
    for window, T in ((None, 300), (8, 45)):
        model = build_model(
            {"family": "transformer", "d_model": 8, "layers": 1, "heads": 2, "window": window}, V
        ).eval()
        x = torch.randint(0, V, (1, T))
        with torch.no_grad():
            full = model(x)
            steps = _run_steps(model, x)
        torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-5)


def test_sliding_window_forgets():
    """With window W, the token at 0 no longer influences position >= W."""
    model = _model({"family": "transformer", "d_model": 16, "layers": 2, "heads": 2, "window": 4})
    x = torch.randint(0, V, (1, 12))
    x2 = x.clone()
    x2[0, 0] = (x2[0, 0] + 1) % V
    with torch.no_grad():
        a, b = model(x), model(x2)
    # two layers: information travels at most 2 * (W - 1) = 6 positions
    torch.testing.assert_close(a[:, 7:], b[:, 7:], rtol=0, atol=0)
    assert not torch.allclose(a[:, 1], b[:, 1])
