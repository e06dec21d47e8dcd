"""Decoding constraints: real encodings pass, broken streams are caught, and constrained sampling
from arbitrary (even adversarial) logits never produces an invalid stream, at any length."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from tests.helpers_generate import random_score
from tunelab.data.midi import make_codec
from tunelab.kinds.constraints import ALLOW, check_tokens, make_constraint
from tunelab.kinds.sampling import Sampling, sample


def meta_for(encoding: str, max_poly: int = 88, spq: int = 4) -> dict:
    return {**make_codec(encoding, spq).meta(), "max_polyphony": max_poly}


def reference_problems(tokens, encoding: str, max_poly: int) -> list[str]:
    """Independent validator for steps/onsets written from the token contract."""
    step = 88 if encoding == "steps" else 176
    bos, eos = step + 1, step + 2
    t = list(tokens)
    if not t or t[0] != bos or t[-1] != eos:
        return ["framing"]
    body = t[1:-1]
    if bos in body or eos in body:
        return ["special inside"]
    if body and body[-1] != step:
        return ["unclosed step"]
    problems, prev, cur = [], set(), []
    for tok in body:
        if tok == step:
            pitches = [k % 88 for k in cur]
            if pitches != sorted(set(pitches), reverse=True):
                problems.append("order")
            if len(cur) > max_poly:
                problems.append("polyphony")
            if encoding == "onsets" and any(k >= 88 and k - 88 not in prev for k in cur):
                problems.append("held")
            prev, cur = set(pitches), []
        else:
            cur.append(tok)
    return problems


@pytest.mark.parametrize("encoding", ["steps", "onsets", "remi"])
def test_real_encodings_are_valid(encoding):
    codec = make_codec(encoding, 4)
    for seed in range(3):
        tokens = codec.encode(random_score(seed))
        assert check_tokens(tokens, meta_for(encoding)) == []


@pytest.mark.parametrize(
    "tokens, why",
    [
        ([89, 40, 50, 88, 90], "strictly below"),  # ascending within a step
        ([89, 40, 40, 88, 90], "strictly below"),  # repeated key
        ([89, 50, 40, 30, 20, 88, 90], "max_polyphony"),  # 4 keys, cap 3
        ([89, 50, 89, 88, 90], "BOS inside"),
        ([89, 50, 90], "EOS in the middle"),
        ([89, 50, 88], "no EOS"),
        ([89, 50, 88, 90, 50], "after EOS"),
        ([89, 500, 88, 90], "outside the vocabulary"),
        ([50, 88, 90], "start with BOS"),
    ],
)
def test_check_tokens_catches(tokens, why):
    problems = check_tokens(tokens, meta_for("steps", max_poly=3))
    assert any(why in p for p in problems), problems


def test_held_key_needs_previous_sound():
    meta = meta_for("onsets")
    assert check_tokens([177, 40, 176, 128, 176, 178], meta) == []  # struck then held
    problems = check_tokens([177, 40, 176, 129, 176, 178], meta)  # held key 41 never sounded
    assert any("held key" in p for p in problems)


def test_remi_rules():
    meta = meta_for("remi", max_poly=2)
    codec = make_codec("remi", 4)
    ids = codec.tok.vocab
    bar, p0, p4 = ids["Bar_None"], ids["Position_0"], ids["Position_4"]
    note = [
        ids["Pitch_60"],
        ids["Velocity_63"]
        if "Velocity_63" in ids
        else ids[next(n for n in ids if n.startswith("Velocity"))],
        ids[next(n for n in ids if n.startswith("Duration"))],
    ]
    ok = [codec.bos, bar, p0, *note, p4, *note, codec.eos]
    assert check_tokens(ok, meta) == []
    back = [codec.bos, bar, p4, *note, p0, *note, codec.eos]
    assert any("Position" in p for p in check_tokens(back, meta))
    skip = [codec.bos, bar, p0, note[0], note[2], codec.eos]  # Pitch then Duration
    assert check_tokens(skip, meta)
    crowd = [codec.bos, bar, p0, *note, *note, *note, codec.eos]
    assert any("max_polyphony" in p for p in check_tokens(crowd, meta))


class RandomLM(nn.Module):
    """A language model whose logits are random draws plus a fixed (adversarial) bias."""

    def __init__(self, vocab: int, seed: int, bias: torch.Tensor, scale: float):
        super().__init__()
        self.g = torch.Generator().manual_seed(seed)
        self.bias, self.scale, self.vocab = bias, scale, vocab

    def init_state(self, batch_size, device=None):
        return None

    def step(self, x, state):
        return torch.randn(len(x), self.vocab, generator=self.g) * self.scale + self.bias, state


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    encoding=st.sampled_from(["steps", "onsets", "remi"]),
    seed=st.integers(0, 10_000),
    max_poly=st.integers(1, 6),
    steps=st.integers(1, 40),
    scale=st.sampled_from([0.1, 3.0, 30.0]),
    favour=st.lists(st.integers(0, 400), max_size=6),
    sampling=st.sampled_from(
        [
            Sampling(),
            Sampling(temperature=0.0),
            Sampling(top_k=3),
            Sampling(top_p=0.5, argmax_prob=0.6),
        ]
    ),
)
def test_constrained_sampling_is_always_valid(
    encoding, seed, max_poly, steps, scale, favour, sampling
):
    meta = meta_for(encoding, max_poly=max_poly, spq=1)
    V = meta["vocab_size"]
    bias = torch.zeros(V)
    for i in favour:  # push the model towards arbitrary tokens, e.g. BOS, EOS, invalid keys
        bias[i % V] += 20.0
    model = RandomLM(V, seed, bias, scale)
    pieces = sample(model, meta, 2, steps, seed=seed, sampling=sampling)
    con = make_constraint(meta)
    for p in pieces:
        assert check_tokens(p, meta) == []
        if encoding != "remi":
            assert reference_problems(p.tolist(), encoding, max_poly) == []
            assert int((p == con.step_id).sum()) == steps  # exactly the requested length
        else:
            assert int((p == make_codec("remi", 1).tok.vocab["Bar_None"]).sum()) == steps // 4 + (
                steps % 4 > 0
            )


@pytest.mark.parametrize("encoding", ["steps", "onsets"])
def test_long_streams_stay_valid(encoding):
    meta = meta_for(encoding, max_poly=4, spq=4)
    V = meta["vocab_size"]
    bias = torch.zeros(V)
    bias[meta["specials"]["eos"]] = 50.0  # a model that wants to stop (or break) all the time
    bias[meta["specials"]["bos"]] = 50.0
    pieces = sample(RandomLM(V, 1, bias, 2.0), meta, 1, 3000, seed=1)
    assert check_tokens(pieces[0], meta) == []
    assert reference_problems(pieces[0].tolist(), encoding, 4) == []
    assert int((pieces[0] == meta["specials"]["step"]).sum()) == 3000


@pytest.mark.parametrize("encoding", ["steps", "onsets"])
def test_grammar_table_admits_real_streams_and_is_within_the_constraints(encoding):
    """allowed_after (training and scoring) never forbids a token of a real stream, and
    forbids nothing the decoding constraints allow: the scored model is the sampled one."""
    codec = make_codec(encoding, 4)
    ok = codec.allowed_after()
    meta = meta_for(encoding)
    for seed in range(4):
        tokens = codec.encode(random_score(seed))
        assert ok[tokens[:-1], tokens[1:]].all()
        con = make_constraint(meta)
        st_ = con.new_state(1)
        for prev, nxt in zip(tokens[:-1].tolist(), tokens[1:].tolist(), strict=True):
            if prev != codec.bos:
                con.advance(st_, 0, prev)
            allowed_now = torch.isfinite(con.bias(st_, [ALLOW])[0]).numpy()
            assert allowed_now[nxt] and not (allowed_now & ~ok[prev]).any()
    # After a key only lower keys or STEP; BOS only after EOS (windows run across pieces).
    assert ok[40, 39] and not ok[40, 40] and not ok[40, 41] and ok[40, codec.step]
    assert not ok[40, codec.eos] and not ok[codec.step, codec.bos] and ok[codec.eos, codec.bos]


def test_grammar_bias_renormalises_scoring_and_training():
    """The masked NLL of every target is at most the unmasked one, equal with a zero table,
    and the training loss is the cross-entropy of the same masked logits."""
    from tunelab.kinds.scoring import piece_nll
    from tunelab.kinds.tokens import Kind, grammar_bias
    from tunelab.models.token_rnn import TokenRNN

    meta = meta_for("steps")
    bias = grammar_bias(meta)
    codec = make_codec("steps", 4)
    tokens = torch.as_tensor(codec.encode(random_score(0)))
    torch.manual_seed(0)
    model = TokenRNN(codec.vocab_size, "gru", 16, 32, 1).eval()
    plain, masked = piece_nll(model, tokens), piece_nll(model, tokens, prev_bias=bias)
    assert (masked <= plain + 1e-6).all() and masked.sum() < plain.sum()
    assert torch.allclose(piece_nll(model, tokens, prev_bias=torch.zeros_like(bias)), plain)
    x, y = tokens[None, :-1], tokens[None, 1:]
    with torch.no_grad():
        total, count = Kind(meta).loss(model(x), y, x)
    assert count == len(tokens) - 1
    assert torch.allclose(total, masked.sum(), rtol=1e-5)


def test_a_token_the_training_data_never_used_is_avoided_but_still_valid():
    """Sampling never picks an unseen token, but a stream holding one (a sample read back from
    its MIDI file can: the written notes' overlaps change a duration) is valid MIDI, not
    `invalid`. Found on a real folder: one of three remi-programs samples flagged invalid."""
    meta = meta_for("remi-programs")
    names = list(meta["token_names"])
    tokens = make_codec("remi-programs", 4).encode(random_score(seed=1))
    durs = [t for t in tokens if names[t].startswith("Duration_")]
    assert durs
    meta["unseen_tokens"] = [durs[0]]
    assert check_tokens(tokens, meta) == []
    c = make_constraint(meta)
    assert not c.allowed[:, :, durs[0]].any()  # never sampled
    assert c.grammar[:, ALLOW, durs[0]].any()  # but allowed by the grammar
