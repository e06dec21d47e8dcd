"""Symbolic music statistics of one piece (a ``metrics.Roll``), for ``tunelab evaluate``'s
music metrics and the report: pitch range and entropy, scale consistency, polyphony, empty
steps, note density, groove consistency, bar repetition, and histogram distances to the
training split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tunelab.metrics.midi import Roll

# Pure functions of a Roll (one piece). References: Yang & Lerch, "On the evaluation of
# generative models in music", Neural Comput. & Applic. 2020 (pitch range, pitch-class
# histogram, note count, interval histogram); Dong et al., "MuseGAN", AAAI 2018 (empty bars,
# polyphonicity); Mogren, "C-RNN-GAN", 2016 (scale consistency); Wu & Yang, "The Jazz
# Transformer on the front line", ISMIR 2020 (pitch-class entropy, grooving pattern similarity).

INTERVAL_CLIP = 12  # melodic intervals beyond an octave fall in the outermost bins
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)  # a natural minor scale is the relative major's set


def pitch_range(roll: Roll) -> int:
    """Semitones between the highest and lowest pitch the piece sounds: max p - min p (0 when
    it has no notes). (Yang & Lerch 2020, "PR".)"""
    keys = roll.keys()
    return int(keys.max() - keys.min()) if len(keys) else 0


def pitch_class_entropy(roll: Roll) -> float:
    """H = -sum_c p_c log2 p_c (bits, 0..log2 12 = 3.585) of the duration-weighted pitch-class
    histogram p (``piece_stats``' ``pitch_class_hist``); 0 for no notes. Low: one key centre
    or a drone; near 3.585: atonal or random. (Wu & Yang 2020, "H".)"""
    pcs = np.bincount((roll.keys() + 21) % 12, minlength=12).astype(float)
    if not pcs.sum():
        return 0.0
    p = pcs[pcs > 0] / pcs.sum()
    return float(-(p * np.log2(p)).sum())


def scale_consistency(roll: Roll) -> float:
    """max over the 12 major scales S_k = {(k + d) mod 12 : d in MAJOR_SCALE} of the share of
    note onsets whose pitch class is in S_k (minor keys share these sets); 1.0 when every note
    fits one diatonic scale, 0.0 for no notes. (Mogren 2016, "scale consistency".)"""
    pcs = (roll.keys()[roll.onset] + 21) % 12
    if not len(pcs):
        return 0.0
    counts = np.bincount(pcs, minlength=12)
    in_scale = [counts[[(k + d) % 12 for d in MAJOR_SCALE]].sum() for k in range(12)]
    return float(max(in_scale) / len(pcs))


def polyphony(roll: Roll) -> float:
    """Mean number of keys sounding per sounding step: sum_s n_s / #{s : n_s > 0} (0 for no
    notes). (Dong et al. 2018 count steps with >= 2 pitches; the mean keeps chord size.)"""
    counts = roll.counts()
    sounding = counts[counts > 0]
    return float(sounding.mean()) if len(sounding) else 0.0


def empty_step_rate(roll: Roll) -> float:
    """#{s : n_s = 0} / S, the share of grid steps with no key sounding (1.0 for an empty
    piece). (Dong et al. 2018 "EB", the empty-bar rate, taken per step.)"""
    S = roll.n_steps
    return float(np.count_nonzero(roll.counts() == 0) / S) if S else 1.0


def note_density(roll: Roll, steps_per_quarter: int) -> float:
    """Note onsets per quarter note: #onsets / (S / steps_per_quarter) (0 for no steps).
    (Yang & Lerch 2020 "NC", normalised by length.)"""
    S = roll.n_steps
    return float(roll.onset.sum() / (S / steps_per_quarter)) if S else 0.0


def groove_consistency(roll: Roll, steps_per_quarter: int, beats_per_bar: int = 4) -> float:
    """1 - mean_i (1/Q) sum_q XOR(g_i[q], g_{i+1}[q]) over pairs of adjacent whole bars, where
    g_i in {0,1}^Q marks the steps of bar i with at least one onset, Q = beats_per_bar *
    steps_per_quarter (4/4 assumed). 1.0: every bar has the same rhythm; None with fewer than
    two bars. (Wu & Yang 2020, "GS", grooving pattern similarity.)"""
    Q = beats_per_bar * steps_per_quarter
    bars = roll.n_steps // Q
    if bars < 2:
        return None  # type: ignore[return-value]
    g = np.zeros(bars * Q, bool)
    on = roll.step_of[roll.onset]
    g[on[on < bars * Q]] = True
    g = g.reshape(bars, Q)
    return float(1.0 - np.mean(g[1:] ^ g[:-1]))


def bar_repetition(roll: Roll, steps_per_quarter: int, beats_per_bar: int = 4) -> float:
    """#{non-empty bars whose notes (step in the bar, key, onset or held) equal those of an
    earlier bar} / #{non-empty bars}, over whole 4/4 bars: how much the piece repeats itself
    literally (loops, written-out repeats, a phrase sung twice). 0.0: no bar comes back; None
    with fewer than two non-empty bars. Empty bars are left out: silence is not structure."""
    Q = beats_per_bar * steps_per_quarter
    bars = roll.n_steps // Q
    content: list[list] = [[] for _ in range(bars)]
    notes = zip(roll.step_of.tolist(), roll.keys().tolist(), roll.onset.tolist(), strict=True)
    for s, k, o in notes:
        if s < bars * Q:
            content[s // Q].append((s % Q, k, o))
    seen, repeats, filled = set(), 0, 0
    for bar in content:
        if not bar:
            continue
        sig = tuple(sorted(bar))
        repeats += sig in seen
        filled += 1
        seen.add(sig)
    return repeats / filled if filled >= 2 else None  # type: ignore[return-value]


def interval_histogram(roll: Roll) -> list[float]:
    """Histogram (25 shares) of the melodic intervals of the top line: at each step with an
    onset, the highest key struck; the interval to the previous such key in the same piece,
    clipped to +-INTERVAL_CLIP semitones; bin i holds interval i - 12. All zeros when the
    piece has fewer than two onset steps. (Yang & Lerch 2020, "IH".)"""
    on = roll.onset
    steps, keys = roll.step_of[on], roll.keys()[on]
    if not len(steps):
        return [0.0] * (2 * INTERVAL_CLIP + 1)
    first = np.concatenate([[True], steps[1:] != steps[:-1]])  # ids in a step: highest first
    steps, top = steps[first], keys[first]
    same = roll.piece_of_step[steps[1:]] == roll.piece_of_step[steps[:-1]]
    d = np.clip(np.diff(top)[same], -INTERVAL_CLIP, INTERVAL_CLIP) + INTERVAL_CLIP
    h = np.bincount(d, minlength=2 * INTERVAL_CLIP + 1).astype(float)
    return (h / h.sum() if h.sum() else h).round(5).tolist()


def histogram_distance(a: list[float], b: list[float]) -> float | None:
    """Total variation distance 0.5 * sum |a - b| between two histograms of shares (0..1);
    None when either is empty (all zeros)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not a.sum() or not b.sum():
        return None
    return float(0.5 * np.abs(a - b).sum())


