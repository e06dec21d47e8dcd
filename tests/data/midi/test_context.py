"""Defaults that suit the collection: the finest grid the notes need, tokens per bar per
encoding, the recommendation in prepare/info, and windows sized in bars."""

from __future__ import annotations

from pathlib import Path

import pytest
import symusic

from tests.data.midi.test_prepare import run
from tunelab.cli.info import show_info
from tunelab.config import ConfigError, TrainConfig
from tunelab.data.store import load_datadir
from tunelab.train_checks import size_from_data


def write_rhythm(path: Path, onsets_q: list[float], pitches=(60, 64, 67), tpq: int = 480) -> None:
    """Chords of ``pitches`` at onsets given in quarter notes, each lasting to the next."""
    score = symusic.Score(tpq)
    track = symusic.Track("piano", 0, False)
    ends = [*onsets_q[1:], onsets_q[-1] + 1]
    for a, b in zip(onsets_q, ends, strict=True):
        for p in pitches:
            track.notes.append(symusic.Note(round(a * tpq), round((b - a) * tpq), p, 80))
    score.tracks.append(track)
    score.tempos.append(symusic.Tempo(0, qpm=120.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(path)


SIXTEENTHS = [i / 4 for i in range(64)]  # 16 bars... of 4/4: 4 bars
TRIPLETS = [i / 3 for i in range(48)]


@pytest.mark.parametrize(
    "rhythms, finest",
    [([SIXTEENTHS], 4), ([TRIPLETS], 3), ([SIXTEENTHS, TRIPLETS], 12), ([[0, 1, 2, 3]], 1)],
)
def test_prepare_reports_the_finest_grid_and_tokens_per_bar(tmp_path, rhythms, finest, capsys):
    for i, r in enumerate(rhythms * 3):
        write_rhythm(tmp_path / "src" / f"p{i}.mid", r)
    assert run([tmp_path / "src"], tmp_path / "d", steps_per_quarter=24, encoding="steps") == 0
    err = capsys.readouterr().err
    dd = load_datadir(tmp_path / "d")
    ctx = dd.stats["context"]
    assert ctx["finest_grid_spq"] == finest
    # 12 steps per quarter: a bar of steps costs 12 * (4 + 12) = 192 tokens, more than the
    # 128-token window of midi-roll and midi-gru, so the advice caps the grid at 8 (128)
    rec = finest if finest <= 4 else 8
    assert ctx["recommended"]["steps_per_quarter"] == rec
    assert ("capped at 8" in ctx["recommended"]["why"]) == (finest == 12)
    # 4 bars of steps at these grids: 64 tokens (1 per quarter) .. 768 (12): carry beyond 256
    enc = ctx["recommended"]["encoding"]
    fits = "midi-roll" if enc == "steps" else "midi-gru"
    assert ctx["recommended"]["preset"] == (fits if finest <= 4 else "midi-gru-carry")
    assert f"--steps-per-quarter {rec}" in err
    # steps at 24 per quarter: 96 step tokens per 4/4 bar plus 3 sounding keys per step
    assert ctx["measured_tokens_per_bar"] == pytest.approx(96 * 4, rel=0.05)
    assert ctx["tokens_per_bar"]["steps"]["24"] == pytest.approx(96 * 4, rel=0.05)
    assert ctx["tokens_per_bar"]["steps"]["1"] == pytest.approx(4 * 4, rel=0.05)
    assert dd.meta["tokens_per_bar"] == ctx["measured_tokens_per_bar"]
    # remi: a Bar, a Position per onset and 3 tokens per note (of 3)
    onsets_per_bar = sum(len(r) for r in rhythms) / sum(r[-1] + 1 for r in rhythms) * 4
    assert ctx["tokens_per_bar"]["remi"] == pytest.approx(1 + 10 * onsets_per_bar, rel=0.1)
    if finest == 4:  # ... which is what MidiTok's REMI spends
        assert run([tmp_path / "src"], tmp_path / "r", steps_per_quarter=4, encoding="remi") == 0
        measured = load_datadir(tmp_path / "r").stats["context"]["measured_tokens_per_bar"]
        assert measured == pytest.approx(ctx["tokens_per_bar"]["remi"], rel=0.1)
    assert show_info(tmp_path / "d", plots=False) == 0
    assert f"--steps-per-quarter {rec}" in capsys.readouterr().out


def test_windows_and_batches_sized_in_bars(tmp_path):
    for i in range(4):
        write_rhythm(tmp_path / "src" / f"p{i}.mid", SIXTEENTHS)
    run([tmp_path / "src"], tmp_path / "d", steps_per_quarter=4)
    dd = load_datadir(tmp_path / "d")
    per_bar = dd.meta["tokens_per_bar"]  # 16 steps + 48 keys per bar
    assert per_bar == pytest.approx(64, rel=0.05)
    t = TrainConfig(seq_bars=2, seq_len=1000, batch_tokens=1024)
    size_from_data(t, dd)
    assert t.seq_len == round(2 * per_bar)
    assert t.batch_size == round(1024 / t.seq_len)  # the global batch: no process count in it
    capped = TrainConfig(seq_bars=100, seq_len=300)
    size_from_data(capped, dd)
    assert capped.seq_len == 300  # seq_len is the most a window may hold
    old = dict(dd.meta)
    del dd.meta["tokens_per_bar"]  # data prepared before the figure existed: from the index
    again = TrainConfig(seq_bars=2, seq_len=1000)
    size_from_data(again, dd)
    assert again.seq_len == pytest.approx(2 * per_bar, abs=3)
    dd.meta = {**old, "tokens_per_bar": None, "steps_per_quarter": None}
    with pytest.raises(ConfigError, match="seq_bars"):
        size_from_data(TrainConfig(seq_bars=2), dd)
