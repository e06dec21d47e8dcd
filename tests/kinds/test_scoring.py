"""Exact whole-piece likelihood (``piece_nll``): every path it takes for a kind of model (one
forward, step() past max_forward_len, state-carrying chunks, chunks of a finite receptive
field, a rescoring wrapper) gives the figures of one plain forward over the whole piece."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.kinds.scoring import piece_nll

V = 11


class GRULM(nn.Module):
    """Unbounded context; optionally conditioned on a label; step() and forward_chunk()."""

    receptive_field = None

    def __init__(self, max_forward_len=None, chunked=False, n_labels=0):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.rnn, self.head = nn.Embedding(V, 8), nn.GRU(8, 16), nn.Linear(16, V)
        self.label = nn.Embedding(n_labels, 16) if n_labels else None
        self.max_forward_len = max_forward_len
        if chunked:
            self.forward_chunk = self._chunk
        self.used = set()

    def init_state(self, n, device, label=None):
        h = torch.zeros(1, n, 16)
        return h if label is None else h + self.label(label)[None]

    def _run(self, x, h):  # x [B, T]
        y, h = self.rnn(self.embed(x).transpose(0, 1), h)
        return self.head(y.transpose(0, 1)), h

    def forward(self, x, label=None):
        self.used.add("forward")
        return self._run(x, self.init_state(len(x), x.device, label))[0]

    def step(self, x, state):
        self.used.add("step")
        logits, h = self._run(x[:, None], state)
        return logits[:, 0], h

    def _chunk(self, x, state):
        self.used.add("chunk")
        return self._run(x, state)


class ConvLM(nn.Module):
    """Two causal convolutions of width 3: an output sees 5 inputs (receptive_field)."""

    receptive_field = 5

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Embedding(V, 8)
        self.c1, self.c2, self.head = nn.Conv1d(8, 8, 3), nn.Conv1d(8, 8, 3), nn.Linear(8, V)
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[1])
        h = self.embed(x).transpose(1, 2)
        h = torch.tanh(self.c1(F.pad(h, (2, 0))))
        h = torch.tanh(self.c2(F.pad(h, (2, 0))))
        return self.head(h.transpose(1, 2))


def _piece(n=40, seed=2):
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(seed))


def _reference(model, x, label=None):
    with torch.no_grad():
        logits = model(x[None, :-1]) if label is None else model(x[None, :-1], label)
    return F.cross_entropy(logits[0], x[1:], reduction="none")


def test_one_forward_for_a_short_piece_and_step_past_max_forward_len():
    x = _piece()
    short = GRULM(max_forward_len=100)
    torch.testing.assert_close(piece_nll(short, x), _reference(short, x))
    assert short.used == {"forward"}
    long = GRULM(max_forward_len=10)  # the piece is longer: one step() per token
    got = piece_nll(long, x.numpy())  # an int array is fine too
    assert long.used == {"step"} and got.shape == (len(x) - 1,)
    torch.testing.assert_close(got, _reference(long, x), rtol=1e-5, atol=1e-5)


def test_state_carrying_chunks_equal_one_forward():
    x = _piece(37)
    model = GRULM(chunked=True)
    for chunk in (1, 5, 36, 100):
        model.used.clear()
        got = piece_nll(model, x, chunk=chunk)
        assert model.used == {"chunk"}
        torch.testing.assert_close(got, _reference(model, x), rtol=1e-5, atol=1e-5)


def test_chunks_of_a_finite_receptive_field_are_exact_with_bounded_inputs():
    x = _piece(50)
    model = ConvLM()
    want = _reference(model, x)
    for chunk in (1, 3, 8, 49):
        model.calls.clear()
        torch.testing.assert_close(piece_nll(model, x, chunk=chunk), want, rtol=1e-5, atol=1e-5)
        assert max(model.calls) <= chunk + ConvLM.receptive_field - 1  # never the whole piece


def test_label_and_format_rules_enter_the_figures():
    x = _piece(30)
    model = GRULM(n_labels=2)
    for lab in (0, 1):
        want = _reference(model, x, torch.tensor([lab]))
        torch.testing.assert_close(piece_nll(model, x, label=lab), want)
    assert not torch.allclose(piece_nll(model, x, label=0), piece_nll(model, x, label=1))
    # a rule "never token 3 after an even token" renormalises over the tokens left
    bias = torch.zeros(V, V)
    bias[0::2, 3] = -torch.inf
    y = x.clone()
    y[y == 3] = 4  # the piece keeps the rule
    with torch.no_grad():
        logits = model(y[None, :-1], torch.tensor([0]))[0] + bias[y[:-1]]
    want = F.cross_entropy(logits, y[1:], reduction="none")
    got = piece_nll(model, y, label=0, prev_bias=bias)
    torch.testing.assert_close(got, want)
    assert (got <= piece_nll(model, y, label=0) + 1e-6).all()  # never less likely


def test_a_rescoring_wrapper_gets_its_inner_models_figures():
    x = _piece(20)
    inner = ConvLM()

    class Memory(nn.Module):
        def __init__(self):
            super().__init__()
            self.base, self.seen = inner, None

        def rescore(self, tokens, nll):
            self.seen = (tokens.clone(), nll.clone())
            return nll / 2

    wrapper = Memory()
    got = piece_nll(wrapper, x, chunk=4)
    tokens, nll = wrapper.seen
    assert torch.equal(tokens, x)
    torch.testing.assert_close(nll, _reference(inner, x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, nll / 2)
