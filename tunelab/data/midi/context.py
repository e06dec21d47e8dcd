"""How fine a grid a collection needs, and how many tokens a bar costs in each encoding.

``prepare`` measures every file (``timing``), sums the figures over the collection
(``Timing.add``) and writes ``summary()`` into stats.json (``context``) and the prepared
encoding's tokens per bar into meta.json, where ``train.seq_bars`` and ``tunelab info``
read them.

* Finest grid: for each candidate resolution S in ``CANDIDATE_SPQ``, the share of note
  onsets within ``ON_GRID_TOLERANCE`` of a step of S steps per quarter (|t*S - round(t*S)|,
  t in quarter notes). The finest grid the notes need is the smallest S that holds
  ``NEEDED_SHARE`` of the onsets; none does for performed (unquantized) timing.
* Tokens per bar (a bar = quarters per bar of the first time signature, 4 by default):
  ``steps`` and ``onsets`` spend one token per grid step plus one per sounding key per step,
  so per bar S * (quarters per bar + sounding key-quarters per bar); ``remi`` spends a Bar
  token, a Position token per distinct onset and Pitch, Velocity and Duration per note (and
  a Program per note with programs), whatever the grid.
"""

from __future__ import annotations

import numpy as np
import symusic

CANDIDATE_SPQ = (1, 2, 3, 4, 6, 8, 12, 16, 24, 48)
ON_GRID_TOLERANCE = 0.1  # of one grid step
NEEDED_SHARE = 0.9
WINDOW_BARS = 4.0  # a training window should hold this many bars for the recommendation
MAX_PLAIN_WINDOW = 256  # tokens: longer 4-bar windows call for carried state (midi-gru-carry)
MULTI_SHARE = 0.5  # remi-programs when at least this share of the pieces has several instruments
BAR_WINDOW = 128  # tokens: the training window of midi-roll and midi-gru; a bar must fit in it


def timing(score: symusic.Score, grid, spq: int) -> dict:
    """Figures of one file: onsets on each candidate grid (raw ticks, drums left out), the
    quarters per bar, and from the quantized ``grid`` (at ``spq``): quarters, sounding
    key-quarters, notes, distinct onset positions and the instruments (GM programs)."""
    tpq = int(score.tpq)
    times = [t.notes.numpy()["time"] for t in score.tracks if not t.is_drum and t.note_num()]
    t = np.concatenate(times).astype(np.float64) / tpq if times else np.zeros(0)
    on_grid = []
    for s in CANDIDATE_SPQ:
        x = t * s
        on_grid.append(int(np.count_nonzero(np.abs(x - np.round(x)) <= ON_GRID_TOLERANCE)))
    qpb = 4.0
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        if ts.numerator > 0 and ts.denominator > 0:
            qpb = 4.0 * ts.numerator / ts.denominator
    quarters = grid.n_steps / spq
    return {
        "onsets": len(t),
        "on_grid": on_grid,
        "quarters_per_bar": qpb,
        "quarters": quarters,
        "key_quarters": float((grid.offset - grid.onset).sum()) / spq,
        "notes": len(grid.pitch),
        "positions": len(np.unique(grid.onset)),
        "bars": quarters / qpb,
        "programs": sorted({int(tr.program) for tr in score.tracks if not tr.is_drum}),
    }


