"""Training and evaluation windows: the global batch of a step is a pure function of (seed,
step), an epoch's windows are each seen once, audio windows stay inside one piece."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tunelab.data.dataset import (
    PieceWindows,
    WindowSampler,
    eval_windows,
    piece_windows,
    prefetch,
    rank_rows,
)


def test_rank_rows_split_the_global_batch_or_refuse():
    assert [rank_rows(12, r, 3) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    for bad in ((10, 0, 3), (12, 3, 3), (12, 0, 0)):
        with pytest.raises(ValueError, match="global batch"):
            rank_rows(*bad)


def test_batches_are_next_token_windows_fixed_by_seed_and_step():
    data = np.arange(1000, dtype=np.int64)  # token i is i: a window's start is its first token
    s = WindowSampler(data, seq_len=16, batch_size=4, seed=7)
    assert s.windows_per_epoch == (len(data) - 1) // 16 - 1
    x, y = s.batch(3)
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert np.array_equal(y.numpy(), x.numpy() + 1)  # next-token targets
    assert np.array_equal(x[:, 0].numpy(), s.starts(3))
    assert np.array_equal(x.numpy(), x[:, :1].numpy() + np.arange(16))  # contiguous
    same = WindowSampler(data, 16, 4, seed=7)
    assert np.array_equal(same.starts(123), s.starts(123))  # no state: any step, any order
    assert not np.array_equal(WindowSampler(data, 16, 4, seed=8).starts(0), s.starts(0))


def test_each_epoch_is_a_permutation_of_its_windows_at_one_phase():
    data = np.arange(330, dtype=np.int64)
    s = WindowSampler(data, seq_len=8, batch_size=2, seed=1)
    k = s.windows_per_epoch
    flat = np.concatenate([s.starts(step) for step in range(k + 1)])  # two epochs and a bit
    orders = []
    for epoch in (flat[:k], flat[k : 2 * k]):
        phase = int(epoch.min())
        assert sorted(epoch.tolist()) == [phase + 8 * i for i in range(k)]
        assert phase + 8 * k < len(data)  # the last window's 9 tokens fit at this phase
        orders.append(((epoch - phase) // 8).tolist())
    assert orders[0] != orders[1]  # each epoch shuffles anew


def test_too_short_a_split_is_refused():
    with pytest.raises(ValueError, match="fewer than train.seq_len"):
        WindowSampler(np.arange(16), seq_len=16, batch_size=1)


def test_piece_windows_stay_inside_one_piece_with_its_label():
    lengths = [50, 5, 120, 30]  # the 5-sample piece never holds a window of 20
    offsets = np.cumsum([0, *lengths[:-1]])
    pieces = [{"offset": int(o), "length": n} for o, n in zip(offsets, lengths, strict=True)]
    data = np.concatenate([np.full(n, i, np.int16) for i, n in enumerate(lengths)])
    labels = np.array([10, 11, 12, 13])
    w = PieceWindows(data, pieces, length=20, batch_size=64, seed=3, labels=labels)
    seen = set()
    for step in range(20):
        x, lab = w.batch(step)
        assert x.shape == (64, 20) and x.dtype == np.int16
        piece = x[:, 0]
        assert np.all(x == piece[:, None])  # never across a boundary
        assert np.array_equal(lab, labels[piece])
        seen |= set(piece.tolist())
    assert seen == {0, 2, 3}
    a = PieceWindows(data, pieces, 20, 64, seed=3, rank=1, world=2).batch(5)[0]
    assert np.array_equal(a, w.batch(5)[0][32:])  # rank 1 takes the second half
    with pytest.raises(ValueError, match="no piece holds a whole window of 200"):
        PieceWindows(data, pieces, length=200, batch_size=2)


def test_fixed_piece_windows_and_eval_windows():
    pieces = [np.arange(10), np.arange(100, 125), np.arange(200, 203)]
    got = piece_windows(pieces, 5)
    assert [(i, w[0]) for i, w in got] == [(0, 0), (0, 5), (1, 100), (1, 105), (1, 110)] + [
        (1, 115),
        (1, 120),
    ]
    spread = piece_windows(pieces, 5, limit=3)
    assert [(i, int(w[0])) for i, w in spread] == [(0, 0), (1, 105), (1, 120)]
    assert eval_windows(np.arange(1), 8).shape == (0, 2)
    w = eval_windows(np.arange(30), 8, limit=2)
    assert w.tolist() == [list(range(0, 9)), list(range(8, 17))]


def test_prefetch_threads_give_the_same_sequence():
    calls = []
    lock = threading.Lock()

    def fn(step):
        with lock:
            calls.append(step)
        return step * step

    plain = prefetch(fn, 5, workers=0)
    ahead = prefetch(fn, 5, workers=2)
    assert [next(plain) for _ in range(10)] == [next(ahead) for _ in range(10)]
    assert [s * s for s in range(5, 15)] == [next(prefetch(fn, s, 0)) for s in range(5, 15)]
    ahead.close()
