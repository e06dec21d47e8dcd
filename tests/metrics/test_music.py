"""Symbolic music statistics on hand-made inputs with known values."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.metrics import midi as M
from tunelab.metrics import music as MM

SR = 8000


def notes(pitches, onsets, length=1):
    p = np.asarray(pitches)
    o = np.asarray(onsets)
    return M.roll_from_notes(p, o, o + length)


def test_c_major_scale_figures():
    scale = [60, 62, 64, 65, 67, 69, 71, 72]  # C D E F G A B C, one per step, 2 steps/quarter
    r = notes(scale, range(8))
    assert MM.pitch_range(r) == 12
    assert MM.scale_consistency(r) == 1.0
    # 8 key-steps over 7 pitch classes, C twice: H = -(2/8 log2 2/8 + 6 * 1/8 log2 1/8)
    assert MM.pitch_class_entropy(r) == pytest.approx(0.5 + 6 * 3 / 8)
    assert MM.polyphony(r) == 1.0 and MM.empty_step_rate(r) == 0.0
    assert MM.note_density(r, 2) == 2.0  # 8 onsets over 4 quarters
    ih = MM.interval_histogram(r)
    assert ih[12 + 2] == pytest.approx(5 / 7, abs=1e-5) and ih[12 + 1] == pytest.approx(
        2 / 7, abs=1e-5
    )


def test_off_scale_note_chords_and_rests():
    r = notes([60, 62, 64, 66], [0, 2, 4, 6])  # F# breaks C major; every other step empty
    assert MM.scale_consistency(r) == pytest.approx(1.0)  # ...but all four fit G major
    r = notes([60, 61, 62, 63], [0, 1, 2, 3])  # 4 chromatic notes: at most 3 in any major scale
    assert MM.scale_consistency(r) == pytest.approx(3 / 4)
    chord = notes([60, 64, 67, 60, 64], [0, 0, 0, 3, 3])  # a triad, a rest of 2 steps, a dyad
    assert MM.polyphony(chord) == pytest.approx(2.5)
    assert MM.empty_step_rate(chord) == pytest.approx(2 / 4)
    assert MM.pitch_class_entropy(notes([60, 72], [0, 1])) == 0.0
    empty = M.Roll(
        *(np.zeros(0, np.int64),) * 2, np.zeros(6, np.int64), "onsets", np.zeros(0, bool)
    )
    assert MM.pitch_range(empty) == 0 and MM.empty_step_rate(empty) == 1.0
    assert MM.pitch_class_entropy(empty) == 0.0 and MM.scale_consistency(empty) == 0.0


def test_groove_consistency():
    spq = 1  # bars of 4 steps
    same = notes([60] * 6, [0, 2, 4, 6, 8, 10])  # x.x. in each of 3 bars
    assert MM.groove_consistency(same, spq) == 1.0
    # bar 0: x... ; bar 1: xxxx -> 3 of 4 positions differ
    diff = notes([60, 60, 62, 64, 65], [0, 4, 5, 6, 7])
    assert MM.groove_consistency(diff, spq) == pytest.approx(1 - 3 / 4)
    assert MM.groove_consistency(notes([60], [0]), spq) is None  # a single bar


def test_bar_repetition():
    spq = 1  # bars of 4 steps
    motif = ([60, 64, 67], [0, 1, 2])
    # bars: motif, motif, other, (empty), motif, then a partial bar (not counted):
    # 2 of the 4 non-empty whole bars repeat an earlier one
    p = motif[0] * 2 + [62, 65] + motif[0] + [60]
    o = motif[1] + [4 + t for t in motif[1]] + [8, 9] + [16 + t for t in motif[1]] + [20]
    assert MM.bar_repetition(notes(p, o), spq) == pytest.approx(2 / 4)
    # A note struck in each bar and held through it: the second bar repeats the first. One
    # note held over the bar line: the second bar only holds it, so it is another bar; so is
    # a transposition.
    assert MM.bar_repetition(notes([60, 60], [0, 4], length=4), spq) == 1 / 2
    assert MM.bar_repetition(notes([60], [0], length=8), spq) == 0.0
    assert MM.bar_repetition(notes([60, 61], [0, 4], length=4), spq) == 0.0
    assert MM.bar_repetition(notes([60], [0]), spq) is None  # a single bar


def test_histogram_distances_to_a_reference():
    train = notes([60, 62, 64, 65, 67, 69, 71, 72] * 2, range(16))
    ref = MM.reference_histograms(train)
    same = MM.music_metrics(notes([60, 62, 64, 65, 67, 69, 71, 72], range(8)), 2, ref)
    assert same["pitch_class_hist_distance"] == pytest.approx(0.0, abs=1e-4)
    far = MM.music_metrics(notes([61, 73, 61, 73], range(4)), 2, ref)  # only C#, octave leaps
    assert far["pitch_class_hist_distance"] == pytest.approx(1.0)
    # training has one -12 leap (C6 -> C5) among its 15 intervals; the piece's are +-12
    assert far["interval_hist_distance"] == pytest.approx(1 - 1 / 15, abs=1e-4)
    assert MM.histogram_distance([0.0] * 3, [1.0, 0, 0]) is None
