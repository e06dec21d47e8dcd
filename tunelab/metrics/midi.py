"""Audit metrics for MIDI pieces: rolls, statistics vs the training data, flags.

Pieces are compared as sequences of grid steps (a ``Roll``): each step is the set of keys it
holds, as ids in one of two "content spaces": the ``steps`` space (id k = key k sounding,
k = pitch - 21) or the ``onsets`` space (k = key struck, 88 + k = key held), so a copy must
match struck-vs-held too when the encoding can tell them apart. ``remi`` pieces are quantized
onto the grid and compared in the onsets space. Copying of training pieces and sameness of
samples (window hashes over rolls) are in ``tunelab.metrics.copying``.

Metrical regularity: ``on_grid_share`` is the share of note onsets that fall on the piece's
best-aligned grid of ``max(1, spq // 4)`` steps (sixteenth notes when spq is a multiple of 4),
``on_beat_share`` the same on the quarter-note grid; the alignment (phase) is chosen per piece,
so a piece that starts after a primer of any length scores as it sounds.

Flags (named thresholds below; see ``flags_for``): ``copied``, ``silent``, ``noise``,
``mismatch``, ``identical``, ``invalid`` (and ``training_primer``, set by ``generate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_KEYS = 88

# Flag thresholds.
COPY_FLAG_QUARTERS = 8.0  # a verbatim run (any shift) this many quarter notes long is a copy...
COPY_FLAG_MIN_CHANGES = 4  # ...when it holds at least this many step-to-step changes (a held
#                            chord or a rest copied for 8 quarters is not a copy of music)
COPY_FLAG_WINDOW_FRACTION = 0.5  # or when this share of the non-static 16-step windows is copied
COPY_FLAG_MIN_WINDOWS = 4  # (the share counts only with at least this many such windows)
SILENT_MIN_SOUNDING = 0.25  # silent: sounding steps < this x the training share (or no notes)
NOISE_DENSITY_RATIO = 4.0  # noise: note onsets per quarter > this x the training density...
NOISE_POLYPHONY_RATIO = 2.0  # ...or mean keys per sounding step > this x training (and +3 keys)
NOISE_PC_DISTANCE = 0.6  # ...or pitch-class histogram total variation distance above this
NOISE_RANGE_SEMITONES = 12  # ...or a 1st-99th percentile pitch range this far beyond training's
MISMATCH_DENSITY_RATIO = 0.5  # mismatch: note onsets per quarter < this x the training's...
MISMATCH_POLYPHONY_RATIO = 0.5  # ...or mean keys per sounding step < this x the training's...
MISMATCH_GRID_RATIO = 0.5  # ...or on-grid onset share < this x the training's, when training
MISMATCH_GRID_LIFT = 2.0  # has metre (its share >= this x chance, 1 / grid steps)...
MISMATCH_MIN_ONSETS = 16  # ...and the piece has at least this many onsets to judge
IDENTICAL_JACCARD = 0.9  # identical: 16-step window sets this similar to another piece's


@dataclass
class Roll:
    """Pieces as grid steps. ``ids``: int64[K] content ids; ``step_of``: int64[K] their step
    (non-decreasing); ``piece_of_step``: int64[S] piece index of each step; ``space``:
    "steps" or "onsets"; ``onset``: bool[K] whether the id starts a note."""

    ids: np.ndarray
    step_of: np.ndarray
    piece_of_step: np.ndarray
    space: str
    onset: np.ndarray = field(default=None)  # type: ignore[assignment]

    @property
    def n_steps(self) -> int:
        return len(self.piece_of_step)

    def keys(self) -> np.ndarray:
        """Key index 0..87 of each id."""
        return self.ids % N_KEYS

    def counts(self) -> np.ndarray:
        """Keys per step: int64[S]."""
        return np.bincount(self.step_of, minlength=self.n_steps)


def _mark_onsets(roll: Roll) -> Roll:
    if roll.space == "onsets":
        roll.onset = roll.ids < N_KEYS
    else:  # steps space: a key starts a note where it did not sound in the step before
        gap = roll.piece_of_step[roll.step_of] if len(roll.ids) else roll.step_of
        codes = (roll.step_of + gap) * 256 + roll.ids  # pieces separated by one empty step
        roll.onset = ~np.isin(codes - 256, codes)
    return roll


def roll_from_grid_tokens(tokens, step: int, bos: int, blocks: int) -> Roll:
    """Roll of steps/onsets token streams (one piece, or many back to back each from BOS).

    A step is the keys between a BOS/STEP and the next STEP; keys not closed by a STEP are
    dropped. Vectorised: no Python loop over tokens.
    """
    t = np.asarray(tokens, np.int64)
    is_step = t == step
    step_pos = np.flatnonzero(is_step)
    before = np.cumsum(is_step) - is_step  # STEP tokens strictly before each position
    piece = np.cumsum(t == bos)
    key_pos = np.flatnonzero((t >= 0) & (t < step))
    sidx = before[key_pos]
    ok = sidx < len(step_pos)
    ok[ok] = piece[key_pos[ok]] == piece[step_pos[sidx[ok]]]
    order = np.lexsort((-t[key_pos[ok]], sidx[ok]))
    roll = Roll(
        t[key_pos[ok]][order],
        sidx[ok][order],
        piece[step_pos] - (piece[step_pos][0] if len(step_pos) else 0),
        "onsets" if blocks == 2 else "steps",
    )
    return _mark_onsets(roll)


def roll_from_notes(pitch, onset, offset) -> Roll:
    """Roll (onsets space) of one piece's quantized notes: int arrays [N] of MIDI pitch,
    onset step and offset step (exclusive)."""
    pitch, onset, offset = (np.asarray(a, np.int64) for a in (pitch, onset, offset))
    lens = np.maximum(offset - onset, 1)
    k = np.repeat(pitch - 21, lens)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    steps = np.repeat(onset, lens) + np.arange(len(k)) - first
    ids = np.where(steps == np.repeat(onset, lens), k, k + N_KEYS)
    order = np.lexsort((-(ids % N_KEYS), steps))
    n = int(offset.max()) if len(offset) else 0
    roll = Roll(ids[order], steps[order], np.zeros(n, np.int64), "onsets")
    return _mark_onsets(roll)


def piece_stats(roll: Roll, steps_per_quarter: int) -> dict:
    """Statistics of a roll (one piece or a whole split).

    ``pitch_class_hist``: share of key-steps per pitch class (duration-weighted), 12 floats;
    ``mean_polyphony``: mean keys per sounding step; ``sounding_fraction``: sounding steps / S;
    ``note_density``: note onsets per quarter note = onsets / (S / steps_per_quarter);
    ``pitch_range``: [1st, 99th] percentile MIDI pitch of the key-steps (None if no keys);
    ``notes``, ``steps``.
    """
    S = roll.n_steps
    counts = roll.counts()
    pitches = roll.keys() + 21
    pcs = np.bincount(pitches % 12, minlength=12).astype(float)
    sounding = int(np.count_nonzero(counts))
    notes = int(roll.onset.sum()) if roll.onset is not None else 0
    return {
        "steps": S,
        "notes": notes,
        "pitch_class_hist": (pcs / pcs.sum() if pcs.sum() else pcs).round(5).tolist(),
        "mean_polyphony": float(counts[counts > 0].mean()) if sounding else 0.0,
        "sounding_fraction": sounding / S if S else 0.0,
        "note_density": notes / (S / steps_per_quarter) if S else 0.0,
        "pitch_range": (
            [
                int(np.percentile(pitches, 1, method="lower")),
                int(np.percentile(pitches, 99, method="higher")),
            ]
            if len(pitches)
            else None
        ),
        **metrical_stats(roll, steps_per_quarter),
    }


def grid_steps(steps_per_quarter: int) -> int:
    """Steps of the metrical grid the regularity figures use: a sixteenth note when the
    resolution has one (spq // 4), else one step."""
    return max(1, steps_per_quarter // 4)


def on_grid_share(roll: Roll, grid: int) -> float:
    """Share of note onsets at steps = phase (mod ``grid``), phase chosen per piece to
    maximise it (sum over pieces of their best phase's onsets / all onsets; 0 without onsets).
    Chance level for evenly scattered onsets is about 1 / grid."""
    if roll.onset is None or not roll.onset.any():
        return 0.0
    steps = roll.step_of[roll.onset]
    piece = roll.piece_of_step[steps]
    starts = np.searchsorted(roll.piece_of_step, np.arange(roll.piece_of_step.max() + 1))
    phase = (steps - starts[piece]) % grid
    hits = np.bincount(piece * grid + phase, minlength=(piece.max() + 1) * grid)
    return float(hits.reshape(-1, grid).max(axis=1).sum() / len(steps))


def metrical_stats(roll: Roll, steps_per_quarter: int) -> dict:
    """``on_grid_share`` (sixteenth grid, see ``grid_steps``) and ``on_beat_share``
    (quarter-note grid) of the roll's onsets, and ``onsets`` counted."""
    n = int(roll.onset.sum()) if roll.onset is not None else 0
    return {
        "on_grid_share": on_grid_share(roll, grid_steps(steps_per_quarter)),
        "on_beat_share": on_grid_share(roll, steps_per_quarter),
        "onsets": n,
    }


def pc_distance(a: list[float], b: list[float]) -> float:
    """Total variation distance 0.5 * sum |a - b| between two pitch-class histograms (0..1)."""
    return float(0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum())


def compare_stats(stats: dict, train: dict) -> dict:
    """The piece's statistics next to the training ones, as ratios and a histogram distance."""

    def ratio(k: str) -> float | None:
        return stats[k] / train[k] if train.get(k) else None

    return {
        "pitch_class_distance": pc_distance(stats["pitch_class_hist"], train["pitch_class_hist"]),
        "polyphony_ratio": ratio("mean_polyphony"),
        "density_ratio": ratio("note_density"),
        "sounding_ratio": ratio("sounding_fraction"),
        "on_grid_ratio": ratio("on_grid_share") if "on_grid_share" in stats else None,
        "on_beat_ratio": ratio("on_beat_share") if "on_beat_share" in stats else None,
    }


def flags_for(audit: dict, train: dict | None, spq: int) -> list[str]:
    """Flags from one piece's audit dict (keys from ``copying.copy_audit``, ``piece_stats``,
    ``max_similarity``, ``problems``); ``train``: training ``piece_stats`` or None."""
    flags = []
    if audit.get("problems"):
        flags.append("invalid")
    if "longest_copy_steps_transposed" in audit:
        long_run = (
            audit["longest_copy_steps_transposed"] >= COPY_FLAG_QUARTERS * spq
            and audit["longest_copy_changes"] >= COPY_FLAG_MIN_CHANGES
        )
        many = (
            audit["live_windows"] >= COPY_FLAG_MIN_WINDOWS
            and audit["copied_window_fraction"] >= COPY_FLAG_WINDOW_FRACTION
        )
        if long_run or many:
            flags.append("copied")
    ref_sound = train["sounding_fraction"] if train else 0.4
    if audit["notes"] == 0 or audit["sounding_fraction"] < SILENT_MIN_SOUNDING * ref_sound:
        flags.append("silent")
    if train and audit["notes"]:
        noisy = (
            audit["note_density"] > NOISE_DENSITY_RATIO * train["note_density"]
            or (
                audit["mean_polyphony"] > NOISE_POLYPHONY_RATIO * train["mean_polyphony"]
                and audit["mean_polyphony"] > train["mean_polyphony"] + 3
            )
            or pc_distance(audit["pitch_class_hist"], train["pitch_class_hist"]) > NOISE_PC_DISTANCE
            or _beyond_range(audit.get("pitch_range"), train.get("pitch_range"))
            > NOISE_RANGE_SEMITONES
        )
        if noisy:
            flags.append("noise")
    if train and audit["notes"] and _mismatch(audit, train, spq):
        flags.append("mismatch")
    if audit.get("max_similarity", 0.0) >= IDENTICAL_JACCARD:
        flags.append("identical")
    return flags


def _mismatch(audit: dict, train: dict, spq: int) -> bool:
    """Far sparser, thinner or less metrical than the training data (see MISMATCH_*)."""
    if audit["note_density"] < MISMATCH_DENSITY_RATIO * train["note_density"]:
        return True
    if audit["mean_polyphony"] < MISMATCH_POLYPHONY_RATIO * train["mean_polyphony"]:
        return True
    grid = grid_steps(spq)
    ref, mine = train.get("on_grid_share"), audit.get("on_grid_share")
    metrical = grid > 1 and ref is not None and ref >= MISMATCH_GRID_LIFT / grid
    enough = audit.get("onsets", audit["notes"]) >= MISMATCH_MIN_ONSETS
    return bool(metrical and enough and mine is not None and mine < MISMATCH_GRID_RATIO * ref)


def _beyond_range(piece: list[int] | None, train: list[int] | None) -> int:
    """Semitones by which the piece's pitch range reaches past the training range (0: inside)."""
    if not piece or not train:
        return 0
    return max(0, train[0] - piece[0], piece[1] - train[1])


def thresholds() -> dict:
    """The flag thresholds, recorded in every audit file."""
    names = [
        k
        for k in globals()
        if k.isupper() and k.split("_")[0] in ("COPY", "SILENT", "NOISE", "MISMATCH")
    ]
    return {k: globals()[k] for k in names} | {"IDENTICAL_JACCARD": IDENTICAL_JACCARD}


def token_nll_summary(scored, bos: int, eos: int, count_steps) -> dict:
    """Likelihood accounting of token pieces scored whole from their first token.

    ``scored``: iterable of (tokens int[T], nll float[T-1]) where nll[t-1] = -log p(x_t | x_<t).
    Returns ``nll_per_token`` = sum nll / ``tokens`` (every predicted token, EOS included; BOS
    is never predicted) and ``nll_per_step`` = the nll of targets that are neither BOS nor EOS
    summed, divided by ``steps`` = sum of ``count_steps(tokens)`` (quantized grid steps), so
    per-step figures are the cost of the music itself, comparable across encodings.
    """
    tot = music = 0.0
    n_tok = n_steps = n = 0
    for tokens, nll in scored:
        tgt = np.asarray(tokens)[1:]
        nll = np.asarray(nll, np.float64)
        tot += float(nll.sum())
        music += float(nll[(tgt != bos) & (tgt != eos)].sum())
        n_tok += len(tgt)
        n_steps += count_steps(tokens)
        n += 1
    return {
        "nll_per_token": tot / n_tok if n_tok else None,
        "tokens": n_tok,
        "nll_per_step": music / n_steps if n_steps else None,
        "steps": n_steps,
        "pieces": n,
    }
