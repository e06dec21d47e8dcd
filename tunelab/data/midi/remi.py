"""The ``remi`` and ``remi-programs`` encodings: MidiTok's REMI over the filtered, quantized grid.

Kept apart from ``tunelab.data.midi`` because it wraps a third-party tokenizer: its ids
are MidiTok's, positions are at full grid resolution (exact onsets) and durations and
velocities are binned, so a round trip keeps pitch and onset exactly. ``remi`` is one piano
track; ``remi-programs`` keeps each note's General MIDI instrument (a Program token before
each Pitch, -1 for drums when they are kept), so generated MIDI and its WAV preview have
the collection's instruments.
"""

from __future__ import annotations

import functools

import numpy as np
import symusic

from tunelab.data.midi.grid import DEFAULT_QPM, PITCH_HI, PITCH_LO, Grid, grid_to_score, quantize


@functools.lru_cache(maxsize=8)
def _remi_tokenizer(params: tuple):
    from miditok import REMI, TokenizerConfig

    p = dict(params)
    cfg = TokenizerConfig(
        pitch_range=tuple(p.get("pitch_range", (PITCH_LO, PITCH_HI))),  # inclusive in MidiTok
        beat_res={(a, b): r for a, b, r in p["beat_res"]},
        num_velocities=p["num_velocities"],
        special_tokens=["PAD", "BOS", "EOS"],
        use_velocities=True,
        use_time_signatures=False,
        use_tempos=False,
        use_programs=bool(p.get("programs", False)),
        programs=list(range(-1, 128)),
    )
    return REMI(cfg)


class RemiCodec:
    """MidiTok REMI over the filtered, quantized grid (4/4 bars): one piano track, or with
    ``params["programs"]`` (the ``remi-programs`` encoding) one track per GM program."""

    step = None

    def __init__(
        self,
        steps_per_quarter: int = 24,
        tempo_qpm: float = DEFAULT_QPM,
        params=None,
        programs: bool = False,
    ):
        self.steps_per_quarter = steps_per_quarter
        self.tempo_qpm = tempo_qpm
        self.params = params or {
            # Positions at full grid resolution (exact onsets); durations coarser after a bar.
            "beat_res": [[0, 4, steps_per_quarter], [4, 12, max(1, steps_per_quarter // 6)]],
            "num_velocities": 16,
            # Several instruments: every MIDI pitch (the 88-key rule is the piano's); data
            # prepared before this had no key and keeps the piano range.
            **({"programs": True, "pitch_range": [0, 127]} if programs else {}),
        }
        self.programs = bool(self.params.get("programs", False))
        self.pitch_range = tuple(self.params.get("pitch_range", (PITCH_LO, PITCH_HI)))
        self.encoding = "remi-programs" if self.programs else "remi"
        key = tuple(
            (
                k,
                tuple(tuple(x) if isinstance(x, list) else x for x in v)
                if isinstance(v, list)
                else v,
            )
            for k, v in sorted(self.params.items())
        )
        self.tok = _remi_tokenizer(key)
        self.vocab_size = len(self.tok)
        self.bos = self.tok["BOS_None"]
        self.eos = self.tok["EOS_None"]
        self._bar = self.tok["Bar_None"]

    @property
    def token_names(self) -> list[str]:
        inv = {i: n for n, i in self.tok.vocab.items()}
        return [inv[i] for i in range(self.vocab_size)]

    def meta(self) -> dict:
        return {
            "encoding": self.encoding,
            "vocab_size": self.vocab_size,
            "token_names": self.token_names,
            "steps_per_quarter": self.steps_per_quarter,
            "specials": {"bos": self.bos, "eos": self.eos, "step": None},
            "remi": self.params,
        }

    def encode(self, score: symusic.Score, off_piano: str = "drop", keep_drums: bool = False):
        grid = quantize(
            score,
            self.steps_per_quarter,
            off_piano=off_piano,
            keep_drums=keep_drums,
            by_program=self.programs,
            pitch_range=self.pitch_range,
        )
        return self.encode_grid(grid)

    def encode_grid(self, grid: Grid) -> np.ndarray:
        """Tokens of a grid; with programs, of ``grid.program`` (quantize(by_program=True))."""
        if self.programs:
            if grid.program is None:
                raise ValueError("remi-programs needs a grid quantized with by_program=True")
            seqs = self.tok.encode(_program_score(grid, self.steps_per_quarter))
        else:
            seqs = self.tok.encode(grid_to_score(grid, self.steps_per_quarter))
        ids = (seqs[0] if isinstance(seqs, list) else seqs).ids
        return np.array([self.bos, *ids, self.eos], np.int64)

    def decode(self, tokens, tempo_qpm: float | None = None, tempos=None) -> symusic.Score:
        ids = np.asarray(tokens, np.int64).tolist()
        if self.eos in ids:
            ids = ids[: ids.index(self.eos)]
        ids = [i for i in ids if 0 <= i < self.vocab_size and i != self.bos]
        empty = symusic.Score(self.steps_per_quarter)
        if self.programs:  # one token stream for all tracks
            score = self.tok.decode(ids) if ids else empty
        else:
            score = self.tok.decode([ids]) if ids else empty
        score.tempos.clear()
        ratio = score.tpq / self.steps_per_quarter
        qpm = tempo_qpm if tempo_qpm is not None else self.tempo_qpm
        for step, q in tempos or [[0, qpm]]:
            score.tempos.append(symusic.Tempo(int(round(step * ratio)), qpm=float(q)))
        return score

    def pitch_table(self) -> np.ndarray:
        table = np.full(self.vocab_size, -1, np.int64)
        for name, i in self.tok.vocab.items():
            if name.startswith("Pitch_"):
                table[i] = int(name.split("_")[1])
        return table

    def transpose_table(self, shift: int) -> np.ndarray:
        table = np.arange(self.vocab_size, dtype=np.int64)
        for name, i in self.tok.vocab.items():
            if name.startswith("Pitch_"):
                table[i] = self.tok.vocab.get(f"Pitch_{int(name.split('_')[1]) + shift}", -1)
        return table

    def count_steps(self, tokens) -> int:
        """Grid steps covered: whole 4/4 bars (REMI has no per-step token)."""
        return int(np.count_nonzero(np.asarray(tokens) == self._bar)) * 4 * self.steps_per_quarter


def _program_score(grid: Grid, spq: int) -> symusic.Score:
    """One track per GM program of the grid (program -1: a drum track), one tick per step."""
    score = symusic.Score(spq)
    for prog in np.unique(grid.program):
        sel = grid.program == prog
        track = symusic.Track(f"program {prog}", max(0, int(prog)), bool(prog < 0))
        track.notes = symusic.Note.from_numpy(
            time=grid.onset[sel].astype(np.int32),
            duration=(grid.offset[sel] - grid.onset[sel]).astype(np.int32),
            pitch=grid.pitch[sel].astype(np.int8),
            velocity=grid.velocity[sel].astype(np.int8),
        )
        score.tracks.append(track)
    return score
