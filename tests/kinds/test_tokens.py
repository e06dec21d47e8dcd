"""``train.burn_in``: each random training window is preceded by context that the token RNN runs
without gradients, so the window starts from the state that context leaves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_train import STEP, cfg_for, make_datadir, metrics
from tunelab.config import ConfigError
from tunelab.data.store import load_datadir
from tunelab.kinds.tokens import Kind
from tunelab.models.token_rnn import TokenRNN
from tunelab.train import train

torch.set_num_threads(1)


def test_tail_is_the_full_pass_with_no_gradient_into_the_context():
    torch.manual_seed(0)
    model = TokenRNN(91, "lstm", 8, 16, 2, 0.0, skip=True, roll=True, pitch_head=4)
    x = torch.randint(0, 88, (2, 30))
    x[:, ::4] = STEP
    x[:, :10][x[:, :10] < 88] = 5  # key 5 only in the context, key 7 only in the window
    x[:, 10:][x[:, 10:] < 88] = 7
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, tail=20), model(x)[:, 10:], atol=1e-6, rtol=1e-5)
    out = model(x, tail=20)
    out.sum().backward()
    grad = model.embed.weight.grad
    assert out.shape == (2, 20, 91)
    assert grad[5].abs().sum() == 0 and grad[7].abs().sum() > 0


def test_batches_carry_the_context_and_score_only_the_window(tmp_path):
    data = load_datadir(make_datadir(tmp_path / "d"))
    kind = Kind(data.meta)
    cfg = cfg_for(tmp_path / "d", tmp_path / "r", "train.burn_in=12", "train.seq_len=16")
    x, y, _ = kind.train_batches(data.split("train"), cfg.train, 0, 0, 1, None)(3)
    assert x.shape[1] == 28 and y.shape[1] == 16
    assert torch.equal(x[:, 13:], y[:, :-1])  # y[t] is the token after x's position 12 + t
    vx, vy, _ = kind.valid_batches(data.split("valid"), cfg.train, None)[0]
    assert vx.shape[1] == 28 and vy.shape[1] == 16 and torch.equal(vx[:, 13:], vy[:, :-1])
    s, n = kind.loss(torch.zeros(*y.shape, 91), y, x)
    assert n == y.numel() and np.isfinite(float(s))


def test_a_run_with_burn_in_trains_and_the_wrong_settings_are_refused(tmp_path):
    data = make_datadir(tmp_path / "d")
    run = tmp_path / "r"
    train(cfg_for(data, run, "train.burn_in=16", "train.max_steps=6", "train.eval_every=3"))
    valid = [m["valid_loss"] for m in metrics(run) if "valid_loss" in m]
    assert valid and all(np.isfinite(valid))
    for bad in (["train.burn_in=8", "train.carry_state=true"], ["train.burn_in=-1"]):
        with pytest.raises(ConfigError, match="burn_in"):
            train(cfg_for(data, tmp_path / "bad", *bad))
