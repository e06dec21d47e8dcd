"""MIDI <-> tokens: round trips of every encoding, decoding of invalid streams, tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers_midi import make_score, notes_of
from tunelab.data.midi import PITCH_HI, PITCH_LO, codec_from_meta, make_codec, quantize


# A random piano roll as non-overlapping notes per key on a 24-steps-per-quarter grid.
@st.composite
def note_lists(draw, max_notes=40):
    n = draw(st.integers(1, max_notes))
    notes = []
    for _ in range(n):
        pitch = draw(st.integers(PITCH_LO, PITCH_HI))
        on = draw(st.integers(0, 200))
        dur = draw(st.integers(1, 30))
        notes.append((pitch, on, on + dur))
    # Make same-key notes disjoint (the codecs' precondition after quantize()).
    notes.sort()
    clean = []
    for p, on, off in notes:
        if clean and clean[-1][0] == p and on < clean[-1][2]:
            continue
        clean.append((p, on, off))
    return clean


def score_from_steps(notes, ticks_per_step=20):
    return make_score(
        [(on * ticks_per_step, (off - on) * ticks_per_step, p) for p, on, off in notes]
    )


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(note_lists())
def test_onsets_round_trip_keeps_every_note(notes):
    codec = make_codec("onsets")
    score = score_from_steps(notes)
    tokens = codec.encode(score)
    back = codec.decode(tokens)
    assert notes_of(back) == sorted(notes)  # pitch, onset and offset all survive
    assert np.array_equal(codec.encode(back), tokens)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(note_lists())
def test_steps_round_trip_keeps_the_roll(notes):
    codec = make_codec("steps")
    score = score_from_steps(notes)
    tokens = codec.encode(score)
    back = codec.decode(tokens)
    assert np.array_equal(codec.encode(back), tokens)
    # Every original onset is the onset of a decoded note or inside a held one of that key.
    grid_in = quantize(score).roll()
    grid_out = quantize(back).roll()
    assert np.array_equal(grid_in, grid_out)
    assert codec.count_steps(tokens) == max(off for _, _, off in notes)


def test_steps_token_layout_high_to_low():
    codec = make_codec("steps")
    tokens = codec.encode(score_from_steps([(60, 0, 2), (64, 0, 1), (62, 3, 4)]))
    k = lambda p: p - PITCH_LO  # noqa: E731
    expected = [codec.bos, k(64), k(60), 88, k(60), 88, 88, k(62), 88, codec.eos]
    assert tokens.tolist() == expected
    assert codec.vocab_size == 91 and (codec.step, codec.bos, codec.eos) == (88, 89, 90)


def test_onsets_distinguishes_repeated_from_held():
    codec = make_codec("onsets")
    repeated = codec.encode(score_from_steps([(60, 0, 2), (60, 2, 4)]))
    held = codec.encode(score_from_steps([(60, 0, 4)]))
    assert not np.array_equal(repeated, held)
    assert len(codec.decode(repeated).tracks[0].notes) == 2
    assert len(codec.decode(held).tracks[0].notes) == 1
    assert codec.vocab_size == 179 and (codec.step, codec.bos, codec.eos) == (176, 177, 178)
    # steps cannot tell them apart, by design
    steps = make_codec("steps")
    a = steps.encode(score_from_steps([(60, 0, 2), (60, 2, 4)]))
    assert np.array_equal(a, steps.encode(score_from_steps([(60, 0, 4)])))


def test_remi_round_trip_keeps_pitch_and_onset():
    codec = make_codec("remi")
    rng = np.random.default_rng(0)
    notes = [
        (int(rng.integers(30, 100)), int(on), int(on) + int(rng.integers(1, 40)))
        for on in rng.integers(0, 24 * 16, 60)
    ]
    notes = sorted({(p, on): (p, on, off) for p, on, off in notes}.values())
    score = score_from_steps(notes)
    tokens = codec.encode(score)
    assert tokens[0] == codec.bos and tokens[-1] == codec.eos
    back = codec.decode(tokens)
    got = sorted((p, on) for p, on, _ in notes_of(back))
    assert got == sorted((p, on) for p, on, _ in notes)
    assert np.array_equal(codec.encode(back), tokens)
    again = codec_from_meta(codec.meta())
    assert np.array_equal(again.encode(back), tokens)
    assert codec.count_steps(tokens) % (4 * 24) == 0 and codec.count_steps(tokens) > 0


@pytest.mark.parametrize("encoding", ["steps", "onsets", "remi"])
def test_codec_from_meta_and_tables(encoding):
    codec = make_codec(encoding, steps_per_quarter=12)
    meta = {"kind": "midi", **codec.meta(), "tempo_qpm": 90.0}
    again = codec_from_meta(meta)
    assert again.vocab_size == codec.vocab_size == len(again.token_names)
    assert meta["steps_per_quarter"] == 12
    pt = again.pitch_table()
    assert pt.shape == (again.vocab_size,)
    assert pt[again.bos] == -1 and pt[again.eos] == -1
    assert set(pt[pt >= 0].tolist()) == set(range(PITCH_LO, PITCH_HI + 1))
    for shift in (-3, 0, 5):
        tt = again.transpose_table(shift)
        assert tt[again.bos] == again.bos and tt[again.eos] == again.eos
        ok = tt >= 0
        pitched = pt >= 0
        # a pitch token maps to the same kind of token shifted by `shift`, or -1 off the keyboard
        assert np.all(pt[tt[pitched & ok]] == pt[pitched & ok] + shift)
        lost = pitched & ~ok
        assert np.all((pt[lost] + shift < PITCH_LO) | (pt[lost] + shift > PITCH_HI))
    # transposing tokens and decoding equals decoding and shifting
    score = score_from_steps([(60, 0, 12), (64, 12, 24)], ticks_per_step=40)
    tokens = again.encode(score)
    moved = again.transpose_table(2)[tokens]
    pitches = sorted(n.pitch for n in again.decode(moved).tracks[0].notes)
    assert pitches == [62, 66]
    assert again.decode(tokens).tempos[0].qpm == pytest.approx(90.0, rel=1e-3)


@pytest.mark.parametrize("encoding", ["steps", "onsets", "remi"])
def test_decode_tolerates_invalid_streams(encoding):
    codec = make_codec(encoding)
    rng = np.random.default_rng(1)
    for _ in range(20):
        junk = rng.integers(-5, codec.vocab_size + 5, size=int(rng.integers(0, 200)))
        score = codec.decode(junk)  # never raises
        for n in score.tracks[0].notes if score.tracks else []:
            assert PITCH_LO <= n.pitch <= PITCH_HI and n.duration > 0


def test_decode_stops_at_eos_and_closes_last_step():
    codec = make_codec("steps")
    k = 60 - PITCH_LO
    score = codec.decode([codec.bos, k, codec.step, k, codec.eos, k + 5, codec.step])
    (note,) = score.tracks[0].notes
    assert note.pitch == 60 and note.duration == 2 * score.tpq // 24
    score = codec.decode([codec.bos, k])  # unfinished step still sounds
    assert len(score.tracks[0].notes) == 1


def test_onsets_decode_turns_an_orphan_hold_into_a_note():
    codec = make_codec("onsets")
    hold = 60 - PITCH_LO + 88
    score = codec.decode([codec.bos, hold, codec.step, hold, codec.step, codec.eos])
    (note,) = score.tracks[0].notes
    assert note.pitch == 60 and note.time == 0 and note.duration == 2 * score.tpq // 24
