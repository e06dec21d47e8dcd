"""The built-in Bach chorales: grouping of variants, and the one-time conversion into the cache
(what fails is remembered, what exists is never converted again)."""

from __future__ import annotations

import symusic

from tunelab.data.midi import chorales as C
from tunelab.data.midi.chorales import chorale_group


def test_chorale_group_keeps_variants_together():
    assert chorale_group("bwv248.23-2.mid") == chorale_group("bwv248.23-s.mid") == "248.23"
    assert chorale_group("/x/bwv18.5-lz.mid") == chorale_group("bwv18.5-w.mid")
    assert chorale_group("bwv277.mid") == "277" != chorale_group("bwv278.mid")


def test_conversion_runs_once_and_remembers_failures(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "corpus"
    src.mkdir()
    (src / "bwv1.1.krn").write_text("**kern\n*M4/4\n4c\n4d\n4e\n4f\n*-\n")  # C4 D4 E4 F4
    (src / "bwv2.2.krn").write_text("this is no score at all\n")
    (src / "bwv3.3.krn").write_text("**kern\n*M4/4\n2g\n2a\n*-\n")
    monkeypatch.setattr(C, "chorale_sources", lambda: sorted(src.iterdir()))
    assert C.cache_root() == tmp_path / "cache"

    paths = C.builtin_chorale_midis(limit=2)  # the first two only: bwv3.3 is not touched
    assert [p.name for p in paths] == ["bwv1.1.mid"]
    assert paths[0].is_relative_to(tmp_path / "cache")
    assert "could not convert chorale bwv2.2.mid" in capsys.readouterr().out
    assert (C.chorale_dir() / "failed.txt").read_text().split() == ["bwv2.2.mid"]
    assert not (C.chorale_dir() / "bwv3.3.mid").exists()
    notes = symusic.Score(str(paths[0])).tracks[0].notes
    assert [n.pitch for n in notes] == [60, 62, 64, 65]
    assert not [p for p in C.chorale_dir().iterdir() if ".tmp" in p.name]

    converted = []
    real = C._convert
    monkeypatch.setattr(C, "_convert", lambda job: converted.append(job) or real(job))
    stamp = paths[0].stat().st_mtime_ns
    again = C.builtin_chorale_midis()  # converts bwv3.3 alone: not the done, not the failed
    assert [p.name for p in again] == ["bwv1.1.mid", "bwv3.3.mid"]
    assert [job[0] for job in converted] == [str(src / "bwv3.3.krn")]
    assert paths[0].stat().st_mtime_ns == stamp
