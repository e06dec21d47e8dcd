"""prepare_midi: splits, identical pieces, the manifest for bad files, exit codes, reruns."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import struct
from pathlib import Path

import numpy as np
import pytest
import symusic

from tunelab.data.midi import codec_from_meta
from tunelab.data.midi import prepare as prep
from tunelab.data.store import SPLITS, DataDirError, load_datadir


def smf(tracks: list[bytes], fmt: int = 1, tpq: int = 480) -> bytes:
    """A Standard MIDI File from raw track bodies (so tests can build broken ones)."""
    out = b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), tpq)
    for t in tracks:
        out += b"MTrk" + struct.pack(">I", len(t)) + t
    return out


EOT = b"\x00\xff\x2f\x00"


def raw_note(pitch: int = 60) -> bytes:
    return b"\x00\x90" + bytes([pitch]) + b"\x40\x83\x60\x80" + bytes([pitch]) + b"\x00"


def write_tune(path: Path, pitches, tpq: int = 480, qpm: float = 120.0) -> None:
    score = symusic.Score(tpq)
    track = symusic.Track("piano", 0, False)
    for i, p in enumerate(pitches):
        track.notes.append(symusic.Note(i * tpq // 2, tpq // 2, p, 80))
    score.tracks.append(track)
    score.tempos.append(symusic.Tempo(0, qpm=qpm))
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(path)


def tune(i: int) -> list[int]:
    return [48 + (i * 7 + k * 5) % 36 for k in range(8 + i % 5)]


def run(srcs, out, **kw) -> int:
    kw.setdefault("workers", 1)
    # The grid and encoding these tests were written for; the "auto" defaults (what the
    # collection calls for) are tested in test_context.py.
    kw.setdefault("steps_per_quarter", 24)
    kw.setdefault("encoding", "steps")
    return prep.prepare_midi([Path(s) for s in srcs], Path(out), **kw)


def split_of(dd) -> dict[str, str]:
    return {p["source"]: s for s in SPLITS for p in dd.split(s).pieces}


def test_prepare_writes_a_decodable_data_dir(tmp_path):
    src = tmp_path / "src"
    for i in range(12):
        write_tune(src / f"t{i:02d}.mid", tune(i), qpm=100 + i)
    assert run([src], tmp_path / "out", workers=2) == 0
    dd = load_datadir(tmp_path / "out")
    assert dd.meta["kind"] == "midi" and dd.meta["vocab_size"] == 91
    train_qpm = [100 + int(Path(p["source"]).stem[1:]) for p in dd.split("train").pieces]
    assert dd.meta["tempo_qpm"] == statistics.median(train_qpm)
    codec = codec_from_meta(dd.meta)
    total = 0
    for s in SPLITS:
        split = dd.split(s)
        assert split.data.dtype == np.uint16
        for i, p in enumerate(split.pieces):
            toks = split.piece(i)
            assert toks[0] == codec.bos and toks[-1] == codec.eos
            k = int(Path(p["source"]).stem[1:])
            assert codec.count_steps(toks) == p["steps"] == len(tune(k)) * 12  # 8th notes
            notes = codec.decode(toks).tracks[0].notes
            assert [n.pitch for n in notes] == tune(k)  # the same tune comes back
            assert p["tempos"] == [[0, 100.0 + k]]
            total += 1
    assert total == 12 and dd.stats["pieces"] == 12
    assert {len(dd.split(s)) for s in ("valid", "test")} == {1}
    assert sum(dd.stats["pitch_histogram"].values()) == dd.stats["notes"]


def test_split_is_deterministic_and_folders_fix_it(tmp_path):
    src = tmp_path / "src"
    for i in range(20):
        write_tune(src / f"t{i:02d}.mid", tune(i))
    run([src], tmp_path / "a")
    run([src], tmp_path / "b")
    a, b = split_of(load_datadir(tmp_path / "a")), split_of(load_datadir(tmp_path / "b"))
    assert list(a.values()) == list(b.values())

    fixed = tmp_path / "fixed"
    for s, n in (("train", 4), ("valid", 2), ("test", 3)):
        for i in range(n):
            write_tune(fixed / s / f"{s}{i}.mid", tune(i + 20 * SPLITS.index(s)))
    run([fixed], tmp_path / "f")
    dd = load_datadir(tmp_path / "f")
    for source, split in split_of(dd).items():
        assert Path(source).parent.name == split
    for e in dd.manifest():
        assert e["split"] == Path(e["path"]).parent.name


def test_folder_splits_are_kept_and_duplicates_reported(tmp_path, capsys):
    src = tmp_path / "src"
    for i in range(4):
        write_tune(src / "train" / f"train_{i}.mid", tune(i))
    write_tune(src / "valid" / "valid_0.mid", tune(10))
    write_tune(src / "valid" / "valid_3.mid", tune(2))  # = train_2 (a benchmark's own quirk)
    write_tune(src / "test" / "test_0.mid", tune(11))
    write_tune(src / "test" / "test_9.mid", tune(1), tpq=96)  # = train_1 at another resolution
    assert run([src], tmp_path / "kept") == 0
    err = capsys.readouterr().err
    assert "cross-split duplicates 2" in err and "test_9.mid" in err and "valid_3.mid" in err
    dd = load_datadir(tmp_path / "kept")
    for source, split in split_of(dd).items():
        assert Path(source).parent.name == split
    dups = dd.stats["cross_split_duplicates"]
    assert dups["count"] == 2 and dups["action"] == "kept"
    assert {Path(k).name: [Path(v).name for v in vs] for k, vs in dups["pieces"].items()} == {
        "test_9.mid": ["train_1.mid"],
        "valid_3.mid": ["train_2.mid"],
    }
    man = {Path(e["path"]).name: e for e in dd.manifest()}
    assert [Path(p).name for p in man["test_9.mid"]["duplicate_of"]] == ["train_1.mid"]
    assert "duplicate_of" not in man["train_1.mid"] and "duplicate_of" not in man["test_0.mid"]

    assert run([src], tmp_path / "moved", dedup_splits=True) == 0
    moved = load_datadir(tmp_path / "moved")
    splits = {Path(k).name: v for k, v in split_of(moved).items()}
    assert splits["test_9.mid"] == splits["valid_3.mid"] == "train"
    assert splits["test_0.mid"] == "test" and moved.stats["cross_split_duplicates"]["count"] == 2


def test_identical_pieces_never_cross_splits(tmp_path):
    src = tmp_path / "src"
    for i in range(10):
        write_tune(src / f"t{i}.mid", tune(i))
    for i in range(15):  # the same tune under many names, at another resolution and tempo
        write_tune(src / f"copy{i:02d}.mid", tune(3), tpq=96 + 24 * i, qpm=60 + i)
    run([src], tmp_path / "out")
    splits = split_of(load_datadir(tmp_path / "out"))
    assert len({splits[k] for k in splits if "copy" in k or k.endswith("t3.mid")}) == 1


def test_manifest_reports_every_bad_file_and_keeps_going(tmp_path):
    src = tmp_path / "src"
    good = smf([raw_note(60) + raw_note(64) + EOT])
    files = {
        "empty.mid": b"",
        "text.MID": b"this is not a MIDI file",
        "truncated.mid": good[:-7],
        "status.midi": smf([b"\x00\x45\x40" + raw_note() + EOT]),  # data byte, no status
        "undefined.mid": smf([b"\x00\xf4" + raw_note() + EOT]),
        "type2.mid": smf([raw_note() + EOT, raw_note(64) + EOT], fmt=2),
        "zero_tpq.mid": smf([raw_note() + EOT], tpq=0),
        "far_ticks.mid": smf([raw_note() + b"\xff\xff\xff\x7f" + raw_note(62)[1:] + EOT], tpq=1),
        "zero_tempo.mid": smf([b"\x00\xff\x51\x03\x00\x00\x00" + raw_note() + EOT]),
        "drums.mid": smf([b"\x00\x99\x24\x40\x83\x60\x89\x24\x00" + EOT]),
        "low.mid": smf([raw_note(12) + EOT]),
        "Bäch – 𝄞 ünïcode.mid": good,
        "ok.mid": smf([raw_note(67) + EOT]),
        "notes.txt": b"ignored: not a MIDI extension",
    }
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    # A name that is not valid UTF-8 (possible on Linux): reported readably, never a crash.
    with open(os.path.join(os.fsencode(src), b"latin1-\xe9t\xe9.mid"), "wb") as f:
        f.write(good)
    assert run([src], tmp_path / "out") == 0
    dd = load_datadir(tmp_path / "out")
    man = {Path(e["path"]).name: e for e in dd.manifest()}
    assert man.pop("latin1-\\xe9t\\xe9.mid")["status"] == "accepted"
    assert set(man) == set(files)  # every input file, the ignored one too
    ignored = man.pop("notes.txt")
    assert ignored["status"] == "ignored" and "not a MIDI file name" in ignored["reason"]
    for e in man.values():
        assert e["status"] in ("accepted", "rejected")
        assert (e["status"] == "rejected") == bool(e.get("reason"))
    rejected = {k: e["reason"] for k, e in man.items() if e["status"] == "rejected"}
    assert rejected["empty.mid"] == "empty file"
    assert "not a MIDI file" in rejected["text.MID"]
    assert "truncated" in rejected["truncated.mid"]
    assert "status" in rejected["status.midi"] and "status" in rejected["undefined.mid"]
    assert "type 2" in rejected["type2.mid"]
    assert "ticks per quarter" in rejected["zero_tpq.mid"]
    assert "too long" in rejected["far_ticks.mid"]
    assert "drum" in rejected["drums.mid"]
    assert "21-108" in rejected["low.mid"]
    for name in ("zero_tempo.mid", "Bäch – 𝄞 ünïcode.mid", "ok.mid"):
        assert man[name]["status"] == "accepted" and man[name]["split"] in SPLITS
    assert dd.stats["filters"]["tempo_events_ignored"] == 1
    assert dd.stats["rejected"] == len(rejected) == sum(dd.stats["rejections"].values())
    assert dd.stats["accepted"] == 4


def test_off_piano_options_and_stats(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.mid").write_bytes(smf([raw_note(12) + raw_note(60) + EOT]))
    assert run([src], tmp_path / "r") == 1  # the only file is rejected: nothing usable
    assert not (tmp_path / "r" / "meta.json").exists()
    assert run([src], tmp_path / "d", off_piano="drop") == 0
    assert load_datadir(tmp_path / "d").stats["filters"]["off_piano_notes_dropped"] == 1
    assert run([src], tmp_path / "f", off_piano="fold", encoding="onsets") == 0
    dd = load_datadir(tmp_path / "f")
    assert dd.stats["filters"]["off_piano_notes_folded"] == 1
    assert dd.stats["pitch_histogram"]["24"] == 1  # 12 folded up to 24
    assert dd.meta["encoding"] == "onsets" and dd.meta["specials"]["step"] == 176


def test_nothing_usable_exits_1_and_writes_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.mid").write_bytes(b"")
    (src / "b.mid").write_bytes(b"garbage")
    assert run([src], tmp_path / "out") == 1
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run([empty], tmp_path / "out2") == 1


def test_rerun_refuses_or_overwrites(tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        write_tune(src / f"t{i}.mid", tune(i))
    out = tmp_path / "out"
    assert run([src], out) == 0
    with pytest.raises(DataDirError, match="--overwrite"):
        run([src], out)
    write_tune(src / "t9.mid", tune(9))
    assert run([src], out, overwrite=True, encoding="remi") == 0
    dd = load_datadir(out)
    assert dd.stats["pieces"] == 5 and dd.meta["encoding"] == "remi"


def test_interrupted_run_leaves_old_data_and_no_partial(tmp_path, monkeypatch):
    src = tmp_path / "src"
    for i in range(6):
        write_tune(src / f"t{i}.mid", tune(i))
    out = tmp_path / "out"
    calls = []

    def interrupted(path, opts):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        return real(path, opts)

    real = prep.process_file
    monkeypatch.setattr(prep, "process_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run([src], out)
    assert not out.exists() and not list(tmp_path.glob(".out.*"))

    monkeypatch.setattr(prep, "process_file", real)
    assert run([src], out) == 0
    before = (out / "train.bin").read_bytes()
    calls.clear()
    monkeypatch.setattr(prep, "process_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run([src], out, overwrite=True)
    assert (out / "train.bin").read_bytes() == before  # the good data set survives
    assert load_datadir(out).stats["pieces"] == 6
    assert not list(tmp_path.glob(".out.*"))


def test_rmid_and_case_insensitive_extensions(tmp_path):
    src = tmp_path / "src"
    write_tune(src / "a.MIDI", tune(1))
    good = (src / "a.MIDI").read_bytes()
    rmid = b"RIFF" + struct.pack("<I", len(good) + 12) + b"RMIDdata"
    (src / "b.mid").write_bytes(rmid + struct.pack("<I", len(good)) + good)
    shutil.copy(src / "a.MIDI", src / "c.Mid")
    assert run([src], tmp_path / "out") == 0
    man = load_datadir(tmp_path / "out").manifest()
    assert [e["status"] for e in man] == ["accepted"] * 3
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["files"] == 3


def test_markup_like_file_names_are_printed_not_parsed(tmp_path, capsys):
    """File names are untrusted: "[/x]" in one is rich markup that used to crash the summary."""
    src = tmp_path / "src"
    (src / "x[").mkdir(parents=True)
    (src / "x[" / "evil].mid").write_bytes(b"")  # shown as ".../x[/evil].mid"
    (src / "[red]y.mid").write_bytes(b"garbage")
    assert run([src], tmp_path / "none") == 1  # nothing usable: examples printed, no crash
    write_tune(src / "good.mid", tune(1))
    assert run([src], tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "x[/evil].mid: empty file" in err and "[red]y.mid" in err


_real_process_file = prep.process_file


def _crashing(path, opts):
    if "crash" in Path(path).name:
        os._exit(1)  # what a segfault in the parser looks like to the pool
    return _real_process_file(path, opts)


def test_a_dying_worker_costs_only_its_file(tmp_path, monkeypatch):
    """A worker killed by a hostile file (a parser crash) rejects that file; the run goes on."""
    src = tmp_path / "src"
    for i, n in enumerate(("a", "b", "crash", "d", "e")):
        write_tune(src / f"{n}.mid", tune(i))
    monkeypatch.setattr(prep, "process_file", _crashing)
    assert run([src], tmp_path / "out", workers=2) == 0
    man = {Path(e["path"]).name: e for e in load_datadir(tmp_path / "out").manifest()}
    assert man["crash.mid"]["status"] == "rejected" and "crashed" in man["crash.mid"]["reason"]
    assert all(man[f"{n}.mid"]["status"] == "accepted" for n in "abde")
