"""MIDI on the musical grid: filtering and quantization (``quantize``), and back (``grid_to_score``).

Pipeline: ``symusic.Score`` --quantize()--> ``Grid`` (notes on a grid of
``steps_per_quarter`` steps per quarter note, tempo map kept aside) --codec--> int64 tokens
(the codecs live in ``tunelab.data.midi.codec``; ``remi`` in ``tunelab.data.midi.remi``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import symusic

PITCH_LO, PITCH_HI = 21, 108  # the 88 piano keys
N_KEYS = PITCH_HI - PITCH_LO + 1
DEFAULT_QPM = 120.0
MAX_STEPS = 400_000  # ~1.4 h at 120 qpm and 24 steps/quarter; beyond that the ticks are absurd
TEMPO_RANGE = (1.0, 1000.0)  # qpm values outside are ignored (absurd tempo events)
# off_piano="auto": a piece with at most this share of its notes off the range keeps the rest
# (the off-range notes are dropped and counted); more, and it is rejected as not piano music.
OFF_RANGE_SHARE = 0.05
_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class Rejected(ValueError):
    """A score that cannot become a piece; ``str(e)`` is the reason shown in the manifest and
    ``key`` a short category for the statistics (e.g. ``off_piano``, ``no_notes``)."""

    def __init__(self, reason: str, key: str = "rejected"):
        super().__init__(reason)
        self.key = key


def pitch_name(p: int) -> str:
    return f"{_NAMES[p % 12]}{p // 12 - 1}"


@dataclass
class Grid:
    """Notes quantized to the grid. Arrays are int64 [N], sorted by (onset, -pitch)."""

    pitch: np.ndarray
    onset: np.ndarray  # step of the note-on
    offset: np.ndarray  # step of the note-off (> onset)
    velocity: np.ndarray
    tempos: list[list[float]] = field(default_factory=lambda: [[0, DEFAULT_QPM]])  # [[step, qpm]]
    counts: dict[str, int] = field(default_factory=dict)  # filter rule -> notes/events it hit
    # GM program of each note (-1: drums), int64 [N]; filled by quantize(by_program=True)
    program: np.ndarray | None = None

    @property
    def n_steps(self) -> int:
        return int(self.offset.max()) if len(self.offset) else 0

    def polyphony(self) -> np.ndarray:
        """Keys sounding at each step: int64 [n_steps]."""
        n = self.n_steps + 1
        diff = np.bincount(self.onset, minlength=n) - np.bincount(self.offset, minlength=n)
        return np.cumsum(diff)[:-1]

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (step, key) where a key sounds: step, key (0..87), struck (bool), each [C].

        Same-key notes never overlap after ``quantize``, so cells are unique.
        """
        dur = self.offset - self.onset
        start = np.repeat(self.onset, dur)
        first = np.repeat(np.cumsum(dur) - dur, dur)
        step = start + np.arange(len(start)) - first
        return step, np.repeat(self.pitch - PITCH_LO, dur), step == start

    def roll(self) -> np.ndarray:
        """Piano roll: bool [n_steps, 88], True where a key sounds."""
        roll = np.zeros((self.n_steps, N_KEYS), bool)
        step, key, _ = self.cells()
        roll[step, key] = True
        return roll


def _round_div(a: np.ndarray, num: int, den: int) -> np.ndarray:
    """round(a * num / den) in exact integer arithmetic (half up)."""
    return (2 * a * num + den) // (2 * den)