class Timing:
    """The collection's sums of ``timing`` figures."""

    def __init__(self):
        self.onsets = 0
        self.on_grid = np.zeros(len(CANDIDATE_SPQ), np.int64)
        self.quarters = self.key_quarters = self.bars = 0.0
        self.notes = self.positions = 0
        self.programs: set[int] = set()
        self.pieces = self.multi = 0  # pieces, and pieces that play several instruments

    def add(self, t: dict) -> None:
        self.onsets += t["onsets"]
        self.on_grid += np.asarray(t["on_grid"], np.int64)
        self.quarters += t["quarters"]
        self.key_quarters += t["key_quarters"]
        self.bars += t["bars"]
        self.notes += t["notes"]
        self.positions += t["positions"]
        self.programs.update(t["programs"])
        self.pieces += 1
        self.multi += len(t["programs"]) > 1

    def finest_grid(self) -> int | None:
        """The smallest candidate steps per quarter holding NEEDED_SHARE of the onsets."""
        if not self.onsets:
            return None
        for s, n in zip(CANDIDATE_SPQ, self.on_grid, strict=True):
            if n >= NEEDED_SHARE * self.onsets:
                return s
        return None

    def tokens_per_bar(self, encoding: str, spq: int, programs: bool = False) -> float | None:
        """Estimated tokens per bar of ``encoding`` at ``spq`` steps per quarter."""
        if self.bars <= 0:
            return None
        if encoding in ("steps", "onsets"):
            return spq * (self.quarters + self.key_quarters) / self.bars
        per_note = 4 if programs else 3
        return (self.bars + self.positions + per_note * self.notes) / self.bars

    def summary(self, spq: int, encoding: str, tokens: int) -> dict:
        """stats.json ``context``: grid shares, the finest grid, tokens per bar per encoding
        (estimates; ``measured`` for the prepared one) and the recommendation."""
        finest = self.finest_grid()
        share = {
            str(s): round(float(n) / self.onsets, 4) if self.onsets else None
            for s, n in zip(CANDIDATE_SPQ, self.on_grid, strict=True)
        }
        grids = sorted({1, 4, spq, *([finest] if finest else [])})
        per_bar = {
            enc: {str(s): _r(self.tokens_per_bar(enc, s)) for s in grids}
            for enc in ("steps", "onsets")
        }
        per_bar["remi"] = _r(self.tokens_per_bar("remi", spq))
        per_bar["remi+programs"] = _r(self.tokens_per_bar("remi", spq, programs=True))
        out = {
            "onset_share_on_grid": share,
            "finest_grid_spq": finest,
            "quarters_per_bar": _r(self.quarters / self.bars) if self.bars else None,
            "bars": _r(self.bars),
            "programs": sorted(self.programs),
            "tokens_per_bar": per_bar,
            "measured_tokens_per_bar": _r(tokens / self.bars) if self.bars else None,
        }
        out["recommended"] = recommend(self, spq, encoding)
        return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 2)


def choose_grid(t: Timing, encoding: str) -> tuple[int, str]:
    """Steps per quarter for ``encoding``, and why: the finest grid holding NEEDED_SHARE of
    the onsets (12 when none does: performed timing, where a finer grid only spends tokens on
    jitter), capped for the grid encodings so that a bar fits BAR_WINDOW tokens (notes shorter
    than a step of the capped grid are then dropped, and prepare says how many)."""
    finest = t.finest_grid()
    spq = finest if finest is not None else 12
    why = (
        f"{NEEDED_SHARE:.0%} of the onsets lie on a grid of {spq} steps per quarter"
        if finest is not None
        else f"no grid up to {CANDIDATE_SPQ[-1]} steps per quarter holds {NEEDED_SHARE:.0%} "
        "of the onsets (performed timing); 12 keeps sixteenths and triplets"
    )
    bar = t.tokens_per_bar(encoding, spq) if encoding in ("steps", "onsets") else None
    if bar is not None and bar > BAR_WINDOW:
        # Of the grids whose bar fits, the one that holds the most onsets (the finer on a tie):
        # the largest that fits may hold fewer (6 holds triplets but not sixteenths).
        fits = [s for s in CANDIDATE_SPQ if s < spq and t.tokens_per_bar(encoding, s) <= BAR_WINDOW]
        on = dict(zip(CANDIDATE_SPQ, t.on_grid.tolist(), strict=True))
        capped = max(fits, key=lambda s: (on[s], s)) if fits else 1
        share = on[capped] / t.onsets if t.onsets else 0.0
        why += (
            f"; capped at {capped} so that a bar ({t.tokens_per_bar(encoding, capped):.0f} tokens, "
            f"not {bar:.0f}) fits the {BAR_WINDOW}-token window of midi-roll and midi-gru "
            f"({share:.0%} of the onsets lie on that grid)"
        )
        spq = capped
    return spq, why


