"""Streams through pieces for carried state: each row reads its piece's windows in order,
resets where a piece starts, pads the last window with unscored targets, and keeps one key
per piece under transposition."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.data.streams import PieceStreams, windows_of

LENGTHS = [11, 4, 23, 2, 9]


def _pieces():
    """Piece i holds tokens 100 * (i + 1) + position, so a token says where it came from."""
    offsets = np.cumsum([0, *LENGTHS[:-1]])
    pieces = [{"offset": int(o), "length": n} for o, n in zip(offsets, LENGTHS, strict=True)]
    data = np.concatenate([100 * (i + 1) + np.arange(n) for i, n in enumerate(LENGTHS)])
    return data.astype(np.int64), pieces


def test_windows_of_counts_targets_not_tokens():
    assert [windows_of(n, 4) for n in (0, 1, 2, 5, 6, 9)] == [0, 0, 1, 1, 2, 2]


def test_a_row_walks_its_pieces_window_by_window():
    data, pieces = _pieces()
    T = 4
    s = PieceStreams(data, pieces, seq_len=T, batch_size=1, seed=2)
    assert s.total == sum(windows_of(n, T) for n in LENGTHS)
    expect = None  # (piece, window) the row must read next
    for step in range(2 * s.total):
        ((e, pos, piece, k),) = s.where(step)
        x, y, reset = (t[0].numpy() for t in s.batch(step))
        if expect is not None and k != 0:
            assert (piece, k) == expect  # the same piece, the next window
        assert bool(reset) == (k == 0)
        base, n = 100 * (piece + 1), LENGTHS[piece]
        got = [int(t) for t in y if t != -100]
        assert got == list(range(base + k * T + 1, base + min(k * T + T, n - 1) + 1))
        assert x[0] == base + k * T
        assert np.all(y[len(got) :] == -100)  # padding is never a target
        assert np.all(x[len(got) :] == base + n - 1)  # inputs padded with the last token
        expect = (piece, k + 1) if k + 1 < windows_of(n, T) else None


def test_each_piece_is_read_whole_once_per_epoch():
    data, pieces = _pieces()
    s = PieceStreams(data, pieces, seq_len=3, batch_size=1, seed=5)
    seen: dict = {}
    for step in range(3 * s.total):
        ((e, _, piece, k),) = s.where(step)
        seen.setdefault(e, []).append((piece, k))
    whole = sorted((p, k) for p, n in enumerate(LENGTHS) for k in range(windows_of(n, 3)))
    full = [windows for windows in seen.values() if len(windows) == s.total]
    assert full and all(sorted(w) == whole for w in full)
    assert len({tuple(w) for w in full}) == len(full)  # a new piece order each epoch


def test_one_key_per_piece_under_transposition():
    data, pieces = _pieces()
    V = int(data.max()) + 1
    shifts = np.arange(-2, 3)
    tables = np.stack([np.arange(V) + 1000 * s for s in shifts])  # token + 1000 * shift
    tables[4, 300:400] = -1  # +2 would take piece 2 off the keyboard
    s = PieceStreams(data, pieces, 4, 1, seed=3, transpose_tables=tables)
    by_piece: dict = {}
    for step in range(s.total):
        ((e, _, piece, _),) = s.where(step)
        x = s.batch(step)[0][0].numpy()
        shift = int(np.round((x[0] - data[pieces[piece]["offset"]]) / 1000))
        assert shift in shifts and not (piece == 2 and shift == 2)
        by_piece.setdefault((e, piece), set()).add(shift)
    assert all(len(v) == 1 for v in by_piece.values())


def test_pieces_too_short_to_predict_are_refused():
    with pytest.raises(ValueError, match="no piece holds two tokens"):
        PieceStreams(np.arange(3), [{"offset": i, "length": 1} for i in range(3)], 4, 1)
