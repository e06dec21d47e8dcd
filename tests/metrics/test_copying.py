"""Copy audit: hashing is exact, planted copies (also transposed) are flagged, fresh pieces
are not, and silence / noise / near-duplicates get their flags."""

from __future__ import annotations

import numpy as np

from tests.helpers_generate import random_piece
from tests.helpers_midi import SPQ, roll
from tunelab.kinds.midi_audit import audit_rolls
from tunelab.metrics import copying as C
from tunelab.metrics import midi as M


def steps_slice(tokens, a: int, b: int) -> np.ndarray:
    """Tokens of steps a..b-1 of a piece (whole steps, no BOS/EOS)."""
    ends = np.flatnonzero(tokens == 88)
    start = ends[a - 1] + 1 if a else 1
    return tokens[start : ends[b - 1] + 1]


def test_window_hash_matches_direct_formula():
    rng = np.random.default_rng(1)
    h = rng.integers(0, 2**63, 30, dtype=np.uint64)
    pieces = np.repeat([0, 1], [17, 13])
    for L in (1, 3, 13):
        got = C.window_hashes(h, pieces, L)
        want = []
        for i in range(len(h) - L + 1):
            if pieces[i] == pieces[i + L - 1]:
                want.append(sum(int(h[i + j]) * int(C._B) ** j for j in range(L)) % 2**64)
        assert got.tolist() == want


def test_planted_copy_is_flagged_also_transposed(corpus):
    pieces, index = corpus
    rng = np.random.default_rng(7)
    fresh = random_piece(rng, 60, lo=10, hi=80)
    excerpt = steps_slice(pieces[3], 10, 30)  # 20 steps = 10 quarters of a training piece
    for shift in (0, 5, -7):
        e = excerpt.copy()
        e[e < 88] += shift
        planted = np.concatenate([fresh[:-1], e, [90]])
        a = C.copy_audit(roll(planted), index)
        assert a["longest_copy_steps_transposed"] >= 20
        assert a["longest_copy_shift"] == -shift
        if shift == 0:
            assert a["longest_copy_steps"] >= 20
        else:
            assert a["longest_copy_steps"] < 20
        a.update(M.piece_stats(roll(planted), SPQ))
        assert "copied" in M.flags_for(a, index.stats, SPQ)


def test_fresh_piece_is_not_flagged(corpus):
    _, index = corpus
    fresh = random_piece(np.random.default_rng(123), 60, lo=10, hi=80)
    a = C.copy_audit(roll(fresh), index)
    a.update(M.piece_stats(roll(fresh), SPQ))
    assert a["longest_copy_steps_transposed"] < 8
    assert a["copied_window_fraction"] == 0.0
    assert M.flags_for(a, index.stats, SPQ) == []


def test_whole_training_piece_copied_windows(corpus):
    pieces, index = corpus
    a = C.copy_audit(roll(pieces[0]), index)
    assert a["longest_copy_steps"] == 64
    assert a["copied_window_fraction"] == 1.0


def test_held_chord_is_not_a_copy(corpus):
    pieces, index = corpus
    chord = steps_slice(pieces[0], 0, 1)  # one training chord held for a long time
    held = np.concatenate([[89], np.tile(chord, 40), [90]])
    a = C.copy_audit(roll(held), index)
    a.update(M.piece_stats(roll(held), SPQ))
    assert a["longest_copy_changes"] == 0
    assert "copied" not in M.flags_for(a, index.stats, SPQ)


def test_silent_noise_identical_flags(corpus):
    pieces, index = corpus
    rng = np.random.default_rng(5)
    silent = np.array([89] + [88] * 40 + [90])
    noise = random_piece(rng, 40, voices=9, lo=0, hi=88)  # 9 keys every step: 3x the polyphony
    a = random_piece(rng, 40)
    rolls = [roll(silent), roll(noise), roll(a), roll(a)]
    audits = audit_rolls(rolls, [[], [], [], []], index, SPQ)
    assert "silent" in audits[0]["flags"]
    assert "noise" in audits[1]["flags"]
    assert "identical" in audits[2]["flags"] and "identical" in audits[3]["flags"]
    assert audits[2]["most_similar"] == 3
    assert "identical" not in audits[1]["flags"]
    sim = C.pairwise_similarity(rolls[1:])
    assert sim[1, 2] == 1.0 and sim[0, 1] < 0.1
