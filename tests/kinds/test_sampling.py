"""The token sampling loop: reproducible per piece, each setting doing what it says (greedy,
top-k, top-p, argmax mixing), primers kept, bad settings refused. Validity under the
constraints is tested in test_constraints.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tunelab.data.midi import make_codec
from tunelab.kinds.constraints import FORBID, FORCE, check_tokens, make_constraint
from tunelab.kinds.sampling import Sampling, piece_seed, sample

META = {**make_codec("steps", 2).meta(), "max_polyphony": 4}


class BigramLM(nn.Module):
    """Logits [B, V] that depend on the previous token only (a fixed random table), counting
    the calls of step() so a test can see how the loop runs."""

    def __init__(self, vocab: int, seed: int = 0, scale: float = 3.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = scale * torch.randn(vocab, vocab, generator=g)
        self.calls = 0

    def init_state(self, n, device, label=None):
        return None

    def step(self, x, state):
        self.calls += 1
        return self.table[x], state


def _sample(n=3, steps=12, seed=0, **kw):
    return sample(BigramLM(META["vocab_size"]), META, n, steps, seed=seed, **kw)


def test_a_piece_depends_on_the_seed_and_its_index_only():
    a = _sample(n=3, seed=5)
    b = _sample(n=1, seed=5)
    assert np.array_equal(a[0], b[0])  # not on how many others run beside it
    again = _sample(n=3, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, again, strict=True))
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], _sample(n=1, seed=6)[0])
    assert piece_seed(5, 0) == piece_seed(5, 0) != piece_seed(5, 1) != piece_seed(6, 1)
    assert 0 <= piece_seed(2**40, 3) < 2**63


def test_greedy_settings_agree():
    greedy = _sample(sampling=Sampling(temperature=0.0))
    assert all(np.array_equal(greedy[0], p) for p in greedy)  # no noise at all
    for s in (Sampling(top_k=1), Sampling(argmax_prob=1.0), Sampling(top_p=1e-6)):
        got = _sample(seed=9, sampling=s)
        assert all(np.array_equal(p, greedy[0]) for p in got), s
    assert not all(np.array_equal(p, greedy[0]) for p in _sample(sampling=Sampling()))


def test_top_k_picks_among_the_k_best_tokens_the_rules_allow():
    model = BigramLM(META["vocab_size"])
    k, steps = 2, 30
    for piece in sample(model, META, 4, steps, seed=1, sampling=Sampling(top_k=k)):
        con = make_constraint(META)  # replay the rules the loop applied before top-k
        cst = con.new_state(1)
        for prev, tok in zip(piece[:-1].tolist(), piece[1:].tolist(), strict=True):
            mode = FORCE if con.time_steps(cst, 0) >= steps else FORBID
            z = model.table[prev] + con.bias(cst, [mode])[0]
            assert tok in torch.topk(z, k).indices.tolist()
            con.advance(cst, 0, tok)


def test_primer_is_kept_and_pieces_are_valid_with_the_asked_length():
    step = META["specials"]["step"]
    primer = [40, 30, step, 41, step]
    timing: dict = {}
    for p in _sample(n=2, steps=7, primer=primer, timing=timing):
        assert p[: len(primer) + 1].tolist() == [META["specials"]["bos"], *primer]
        assert p[-1] == META["specials"]["eos"] and check_tokens(p, META) == []
        assert int((p == step).sum()) == 2 + 7
    assert set(timing) == {"prefix_s", "sample_s", "tokens"} and timing["tokens"] > 9


@pytest.mark.parametrize(
    "bad",
    [
        Sampling(temperature=-1.0),
        Sampling(top_k=-1),
        Sampling(top_p=0.0),
        Sampling(top_p=1.5),
        Sampling(argmax_prob=2.0),
    ],
)
def test_bad_settings_are_refused_before_sampling(bad):
    model = BigramLM(META["vocab_size"])
    with pytest.raises(ValueError, match="--"):
        sample(model, META, 1, 4, sampling=bad)
    assert model.calls == 0
