"""The Kneser-Ney count baseline: the interpolation formula on a corpus small enough to count
by hand, a proper distribution after any history, the fall-through for unseen histories, and
NLL that is -log P token by token. (Scoring whole pieces is tested in test_evaluate.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunelab.metrics.ngram import KneserNey

V, BOS = 6, 0


def test_unigram_is_the_formula_counted_by_hand():
    m = KneserNey(1, V, BOS).fit([[1, 1, 1, 2, 2, 3]])
    # counts 3, 2, 1 of 6; n1 = 1 (token 3), n2 = 1 (token 2): D = 1 / (1 + 2 * 1)
    d, n, types = 1 / 3, 6, 3
    for w, c in {1: 3, 2: 2, 3: 1, 4: 0, 5: 0, 0: 0}.items():
        want = max(c - d, 0) / n + d * types / n / V
        assert m.prob((), w) == pytest.approx(want)
    assert sum(m.prob((), w) for w in range(V)) == pytest.approx(1.0)


def test_every_history_gives_a_distribution_and_unseen_ones_fall_through():
    rng = np.random.default_rng(1)
    pieces = [np.r_[BOS, rng.integers(1, V, 30)] for _ in range(4)]
    m = KneserNey(3, V, BOS).fit(pieces)
    for h in [(BOS, BOS), (1, 2), (5, 5), (4, 99), (98, 99)]:
        assert sum(m.prob(h, w) for w in range(V)) == pytest.approx(1.0)
    # an unseen pair falls through to the last token's estimate, then to the unigram's
    assert [m.prob((98, 99), w) for w in range(V)] == [m.prob((97, 96), w) for w in range(V)]
    seen = next(tuple(p[i : i + 2].tolist()) for p in pieces for i in range(5))
    assert [m.prob(seen, w) for w in range(V)] != [m.prob((98, 99), w) for w in range(V)]
    empty = KneserNey(2, V, BOS).fit([])
    assert all(empty.prob((1,), w) == pytest.approx(1 / V) for w in range(V))


def test_nll_is_minus_log_p_of_each_next_token_after_bos_padding():
    m = KneserNey(3, V, BOS).fit([[BOS, 1, 2, 3, 1, 2, 3, 1, 2, 4]])
    piece = [BOS, 1, 2, 3, 5]
    nll = m.nll(piece)
    assert nll.shape == (4,)
    padded = [BOS, BOS, *piece]  # order - 1 = 2 BOS before the piece, one is the piece's own
    want = [-math.log(m.prob(tuple(padded[i - 2 : i]), padded[i])) for i in range(3, 7)]
    np.testing.assert_allclose(nll, want)
    assert nll[1] < nll[3]  # 1 -> 2 was seen, 3 -> 5 never


def test_order_below_one_is_refused():
    with pytest.raises(ValueError, match="order must be >= 1"):
        KneserNey(0, V, BOS)