def choose_encoding(t: Timing, spq: int) -> tuple[str, str]:
    """The encoding for this collection at ``spq``, and why: ``remi`` with programs when the
    collection's pieces (MULTI_SHARE of them) play several instruments (the grid encodings are
    piano only); otherwise
    ``steps`` unless a bar costs more than twice the tokens of ``remi`` (a window then holds
    too few bars)."""
    steps_bar = t.tokens_per_bar("steps", spq) or 0.0
    remi_bar = t.tokens_per_bar("remi", spq) or 0.0
    # Several instruments within most pieces, not across the collection: a few files that
    # name other programs (a chorale part marked as strings) must not turn a piano-roll
    # collection into a multi-instrument one.
    if len(t.programs) > 1 and t.multi >= MULTI_SHARE * t.pieces:
        return "remi-programs", (
            f"{t.multi} of {t.pieces} pieces play several instruments ({len(t.programs)} GM "
            "programs in all): remi-programs keeps them"
        )
    if remi_bar and steps_bar > 2 * remi_bar:
        return "remi", f"a bar costs {steps_bar:.0f} tokens with steps but {remi_bar:.0f} with remi"
    return "steps", f"a bar costs {steps_bar:.0f} tokens with steps ({remi_bar:.0f} with remi)"


def choose(t: Timing, spq: int | None = None, encoding: str | None = None) -> dict:
    """The settings ``prepare`` uses: the given ones, and for each one left to choose (None)
    what the collection calls for (``recommend``), each with its reason."""
    if spq is None and encoding is None:
        rec = recommend(t)
        return {k: rec[k] for k in ("steps_per_quarter", "encoding", "why_grid", "why_encoding")}
    if spq is None:
        spq, why = choose_grid(t, encoding)
        return {
            "steps_per_quarter": spq,
            "encoding": encoding,
            "why_grid": why,
            "why_encoding": "given",
        }
    enc, why = choose_encoding(t, spq)
    if encoding is not None:
        enc, why = encoding, "given"
    return {"steps_per_quarter": spq, "encoding": enc, "why_grid": "given", "why_encoding": why}


def recommend(t: Timing, spq: int | None = None, encoding: str | None = None) -> dict:
    """Steps per quarter, encoding and preset for this collection, with the reason.

    The encoding is chosen on the finest grid the onsets need (``choose_encoding``), then
    the grid for that encoding (``choose_grid``: capped so a bar fits the window). The
    preset: when 4 bars fit in ``MAX_PLAIN_WINDOW`` tokens, ``midi-roll`` for ``steps`` (the
    best measured on piano-roll material) and ``midi-gru`` for ``remi`` (``midi-roll`` reads
    grid piano rolls only); else ``midi-gru-carry`` (its state carries the piece beyond the
    window). ``spq`` and ``encoding`` (the prepared settings) are not used: the advice is
    the same whatever was prepared.
    """
    finest = t.finest_grid()
    enc, why_enc = choose_encoding(t, finest if finest is not None else 12)
    rec_spq, why = choose_grid(t, enc.split("-")[0])
    bar = t.tokens_per_bar(enc.split("-")[0], rec_spq, programs=enc == "remi-programs") or 0.0
    window = int(round(WINDOW_BARS * bar))
    # A 128-256 token window that holds 4 bars needs no carried state; longer bars do.
    preset = "midi-roll" if enc == "steps" else "midi-gru"
    if window > MAX_PLAIN_WINDOW:
        preset = "midi-gru-carry"
    return {
        "steps_per_quarter": rec_spq,
        "encoding": enc,
        "tokens_per_bar": _r(bar),
        "seq_len_for_4_bars": window,
        "preset": preset,
        "why": f"{why}; {why_enc}",
        "why_grid": why,
        "why_encoding": why_enc,
    }
