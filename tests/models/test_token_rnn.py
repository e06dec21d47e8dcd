"""Token RNN: step() follows weight updates, its state is per sequence, and weight drop masks
the recurrence only while training."""

from __future__ import annotations

import torch

from tests.models.test_models import RNNS, V, _model, _run_steps
from tunelab.models import build_model

torch.set_num_threads(1)


def test_rnn_step_sees_weight_updates():
    """The cached input table of step() follows in-place weight changes (optimizer steps)."""
    model = _model(RNNS[0])
    x = torch.randint(0, V, (2, 5))
    with torch.no_grad():
        _run_steps(model, x)  # fills the cache
        model.embed.weight.mul_(1.5)
        model.rnns[0].weight_ih_l0.add_(0.1)
        torch.testing.assert_close(_run_steps(model, x), model(x), rtol=1e-4, atol=1e-5)


def test_step_state_is_independent_per_sequence():
    model = _model(RNNS[2])
    x = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        both = _run_steps(model, x)
        one = _run_steps(model, x[1:])
    torch.testing.assert_close(both[1:], one, rtol=1e-5, atol=1e-6)


def test_weight_drop_masks_the_recurrence_only_while_training():
    """model.weight_drop: in training each forward draws a new DropConnect mask on the
    hidden-to-hidden weights (other outputs, exact zeros in the raw weight's gradient); in eval
    mode the model equals the same weights without it, so scoring and generation see them whole."""
    torch.manual_seed(0)
    cfg = {"family": "token_rnn", "cell": "lstm", "hidden": 32, "embed_dim": 8, "dropout": 0.0}
    dropped = build_model({**cfg, "weight_drop": 0.5}, vocab_size=20)
    plain = build_model(cfg, vocab_size=20)
    plain.load_state_dict(dropped.state_dict())  # the raw weights are the parameters
    x = torch.randint(0, 20, (2, 12))
    dropped.train()
    a, b = dropped(x), dropped(x)
    assert not torch.allclose(a, b)
    a.sum().backward()
    zero = (dropped.rnns[0].weight_hh_l0.grad == 0).float().mean().item()
    assert 0.35 < zero < 0.65
    dropped.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped(x), plain(x))
