"""Copying of training pieces and sameness of samples, by hashing windows of grid steps.

Pieces are ``Roll``s (``tunelab.metrics.midi``): each step is the set of content ids it
holds, and a copy must match them exactly (struck-vs-held too in the onsets space).

Hashing (all arithmetic mod 2**64):

* step hash    h(s) = C + sum_{id in s} R[id], with R fixed random 64-bit values (a set hash);
* window hash  W(i, L) = sum_{j<L} h(i+j) * B**j, computed for all i at once from prefix sums
               P(i) = sum_{k<i} h(k) * B**k as W(i, L) = (P(i+L) - P(i)) * B**-i (B odd, so
               B**-1 exists mod 2**64). Windows never cross a piece boundary.

Copy audit: the longest run L such that some L-step window of the piece, transposed by some
shift in ``SHIFTS``, equals an L-step window of a training piece (binary search on L; the
property "a copied run of length L exists" is monotone in L). Collisions of 64-bit hashes are
negligible at these sizes.

Similarity of samples (the ``identical`` flag): Jaccard of two pieces' sets of
``WINDOW``-step window hashes.
"""

from __future__ import annotations

import numpy as np

from tunelab.metrics.midi import N_KEYS, Roll, piece_stats

SHIFTS = tuple(range(-12, 13))  # transpositions tried by the copy audit (semitones)
WINDOW = 16  # steps per window for the copied-window fraction and piece similarity

_R = np.random.default_rng(0x7E57AB).integers(
    1, 2**63, size=2 * N_KEYS, dtype=np.uint64
) * np.uint64(2) + np.uint64(1)
_C = np.uint64(0x9E3779B97F4A7C15)
_B = np.uint64(0x100000001B3 * 2 + 1)
_BINV = np.uint64(pow(int(_B), -1, 2**64))


def shift_table(space: str, shift: int) -> np.ndarray:
    """Content id -> id transposed by ``shift`` semitones, -1 when the key leaves 21..108."""
    blocks = 2 if space == "onsets" else 1
    k = np.arange(N_KEYS) + shift
    one = np.where((k >= 0) & (k < N_KEYS), k, -1)
    return np.concatenate([np.where(one >= 0, one + b * N_KEYS, -1) for b in range(blocks)])


def step_hashes(roll: Roll, shift: int = 0) -> np.ndarray:
    """uint64[S]: h(s) = C + sum R[id] over the step's ids (after transposing by ``shift``).
    A step with a key transposed out of range gets a random value that matches nothing."""
    ids = shift_table(roll.space, shift)[roll.ids] if shift else roll.ids
    bad = ids < 0
    vals = _R[np.where(bad, 0, ids)]
    bounds = np.searchsorted(roll.step_of, np.arange(roll.n_steps + 1))
    cs = np.concatenate([[np.uint64(0)], np.cumsum(vals, dtype=np.uint64)])
    h = cs[bounds[1:]] - cs[bounds[:-1]] + _C
    if bad.any():
        broken = np.unique(roll.step_of[bad]).astype(np.uint64)
        with np.errstate(over="ignore"):  # distinct per step and shift; equal to no real step
            h[broken] = (
                (broken + np.uint64(1)) * _R[-1] + np.uint64(shift & 0xFF) * _R[-2] + _C * _C
            )
    return h


def window_hashes(h: np.ndarray, piece_of_step: np.ndarray, L: int) -> np.ndarray:
    """uint64[n]: W(i, L) for every window start i whose L steps lie in one piece."""
    S = len(h)
    if L < 1 or S < L:
        return np.zeros(0, np.uint64)
    with np.errstate(over="ignore"):
        powb = np.cumprod(np.full(S, _B, np.uint64), dtype=np.uint64) * _BINV  # B**k
        pinv = np.cumprod(np.full(S, _BINV, np.uint64), dtype=np.uint64) * _B  # B**-k
        P = np.concatenate([[np.uint64(0)], np.cumsum(h * powb, dtype=np.uint64)])
        w = (P[L:] - P[:-L]) * pinv[: S - L + 1]
    same = piece_of_step[: S - L + 1] == piece_of_step[L - 1 :]
    return w[same]


def static_windows(h: np.ndarray, L: int) -> np.ndarray:
    """bool[S-L+1]: windows whose L steps are all identical (a held chord or a rest)."""
    if L < 1 or len(h) < L:
        return np.zeros(0, bool)
    change = np.concatenate([[0], np.cumsum(h[1:] != h[:-1])])
    return change[L - 1 :] == change[: len(h) - L + 1]


