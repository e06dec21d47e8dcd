"""The built-in chorale audio: the Bach chorales rendered in four timbres, once, into the cache,
prepared with labels by timbre and splits by chorale."""

import numpy as np

from tests.data.audio.test_prepare import SR, _prepare
from tunelab.data.audio.builtin import render_dir
from tunelab.data.store import SPLITS, load_datadir


def test_builtin_chorales_audio(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TUNELAB_BUILTIN_LIMIT", "2")
    out = tmp_path / "data"
    assert _prepare(None, out, builtin="bach-chorales-audio", workers=1) == 0
    dd = load_datadir(out)
    assert dd.meta["label_source"] == "timbre"
    assert dd.meta["labels"] == {"choir": 2, "organ": 2, "piano": 2, "strings": 2}
    by_group: dict = {}
    for s in SPLITS:
        for p in dd.split(s).pieces:
            by_group.setdefault(p["group"], set()).add(s)
    assert len(by_group) == 2 and all(len(v) == 1 for v in by_group.values())
    # cached renders are reused, and identical to a fresh render
    flacs = sorted(render_dir(SR).glob("*.flac"))
    assert len(flacs) == 8
    stamps = [f.stat().st_mtime_ns for f in flacs]
    assert _prepare(None, tmp_path / "d2", builtin="bach-chorales-audio") == 0
    assert [f.stat().st_mtime_ns for f in flacs] == stamps
    a = load_datadir(out).split("train")
    b = load_datadir(tmp_path / "d2").split("train")
    assert np.array_equal(np.asarray(a.data), np.asarray(b.data))
