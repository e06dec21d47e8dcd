"""MIDI tokens: the ``steps`` and ``onsets`` codecs, and the codec of a data directory.

Token contract (other modules rely on it):

``steps``   ids 0..87 key sounding (pitch = id + 21); 88 STEP (end of step); 89 BOS; 90 EOS.
            A piece is BOS, then per grid step its sounding keys high->low then STEP, then EOS.
``onsets``  ids 0..87 key struck at this step; 88..175 key held from before (pitch = id - 88 + 21);
            176 STEP; 177 BOS; 178 EOS. Within a step keys appear with strictly descending pitch.
``remi``    MidiTok REMI over symusic (pitch, velocity, duration, bar/position); MidiTok's ids
            (``tunelab.data.midi.remi``).

Round trips: for a valid stream, tokens -> MIDI -> tokens is the identity; MIDI -> tokens -> MIDI
keeps every note's pitch and quantized onset (and quantized offset for ``onsets``). ``steps``
cannot tell a repeated note from a held one: a key sounding in consecutive steps decodes as one note.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Union

import numpy as np
import symusic

from tunelab.data.midi.grid import (
    DEFAULT_QPM,
    N_KEYS,
    PITCH_HI,
    PITCH_LO,
    Grid,
    _notes_to_score,
    pitch_name,
    quantize,
)

if TYPE_CHECKING:
    from tunelab.data.midi.remi import RemiCodec


class _GridCodec:
    """Shared by ``steps`` and ``onsets``: a piece is BOS, per step (keys, STEP), EOS."""

    pitch_range = (PITCH_LO, PITCH_HI)  # the 88 piano keys: the grid encodings are piano rolls
    encoding = ""
    n_pitch_blocks = 1

    def __init__(self, steps_per_quarter: int = 24, tempo_qpm: float = DEFAULT_QPM):
        self.steps_per_quarter = steps_per_quarter
        self.tempo_qpm = tempo_qpm
        self.step = N_KEYS * self.n_pitch_blocks
        self.bos = self.step + 1
        self.eos = self.step + 2
        self.vocab_size = self.step + 3

    @property
    def token_names(self) -> list[str]:
        keys = [pitch_name(p) for p in range(PITCH_LO, PITCH_HI + 1)]
        if self.n_pitch_blocks == 1:
            names = keys
        else:
            names = [f"on_{k}" for k in keys] + [f"hold_{k}" for k in keys]
        return names + ["STEP", "BOS", "EOS"]

    def meta(self) -> dict:
        """The meta.json fields that ``codec_from_meta`` needs."""
        return {
            "encoding": self.encoding,
            "vocab_size": self.vocab_size,
            "token_names": self.token_names,
            "steps_per_quarter": self.steps_per_quarter,
            "specials": {"bos": self.bos, "eos": self.eos, "step": self.step},
        }

    def encode(self, score: symusic.Score, off_piano: str = "drop", keep_drums: bool = False):
        """Score -> int64 tokens [L] (BOS..EOS). Raises ``Rejected`` when no notes are left."""
        grid = quantize(score, self.steps_per_quarter, off_piano=off_piano, keep_drums=keep_drums)
        return self.encode_grid(grid)

    def _cell_ids(self, key: np.ndarray, struck: np.ndarray) -> np.ndarray:
        """Token id of each sounding cell."""
        raise NotImplementedError

    def encode_grid(self, grid: Grid) -> np.ndarray:
        """Grid -> int64 tokens [L]: BOS, per step (keys high->low, STEP), EOS."""
        step, key, struck = grid.cells()
        n, slots = grid.n_steps, N_KEYS + 1
        # Sort key: step-major, keys high->low, then the step's STEP token (slot 88, last).
        order = np.concatenate([step * slots + (N_KEYS - 1 - key), np.arange(n) * slots + N_KEYS])
        ids = np.concatenate([self._cell_ids(key, struck), np.full(n, self.step)])
        body = ids[np.argsort(order, kind="stable")]
        return np.concatenate([[self.bos], body, [self.eos]]).astype(np.int64)

    def pitch_table(self) -> np.ndarray:
        table = np.full(self.vocab_size, -1, np.int64)
        for b in range(self.n_pitch_blocks):
            table[b * N_KEYS : (b + 1) * N_KEYS] = np.arange(PITCH_LO, PITCH_HI + 1)
        return table

    def transpose_table(self, shift: int) -> np.ndarray:
        table = np.arange(self.vocab_size, dtype=np.int64)
        for b in range(self.n_pitch_blocks):
            k = np.arange(N_KEYS) + shift
            table[b * N_KEYS : (b + 1) * N_KEYS] = np.where(
                (k >= 0) & (k < N_KEYS), k + b * N_KEYS, -1
            )
        return table

    def allowed_after(self) -> np.ndarray:
        """bool [V, V]: may token j follow token i? The format's rules that the previous token
        alone decides (a subset of ``tunelab.kinds.constraints``, never stricter than the codec):
        after a key, only lower keys (either block) or STEP; after BOS or STEP, any key, STEP
        or EOS; BOS only after EOS (windows run across pieces); after EOS anything."""
        V, n = self.vocab_size, N_KEYS
        ok = np.zeros((V, V), bool)
        pitch = np.tile(np.arange(n), self.n_pitch_blocks)  # key index of each key id
        ok[: len(pitch), : len(pitch)] = pitch[None, :] < pitch[:, None]
        ok[: len(pitch), self.step] = True
        ok[[self.bos, self.step], : len(pitch)] = True
        ok[[self.bos, self.step], self.step] = True
        ok[[self.bos, self.step], self.eos] = True
        ok[self.eos, :] = True
        return ok

    def count_steps(self, tokens) -> int:
        return int(np.count_nonzero(np.asarray(tokens) == self.step))

    def decode(self, tokens, tempo_qpm: float | None = None, tempos=None) -> symusic.Score:
        """Tokens -> Score (one piano track, velocity 80). Tolerant: stops at EOS, skips
        ids it cannot place (BOS, out-of-range ids), closes a last step that lacks its STEP
        token, and (``onsets``) starts a note for a "held" key that was not sounding.

        ``tempos`` ([[step, qpm], ...], e.g. from the piece index) overrides ``tempo_qpm``.
        """
        notes: list[tuple[int, int, int]] = []
        active: dict[int, int] = {}  # pitch -> onset step
        struck: set[int] = set()
        held: set[int] = set()
        t = 0
        pending = False
        for tok in np.asarray(tokens, np.int64).tolist():
            if tok == self.eos:
                break
            if tok == self.step:
                self._close_step(t, struck, held, active, notes)
                struck, held, pending = set(), set(), False
                t += 1
            elif 0 <= tok < N_KEYS:
                struck.add(tok + PITCH_LO)
                pending = True
            elif self.n_pitch_blocks == 2 and N_KEYS <= tok < 2 * N_KEYS:
                held.add(tok - N_KEYS + PITCH_LO)
                pending = True
        if pending:
            self._close_step(t, struck, held, active, notes)
            t += 1
        notes += [(p, s, t) for p, s in active.items()]
        notes.sort(key=lambda n: (n[1], -n[0]))
        arr = np.array(notes, np.int64).reshape(-1, 3)
        qpm = tempo_qpm if tempo_qpm is not None else self.tempo_qpm
        return _notes_to_score(
            arr[:, 0],
            arr[:, 1],
            arr[:, 2],
            np.full(len(arr), 80),
            self.steps_per_quarter,
            _ticks_per_step(self.steps_per_quarter),
            tempos or [[0, qpm]],
        )

    def _close_step(self, t, struck, held, active, notes) -> None:
        raise NotImplementedError


def _ticks_per_step(spq: int) -> int:
    """Decoded files use a conventional resolution (480 tpq for 24 steps/quarter)."""
    return max(1, 480 // spq)


class StepsCodec(_GridCodec):
    encoding = "steps"
    n_pitch_blocks = 1

    def _cell_ids(self, key: np.ndarray, struck: np.ndarray) -> np.ndarray:
        return key

    def _close_step(self, t, struck, held, active, notes) -> None:
        # A key sounding in consecutive steps is one held note.
        for p in [p for p in active if p not in struck]:
            notes.append((p, active.pop(p), t))
        for p in struck:
            active.setdefault(p, t)


class OnsetsCodec(_GridCodec):
    encoding = "onsets"
    n_pitch_blocks = 2

    def _cell_ids(self, key: np.ndarray, struck: np.ndarray) -> np.ndarray:
        return np.where(struck, key, key + N_KEYS)

    def _close_step(self, t, struck, held, active, notes) -> None:
        for p in [p for p in active if p not in struck and p not in held]:
            notes.append((p, active.pop(p), t))
        for p in struck:  # struck again: the sounding note ends here
            if p in active:
                notes.append((p, active.pop(p), t))
            active[p] = t
        for p in held - struck:
            active.setdefault(p, t)  # a hold with nothing sounding becomes an onset


ENCODINGS = ("steps", "onsets", "remi", "remi-programs")
# Every codec has the same interface; RemiCodec lives in tunelab.data.midi.remi (MidiTok).
Codec = Union["StepsCodec", "OnsetsCodec", "RemiCodec"]  # noqa: UP007 (forward references)


def _codec_class(encoding: str):
    if encoding in ("remi", "remi-programs"):
        from tunelab.data.midi.remi import RemiCodec  # imports MidiTok only when asked for

        if encoding == "remi-programs":
            return functools.partial(RemiCodec, programs=True)
        return RemiCodec
    if encoding == "steps":
        return StepsCodec
    if encoding == "onsets":
        return OnsetsCodec
    raise ValueError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")


def make_codec(encoding: str = "steps", steps_per_quarter: int = 24) -> Codec:
    return _codec_class(encoding)(steps_per_quarter)


def codec_from_meta(meta: dict) -> Codec:
    """The codec that decodes a data directory's tokens (from its meta.json)."""
    enc = meta.get("encoding", "steps")
    spq = int(meta.get("steps_per_quarter", 24))
    qpm = float(meta.get("tempo_qpm") or DEFAULT_QPM)
    if enc in ("remi", "remi-programs"):
        return _codec_class(enc)(spq, qpm, params=meta.get("remi"))
    return _codec_class(enc)(spq, qpm)
