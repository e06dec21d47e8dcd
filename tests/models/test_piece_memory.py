"""The piece memory (``model.piece_memory``): equal to the mixture computed by brute force from
its definition, causal, normalised; step() equals forward(), over the plain model and over the
transposition mixture; a repeated passage costs far less with it and a piece that never repeats
costs little more; sampling stays in the format; runs load with it and export without it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from tests.helpers_generate import assert_samples_in_format, random_score, steps_meta
from tests.models.test_models import _run_steps
from tests.test_train import cfg_for, make_datadir
from tunelab.config import ConfigError
from tunelab.data.dataset import transpose_tables
from tunelab.data.midi import make_codec
from tunelab.generate import generate
from tunelab.kinds.constraints import check_tokens
from tunelab.kinds.mulaw import Kind as MulawKind
from tunelab.kinds.scoring import piece_nll
from tunelab.kinds.tokens import grammar_bias
from tunelab.models.piece_memory import LENGTHS, PRIOR, STRENGTH, PieceMemoryModel
from tunelab.models.token_rnn import TokenRNN
from tunelab.models.transformer import Transformer
from tunelab.models.transpose_mix import TransposeMixture
from tunelab.run.checkpoint import CheckpointError, LoadedRun, _inference, export_run, load_run
from tunelab.train import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    """(base, bias, body): an untrained LSTM, the format's rules, one piece's tokens between
    BOS and EOS."""
    codec = make_codec("steps", 2)
    toks = codec.encode(random_score(3, n=40)).tolist()
    torch.manual_seed(0)
    base = TokenRNN(codec.vocab_size, "lstm", 16, 32, 2, 0.0, skip=True, roll=True).eval()
    return base, grammar_bias(steps_meta()), toks[1:-1]


def upto(body: list[int], n: int) -> list[int]:
    """The steps of ``body`` that make up its first ``n`` tokens or more (whole steps)."""
    end = body.index(make_codec("steps", 2).step, n)
    return body[: end + 1]


def piece(body: list[int], times: int = 1) -> torch.Tensor:
    meta = steps_meta(max_poly=16)
    toks = [meta["specials"]["bos"], *body * times, meta["specials"]["eos"]]
    assert not check_tokens(toks, meta)
    return torch.tensor(toks)[None]


def brute_force(lp: torch.Tensor, x: list[int]) -> torch.Tensor:
    """log p [T, V] from the definition: search the whole prefix for the longest earlier
    occurrence of each context; gates from the posterior shares, recomputed from scratch."""
    T, V = lp.shape
    hits = [g * STRENGTH for g in PRIOR]
    seen = [STRENGTH] * len(LENGTHS)
    out = lp.clone()
    for t in range(T):  # predicting x[t + 1] from x[: t + 1]
        for j in reversed(range(len(LENGTHS))):
            L = LENGTHS[j]
            ctx = x[t + 1 - L : t + 1] if t + 1 >= L else None
            after = [x[s + 1] for s in range(L - 1, t) if ctx and x[s + 1 - L : s + 1] == ctx]
            if after:
                break
        else:
            continue
        c = torch.zeros(V)
        for y in after:
            c[y] += 1 / len(after)
        g = hits[j] / seen[j]
        p = (1 - g) * lp[t].exp() + g * c
        out[t] = p.log()
        if t + 1 < T:  # the gate learns from the token that came
            y = x[t + 1]
            hits[j] += float(g * c[y] / p[y])
            seen[j] += 1
    return out


def test_forward_equals_brute_force_and_is_normalised(setup):
    base, bias, body = setup
    a, b = upto(body, 60), upto(body, 25)
    x = piece(a + b + body[len(a) :] + a)  # repeats of several lengths
    mem = PieceMemoryModel(base, bias)
    with torch.no_grad():
        out = mem(x)[0]
        lp = F.log_softmax(base(x)[0] + bias[x[0]], -1)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(x.shape[1]), atol=1e-5, rtol=0)
    ref = brute_force(lp, x[0].tolist())
    torch.testing.assert_close(out.exp(), ref.exp(), atol=1e-6, rtol=1e-5)
    assert (out.exp() - lp.exp()).abs().max() > 0.5  # the memory does change predictions
    torch.testing.assert_close(out[: LENGTHS[0]], lp[: LENGTHS[0]])  # nothing to recall yet


def test_causal(setup):
    base, bias, body = setup
    x = piece(body, 2)
    y = x.clone()
    t0 = x.shape[1] - 20
    y[0, t0] = y[0, t0 - 1]  # any change at t0 (grammar aside: the memory only counts)
    mem = PieceMemoryModel(base, bias)
    with torch.no_grad():
        a, b = mem(x), mem(y)
    torch.testing.assert_close(a[:, :t0], b[:, :t0], atol=0, rtol=0)


@pytest.mark.parametrize("mixture", [False, True])
def test_step_equals_forward(setup, mixture):
    base, bias, body = setup
    inner = TransposeMixture(base, transpose_tables(make_codec("steps", 2), 2), bias).eval()
    mem = PieceMemoryModel(inner if mixture else base, bias).eval()
    x = piece(body, 2)
    with torch.no_grad():
        full, steps = mem(x), _run_steps(mem, x)
    torch.testing.assert_close(steps.exp(), full.exp(), atol=1e-6, rtol=1e-5)


def test_a_repeat_costs_far_less_and_no_repeat_costs_little(setup):
    base, bias, body = setup
    mem = PieceMemoryModel(base, bias)

    def nll(model, x):
        with torch.no_grad():
            lp = F.log_softmax(model(x)[0].float() + bias[x[0]], -1)
        return -lp[:-1].gather(1, x[0, 1:, None])[:, 0]

    twice = piece(body, 2)
    n = len(body)
    plain, with_mem = nll(base, twice), nll(mem, twice)
    # The second playing: the untrained model pays about log(V) a token, the memory almost
    # nothing once the gates have learnt that this piece repeats itself.
    assert with_mem[n + 10 :].mean() < 0.1 * plain[n + 10 :].mean()
    once = piece(body)
    assert nll(mem, once).sum() < 1.05 * nll(base, once).sum()


def test_sampling_with_the_memory_stays_in_the_format(setup):
    base, bias, _ = setup
    assert_samples_in_format(PieceMemoryModel(base, bias), steps=60)


def test_runs_load_with_the_memory_and_export_without_it(tmp_path):
    data = make_datadir(tmp_path / "data")
    run = tmp_path / "run"
    over = ["train.max_steps=4", "train.eval_every=4", "model.piece_memory=true"]
    train(cfg_for(data, run, *over, "model.transpose_mix=1"))
    loaded = load_run(run)
    assert isinstance(loaded.model, PieceMemoryModel) and loaded.piece_memory
    assert isinstance(loaded.model.base, TransposeMixture)
    plain = load_run(run, transpose_mix=0, piece_memory=False)
    assert isinstance(plain.model, TokenRNN) and not plain.piece_memory
    export_run(run, tmp_path / "m.tlb")
    again = load_run(tmp_path / "m.tlb")
    assert isinstance(again.model, PieceMemoryModel)
    x = torch.tensor([[89, 40, 30, 88, 41, 31, 88] + [40, 30, 88, 41, 31, 88] * 3])
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), loaded.model(x))
    assert math.isfinite(float(loaded.model(x).logsumexp(-1).sum()))
    # generate samples it only when asked: sampled, the memory feeds on the piece's own output.
    for asked in (None, True):
        out = tmp_path / f"gen-{asked}"
        (mid,) = generate(run, n=1, steps=8, out=out, wav=False, audit=False, piece_memory=asked)
        side = json.loads(mid.with_name(mid.name + ".json").read_text())
        assert side["settings"].get("piece_memory", False) is bool(asked)


def test_scoring_mixes_each_familys_own_figures(setup, tmp_path):
    """``piece_nll`` scores the wrapper from its inner model's whole-piece NLL (chunks for a
    windowed Transformer): the same figures as forward(), and as step() token by token."""
    base, bias, body = setup
    x = piece(body, 2)
    torch.manual_seed(1)
    tf = Transformer(91, d_model=16, layers=2, heads=2, ff_mult=2, dropout=0.0, window=8).eval()
    for inner in (base, tf):
        mem = PieceMemoryModel(inner, bias).eval()
        with torch.no_grad():
            want = -mem(x)[0, :-1].gather(1, x[0, 1:, None])[:, 0]
            stepped = -_run_steps(mem, x)[0, :-1].gather(1, x[0, 1:, None])[:, 0]
        got = piece_nll(mem, x[0], prev_bias=bias, chunk=16)  # several chunks
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stepped, want, atol=1e-5, rtol=1e-5)


def test_a_transformer_run_loads_with_the_memory_and_audio_kinds_refuse_it(tmp_path):
    data = make_datadir(tmp_path / "data")
    run = tmp_path / "run"
    over = ["train.max_steps=2", "train.eval_every=2", "model.family=transformer"]
    train(cfg_for(data, run, *over, "model.d_model=16", "model.heads=2", "model.layers=1"))
    loaded = load_run(run, piece_memory=True)
    assert isinstance(loaded.model, PieceMemoryModel) and isinstance(loaded.model.base, Transformer)
    with pytest.raises(CheckpointError, match="transpose_mix needs a token_rnn"):
        load_run(run, transpose_mix=2)
    mulaw = MulawKind({"kind": "audio", "sample_rate": 16000})  # its memory_model: None
    audio = LoadedRun(loaded.model.base, loaded.config, {}, 0, run, mulaw)
    with pytest.raises(CheckpointError, match="piece_memory needs a token model"):
        _inference(audio, 0, True)
    with pytest.raises(ConfigError, match="piece_memory needs a MIDI token family"):
        train(cfg_for(data, tmp_path / "wn", "model.family=wavenet", "model.piece_memory=true"))
