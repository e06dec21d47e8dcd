"""MIDI piece metrics: rolls from tokens, piece statistics, pitch-range and mismatch flags."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers_generate import random_piece, random_score
from tests.helpers_midi import SPQ, roll
from tunelab.data.midi import make_codec, quantize
from tunelab.kinds.midi_audit import audit_rolls, concat_rolls
from tunelab.metrics import copying as C
from tunelab.metrics import midi as M


def test_pitch_range_far_outside_training_is_noise(corpus):
    _, index = corpus  # training keys 20..69 (MIDI 41..90)
    high = random_piece(np.random.default_rng(9), 40, lo=60, hi=88)  # MIDI 81..108
    a = M.piece_stats(roll(high), SPQ)
    assert a["pitch_range"][1] >= 105
    assert "noise" in M.flags_for(a, index.stats, SPQ)
    inside = M.piece_stats(roll(random_piece(np.random.default_rng(9), 40, lo=25, hi=65)), SPQ)
    assert "noise" not in M.flags_for(inside, index.stats, SPQ)


def test_stats_of_known_piece():
    # 4 steps: {60,64}, {60,64}, {}, {67}; 2 steps per quarter
    t = [89, 64 - 21, 60 - 21, 88, 64 - 21, 60 - 21, 88, 88, 67 - 21, 88, 90]
    s = M.piece_stats(roll(t), SPQ)
    assert s["steps"] == 4 and s["notes"] == 3
    assert s["mean_polyphony"] == pytest.approx(5 / 3)
    assert s["sounding_fraction"] == pytest.approx(0.75)
    assert s["note_density"] == pytest.approx(3 / 2)
    hist = np.array(s["pitch_class_hist"])
    assert hist[0] == pytest.approx(0.4) and hist[4] == pytest.approx(0.4)
    assert hist[7] == pytest.approx(0.2)
    assert s["pitch_range"] == [60, 67]


def test_onsets_tokens_and_notes_give_the_same_roll():
    codec = make_codec("onsets", 4)
    score = random_score(3)
    tokens = codec.encode(score)
    grid = quantize(score, 4, off_piano="drop")
    a = M.roll_from_grid_tokens(tokens, codec.step, codec.bos, 2)
    b = M.roll_from_notes(grid.pitch, grid.onset, grid.offset)
    assert a.n_steps == b.n_steps
    assert np.array_equal(C.step_hashes(a), C.step_hashes(b))
    assert a.onset.sum() == b.onset.sum() == len(grid.pitch)


def test_concat_rolls_keeps_pieces_apart():
    r1 = roll([89, 40, 88, 41, 88, 90])
    r2 = roll([89, 42, 88, 90])
    c = concat_rolls([r1, r2])
    assert c.n_steps == 3 and c.piece_of_step.tolist() == [0, 0, 1]
    assert len(C.window_hashes(C.step_hashes(c), c.piece_of_step, 2)) == 1


def _notes_roll(rng, n_notes: int, voices: int, dur: int, grid: int | None) -> M.Roll:
    """One piece at 24 steps per quarter: ``voices`` parallel lines of ``n_notes`` notes of
    ``dur`` steps; onsets on a ``grid`` (None: at random steps, no metre)."""
    pitch, onset, offset = [], [], []
    for v in range(voices):
        t = 0
        for _ in range(n_notes):
            gap = int(rng.integers(1, 12)) if grid is None else grid * int(rng.integers(1, 3))
            pitch.append(48 + 7 * v + int(rng.integers(0, 7)))
            onset.append(t)
            offset.append(t + dur)
            t += max(gap, dur) if grid is not None else dur + gap
    return M.roll_from_notes(pitch, onset, offset)


def test_sparse_thin_or_arrhythmic_piece_is_a_mismatch_training_piece_is_not():
    spq, rng = 24, np.random.default_rng(11)
    train = [_notes_roll(rng, 40, 3, 6, grid=6) for _ in range(8)]  # 3 voices on sixteenths
    index = C.TrainingIndex(concat_rolls(train), spq)
    assert index.stats["on_grid_share"] == 1.0
    planted = [
        _notes_roll(rng, 40, 3, 6, grid=6),  # like the training pieces
        _notes_roll(rng, 10, 3, 48, grid=48),  # long held notes: a quarter of the density
        _notes_roll(rng, 40, 1, 6, grid=6),  # one voice: a third of the polyphony
        _notes_roll(rng, 40, 3, 3, grid=None),  # as dense, as polyphonic, no metre
    ]
    audits = audit_rolls([train[0], *planted], [[]] * 5, index, spq)
    assert [("mismatch" in a["flags"]) for a in audits] == [False, False, True, True, True]
    assert audits[1]["density_ratio"] > 0.5 and audits[1]["on_grid_ratio"] > 0.9
    # on the beat as often as the training pieces; the arrhythmic piece far less often
    assert 0.8 < audits[1]["on_beat_ratio"] < 1.25 and audits[4]["on_beat_ratio"] < 0.8
    assert audits[2]["density_ratio"] < 0.5
    assert audits[3]["polyphony_ratio"] < 0.5
    arrhythmic = audits[4]
    assert arrhythmic["density_ratio"] > 0.5 and arrhythmic["polyphony_ratio"] > 0.5
    assert arrhythmic["on_grid_share"] < 0.5 * index.stats["on_grid_share"]
    assert "noise" not in arrhythmic["flags"] and "silent" not in arrhythmic["flags"]


def test_on_grid_share_ignores_the_phase_of_each_piece():
    r = M.roll_from_notes([60] * 10, np.arange(10) * 6 + 5, np.arange(10) * 6 + 8)
    assert M.on_grid_share(r, 6) == 1.0  # all onsets at 5 (mod 6): shifted, still on a grid
    assert M.on_grid_share(r, 24) == 0.3  # on one beat phase: 3 of the 10 onsets