def quantize(
    score: symusic.Score,
    steps_per_quarter: int = 24,
    off_piano: str = "reject",
    keep_drums: bool = False,
    max_steps: int = MAX_STEPS,
    by_program: bool = False,
    pitch_range: tuple[int, int] = (PITCH_LO, PITCH_HI),
) -> Grid:
    """Filter and quantize a tick-based score onto the grid; raises ``Rejected`` with a reason.

    Rules, in order (each counted in ``Grid.counts``): drum tracks dropped unless
    ``keep_drums``; notes shorter than one step dropped (drum hits kept, lasting a step); notes outside ``pitch_range``
    (MIDI 21..108, the piano, unless a multi-instrument encoding widens it) reject the file
    (``off_piano="reject"``), are dropped (``"drop"``), moved by octaves into range
    (``"fold"``), or (``"auto"``) dropped when they are at most OFF_RANGE_SHARE of the notes
    and else reject the file. Onsets and offsets are rounded to the nearest step (a kept note
    lasts at least one step). Same-key notes that start on the same step are merged (the
    longest kept); a same-key note still sounding when the key is struck again is cut there,
    so every later encoding sees non-overlapping notes. With ``by_program`` the same-key rules
    apply per instrument (GM program, -1 for drums) and ``Grid.program`` is filled, so
    instruments doubling a note keep their own notes.
    """
    if off_piano not in ("reject", "drop", "fold", "auto"):
        raise ValueError(f"off_piano must be reject, drop, fold or auto, not {off_piano!r}")
    lo_key, hi_key = pitch_range
    tpq = int(score.tpq)
    if tpq <= 0:
        raise Rejected(f"invalid ticks per quarter note ({tpq})", "bad_ticks")
    counts = {
        "drum_tracks_dropped": 0,
        "drum_notes_dropped": 0,
        "short_notes_dropped": 0,
        "off_piano_notes_dropped": 0,
        "off_piano_notes_folded": 0,
        "duplicate_notes_merged": 0,
        "overlapping_notes_trimmed": 0,
        "tempo_events_ignored": 0,
    }
    parts = []
    for track in score.tracks:
        if track.is_drum and not keep_drums:
            counts["drum_tracks_dropped"] += 1
            counts["drum_notes_dropped"] += track.note_num()
            continue
        if track.note_num():
            parts.append(track.notes.numpy())
            parts[-1]["program"] = np.full(track.note_num(), -1 if track.is_drum else track.program)
    if not parts:
        if counts["drum_notes_dropped"]:
            raise Rejected(
                f"only drum notes ({counts['drum_notes_dropped']} dropped); --keep-drums keeps them",
                "no_notes",
            )
        raise Rejected("no notes", "no_notes")
    time = np.concatenate([p["time"] for p in parts]).astype(np.int64)
    dur = np.concatenate([p["duration"] for p in parts]).astype(np.int64)
    pitch = np.concatenate([p["pitch"] for p in parts]).astype(np.int64)
    vel = np.concatenate([p["velocity"] for p in parts]).astype(np.int64)
    prog = np.concatenate([p["program"] for p in parts]).astype(np.int64)
    time = np.maximum(time, 0)

    # A drum hit's length means nothing (the kit rings on its own): kept, lasting a step.
    short = (dur * steps_per_quarter < tpq) & (prog >= 0)
    counts["short_notes_dropped"] = int(short.sum())
    keep = ~short
    time, dur, pitch, vel, prog = time[keep], dur[keep], pitch[keep], vel[keep], prog[keep]

    off = (pitch < lo_key) | (pitch > hi_key)
    if off.any():
        many = off.sum() > OFF_RANGE_SHARE * len(pitch)
        if off_piano == "reject" or (off_piano == "auto" and many):
            lo, hi = int(pitch[off].min()), int(pitch[off].max())
            share = f" ({off.sum() / len(pitch):.0%} of the notes)" if off_piano == "auto" else ""
            raise Rejected(
                f"{int(off.sum())} notes outside the range {lo_key}-{hi_key}{share} "
                f"(pitches {lo}..{hi}); use --off-piano drop or fold to keep the file",
                "off_piano",
            )
        if off_piano in ("drop", "auto"):
            counts["off_piano_notes_dropped"] = int(off.sum())
            time, dur, pitch, vel, prog = time[~off], dur[~off], pitch[~off], vel[~off], prog[~off]
        else:
            counts["off_piano_notes_folded"] = int(off.sum())
            up = -((pitch - lo_key) // 12)  # octaves to add when below range
            down = (pitch - hi_key + 11) // 12  # octaves to remove when above
            pitch = pitch + 12 * np.where(pitch < lo_key, up, 0)
            pitch = pitch - 12 * np.where(pitch > hi_key, down, 0)
    if len(pitch) == 0:
        dropped = {k: v for k, v in counts.items() if v and "dropped" in k}
        raise Rejected(
            "no notes left after filtering ("
            + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in dropped.items())
            + ")",
            "no_notes",
        )

    on = _round_div(time, steps_per_quarter, tpq)
    offs = np.maximum(_round_div(time + dur, steps_per_quarter, tpq), on + 1)
    n_steps = int(offs.max())
    if n_steps > max_steps:
        raise Rejected(
            f"too long: {n_steps} steps at {steps_per_quarter} per quarter note (limit "
            f"{max_steps}); absurd tick values?",
            "too_long",
        )

    # Same key: merge notes struck on one step, cut a note where the key is struck again.
    key = pitch + 128 * (prog + 1) if by_program else pitch  # the same key of one instrument
    order = np.lexsort((-offs, on, key))
    pitch, on, offs, vel, prog, key = (a[order] for a in (pitch, on, offs, vel, prog, key))
    dup = np.zeros(len(pitch), bool)
    dup[1:] = (key[1:] == key[:-1]) & (on[1:] == on[:-1])
    counts["duplicate_notes_merged"] = int(dup.sum())
    pitch, on, offs, vel, prog, key = (a[~dup] for a in (pitch, on, offs, vel, prog, key))
    nxt_same = np.zeros(len(pitch), bool)
    nxt_same[:-1] = key[1:] == key[:-1]
    nxt_on = np.append(on[1:], 0)
    cut = nxt_same & (offs > nxt_on)
    counts["overlapping_notes_trimmed"] = int(cut.sum())
    offs = np.where(cut, nxt_on, offs)

    order = np.lexsort((prog, -pitch, on))
    grid = Grid(pitch[order], on[order], offs[order], np.clip(vel[order], 1, 127), counts=counts)
    grid.program = prog[order] if by_program else None
    grid.tempos = _tempo_map(score, steps_per_quarter, tpq, counts)
    return grid


