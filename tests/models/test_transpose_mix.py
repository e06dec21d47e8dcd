"""The transposition mixture (``model.transpose_mix``): a normalised distribution equal to the
mixture computed by hand from the base model on each transposed piece, with shifts that leave
the keyboard dropped from that token on; step() equals forward(); sampling stays in the format;
runs load with it and export without it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tests.helpers_generate import assert_samples_in_format, random_score, steps_meta
from tests.models.test_models import _run_steps
from tests.test_train import cfg_for, make_datadir
from tunelab.data.dataset import transpose_tables
from tunelab.data.midi import make_codec
from tunelab.kinds.constraints import check_tokens
from tunelab.kinds.tokens import grammar_bias
from tunelab.models.token_rnn import TokenRNN
from tunelab.models.transpose_mix import TransposeMixture
from tunelab.run.checkpoint import load_run
from tunelab.train import train

torch.set_num_threads(1)
N = 3  # shifts -3..3


@pytest.fixture(scope="module")
def setup():
    """(mixture, base, codec, bias, x LongTensor[1, T]): a piece that touches the lowest key."""
    codec = make_codec("steps", 2)
    toks = codec.encode(random_score(1, n=60)).tolist()
    i = toks.index(codec.step) + 1
    toks[i:i] = [1, codec.step]  # a step holding only key 1 (A#0): shifts -2, -3 die here
    assert not check_tokens(toks, steps_meta(max_poly=16))
    torch.manual_seed(0)
    base = TokenRNN(codec.vocab_size, "lstm", 16, 32, 2, 0.0, skip=True, roll=True, pitch_head=4)
    torch.nn.init.normal_(base.pitch_head.out.weight)
    base.eval()
    bias = grammar_bias(steps_meta())
    mix = TransposeMixture(base, transpose_tables(codec, N), bias).eval()
    return mix, base, codec, bias, torch.tensor(toks)[None], i


def by_hand(base, codec, bias, toks: list[int]) -> torch.Tensor:
    """log p [T, V] of the mixture, each shift's piece run on its own."""
    T, V = len(toks), codec.vocab_size
    comps, alive = [], []
    for s in range(-N, N + 1):
        tab = codec.transpose_table(s)
        moved = [int(tab[t]) for t in toks]
        live = np.cumprod([m >= 0 for m in moved]).astype(bool)
        fed = torch.tensor([m if m >= 0 else t for m, t in zip(moved, toks, strict=True)])
        with torch.no_grad():
            lp = F.log_softmax(base(fed[None])[0] + bias[fed], -1)
        q = torch.full((T, V), -math.inf)
        for y in range(V):
            if tab[y] >= 0:
                q[:, y] = lp[:, tab[y]]
        comps.append(q - torch.logsumexp(q, -1, keepdim=True))
        alive.append(torch.tensor(live))
    q, alive = torch.stack(comps), torch.stack(alive)  # [K, T, V], [K, T]
    w = torch.where(alive, 1.0 / alive.sum(0, keepdim=True), 0.0)
    return torch.log((q.exp() * w[..., None]).sum(0))


def test_mixture_equals_the_hand_computed_mixture_and_is_normalised(setup):
    mix, base, codec, bias, x, i = setup
    with torch.no_grad():
        out = mix(x)[0]
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(x.shape[1]), atol=1e-5, rtol=0)
    ref = by_hand(base, codec, bias, x[0].tolist())
    torch.testing.assert_close(out.exp(), ref.exp(), atol=1e-6, rtol=1e-5)
    # The low key kills shifts -3 and -2 from its position on, and only those.
    _, ok = mix._rows(x)
    alive = ok.cumprod(2).bool()[0]
    assert alive[:, :i].all() and alive[N, :].all()
    assert not alive[0, i:].any() and not alive[1, i:].any() and alive[2:, i:].all()
    # It is not the plain model: the other shifts do change the prediction.
    with torch.no_grad():
        plain = F.log_softmax(base(x)[0] + bias[x[0]], -1)
    assert (plain.exp() - out.exp()).abs().max() > 1e-3


def test_step_equals_forward(setup):
    mix, _, _, _, x, _ = setup
    with torch.no_grad():
        full, steps = mix(x), _run_steps(mix, x)
    torch.testing.assert_close(steps.exp(), full.exp(), atol=1e-6, rtol=1e-5)


def test_only_the_identity_is_the_plain_constrained_model(setup):
    _, base, codec, bias, x, _ = setup
    one = TransposeMixture(base, transpose_tables(codec, 0), bias)
    with torch.no_grad():
        plain = F.log_softmax(base(x) + bias[x], -1)
        torch.testing.assert_close(one(x).exp(), plain.exp(), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="identity"):
        TransposeMixture(base, transpose_tables(codec, 1)[[0, 2]], bias)


def test_sampling_the_mixture_stays_in_the_format(setup):
    mix, *_ = setup
    assert_samples_in_format(mix, steps=40)


def test_runs_load_with_the_mixture_and_export_without_it(tmp_path):
    data = make_datadir(tmp_path / "data")
    run = tmp_path / "run"
    over = ["train.max_steps=4", "train.eval_every=4", "model.transpose_mix=2"]
    train(cfg_for(data, run, *over))
    loaded = load_run(run)
    assert isinstance(loaded.model, TransposeMixture) and loaded.model.shifts == 5
    assert not isinstance(load_run(run, transpose_mix=0).model, TransposeMixture)
    with pytest.raises(ValueError, match="transpose_mix"):
        load_run(run, transpose_mix=-1)
    from tunelab.run.checkpoint import export_run

    export_run(run, tmp_path / "m.tlb")
    again = load_run(tmp_path / "m.tlb")
    assert isinstance(again.model, TransposeMixture)
    x = torch.tensor([[89, 40, 30, 88, 41, 31, 88]])  # BOS, two steps of two keys
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), loaded.model(x))
