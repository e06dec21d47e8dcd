"""The musical grid: filters and quantization of tick-based scores (``quantize``), the grid's
views (roll, cells, polyphony) and the way back to a score (``grid_to_score``)."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from tests.helpers_midi import make_score, notes_of
from tunelab.data.midi import PITCH_HI, PITCH_LO, Grid, make_codec, quantize
from tunelab.data.midi.grid import Rejected, grid_to_score, pitch_name


def test_filters_drums_short_off_piano():
    score = make_score(
        [(0, 480, 60), (0, 5, 62), (480, 480, 110), (480, 480, 15)],
        drum_notes=[(0, 480, 36)],
    )
    with pytest.raises(Rejected) as e:
        quantize(score)
    assert e.value.key == "off_piano" and "21-108" in str(e.value)

    g = quantize(score, off_piano="drop")
    assert sorted(g.pitch.tolist()) == [60]
    assert g.counts["drum_notes_dropped"] == 1 and g.counts["drum_tracks_dropped"] == 1
    assert g.counts["short_notes_dropped"] == 1 and g.counts["off_piano_notes_dropped"] == 2

    g = quantize(score, off_piano="fold")
    assert sorted(g.pitch.tolist()) == [27, 60, 98]  # 15 up an octave, 110 down one
    assert g.counts["off_piano_notes_folded"] == 2

    g = quantize(score, off_piano="drop", keep_drums=True)
    assert 36 in g.pitch.tolist()

    with pytest.raises(Rejected, match="only drum"):
        quantize(make_score([], drum_notes=[(0, 480, 36)]))
    with pytest.raises(Rejected, match="no notes left"):
        quantize(make_score([(0, 3, 60)]))


def test_fold_extreme_pitches_land_in_range():
    score = make_score([(i * 480, 480, p) for i, p in enumerate([0, 1, 20, 109, 120, 127])])
    g = quantize(score, off_piano="fold")
    assert g.pitch.min() >= PITCH_LO and g.pitch.max() <= PITCH_HI
    # Each note moves by whole octaves, and by the fewest octaves that reach the keyboard.
    assert sorted(g.pitch.tolist()) == [24, 25, 32, 97, 103, 108]


def test_quantization_is_musical_and_keeps_tempo_changes():
    # Same notes in quarter notes, different tpq and tempi: identical tokens.
    a = make_score([(0, 96, 60), (96, 48, 64)], tpq=96, tempos=((0, 60.0), (96, 180.0)))
    b = make_score([(0, 960, 60), (960, 480, 64)], tpq=960, tempos=((0, 100.0),))
    codec = make_codec("steps")
    assert np.array_equal(codec.encode(a), codec.encode(b))
    g = quantize(a)
    assert g.tempos == [[0, 60.0], [24, 180.0]]
    # Off-grid onsets snap to the nearest step (1/24 quarter = 20 ticks at tpq 480).
    snap = quantize(make_score([(29, 480, 60), (31, 480, 62)]))
    assert list(zip(snap.pitch.tolist(), snap.onset.tolist(), strict=True)) == [(60, 1), (62, 2)]
    # The decoded score plays at the tempo map given.
    back = codec.decode(codec.encode(a), tempos=g.tempos)
    assert [round(t.qpm) for t in back.tempos] == [60, 180]
    assert back.tempos[1].time == 24 * back.tpq // 24


def test_absurd_tempo_ignored_and_absurd_length_rejected():
    score = make_score([(0, 480, 60)], tempos=((0, 100.0),))
    score.tempos.append(symusic.Tempo(240, mspq=1))  # 60 million qpm
    g = quantize(score)
    assert g.tempos == [[0, 100.0]] and g.counts["tempo_events_ignored"] == 1
    far = make_score([(0, 480, 60), (2_000_000_000, 480, 62)])
    with pytest.raises(Rejected) as e:
        quantize(far)
    assert e.value.key == "too_long"


def test_overlapping_same_key_notes_are_normalised():
    score = make_score([(0, 960, 60), (480, 960, 60), (480, 240, 60)])
    g = quantize(score)
    assert g.onset.tolist() == [0, 24] and g.offset.tolist() == [24, 72]
    assert g.counts["overlapping_notes_trimmed"] == 1 and g.counts["duplicate_notes_merged"] == 1
    codec = make_codec("onsets")
    back = codec.decode(codec.encode(score))
    assert notes_of(back) == [(60, 0, 24), (60, 24, 72)]


def _grid(notes) -> Grid:
    """notes: (pitch, onset step, offset step, velocity), already in the grid's order."""
    a = np.array(notes, np.int64).reshape(-1, 4)
    return Grid(a[:, 0], a[:, 1], a[:, 2], a[:, 3])


