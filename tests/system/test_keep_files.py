"""Nothing lost in preparation: a clip without a beat is kept at its own tempo (and counted)
unless --tempo-strict asks to reject it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from tests.data.audio.test_prepare import SR, _prepare
from tests.helpers_audio import drum_loop, sine
from tunelab.cli import app
from tunelab.data.store import load_datadir


def _loops(src):
    src.mkdir()
    sf.write(str(src / "loop100.wav"), drum_loop(100, 6, seed=1), SR)
    sf.write(str(src / "bar.wav"), drum_loop(120, 6, seed=2)[: int(0.9 * SR)], SR)  # one bar
    sf.write(str(src / "pad.wav"), sine(330, 3.0, SR, amp=0.3)[:, 0], SR)  # steady: no onsets
    return src


def test_clips_without_a_beat_are_kept_unstretched(tmp_path):
    src = _loops(tmp_path / "src")
    out = tmp_path / "data"
    r = CliRunner().invoke(
        app,
        ["prepare", str(src), "--out", str(out), "--kind", "audio", "--tempo", "120",
         "--workers", "1", "--split", "1,0,0"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "2 clips not stretched" in r.output
    dd = load_datadir(out)
    by = {Path(e["path"]).name: e for e in dd.manifest()}
    assert all(e["status"] == "accepted" for e in by.values())
    assert by["bar.wav"]["tempo_bpm"] is None and "too short" in by["bar.wav"]["tempo_note"]
    assert by["pad.wav"]["tempo_bpm"] is None and "no beat" in by["pad.wav"]["tempo_note"]
    assert abs(by["loop100.wav"]["tempo_bpm"] / 100 - 1) < 0.02
    assert dd.stats["not_stretched"] == 2
    pieces = {Path(p["source"]).name: p for p in dd.split("train").pieces}
    for name in ("bar.wav", "pad.wav"):  # at their own length: not time-stretched
        e = by[name]
        assert abs(pieces[name]["length"] / SR - (e["clip_seconds"] - e["trimmed_seconds"])) < 0.01
    assert np.isclose(by["loop100.wav"]["seconds"] * by["loop100.wav"]["tempo_stretch_rate"],
                      by["loop100.wav"]["clip_seconds"] - by["loop100.wav"]["trimmed_seconds"],
                      atol=0.05)  # fmt: skip


def test_tempo_strict_rejects_them(tmp_path):
    src = _loops(tmp_path / "src")
    out = tmp_path / "data"
    assert _prepare(src, out, tempo=120.0, tempo_strict=True, ratios=(1, 0, 0)) == 0
    by = {Path(e["path"]).name: e for e in load_datadir(out).manifest()}
    assert by["bar.wav"]["status"] == by["pad.wav"]["status"] == "rejected"
    assert "--tempo-strict" in by["pad.wav"]["reason"]
    assert by["loop100.wav"]["status"] == "accepted"
