"""An n-gram count baseline over the same tokens: interpolated Kneser-Ney.

For order n, history h (the previous n-1 tokens; pieces are left-padded with BOS) and token w:

    P_n(w | h) = max(c(h w) - D_n, 0) / c(h)  +  D_n * N1+(h .) / c(h) * P_{n-1}(w | h')

where h' drops the oldest token of h, c are raw counts at the highest order and continuation
counts N1+(. h w) (number of distinct tokens seen before ``h w``) at lower orders, N1+(h .) is
the number of distinct tokens seen after h, and D_m = n1 / (n1 + 2 n2) from the count-of-counts
of order m (Ney et al.). An unseen history falls through to the lower order. The recursion ends
in the uniform distribution 1 / V, so every token has non-zero probability.

NLL accounting is ``tunelab.metrics.midi.token_nll_summary``, as for the models: per token over
every predicted token, per step over the non-BOS/EOS targets divided by the number of grid steps.
The token format comes in as plain values (the vocabulary size, BOS and EOS ids, and the
codec's ``count_steps``); ``tunelab.kinds.tokens`` reads them from the data's meta.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from tunelab.metrics.midi import token_nll_summary

CountSteps = Callable[[Sequence[int]], int]  # tokens -> grid steps (the codec's count_steps)


class KneserNey:
    """Interpolated Kneser-Ney n-gram model over int token sequences."""

    def __init__(self, order: int, vocab_size: int, bos: int):
        if order < 1:
            raise ValueError("order must be >= 1")
        self.order, self.vocab_size, self.bos = order, vocab_size, bos
        # per order m (1..n): counts[m][(h, w)], total[m][h], types[m][h]
        self.counts: list[Counter] = [Counter() for _ in range(order + 1)]
        self.total: list[Counter] = [Counter() for _ in range(order + 1)]
        self.types: list[Counter] = [Counter() for _ in range(order + 1)]
        self.discount = [0.75] * (order + 1)

    def _padded(self, tokens) -> list[int]:
        return [self.bos] * (self.order - 1) + np.asarray(tokens, np.int64).tolist()

    def fit(self, pieces) -> KneserNey:
        n = self.order
        top = self.counts[n]
        for p in pieces:
            t = self._padded(p)
            for i in range(n, len(t) + 1):
                top[tuple(t[i - n : i])] += 1
        # continuation counts: order m counts the distinct left extensions of each m-gram
        for m in range(n - 1, 0, -1):
            lower = self.counts[m]
            for gram in self.counts[m + 1]:
                lower[gram[1:]] += 1
        for m in range(1, n + 1):
            for gram, c in self.counts[m].items():
                self.total[m][gram[:-1]] += c
                self.types[m][gram[:-1]] += 1
            coc = Counter(min(c, 3) for c in self.counts[m].values())
            n1, n2 = coc[1], coc[2]
            self.discount[m] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.75
        return self

    def prob(self, history: tuple, w: int) -> float:
        """P(w | history), history: the previous order-1 tokens (oldest first)."""
        p = 1.0 / self.vocab_size
        for m in range(1, self.order + 1):  # lowest order first, interpolating upwards
            h = history[len(history) - (m - 1) :] if m > 1 else ()
            tot = self.total[m].get(h, 0)
            if tot == 0:
                continue  # unseen history: keep the lower-order estimate
            d = self.discount[m]
            c = self.counts[m].get((*h, w), 0)
            p = max(c - d, 0.0) / tot + d * self.types[m][h] / tot * p
        return p

    def nll(self, tokens) -> np.ndarray:
        """-log P(x_t | x_<t) for t = 1..T-1 (nats): float64[T-1]."""
        t = self._padded(tokens)
        k = self.order - 1
        return np.array(
            [-math.log(self.prob(tuple(t[i - k : i]), t[i])) for i in range(k + 1, len(t))]
        )


def score(model: KneserNey, pieces, eos: int, count_steps: CountSteps) -> dict:
    """nll_per_token / tokens / nll_per_step / steps of ``pieces`` (see module docstring).
    pieces: int token arrays [T], BOS..EOS (BOS is ``model.bos``)."""
    scored = ((p, model.nll(p)) for p in (np.asarray(p, np.int64) for p in pieces) if len(p) >= 2)
    return token_nll_summary(scored, bos=model.bos, eos=eos, count_steps=count_steps)


def fit_best(
    train,
    valid,
    *,
    vocab_size: int,
    bos: int,
    eos: int,
    count_steps: CountSteps,
    orders=range(1, 17),
    patience: int = 2,
) -> tuple[KneserNey, dict]:
    """Fit each order on ``train``; keep the one with the lowest valid NLL per token.

    Stops after ``patience`` orders in a row without improvement. Returns (model, {order: valid
    figures}).
    """
    best, best_nll, table, worse = None, math.inf, {}, 0
    train = [np.asarray(p, np.int64) for p in train]
    for n in orders:
        m = KneserNey(n, int(vocab_size), int(bos)).fit(train)
        r = score(m, valid, eos=eos, count_steps=count_steps)
        table[n] = r
        if r["nll_per_token"] is not None and r["nll_per_token"] < best_nll:
            best, best_nll, worse = m, r["nll_per_token"], 0
        else:
            worse += 1
            if worse >= patience:
                break
    return best, table
