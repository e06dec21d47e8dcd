"""Audits of MIDI token streams: every encoding gives the same grid roll of a piece, tails and
joins keep steps and pieces apart, the training index says why it is missing, and the audit of
a batch flags copies and sameness."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers_generate import make_datadir
from tests.helpers_midi import make_score
from tunelab.data.midi import make_codec
from tunelab.data.store import load_datadir
from tunelab.kinds.midi_audit import (
    audit_rolls,
    check_same_encoding,
    roll_from_tokens,
    roll_tail,
    training_index,
)
from tunelab.metrics import copying as C

SPQ = 4


def _meta(encoding: str) -> dict:
    return make_codec(encoding, SPQ).meta()


def _score():
    """Two bars of 4/4 on the grid of SPQ steps per quarter (tpq 480: a step is 120 ticks)."""
    notes = [(0, 480, 60), (0, 960, 64), (480, 240, 62), (960, 120, 67), (1200, 720, 65)]
    notes += [(1920, 1920, 48), (2160, 480, 72)]
    return make_score(notes)


@pytest.mark.parametrize("encoding", ["onsets", "remi"])
def test_every_encoding_gives_the_roll_of_the_steps_encoding(encoding):
    want = roll_from_tokens(make_codec("steps", SPQ).encode(_score()), _meta("steps"))
    got = roll_from_tokens(make_codec(encoding, SPQ).encode(_score()), _meta(encoding))
    n = want.n_steps  # remi pads to whole bars; the notes end where the steps' piece ends
    assert got.n_steps >= n
    assert sorted(zip(got.step_of, got.keys(), strict=True)) == sorted(
        zip(want.step_of, want.keys(), strict=True)
    )
    assert got.onset.sum() == 7  # both know which keys are struck (steps cannot)
    assert got.space == "onsets" and want.space == "steps"


def test_a_remi_stream_without_notes_is_an_empty_roll_of_its_length():
    meta = _meta("remi")
    codec = make_codec("remi", SPQ)
    bar = codec.encode(_score())[:2]  # BOS and the first bar token: no note at all
    roll = roll_from_tokens(np.append(bar, codec.eos), meta)
    assert len(roll.ids) == 0 and roll.n_steps == codec.count_steps(np.append(bar, codec.eos))


def test_roll_tail_renumbers_the_steps_after_a_primer():
    roll = roll_from_tokens(make_codec("steps", SPQ).encode(_score()), _meta("steps"))
    tail = roll_tail(roll, 5)
    assert tail.n_steps == roll.n_steps - 5
    keep = roll.step_of >= 5
    assert np.array_equal(tail.step_of, roll.step_of[keep] - 5)
    assert np.array_equal(tail.ids, roll.ids[keep])
    assert np.array_equal(C.step_hashes(tail), C.step_hashes(roll)[5:])


def test_training_index_says_why_it_is_missing(tmp_path):
    meta = make_datadir(tmp_path / "data")
    index, why = training_index(meta, tmp_path / "data")
    assert index is not None and why == f"training split of {tmp_path / 'data'}"
    assert training_index(meta, None) == (None, "no data directory recorded in the run")
    index, why = training_index(meta, tmp_path / "gone")
    assert index is None and "gone" in why
    other = {**meta, "steps_per_quarter": 4}
    index, why = training_index(other, tmp_path / "data")
    assert index is None and "steps_per_quarter" in why
    with pytest.raises(ValueError, match="data encoding='onsets' differs from the run's 'steps'"):
        check_same_encoding(meta, {**meta, "encoding": "onsets"}, "data")


def test_audit_flags_a_training_copy_and_two_identical_pieces(tmp_path):
    meta = make_datadir(tmp_path / "data")
    index, _ = training_index(meta, tmp_path / "data")
    copy = np.asarray(load_datadir(tmp_path / "data").split("train").piece(0), np.int64)
    fresh = make_codec("steps", 2).encode(_score())
    rolls = [roll_from_tokens(t, meta) for t in (copy, fresh, fresh)]
    audits = audit_rolls(rolls, [[], [], ["planted problem"]], index, 2)
    assert "copied" in audits[0]["flags"] and "copied" not in audits[1]["flags"]
    assert audits[1]["most_similar"] == 2 and audits[2]["most_similar"] == 1
    assert audits[1]["max_similarity"] == 1.0 and "identical" in audits[1]["flags"]
    assert "invalid" in audits[2]["flags"] and audits[2]["problems"] == ["planted problem"]
    alone = audit_rolls(rolls[:1], [[]], None, 2)[0]  # no index, no other piece
    assert "copied" not in alone["flags"] and "most_similar" not in alone


def test_the_packed_index_is_the_index_without_the_roll(tmp_path):
    """What a bundle stores instead of the training roll (step hashes as codes, piece lengths,
    statistics) rebuilds an index that audits every piece the same, windows never crossing
    a piece boundary."""
    from tests.helpers_generate import random_piece
    from tunelab.kinds.midi_audit import pack_index, unpack_index

    meta = make_datadir(tmp_path / "data", n_pieces=10, n_steps=64)
    index, _ = training_index(meta, tmp_path / "data")
    arrays, info = pack_index(index)
    train = load_datadir(tmp_path / "data").split("train")
    assert arrays["step_codes"].dtype.itemsize <= 2 and info["pieces"] == len(train) > 1
    back = unpack_index(arrays, info)
    assert back.roll is None and np.array_equal(back.h, index.h)
    assert np.array_equal(back.piece_of_step, index.piece_of_step)
    assert back.stats == index.stats and back.histograms == index.histograms
    rng = np.random.default_rng(5)
    # The end of one training piece joined to the start of the next: copied across a
    # boundary, which the audit must not count as one run.
    seam = np.concatenate([train.piece(0)[:-1][-60:], train.piece(1)[1:61]])
    pieces = [train.piece(3), random_piece(rng, 48), np.concatenate([[89], seam[1:], [90]])]
    for p in pieces:
        r = roll_from_tokens(np.asarray(p, np.int64), meta)
        assert C.copy_audit(r, back) == C.copy_audit(r, index)
    rolls = [roll_from_tokens(np.asarray(p, np.int64), meta) for p in pieces]
    assert audit_rolls(rolls, [[]] * 3, back, 2) == audit_rolls(rolls, [[]] * 3, index, 2)
    arrays["step_codes"][0] = len(arrays["step_hash_values"])  # out of range: refused
    with pytest.raises(ValueError, match="out of range"):
        unpack_index(arrays, info)


def test_pack_index_keeps_pieces_of_a_joined_roll_apart():
    from tunelab.kinds.midi_audit import concat_rolls, pack_index, unpack_index

    codec = make_codec("remi", SPQ)
    meta = codec.meta()
    r = concat_rolls([roll_from_tokens(codec.encode(_score()), meta)] * 3)
    index = C.TrainingIndex(r, SPQ)
    back = unpack_index(*pack_index(index))
    assert np.array_equal(back.piece_of_step, r.piece_of_step)
    assert np.array_equal(back.windows(20), index.windows(20))
