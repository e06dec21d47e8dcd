"""A folder as a newcomer brings it: prepare's defaults fit the data (grid, encoding, drums,
off-range notes), every file is in the manifest, and what is dropped or too small is said."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import symusic
from typer.testing import CliRunner

from tunelab.cli import app
from tunelab.data.midi import codec_from_meta
from tunelab.data.midi import prepare as prep
from tunelab.data.store import load_datadir

runner = CliRunner()


def write_piece(path: Path, notes, tpq: int = 480, drums=(), programs=(0,)) -> None:
    """notes: (onset in quarters, length in quarters, pitch), one track per program (the notes
    are dealt round-robin); drums: (onset, pitch) on a drum track."""
    score = symusic.Score(tpq)
    tracks = [symusic.Track(f"p{p}", p, False) for p in programs]
    for i, (on, dur, pitch) in enumerate(notes):
        note = symusic.Note(round(on * tpq), max(1, round(dur * tpq)), pitch, 80)
        tracks[i % len(tracks)].notes.append(note)
    score.tracks.extend(tracks)
    if drums:
        kit = symusic.Track("drums", 0, True)
        for on, pitch in drums:
            kit.notes.append(symusic.Note(round(on * tpq), tpq // 4, pitch, 90))
        score.tracks.append(kit)
    score.tempos.append(symusic.Tempo(0, qpm=120.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(path)


def eighths(root: int, n: int = 32) -> list[tuple[float, float, int]]:
    return [(i / 2, 0.5, root + (i * 5) % 12) for i in range(n)]


def run(srcs, out, **kw) -> int:
    kw.setdefault("workers", 1)
    return prep.prepare_midi([Path(s) for s in srcs], Path(out), **kw)


def test_auto_grid_and_encoding_fit_the_notes_and_say_why(tmp_path, capsys):
    for i in range(4):
        write_piece(tmp_path / "src" / f"p{i}.mid", eighths(48 + i))
    assert run([tmp_path / "src"], tmp_path / "d") == 0  # defaults: auto
    err = capsys.readouterr().err
    dd = load_datadir(tmp_path / "d")
    assert dd.meta["steps_per_quarter"] == 2 and dd.meta["encoding"] == "steps"
    choices = dd.stats["choices"]
    assert choices["steps_per_quarter"] == 2 and "onsets lie on a grid of 2" in choices["why_grid"]
    assert "chose --steps-per-quarter 2" in err and "chose --encoding steps" in err
    # the advice printed is the setting used: prepare no longer ignores its own advice
    assert dd.stats["context"]["recommended"]["steps_per_quarter"] == 2


def test_auto_grid_is_capped_so_that_a_bar_fits_the_window(tmp_path):
    # sixteenths and triplets of 3-note chords: the finest grid (12) costs 12 * (4 + 12) = 192
    # tokens a bar, more than the 128-token window; 8 (128 tokens) and 6 (96) hold as many
    # onsets (sixteenths and whole beats of triplets, or triplets and half beats of sixteenths)
    chord = (48, 55, 60)
    notes = [(i / 4, 1 / 4, p) for i in range(64) for p in chord]
    notes += [(16 + i / 3, 1 / 3, p) for i in range(48) for p in chord]
    for i in range(3):
        write_piece(tmp_path / "src" / f"p{i}.mid", notes)
    assert run([tmp_path / "src"], tmp_path / "d") == 0
    dd = load_datadir(tmp_path / "d")
    assert dd.stats["context"]["finest_grid_spq"] == 12
    assert dd.meta["steps_per_quarter"] == 8 and dd.meta["encoding"] == "steps"
    assert "capped at 8" in dd.stats["choices"]["why_grid"]
    assert dd.meta["tokens_per_bar"] == pytest.approx(128, rel=0.01)  # + BOS and EOS
    assert dd.stats["filters"]["short_notes_dropped"] == 0  # every note lasts a step or more


def test_multi_instrument_keeps_off_piano_notes_and_drums(tmp_path, capsys):
    song = [*eighths(60), (3.0, 0.5, 109), (5.0, 0.5, 110)]  # 2 notes above the piano's range
    drums = [(i / 2, 36 + 6 * (i % 2)) for i in range(16)]
    for i in range(3):
        write_piece(tmp_path / "src" / f"s{i}.mid", song, drums=drums, programs=(0, 33))
    assert run([tmp_path / "src"], tmp_path / "d") == 0
    dd = load_datadir(tmp_path / "d")
    assert dd.meta["encoding"] == "remi-programs" and dd.stats["rejected"] == 0
    assert dd.stats["choices"]["keep_drums"] is True
    assert dd.stats["filters"].get("drum_notes_dropped", 0) == 0
    assert dd.stats["filters"].get("off_piano_notes_dropped", 0) == 0
    names = dd.meta["token_names"]
    piece = dd.split("train").piece(0)
    used = {names[t] for t in piece}
    assert "Pitch_109" in used and "Pitch_110" in used  # kept, not rejected or dropped
    assert any(n.startswith("PitchDrum_") for n in used)  # the drum kit came through
    score = codec_from_meta(dd.meta).decode(piece)
    assert any(t.is_drum for t in score.tracks)
    assert max(n.pitch for t in score.tracks if not t.is_drum for n in t.notes) == 110


def test_piano_encodings_drop_a_few_off_range_notes_and_reject_many(tmp_path):
    few = [*eighths(60, 40), (2.0, 0.5, 109)]  # 1 of 41 notes off the keyboard
    many = [(i / 2, 0.5, 110 + i % 5) for i in range(20)] + eighths(60, 10)
    for i in range(3):
        write_piece(tmp_path / "src" / f"few{i}.mid", few)
    write_piece(tmp_path / "src" / "many.mid", many)
    assert run([tmp_path / "src"], tmp_path / "d", encoding="steps", steps_per_quarter=2) == 0
    dd = load_datadir(tmp_path / "d")
    man = {Path(e["path"]).name: e for e in dd.manifest()}
    assert all(man[f"few{i}.mid"]["status"] == "accepted" for i in range(3))
    assert man["many.mid"]["status"] == "rejected" and "67%" in man["many.mid"]["reason"]
    assert dd.stats["filters"]["off_piano_notes_dropped"] == 3


def test_large_drops_are_said_in_plain_words(tmp_path, capsys):
    # a third of the notes are 64th notes: shorter than one step of a 2-per-quarter grid
    notes = eighths(60, 32) + [(i / 2 + 1 / 16, 1 / 16, 72) for i in range(16)]
    for i in range(3):
        write_piece(tmp_path / "src" / f"p{i}.mid", notes)
    assert run([tmp_path / "src"], tmp_path / "d", steps_per_quarter=2, encoding="steps") == 0
    err = capsys.readouterr().err
    dd = load_datadir(tmp_path / "d")
    assert dd.stats["dropped"]["share"] == 0.3333
    assert "33% of the notes read" in err and "shorter than one grid step" in err


def test_small_collections_say_how_they_were_split(tmp_path, capsys):
    for i in range(3):
        write_piece(tmp_path / "src" / f"p{i}.mid", eighths(50 + i))
    assert run([tmp_path / "src"], tmp_path / "d") == 0
    err = capsys.readouterr().err
    warnings = load_datadir(tmp_path / "d").stats["split_warnings"]
    assert any(w.startswith("valid holds only 1 piece") for w in warnings)
    assert any("only 3 pieces: the split was made by piece" in w for w in warnings)
    assert "warning:" in err and "only 3 pieces" in err


def test_mixed_folder_asks_which_kind_and_lists_the_other_as_ignored(tmp_path):
    src = tmp_path / "mixed"
    for i in range(3):
        write_piece(src / f"p{i}.mid", eighths(50 + i))
    sf.write(src / "take.wav", np.zeros(1600, np.float32), 16000)
    (src / "cover.jpg").write_bytes(b"\xff\xd8")
    r = runner.invoke(app, ["prepare", str(src), "--out", str(tmp_path / "d")])
    assert r.exit_code == 2
    assert "found 3 MIDI and 1 audio files" in r.output and "--kind midi" in r.output
    assert not (tmp_path / "d").exists()
    r = runner.invoke(
        app, ["prepare", str(src), "--out", str(tmp_path / "d"), "--kind", "midi", "--workers", "1"]
    )
    assert r.exit_code == 0, r.output
    man = {Path(e["path"]).name: e for e in load_datadir(tmp_path / "d").manifest()}
    assert set(man) == {"p0.mid", "p1.mid", "p2.mid", "take.wav", "cover.jpg"}
    assert man["take.wav"]["status"] == "ignored" and "--kind audio" in man["take.wav"]["reason"]
    assert man["cover.jpg"]["status"] == "ignored"
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["ignored"] == 2


def test_sampling_never_emits_an_instrument_the_data_never_had(tmp_path):
    import torch

    from tunelab.kinds.sampling import Sampling, sample
    from tunelab.models import build_model

    drums = [(i / 2, 36) for i in range(16)]
    for i in range(4):
        write_piece(tmp_path / "src" / f"s{i}.mid", eighths(55 + i), drums=drums, programs=(0, 33))
    assert run([tmp_path / "src"], tmp_path / "d", keep_drums=False) == 0
    meta = load_datadir(tmp_path / "d").meta
    names = meta["token_names"]
    unseen = set(meta["unseen_tokens"])
    assert names.index("Program_0") not in unseen and names.index("Program_-1") in unseen
    torch.manual_seed(0)  # an untrained model: every token about equally likely
    model = build_model({"family": "token_rnn", "hidden": 16, "embed_dim": 8}, len(names))
    pieces = sample(model, meta, n=4, steps=64, seed=1, sampling=Sampling(temperature=1.5))
    used = {names[t] for p in pieces for t in p}
    programs = {n for n in used if n.startswith("Program_")}
    assert programs and programs <= {"Program_0", "Program_33"}
    assert not any(n.startswith("PitchDrum_") for n in used)
    assert not used & {names[i] for i in unseen}


def test_a_few_pieces_with_other_instruments_keep_a_piano_encoding(tmp_path):
    # like the chorales: most pieces one program, a few with parts marked as other instruments
    for i in range(3):
        write_piece(tmp_path / "src" / f"p{i}.mid", eighths(50 + i))
    write_piece(tmp_path / "src" / "strings.mid", eighths(55), programs=(0, 42))
    assert run([tmp_path / "src"], tmp_path / "d") == 0
    dd = load_datadir(tmp_path / "d")
    assert dd.meta["encoding"] == "steps"
    assert dd.stats["context"]["programs"] == [0, 42]


def test_sampling_never_plays_a_key_the_data_never_had(tmp_path):
    import torch

    from tunelab.kinds.sampling import Sampling, sample
    from tunelab.models import build_model

    for i in range(4):
        write_piece(tmp_path / "src" / f"p{i}.mid", eighths(60 + i % 2, 24))  # keys 60..72
    assert run([tmp_path / "src"], tmp_path / "d", encoding="steps") == 0
    meta = load_datadir(tmp_path / "d").meta
    torch.manual_seed(0)  # an untrained model: every key about equally likely
    model = build_model({"family": "token_rnn", "hidden": 16, "embed_dim": 8}, meta["vocab_size"])
    pieces = sample(model, meta, n=4, steps=64, seed=1, sampling=Sampling(temperature=1.5))
    played = {int(t) for p in pieces for t in p if t < meta["specials"]["step"]}
    assert played and not played & set(meta["unseen_tokens"])


@pytest.mark.parametrize("encoding", ["steps", "remi-programs"])
def test_the_same_notes_at_another_loudness_stay_in_one_split(tmp_path, encoding):
    """Found on a real folder (PianoBooster): a tune filed twice, the second copy with every
    velocity scaled, went to train and to valid, so validation rewarded memorising it."""
    for i in range(12):
        write_piece(tmp_path / "src" / f"p{i:02d}.mid", eighths(40 + 3 * i))
    twin = tmp_path / "src" / "p00.mid"
    score = symusic.Score(str(twin))
    for n in score.tracks[0].notes:
        n.velocity = 50  # the same notes, softer
    for name in ("a-copy.mid", "z-copy.mid"):
        score.dump_midi(str(tmp_path / "src" / name))
    assert run([tmp_path / "src"], tmp_path / "d", encoding=encoding, steps_per_quarter=4) == 0
    split = {
        Path(e["path"]).name: e["split"]
        for e in map(json.loads, (tmp_path / "d" / "manifest.jsonl").read_text().splitlines())
    }
    assert split["p00.mid"] == split["a-copy.mid"] == split["z-copy.mid"]