class TrainingIndex:
    """Window-hash sets of the training pieces (cached per window length) and their statistics.

    Built from the training roll, or (``from_parts``) from what a bundle stores instead of the
    roll: the step hashes, the piece of each step, the statistics and the reference histograms.
    The copy audit needs nothing else, so both give the same figures. ``roll`` is None then."""

    def __init__(self, roll: Roll | None, steps_per_quarter: int):
        self.roll = roll
        self.spq = steps_per_quarter
        self._windows: dict[int, np.ndarray] = {}
        self._histograms: dict | None = None
        if roll is not None:
            self.h = step_hashes(roll)
            self.piece_of_step = roll.piece_of_step
            self.stats = piece_stats(roll, steps_per_quarter)

    @classmethod
    def from_parts(
        cls, h: np.ndarray, piece_of_step: np.ndarray, spq: int, stats: dict, histograms: dict
    ) -> TrainingIndex:
        """The index of a roll with step hashes ``h`` (uint64[S]), pieces ``piece_of_step``
        (int64[S]), ``piece_stats`` ``stats`` and ``reference_histograms`` ``histograms``."""
        index = cls(None, spq)
        index.h = np.asarray(h, np.uint64)
        index.piece_of_step = np.asarray(piece_of_step, np.int64)
        index.stats, index._histograms = stats, histograms
        return index

    @property
    def histograms(self) -> dict:
        """The training split's pitch-class and interval histograms (``music_metrics``)."""
        if self._histograms is None:
            from tunelab.metrics.music import reference_histograms

            self._histograms = reference_histograms(self.roll)
        return self._histograms

    def windows(self, L: int) -> np.ndarray:
        """Sorted unique uint64 hashes of all training windows of L steps."""
        if L not in self._windows:
            if len(self._windows) > 32:
                self._windows.clear()  # bound memory on long audits
            self._windows[L] = np.unique(window_hashes(self.h, self.piece_of_step, L))
        return self._windows[L]

    def contains(self, w: np.ndarray, L: int) -> np.ndarray:
        """bool[len(w)]: which window hashes occur in training."""
        ref = self.windows(L)
        if len(ref) == 0 or len(w) == 0:
            return np.zeros(len(w), bool)
        i = np.minimum(np.searchsorted(ref, w), len(ref) - 1)
        return ref[i] == w


def copy_audit(roll: Roll, index: TrainingIndex, shifts=SHIFTS, window: int = WINDOW) -> dict:
    """Copying of one piece from the training pieces.

    Returns ``longest_copy_steps`` (verbatim, no shift), ``longest_copy_steps_transposed``
    (max over ``shifts``) with its ``shift``, ``start`` step and ``changes`` (number of i in
    the run with step i != step i-1), ``longest_copy_quarters`` (transposed run / steps per
    quarter), and ``copied_window_fraction``: the share of the piece's non-static
    ``window``-step windows found verbatim in training (``..._transposed``: under any shift).
    """
    S = roll.n_steps
    pos = np.zeros(S, np.int64)
    hs = {s: step_hashes(roll, s) for s in shifts}
    h0 = hs.get(0, step_hashes(roll))

    def found(L: int, shift_list) -> tuple[int, int] | None:
        for s in shift_list:
            hit = np.flatnonzero(index.contains(window_hashes(hs.get(s, h0), pos, L), L))
            if len(hit):
                return s, int(hit[0])
        return None

    def longest(shift_list) -> tuple[int, int, int]:
        lo, hi, best = 0, S, (0, 0)
        while lo < hi:  # invariant: a run of lo steps exists; none of hi + 1
            mid = (lo + hi + 1) // 2
            f = found(mid, shift_list)
            if f:
                lo, best = mid, f
            else:
                hi = mid - 1
        return lo, best[0], best[1]

    exact, _, _ = longest([0])
    run, shift, start = longest(sorted(shifts, key=abs))
    seg = h0[start : start + run]
    L = min(window, S)
    static = static_windows(h0, L)
    frac, frac_t = 0.0, 0.0
    if L > 0 and (~static).any():
        live = ~static
        hit0 = index.contains(window_hashes(h0, pos, L), L)
        hit_any = hit0.copy()
        for s in shifts:
            if s:
                hit_any |= index.contains(window_hashes(hs[s], pos, L), L)
        frac = float(hit0[live].mean())
        frac_t = float(hit_any[live].mean())
    return {
        "longest_copy_steps": exact,
        "longest_copy_steps_transposed": run,
        "longest_copy_shift": shift,
        "longest_copy_start": start,
        "longest_copy_changes": int(np.count_nonzero(seg[1:] != seg[:-1])),
        "longest_copy_quarters": run / index.spq,
        "copied_window_fraction": frac,
        "copied_window_fraction_transposed": frac_t,
        "live_windows": int((~static).sum()),
    }


def window_set(roll: Roll, window: int = WINDOW) -> np.ndarray:
    """Unique hashes of the piece's min(window, S)-step windows."""
    L = min(window, roll.n_steps)
    return np.unique(window_hashes(step_hashes(roll), roll.piece_of_step, L))


def pairwise_similarity(rolls: list[Roll], window: int = WINDOW) -> np.ndarray:
    """float[n, n]: Jaccard |A & B| / |A | B| of the pieces' 16-step window sets (1 on the
    diagonal; 1 for two empty pieces)."""
    sets = [window_set(r, window) for r in rolls]
    n = len(sets)
    sim = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            inter = len(np.intersect1d(sets[i], sets[j], assume_unique=True))
            union = len(sets[i]) + len(sets[j]) - inter
            sim[i, j] = sim[j, i] = inter / union if union else 1.0
    return sim