def reference_histograms(roll: Roll) -> dict:
    """The training set's pitch-class and interval histograms (for ``music_metrics``)."""
    pcs = np.bincount((roll.keys() + 21) % 12, minlength=12).astype(float)
    return {
        "pitch_class_hist": (pcs / pcs.sum() if pcs.sum() else pcs).round(5).tolist(),
        "interval_hist": interval_histogram(roll),
    }


def music_metrics(roll: Roll, steps_per_quarter: int, reference: dict | None = None) -> dict:
    """Every symbolic metric above for one piece; with ``reference`` (``reference_histograms``
    of the training split) also the pitch-class and interval histogram distances to it."""
    pcs = np.bincount((roll.keys() + 21) % 12, minlength=12).astype(float)
    out = {
        "pitch_range": pitch_range(roll),
        "pitch_class_entropy": pitch_class_entropy(roll),
        "scale_consistency": scale_consistency(roll),
        "polyphony": polyphony(roll),
        "empty_step_rate": empty_step_rate(roll),
        "note_density": note_density(roll, steps_per_quarter),
        "groove_consistency": groove_consistency(roll, steps_per_quarter),
        "bar_repetition": bar_repetition(roll, steps_per_quarter),
    }
    if reference is not None:
        hist = (pcs / pcs.sum()).tolist() if pcs.sum() else pcs.tolist()
        out["pitch_class_hist_distance"] = histogram_distance(hist, reference["pitch_class_hist"])
        out["interval_hist_distance"] = histogram_distance(
            interval_histogram(roll), reference["interval_hist"]
        )
    return out
