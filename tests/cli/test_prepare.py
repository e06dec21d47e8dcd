"""End to end through the CLI: prepare (folder and built-in chorales), then info."""

from __future__ import annotations

import json
from pathlib import Path

import symusic
from typer.testing import CliRunner

from tunelab.cli import app
from tunelab.data.midi import codec_from_meta
from tunelab.data.midi.chorales import builtin_chorale_midis, chorale_group
from tunelab.data.store import SPLITS, load_datadir

runner = CliRunner()


def write_chords(path: Path, root: int, n: int = 8) -> None:
    score = symusic.Score(96)
    track = symusic.Track("piano", 0, False)
    for i in range(n):
        for p in (root + i % 5, root + 4 + i % 5, root + 7 + i % 5):
            track.notes.append(symusic.Note(i * 96, 96, p, 70))
    score.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(path)


def test_prepare_then_info(tmp_path):
    src = tmp_path / "songs"
    for i in range(6):
        write_chords(src / f"song{i}.mid", 40 + 3 * i)
    (src / "broken.mid").write_bytes(b"MThd\x00")
    out = tmp_path / "data"
    r = runner.invoke(
        app,
        [
            "prepare",
            str(src),
            "--out",
            str(out),
            "--kind",
            "midi",
            "--workers",
            "1",
            "--steps-per-quarter",
            "4",
            "--encoding",
            "onsets",
        ],
    )
    assert r.exit_code == 0, r.output
    dd = load_datadir(out)
    assert dd.meta["steps_per_quarter"] == 4 and dd.meta["max_polyphony"] == 3
    assert dd.stats["steps"] == 6 * 8 * 4
    man = {Path(e["path"]).name: e for e in dd.manifest()}
    assert man["broken.mid"]["status"] == "rejected"

    r = runner.invoke(app, ["info", str(out)])
    assert r.exit_code == 0, r.output
    assert "pieces" in r.output and "truncated" in r.output
    for name in ("pitches.png", "polyphony.png", "lengths.png"):
        png = out / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    r = runner.invoke(app, ["prepare", str(src), "--out", str(out), "--workers", "1"])
    assert r.exit_code != 0 and "--overwrite" in r.output


def test_prepare_nothing_usable_exits_nonzero(tmp_path):
    src = tmp_path / "junk"
    src.mkdir()
    (src / "a.mid").write_bytes(b"not midi")
    r = runner.invoke(app, ["prepare", str(src), "--out", str(tmp_path / "o"), "--kind", "midi"])
    assert r.exit_code == 1
    r = runner.invoke(app, ["prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "missing" in r.output


def test_builtin_chorales(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TUNELAB_BUILTIN_LIMIT", "4")
    out = tmp_path / "bach"
    r = runner.invoke(
        app, ["prepare", "--builtin", "bach-chorales", "--out", str(out), "--workers", "1"]
    )
    assert r.exit_code == 0, r.output
    paths = builtin_chorale_midis(limit=4)
    assert len(paths) == 4 and all(p.is_relative_to(tmp_path / "cache") for p in paths)
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert builtin_chorale_midis(limit=4) == paths  # converted once, then reused
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    assert not [p for p in paths[0].parent.iterdir() if ".tmp" in p.name]
    dd = load_datadir(out)
    assert dd.stats["accepted"] == 4 and dd.meta["max_polyphony"] >= 4  # four voices
    codec = codec_from_meta(dd.meta)
    for s in SPLITS:
        for i, p in enumerate(dd.split(s).pieces):
            assert p["group"] == chorale_group(p["source"])
            # steps merges a repeated note into one held note, never invents notes
            decoded = codec.decode(dd.split(s).piece(i)).tracks[0].notes
            assert 0 < len(decoded) <= p["notes"]
    # a run dir pointing at the data: info finds it
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(json.dumps({"data": str(out)}))
    r = runner.invoke(app, ["info", str(run), "--no-plots"])
    assert r.exit_code == 0 and "trained on" in r.output


def test_a_failed_write_is_a_failure_exit_1_and_a_bad_builtin_a_usage_error(tmp_path, monkeypatch):
    import errno

    import tunelab.data.midi.prepare

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "x.npy"))

    monkeypatch.setattr(tunelab.data.midi.prepare, "prepare_midi", full)
    write_chords(tmp_path / "src" / "a.mid", 40)
    args = ["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--kind", "midi"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and r.output.startswith("error: cannot write "), r.output
    assert "No space left on device; the earlier data directory" in r.output
    r = runner.invoke(app, ["prepare", "--builtin", "bach-choral", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and r.output.startswith("error: Invalid value for '--builtin'")
    assert "'bach-choral' is not one of 'bach-chorales', 'bach-chorales-audio'" in r.output
