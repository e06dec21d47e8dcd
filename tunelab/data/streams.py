"""Streams of consecutive windows through pieces, for models that carry state across windows
(truncated backpropagation through time).

Each piece of L tokens is cut into ``ceil((L - 1) / T)`` windows of T inputs and T targets:
window k has inputs ``piece[kT : kT + T]`` and targets ``piece[kT + 1 : kT + T + 1]``; the
last window of a piece is padded (inputs with the piece's last token, targets with
``ignore``), so a piece always starts at a window boundary and the carried state can be reset
there. Consecutive windows of one piece follow each other in the same batch row, so the
state a row ends one step with is the state its next window starts from.

Layout (the "global batch" rule shared with ``WindowSampler``): epoch e orders all pieces by
a permutation drawn from (seed, e); their windows back to back form the epoch's window list
of ``Wn`` windows, and the epochs back to back one endless list. Global row j of B reads
entry ``phase + j * Wn // B + step`` of it (``phase`` drawn from the seed), so rows are
spread evenly over the data, the global batch of a step is a pure function of (seed, step),
and rank r of ``world`` takes global rows ``[r * B / world, (r + 1) * B / world)``. A run can
therefore resume on another number of processes with the same batches and the same carried
state (saved as global rows).

Transposition: every window of one piece (within an epoch) gets the same shift, drawn from
(seed, epoch, position in the epoch) among the shifts valid for the whole piece, so a
piece never changes key halfway through its carried state.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch

from tunelab.data.dataset import rank_rows


def windows_of(length: int, seq_len: int) -> int:
    """Windows of ``seq_len`` targets a piece of ``length`` tokens is cut into."""
    return max(0, -(-(length - 1) // seq_len))


class PieceStreams:
    """Deterministic batches of consecutive windows through pieces, with reset flags.

    data: flat token array [N] (a memmap is fine); pieces: index records with offset/length;
    batch_size: the GLOBAL batch B (divisible by ``world``); transpose_tables: optional int64
    [S, V] (row s maps tokens to their shift by s - S // 2 semitones, -1 = out of range).
    """

    def __init__(
        self,
        data: np.ndarray,
        pieces: list[dict],
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        transpose_tables: np.ndarray | None = None,
        ignore: int = -100,
    ):
        self._rows = rank_rows(batch_size, rank, world)  # checks B divisible by world
        self.data, self.seq_len, self.batch_size = data, seq_len, batch_size
        self.seed, self.rank, self.world, self.ignore = seed, rank, world, ignore
        self.offsets = np.array([p["offset"] for p in pieces], np.int64)
        self.lengths = np.array([p["length"] for p in pieces], np.int64)
        self.n_windows = np.array([windows_of(int(n), seq_len) for n in self.lengths], np.int64)
        self.total = int(self.n_windows.sum())
        if self.total == 0:
            raise ValueError("no piece holds two tokens; add data")
        self.tables = transpose_tables
        self.valid_shifts = None
        if transpose_tables is not None:  # [P, S]: shifts that keep every token of the piece
            self.valid_shifts = np.stack(
                [
                    (transpose_tables[:, self._tokens(i)] >= 0).all(axis=1)
                    for i in range(len(pieces))
                ]
            )
        rng = np.random.default_rng([seed, 0x57EA])
        self.phase = int(rng.integers(0, self.total))
        self._epochs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()  # batches may be prepared by prefetch threads

    def _tokens(self, i: int) -> np.ndarray:
        o = self.offsets[i]
        return np.asarray(self.data[o : o + self.lengths[i]], dtype=np.int64)

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        """(piece order [P], cumulative windows [P]) of epoch e."""
        with self._lock:
            if e not in self._epochs:
                order = np.random.default_rng([self.seed, e, 0xE90C]).permutation(len(self.lengths))
                self._epochs[e] = (order, np.cumsum(self.n_windows[order]))
                while len(self._epochs) > 4:
                    self._epochs.popitem(last=False)
            return self._epochs[e]

    def rows(self) -> range:
        """This rank's global rows."""
        return range(self._rows.start, self._rows.stop)

    def where(self, step: int, rows=None) -> list[tuple[int, int, int, int]]:
        """For each row (default: this rank's): (epoch, position in the epoch, piece index,
        window index within the piece) at ``step``."""
        out = []
        for j in self.rows() if rows is None else rows:
            g = self.phase + j * self.total // self.batch_size + step
            e, i = divmod(g, self.total)
            order, cum = self._epoch(e)
            pos = int(np.searchsorted(cum, i, side="right"))
            k = i - (int(cum[pos]) - int(self.n_windows[order[pos]]))
            out.append((e, pos, int(order[pos]), k))
        return out

    def _shift_row(self, e: int, pos: int, piece: int) -> int:
        valid = self.valid_shifts[piece]
        rng = np.random.default_rng([self.seed, e, pos, 0x7A])
        return int(np.flatnonzero(valid)[rng.integers(0, valid.sum())])

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y, reset) for this rank's rows: LongTensor[b, T] x2 and BoolTensor[b]; reset
        is True where the window is its piece's first (the carried state starts afresh)."""
        T = self.seq_len
        where = self.where(step)
        x = np.empty((len(where), T), np.int64)
        y = np.full((len(where), T), self.ignore, np.int64)
        reset = np.zeros(len(where), bool)
        for r, (e, pos, piece, k) in enumerate(where):
            o, n = self.offsets[piece], int(self.lengths[piece])
            a, b = k * T, min(k * T + T + 1, n)
            w = np.asarray(self.data[o + a : o + b], dtype=np.int64)
            if self.tables is not None:
                w = self.tables[self._shift_row(e, pos, piece), w]
            x[r, : len(w) - 1] = w[:-1]
            x[r, len(w) - 1 :] = w[-1]  # padding after the piece's end: never a target
            y[r, : len(w) - 1] = w[1:]
            reset[r] = k == 0
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(reset)


def stream_eval_batches(
    pieces_data: list[np.ndarray], seq_len: int, batch_size: int, limit: int = 0, ignore=-100
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Fixed validation batches for carried state: every piece's windows in order, pieces dealt
    to ``batch_size`` rows (longest first, each to the row with the fewest windows), rows
    padded with unscored windows. [(x, y, reset)] as in ``PieceStreams.batch``; ``limit``
    (0: all) keeps the first batches."""
    rows: list[list[tuple[int, int]]] = [[] for _ in range(batch_size)]
    order = sorted(range(len(pieces_data)), key=lambda i: -len(pieces_data[i]))
    for i in order:
        n = windows_of(len(pieces_data[i]), seq_len)
        if n:
            r = min(range(batch_size), key=lambda r: len(rows[r]))
            rows[r].extend((i, k) for k in range(n))
    steps = max(len(r) for r in rows)
    if limit:
        steps = min(steps, limit)
    out = []
    for s in range(steps):
        x = np.zeros((batch_size, seq_len), np.int64)
        y = np.full((batch_size, seq_len), ignore, np.int64)
        reset = np.ones(batch_size, bool)
        for r, row in enumerate(rows):
            if s >= len(row):
                continue
            i, k = row[s]
            w = np.asarray(pieces_data[i][k * seq_len : k * seq_len + seq_len + 1], np.int64)
            x[r, : len(w) - 1], x[r, len(w) - 1 :] = w[:-1], w[-1]
            y[r, : len(w) - 1] = w[1:]
            reset[r] = k == 0
        out.append((torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(reset)))
    return out
