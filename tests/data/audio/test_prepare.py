"""`prepare --kind audio` end to end: labels, trimming, rejections, splits, tempo, builtin."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from tests.helpers_audio import drum_loop, sine
from tunelab.data.audio import decode as A
from tunelab.data.audio import encode as E
from tunelab.data.audio import prepare as audio_prepare
from tunelab.data.audio.prepare import frame_stats, prepare_audio
from tunelab.data.audio.tempo import estimate_tempo
from tunelab.data.store import SPLITS, load_datadir

SR = 16000


def _tag(path, genre: str, year: str) -> None:
    import mutagen

    f = mutagen.File(str(path), easy=True)
    if f.tags is None:
        f.add_tags()
    f["genre"], f["date"] = genre, year
    f.save()


def _prepare(src, out, **kw):
    args = dict(
        builtin=None,
        overwrite=False,
        workers=1,
        ratios=(0.6, 0.2, 0.2),
        sample_rate=SR,
        clip_seconds=None,
        clip_offset=0.0,
        trim_db=-50.0,
        tempo=None,
        label="auto",
        min_label_count=1,
    )
    args.update(kw)
    return prepare_audio([src] if src is not None else [], out, **args)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return make_collection(tmp_path_factory.mktemp("coll"))


def make_collection(d):
    """Tagged files in several formats, one padded with silence, and broken files, in d."""
    specs = [
        ("r1.mp3", {"format": "MP3"}, "Rock", "1991", 220),
        ("r2.flac", {}, "rock", "1992", 330),
        ("r3.ogg", {"format": "OGG", "subtype": "VORBIS"}, "Rock", "1993", 440),
        ("j1.flac", {}, "Jazz", "1959", 550),
        ("j2.flac", {}, "Jazz", "1961", 660),
        ("p1.flac", {}, "Polka", "1975", 770),
    ]
    for name, kw, genre, year, f in specs:
        sf.write(str(d / name), sine(f, 1.5, 44100, amp=0.3, channels=2), 44100, **kw)
        _tag(d / name, genre, year)
    padded = np.concatenate([np.zeros((44100, 1)), sine(500, 1.0, 44100, amp=0.05)])
    sf.write(str(d / "padded ♪.wav"), padded, 44100, subtype="PCM_24")
    (d / "empty.wav").write_bytes(b"")
    (d / "notes.flac").write_text("not audio at all")
    good = (d / "r2.flac").read_bytes()
    (d / "trunc.flac").write_bytes(good[:100])
    return d


def test_prepare_collection(collection, tmp_path):
    out = tmp_path / "data"
    assert _prepare(collection, out, min_label_count=2) == 0
    dd = load_datadir(out)
    meta, stats = dd.meta, dd.stats
    assert meta["kind"] == "audio" and meta["sample_rate"] == SR
    assert meta["mu_law"] == {"channels": 256} and meta["dtype"] == "<i2"
    assert meta["label_source"] == "genre"
    assert meta["labels"] == {"rock": 3, "jazz": 2, "other": 1, "unknown": 1}
    assert meta["labels_merged_into_other"] == ["polka"]
    man = {os.path.basename(e["path"]): e for e in dd.manifest()}
    assert len(man) == 10
    for bad in ("empty.wav", "notes.flac", "trunc.flac"):
        assert man[bad]["status"] == "rejected"
        assert bad in man[bad]["reason"]
    assert "empty" in man["empty.wav"]["reason"]
    assert stats["accepted"] == 7 and stats["rejected"] == 3
    padded = man["padded ♪.wav"]
    assert padded["status"] == "accepted" and abs(padded["trimmed_seconds"] - 1.0) < 0.05
    assert abs(padded["original_seconds"] - 2.0) < 1e-3
    assert man["r1.mp3"]["year"] == "1991" and man["r1.mp3"]["genre"] == "rock"
    # pieces: int16, loudness-normalised, lengths as recorded
    pieces = [(s, p) for s in SPLITS for p in dd.split(s).pieces]
    assert len(pieces) == 7
    for s in SPLITS:
        split = dd.split(s)
        for i, p in enumerate(split.pieces):
            x = E.from_int16(split.piece(i))
            assert split.data.dtype == np.int16
            assert abs(len(x) / SR - man[os.path.basename(p["source"])]["seconds"]) < 1e-3
            assert abs(A.rms_db(x) - meta["loudness_target_db"]) < 0.5
    # frame statistics are those of the train split
    fs = meta["frame_stats"]
    direct = frame_stats(dd.split("train"))
    assert np.allclose(fs["time"]["1024"]["mean"], direct["time"]["1024"]["mean"], atol=1e-6)
    assert len(fs["fft"]["1024"]["var"]) == 1026
    # a second run refuses to overwrite; --overwrite replaces
    from tunelab.data.store import DataDirError

    with pytest.raises(DataDirError):
        _prepare(collection, out)
    assert _prepare(collection, out, overwrite=True, label="none") == 0
    assert load_datadir(out).meta["labels"] == {}


def test_fixed_splits_folder_labels_and_clip(tmp_path):
    src = tmp_path / "src"
    layout = {"train": ["rock", "jazz", "rock"], "valid": ["jazz"], "test": ["rock"]}
    k = 0
    for split, genres in layout.items():
        for i, g in enumerate(genres):
            p = src / split / g / f"{split}{i}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            k += 1  # distinct content: identical files are kept in one split on purpose
            sf.write(str(p), sine(300 + 50 * k, 3.0, 22050), 22050)
    out = tmp_path / "data"
    assert _prepare(src, out, label="folder", clip_seconds=1.0, clip_offset=0.5) == 0
    dd = load_datadir(out)
    for e in dd.manifest():
        assert e["split"] in e["path"]  # the folder decides
        assert e["label"] in e["path"]
        assert abs(e["seconds"] - 1.0) < 0.01
    assert dd.meta["labels"] == {"jazz": 2, "rock": 3}
    assert [len(dd.split(s)) for s in SPLITS] == [3, 1, 1]


def test_sidecar_labels(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for n in ("a", "b", "c"):
        sf.write(str(src / f"{n}.wav"), sine(400, 0.5, SR), SR)
    side = tmp_path / "labels.csv"
    side.write_text("path,label\na.wav,Ambient\nb.wav,Drone\n")
    out = tmp_path / "data"
    assert _prepare(src, out, label=str(side)) == 0
    dd = load_datadir(out)
    assert dd.meta["labels"] == {"ambient": 1, "drone": 1, "unknown": 1}
    assert dd.meta["label_source"] == "sidecar:labels.csv"


def test_trim_warning_and_nothing_usable(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):  # 0.5 s of tone in 3 s of silence
        x = np.zeros(3 * SR, np.float32)
        x[SR : SR + SR // 2] = sine(440, 0.5, SR)[:, 0]
        sf.write(str(src / f"q{i}.wav"), x, SR)
    out = tmp_path / "data"
    assert _prepare(src, out) == 0
    assert load_datadir(out).stats["trimmed_fraction"] > 0.8
    assert "trimming silence removed" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"RIFF")
    (bad / "y.mp3").write_bytes(b"")
    assert _prepare(bad, tmp_path / "none") == 1
    assert not (tmp_path / "none").exists()


def test_tempo_normalisation_in_prepare(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for bpm in (95, 150):
        sf.write(str(src / f"loop{bpm}.wav"), drum_loop(bpm, 8, seed=bpm), SR)
    out = tmp_path / "data"
    assert _prepare(src, out, tempo=120.0, workers=2) == 0
    dd = load_datadir(out)
    assert dd.meta["tempo_target"] == 120.0
    for e in dd.manifest():
        true = float(e["path"].split("loop")[1].split(".")[0])
        assert abs(e["tempo_bpm"] / true - 1) < 0.02
        kept = e["clip_seconds"] - e["trimmed_seconds"]
        assert abs(e["tempo_stretch_rate"] - 120 / e["tempo_folded_bpm"]) < 1e-3
        assert abs(e["seconds"] - kept / e["tempo_stretch_rate"]) < 0.05
    for s in SPLITS:
        for x in dd.split(s):
            est = estimate_tempo(E.from_int16(x), SR)
            assert abs(est.bpm / 120 - 1) < 0.02 or abs(est.bpm / 240 - 1) < 0.02


def test_fuzzed_headers_never_crash(tmp_path):
    from tunelab.data.audio.prepare import Options, process_file

    src = tmp_path / "src.wav"
    sf.write(str(src), sine(440, 0.3, 8000), 8000, subtype="PCM_16")
    flac = tmp_path / "src.flac"
    sf.write(str(flac), sine(440, 0.3, 8000), 8000)
    rng = np.random.default_rng(0)
    opts = Options(SR, None, 0.0, -50.0, None)
    statuses = set()
    for base in (src, flac):
        raw = bytearray(base.read_bytes())
        for k in range(20):
            b = bytearray(raw)
            for pos in rng.integers(0, 64, size=4):
                b[pos] = rng.integers(0, 256)
            f = tmp_path / f"fuzz{k}{base.suffix}"
            f.write_bytes(bytes(b))
            r = process_file(f, opts)
            assert r["status"] in ("accepted", "rejected")
            if r["status"] == "rejected":
                assert f.name in r["reason"] and r["key"]
            statuses.add(r["status"])
    assert "rejected" in statuses


def _crashing(path, opts):
    if path.name == "crash.wav":
        os._exit(3)  # a decoder segfault, as far as the pool can tell
    return _real_process_file(path, opts)


_real_process_file = audio_prepare.process_file


def test_a_dying_worker_costs_only_its_file(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for n in ("a", "b", "crash", "d", "e"):
        sf.write(str(src / f"{n}.wav"), sine(400, 0.3, SR), SR)
    monkeypatch.setattr(audio_prepare, "process_file", _crashing)
    out = tmp_path / "data"
    assert _prepare(src, out, workers=2) == 0
    man = {os.path.basename(e["path"]): e for e in load_datadir(out).manifest()}
    assert man["crash.wav"]["status"] == "rejected"
    assert "crashed" in man["crash.wav"]["reason"]
    assert all(man[f"{n}.wav"]["status"] == "accepted" for n in "abde")


def test_cli_prepare_audio(collection, tmp_path):
    from typer.testing import CliRunner

    from tunelab.cli import app

    out = tmp_path / "data"
    r = CliRunner().invoke(
        app,
        ["prepare", str(collection), "--kind", "audio", "--out", str(out), "--workers", "1"],
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "audio"


def test_undecodable_file_names_are_reported_readably(tmp_path):
    """A file name that is not valid UTF-8 (possible on Linux), good or rejected, never
    crashes the run when the manifest is written; it is shown with \\xNN escapes."""
    src = tmp_path / "src"
    src.mkdir()
    sf.write(str(src / "ok.wav"), sine(400, 0.5, SR), SR)
    good = os.path.join(os.fsencode(src), b"caf\xe9.wav")
    sf.write(good, sine(500, 0.5, SR), SR)
    with open(os.path.join(os.fsencode(src), b"bad-\xe9.wav"), "wb") as f:
        f.write(b"not audio")
    out = tmp_path / "data"
    assert _prepare(src, out) == 0
    man = {os.path.basename(e["path"]): e for e in load_datadir(out).manifest()}
    assert man["caf\\xe9.wav"]["status"] == "accepted"
    assert man["bad-\\xe9.wav"]["status"] == "rejected"
    assert "\\xe9" in man["bad-\\xe9.wav"]["reason"]
