"""Training windows over the memory-mapped arrays: flat token windows, and audio windows
inside one piece each.

The global batch of step S is a pure function of (seed, S): ``batch_size`` is the
GLOBAL batch, and rank r of ``world`` processes takes its rows
[r*B/world, (r+1)*B/world). So resuming at step S replays exactly the batches an
uninterrupted run would have seen, with no sampler state to save, and the data order
does not depend on the number of processes (a run started on 2 processes resumes on 1
with the same batches). Random augmentation is drawn per global row for the same
reason. Each epoch cuts the flat array into windows of ``seq_len + 1`` tokens at a
random phase and shuffles them; the global batch of step S takes the next
``batch_size`` windows, so ranks see disjoint windows and together every window of
the epoch. Windows may straddle piece boundaries (pieces carry BOS/EOS).

Memory per process: the arrays are memory-mapped, and a batch reads only its own
windows; the sampler keeps one permutation of window indices per epoch (8 bytes a
window) and the piece offsets, never the data.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def rank_rows(batch_size: int, rank: int, world: int) -> slice:
    """Rows of the global batch that ``rank`` takes: [r*B/world, (r+1)*B/world)."""
    if world < 1 or not 0 <= rank < world or batch_size % world:
        raise ValueError(
            f"train.batch_size={batch_size} is the global batch; it must be divisible by the "
            f"number of processes ({world})"
        )
    per = batch_size // world
    return slice(rank * per, (rank + 1) * per)


class WindowSampler:
    """Deterministic batches of windows. data: flat integer array [N] (a memmap is fine).

    ``transpose_tables``: optional int64 [S, V] lookup tables, row s maps every
    token to its transposition by ``shifts[s]`` semitones (-1 = leaves the pitch
    range). Each window gets a random shift among those valid for all its tokens.
    """

    def __init__(
        self,
        data: np.ndarray,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        transpose_tables: np.ndarray | None = None,
    ):
        n = len(data)
        if n < seq_len + 1:
            raise ValueError(
                f"the split holds only {n} tokens, fewer than train.seq_len + 1 = {seq_len + 1}; "
                "lower train.seq_len or add data"
            )
        self.data, self.seq_len, self.batch_size = data, seq_len, batch_size
        self.seed, self.rank, self.world = seed, rank, world
        self.rows = rank_rows(batch_size, rank, world)
        self.tables = transpose_tables
        per_phase0 = (n - 1) // seq_len
        # One window fewer than fits at phase 0 leaves room for any phase < seq_len.
        self.k = per_phase0 - 1 if per_phase0 >= 2 else 1
        self.max_phase = min(seq_len - 1, n - 1 - self.k * seq_len)
        self._epochs: OrderedDict[int, tuple[int, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()  # batches may be prepared by prefetch threads

    @property
    def windows_per_epoch(self) -> int:
        return self.k

    def _epoch(self, e: int) -> tuple[int, np.ndarray]:
        with self._lock:
            if e not in self._epochs:
                rng = np.random.default_rng([self.seed, e, 0x5EED])
                phase = int(rng.integers(0, self.max_phase + 1))
                self._epochs[e] = (phase, rng.permutation(self.k))
                while len(self._epochs) > 4:
                    self._epochs.popitem(last=False)
            return self._epochs[e]

    def starts(self, step: int) -> np.ndarray:
        """Start offsets of this rank's windows at ``step``: int64 [batch_size / world]."""
        g0 = step * self.batch_size + self.rows.start
        out = np.empty(self.rows.stop - self.rows.start, dtype=np.int64)
        for j in range(len(out)):
            e, i = divmod(g0 + j, self.k)
            phase, perm = self._epoch(e)
            out[j] = phase + perm[i] * self.seq_len
        return out

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y): LongTensor[B / world, T] inputs and next-token targets for ``step``."""
        idx = self.starts(step)[:, None] + np.arange(self.seq_len + 1)[None, :]
        w = np.asarray(self.data[idx], dtype=np.int64)  # [b, T+1]
        if self.tables is not None:
            w = self._transpose(w, np.random.default_rng([self.seed, step, 0x7A]))
        t = torch.from_numpy(w)
        return t[:, :-1], t[:, 1:]

    def _transpose(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        moved = self.tables[:, w]  # [S, b, T+1]
        valid = (moved >= 0).all(axis=2)  # [S, b]; the identity row is always valid
        # one draw per row of the GLOBAL batch, so a row's shift does not depend on the world
        draw = rng.random((len(self.tables), self.batch_size))[:, self.rows]
        pick = (draw * valid).argmax(axis=0)  # uniform among valid shifts
        return moved[pick, np.arange(w.shape[0])]


class PieceWindows:
    """Deterministic batches of windows that each lie inside one piece, with its label.

    A window of ``length`` samples starts anywhere a whole window fits in its piece; the
    draw is uniform over all such starts (long pieces are drawn more often), from an RNG
    seeded by (seed, step): the global batch of ``batch_size`` rows is a pure function of
    the step, and rank r takes rows [r*B/world, (r+1)*B/world). Pieces shorter than
    ``length`` are never drawn.

    data: flat array [N] (a memmap is fine); pieces: index records with offset/length;
    labels: int64 [P] (one per piece) or None.
    """

    def __init__(
        self,
        data: np.ndarray,
        pieces: list[dict],
        length: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        labels: np.ndarray | None = None,
    ):
        lengths = np.array([p["length"] for p in pieces], np.int64)
        self.offsets = np.array([p["offset"] for p in pieces], np.int64)
        self.starts_per_piece = np.maximum(lengths - length + 1, 0)
        self.total = int(self.starts_per_piece.sum())
        if self.total == 0:
            longest = int(lengths.max()) if len(lengths) else 0
            raise ValueError(
                f"no piece holds a whole window of {length:,} samples (longest: {longest:,}); "
                "lower train.seq_len or add longer pieces"
            )
        self.cum = np.cumsum(self.starts_per_piece)
        self.data, self.length, self.batch_size = data, length, batch_size
        self.seed, self.rank, self.labels = seed, rank, labels
        self.rows = rank_rows(batch_size, rank, world)

    def starts(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(piece index, start within the flat array): int64 [batch_size / world] each."""
        rng = np.random.default_rng([self.seed, step, 0xA0D1])
        k = rng.integers(0, self.total, self.batch_size)[self.rows]
        piece = np.searchsorted(self.cum, k, side="right")
        within = k - (self.cum[piece] - self.starts_per_piece[piece])
        return piece, self.offsets[piece] + within

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(windows [B / world, length] in the array's dtype, labels int64 [B / world] or None)."""
        piece, start = self.starts(step)
        idx = start[:, None] + np.arange(self.length)[None, :]
        labels = None if self.labels is None else self.labels[piece]
        return np.asarray(self.data[idx]), labels


def piece_windows(pieces_data: list[np.ndarray], length: int, limit: int = 0) -> list[tuple]:
    """Fixed evaluation windows inside pieces: [(piece index, window [length])], non-overlapping,
    spread evenly over all pieces when more fit than ``limit`` (0: all)."""
    where = [
        (i, s) for i, p in enumerate(pieces_data) for s in range(0, len(p) - length + 1, length)
    ]
    if limit and len(where) > limit:
        where = [where[j] for j in np.linspace(0, len(where) - 1, limit).round().astype(int)]
    return [(i, np.asarray(pieces_data[i][s : s + length])) for i, s in where]


def transpose_tables(codec, max_shift: int) -> np.ndarray:
    """int64 [2*max_shift + 1, V]: codec.transpose_table(s) for s in -max_shift..max_shift."""
    return np.stack([codec.transpose_table(s) for s in range(-max_shift, max_shift + 1)])


def eval_windows(data: np.ndarray, seq_len: int, limit: int = 0) -> np.ndarray:
    """Fixed validation windows at stride ``seq_len``: int64 [N, seq_len + 1] (limit 0: all).

    A split shorter than one window gives one window of the whole split.
    """
    n = len(data)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    length = min(seq_len + 1, n)
    count = max(1, (n - 1) // (length - 1))
    if limit:
        count = min(count, limit)
    idx = np.arange(count)[:, None] * (length - 1) + np.arange(length)[None, :]
    idx = idx[idx[:, -1] < n]
    return np.asarray(data[idx], dtype=np.int64)


def prefetch(fn: Callable[[int], object], start: int, workers: int) -> Iterator[object]:
    """Yield fn(start), fn(start + 1), ...; with workers > 0 computed ahead in threads."""
    if workers <= 0:
        step = start
        while True:
            yield fn(step)
            step += 1
    with ThreadPoolExecutor(workers) as pool:
        ahead = workers * 2
        futures = [pool.submit(fn, start + i) for i in range(ahead)]
        step = start + ahead
        try:
            while True:
                yield futures.pop(0).result()
                futures.append(pool.submit(fn, step))
                step += 1
        finally:
            for f in futures:
                f.cancel()