def _tempo_map(score: symusic.Score, spq: int, tpq: int, counts: dict) -> list[list[float]]:
    """[[step, qpm], ...] from the score's tempo events; absurd values are ignored and counted."""
    out: list[list[float]] = []
    if len(score.tempos):
        t = score.tempos.numpy()
        for tick, mspq in zip(t["time"].tolist(), t["mspq"].tolist(), strict=True):
            qpm = 6e7 / mspq if mspq > 0 else 0.0
            if not (TEMPO_RANGE[0] <= qpm <= TEMPO_RANGE[1]) or tick < 0:
                counts["tempo_events_ignored"] += 1
                continue
            step = int(_round_div(np.int64(tick), spq, tpq))
            qpm = round(qpm, 3)
            if out and out[-1][0] == step:
                out[-1][1] = qpm  # the last event at a step wins
            elif not out or out[-1][1] != qpm:
                out.append([step, qpm])
    if not out or out[0][0] > 0:
        out.insert(0, [0, DEFAULT_QPM])  # MIDI's default tempo until the first event
    return out


def grid_to_score(grid: Grid, steps_per_quarter: int, tempos=None) -> symusic.Score:
    """One piano track, one tick per step (tpq = steps_per_quarter)."""
    return _notes_to_score(
        grid.pitch, grid.onset, grid.offset, grid.velocity, steps_per_quarter, 1, tempos
    )


def _notes_to_score(pitch, on, off, vel, spq, ticks_per_step, tempos) -> symusic.Score:
    score = symusic.Score(spq * ticks_per_step)
    track = symusic.Track("piano", 0, False)
    if len(pitch):
        track.notes = symusic.Note.from_numpy(
            time=np.asarray(on, np.int32) * ticks_per_step,
            duration=(np.asarray(off, np.int32) - np.asarray(on, np.int32)) * ticks_per_step,
            pitch=np.asarray(pitch, np.int8),
            velocity=np.asarray(vel, np.int8),
        )
    score.tracks.append(track)
    for step, qpm in tempos or [[0, DEFAULT_QPM]]:
        score.tempos.append(symusic.Tempo(int(step) * ticks_per_step, qpm=float(qpm)))
    return score


# ---------------------------------------------------------------------------
# Codecs
# ---------------------------------------------------------------------------
