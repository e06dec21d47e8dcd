"""MIDI test scores made on the spot: tick-based notes in, sorted grid notes out."""

from __future__ import annotations

import symusic

from tunelab.metrics import midi as M

SPQ = 2  # steps per quarter of the metrics tests' random pieces


def roll(tokens) -> M.Roll:
    """The roll of random ``steps`` tokens (88 keys, STEP 88, EOS 89, one key block)."""
    return M.roll_from_grid_tokens(tokens, 88, 89, 1)


def make_score(notes, tpq=480, tempos=((0, 120.0),), drum_notes=()):
    """notes: (onset_tick, duration_ticks, pitch[, velocity])."""
    score = symusic.Score(tpq)
    track = symusic.Track("piano", 0, False)
    for n in notes:
        track.notes.append(symusic.Note(n[0], n[1], n[2], n[3] if len(n) > 3 else 90))
    score.tracks.append(track)
    if drum_notes:
        drums = symusic.Track("drums", 0, True)
        for a, d, p in drum_notes:
            drums.notes.append(symusic.Note(a, d, p, 90))
        score.tracks.append(drums)
    for t, q in tempos:
        score.tempos.append(symusic.Tempo(t, qpm=q))
    return score


def notes_of(score, spq=24):
    """Sorted (pitch, onset_quarters, offset_quarters) of a score, as exact fractions of steps."""
    tpq = score.tpq
    out = []
    for tr in score.tracks:
        for n in tr.notes:
            out.append((n.pitch, round(n.time * spq / tpq), round(n.end * spq / tpq)))
    return sorted(out)