def test_roll_cells_and_polyphony_agree():
    g = _grid([(64, 0, 2, 80), (60, 0, 3, 80), (67, 2, 3, 70), (60, 3, 5, 90)])
    assert g.n_steps == 5
    roll = g.roll()
    assert roll.shape == (5, 88) and roll.dtype == bool
    assert np.flatnonzero(roll[0]).tolist() == [60 - PITCH_LO, 64 - PITCH_LO]
    assert np.flatnonzero(roll[2]).tolist() == [60 - PITCH_LO, 67 - PITCH_LO]
    assert g.polyphony().tolist() == [2, 2, 2, 1, 1] == roll.sum(axis=1).tolist()
    step, key, struck = g.cells()
    assert len(step) == roll.sum() and roll[step, key].all()
    # struck: the first step of each note only; the re-struck 60 at step 3 counts again
    assert sorted(zip(step[struck].tolist(), (key[struck] + PITCH_LO).tolist(), strict=True)) == [
        (0, 60), (0, 64), (2, 67), (3, 60),
    ]  # fmt: skip
    empty = _grid([])
    assert empty.n_steps == 0 and empty.roll().shape == (0, 88)


def test_grid_to_score_and_back_is_the_same_grid():
    rng = np.random.default_rng(3)
    notes = {}
    for _ in range(40):  # one note per (pitch, onset); quantize would merge the others
        p, on = int(rng.integers(PITCH_LO, PITCH_HI + 1)), int(rng.integers(0, 200))
        notes[p, on] = (p, on, on + int(rng.integers(1, 12)), int(rng.integers(1, 128)))
    # cut same-key overlaps the way quantize does, so the grid is already normalised
    by_key = sorted(notes.values())
    clean = [n if i + 1 == len(by_key) or by_key[i + 1][0] != n[0] else
             (n[0], n[1], min(n[2], by_key[i + 1][1]), n[3]) for i, n in enumerate(by_key)]  # fmt: skip
    clean.sort(key=lambda n: (n[1], -n[0]))
    g = _grid(clean)
    g.tempos = [[0, 90.0], [48, 150.0]]
    back = quantize(grid_to_score(g, 12, g.tempos), 12)
    for field in ("pitch", "onset", "offset", "velocity"):
        assert np.array_equal(getattr(back, field), getattr(g, field)), field
    assert back.tempos == g.tempos


def test_a_note_of_one_step_is_kept_and_a_shorter_one_dropped():
    # tpq 480 at 24 steps per quarter: one step is 20 ticks
    g = quantize(make_score([(0, 20, 60), (40, 19, 62), (80, 480, 64)]))
    assert g.pitch.tolist() == [60, 64] and g.counts["short_notes_dropped"] == 1
    assert (g.offset - g.onset).tolist() == [1, 24]


def test_by_program_keeps_each_instruments_doubled_note():
    score = symusic.Score(480)
    for program in (0, 40):
        track = symusic.Track(f"p{program}", program, False)
        track.notes.append(symusic.Note(0, 480, 60, 90))
        track.notes.append(symusic.Note(480, 480, 62 + program // 40, 90))
        score.tracks.append(track)
    merged = quantize(score)
    assert merged.pitch.tolist() == [60, 63, 62] and merged.program is None
    assert merged.counts["duplicate_notes_merged"] == 1
    apart = quantize(score, by_program=True)
    assert list(zip(apart.pitch.tolist(), apart.program.tolist(), strict=True)) == [
        (60, 0), (60, 40), (63, 40), (62, 0),
    ]  # fmt: skip
    assert apart.counts["duplicate_notes_merged"] == 0


def test_bad_options_and_names():
    with pytest.raises(ValueError, match="off_piano"):
        quantize(make_score([(0, 480, 60)]), off_piano="keep")
    with pytest.raises(Rejected, match="no notes") as e:
        quantize(make_score([]))
    assert e.value.key == "no_notes"
    assert [pitch_name(p) for p in (PITCH_LO, 60, 61, PITCH_HI)] == ["A0", "C4", "C#4", "C8"]
