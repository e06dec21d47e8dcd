"""Audits of MIDI token streams against the training split (copying, statistics, sameness).

Token streams become grid rolls (``roll_from_tokens``) that the pure metrics in
``tunelab.metrics.midi`` and ``tunelab.metrics.copying`` compare with a window index of the
training split; ``audit_rolls`` gives one audit dict per piece with its ``flags``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tunelab.data.midi import Rejected, codec_from_meta, quantize
from tunelab.metrics import copying as C
from tunelab.metrics import midi as M


def check_same_encoding(meta: dict, data_meta: dict, where) -> None:
    for k in ("encoding", "vocab_size", "steps_per_quarter"):
        if meta.get(k) != data_meta.get(k):
            raise ValueError(
                f"{where}: data {k}={data_meta.get(k)!r} differs from the run's {meta.get(k)!r}"
            )


def roll_from_tokens(tokens, meta: dict) -> M.Roll:
    """Grid roll of one token stream (remi: decoded, then quantized onto the grid)."""
    enc = meta.get("encoding", "steps")
    if enc in ("steps", "onsets"):
        sp = meta["specials"]
        blocks = 2 if enc == "onsets" else 1
        return M.roll_from_grid_tokens(tokens, step=sp["step"], bos=sp["bos"], blocks=blocks)
    codec = codec_from_meta(meta)
    try:
        grid = quantize(codec.decode(tokens), int(meta["steps_per_quarter"]), off_piano="drop")
    except Rejected:
        n = codec.count_steps(tokens)
        empty = np.zeros(0, np.int64)
        return M.Roll(
            ids=empty,
            step_of=empty,
            piece_of_step=np.zeros(n, np.int64),
            space="onsets",
            onset=np.zeros(0, bool),
        )
    return M.roll_from_notes(grid.pitch, grid.onset, grid.offset)


def roll_tail(roll: M.Roll, start: int) -> M.Roll:
    """The steps from ``start`` on (e.g. what was generated after a primer)."""
    keep = roll.step_of >= start
    return M.Roll(
        ids=roll.ids[keep],
        step_of=roll.step_of[keep] - start,
        piece_of_step=roll.piece_of_step[start:],
        space=roll.space,
        onset=roll.onset[keep],
    )


def concat_rolls(rolls: list[M.Roll]) -> M.Roll:
    offs = np.cumsum([0] + [r.n_steps for r in rolls])
    return M.Roll(
        ids=np.concatenate([r.ids for r in rolls] or [np.zeros(0, np.int64)]),
        step_of=np.concatenate(
            [r.step_of + o for r, o in zip(rolls, offs, strict=False)] or [np.zeros(0, np.int64)]
        ),
        piece_of_step=np.concatenate(
            [np.full(r.n_steps, i) for i, r in enumerate(rolls)] or [np.zeros(0, np.int64)]
        ).astype(np.int64),
        space=rolls[0].space if rolls else "steps",
        onset=np.concatenate([r.onset for r in rolls] or [np.zeros(0, bool)]),
    )


def training_index(meta: dict, data_dir: str | Path | None) -> tuple[C.TrainingIndex | None, str]:
    """The training split's window index, or (None, reason) when the data is not there."""
    from tunelab.data.store import DataDirError, load_datadir

    if not data_dir:
        return None, "no data directory recorded in the run"
    try:
        dd = load_datadir(data_dir)
        check_same_encoding(meta, dd.meta, dd.path)
        train = dd.split("train")
    except (DataDirError, ValueError, OSError) as e:
        return None, str(e)
    enc = meta.get("encoding", "steps")
    if enc in ("steps", "onsets"):
        roll = roll_from_tokens(np.asarray(train.data, np.int64), meta)
    else:
        roll = concat_rolls([roll_from_tokens(np.asarray(p, np.int64), meta) for p in train])
    return C.TrainingIndex(roll, int(meta["steps_per_quarter"])), f"training split of {dd.path}"


def audit_rolls(
    rolls: list[M.Roll],
    problems: list[list[str]],
    index: C.TrainingIndex | None,
    spq: int,
) -> list[dict]:
    """One audit dict per piece: copy audit (when ``index``), statistics vs training,
    validity problems, the most similar other piece, and ``flags``."""
    sim = C.pairwise_similarity(rolls) if len(rolls) > 1 else np.ones((1, 1))
    out = []
    for i, roll in enumerate(rolls):
        a: dict = {"problems": problems[i]}
        stats = M.piece_stats(roll, spq)
        a.update(stats)
        if index is not None:
            a.update(C.copy_audit(roll, index))
            a.update(M.compare_stats(stats, index.stats))
        if len(rolls) > 1:
            others = np.delete(sim[i], i)
            j = int(np.argmax(others))
            a["max_similarity"] = float(others[j])
            a["most_similar"] = j + (j >= i)
        a["flags"] = M.flags_for(a, index.stats if index else None, spq)
        out.append(a)
    return out


def pack_index(index: C.TrainingIndex) -> tuple[dict[str, np.ndarray], dict]:
    """What a bundle stores of the training index instead of the training roll: (arrays,
    JSON info). Arrays: ``step_hash_values`` uint64[U], the distinct step hashes;
    ``step_codes`` uint8/16/32[S], each step's position among them (held chords and rests
    repeat, so codes are few and compress well); ``piece_steps`` uint32[P], the steps of each
    piece in order. Info: steps per quarter, the training statistics and histograms."""
    values, codes = np.unique(index.h, return_inverse=True)
    code_type = next(t for t in (np.uint8, np.uint16, np.uint32) if len(values) <= np.iinfo(t).max)
    pos = index.piece_of_step
    starts = np.flatnonzero(np.concatenate([[True], pos[1:] != pos[:-1]])) if len(pos) else []
    lengths = np.diff(np.append(starts, len(pos))).astype(np.uint32)
    arrays = {
        "step_hash_values": values.astype(np.uint64),
        "step_codes": codes.reshape(-1).astype(code_type),
        "piece_steps": lengths,
    }
    info = {
        "steps_per_quarter": int(index.spq),
        "steps": int(len(pos)),
        "pieces": int(len(lengths)),
        "stats": index.stats,
        "histograms": index.histograms,
    }
    return arrays, info


def unpack_index(arrays: dict, info: dict) -> C.TrainingIndex:
    """The training index back from ``pack_index``'s output (ValueError if it does not fit)."""
    values = np.asarray(arrays["step_hash_values"])
    codes = np.asarray(arrays["step_codes"])
    lengths = np.asarray(arrays["piece_steps"])
    if values.dtype != np.uint64 or codes.dtype.kind != "u" or lengths.dtype.kind != "u":
        raise ValueError("copy-audit index: unexpected array types")
    if codes.ndim != 1 or (len(codes) and int(codes.max()) >= len(values)):
        raise ValueError("copy-audit index: step codes out of range")
    if int(lengths.sum()) != len(codes) or int(info["steps"]) != len(codes):
        raise ValueError("copy-audit index: the pieces do not add up to the steps")
    piece_of_step = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths.astype(np.int64))
    return C.TrainingIndex.from_parts(
        values[codes.astype(np.int64)],
        piece_of_step,
        int(info["steps_per_quarter"]),
        dict(info["stats"]),
        dict(info["histograms"]),
    )
