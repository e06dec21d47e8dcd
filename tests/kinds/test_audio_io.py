"""Audio reading for the audio kinds: any file at the run's rate (or an error naming it), and
the training audio behind the copy audit (bounded, or the reason it is missing)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.data.audio.test_prepare import _prepare
from tests.helpers_audio import dominant_hz, sine
from tunelab.data.audio.encode import from_int16
from tunelab.kinds import audio_io
from tunelab.kinds.frames import Kind, with_settings

SR = 16000


def _prepared(tmp_path, n: int, seconds: float, step_hz: int):
    """``n`` sine files (300 Hz, then ``step_hz`` higher each) prepared as training data."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        sf.write(str(src / f"{i}.wav"), sine(300 + step_hz * i, seconds, SR, amp=0.3)[:, 0], SR)
    data = tmp_path / "data"
    assert _prepare(src, data, label="none", ratios=(1.0, 0.0, 0.0)) == 0
    return data


def _kind(sample_rate=SR):
    meta = with_settings({"kind": "audio", "sample_rate": sample_rate}, {"frame_size": 256})
    return Kind(meta)


def test_read_float_resamples_any_file_or_names_it(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(str(path), sine(500, 0.5, 44100, channels=2), 44100)
    x = audio_io.read_float(path, SR)
    assert x.dtype == np.float32 and abs(len(x) - SR // 2) <= 2
    assert abs(dominant_hz(x, SR) - 500) < 5
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(ValueError, match=f"{bad}: cannot read audio"):
        audio_io.read_float(bad, SR)


def test_training_reference_is_bounded_or_says_why_it_is_missing(tmp_path, monkeypatch):
    data = _prepared(tmp_path, 5, 1.0, 60)

    ref, why = audio_io.training_reference(_kind(), data, from_int16)
    assert why == f"training split of {data}" and ref.sr == SR
    assert sum(len(p) for p in ref.pieces) == pytest.approx(5 * SR, rel=0.01)
    monkeypatch.setattr(audio_io, "REFERENCE_MINUTES", 2.5 / 60)  # 2.5 s of the 5
    ref, _ = audio_io.training_reference(_kind(), data, from_int16)
    assert sum(len(p) for p in ref.pieces) == int(2.5 * SR)

    assert audio_io.training_reference(_kind(), None, from_int16) == (
        None,
        "no data directory recorded in the run",
    )
    ref, why = audio_io.training_reference(_kind(), tmp_path / "gone", from_int16)
    assert ref is None and "gone" in why
    ref, why = audio_io.training_reference(_kind(22050), data, from_int16)
    assert ref is None and "22050" in why and "16000" in why  # another rate: not comparable


@pytest.mark.parametrize("family", ["mulaw", "frames"])
def test_the_packed_reference_gives_back_the_same_audio_and_the_same_audit(tmp_path, family):
    """What a bundle stores of the training audio rebuilds the very copy index the data gives
    (same float samples, same copy figures), in one byte a sample for mu-law (int16 else)."""
    from tunelab.data.store import load_datadir
    from tunelab.kinds import mulaw
    from tunelab.run import audit_index

    data = _prepared(tmp_path, 3, 2.0, 90)
    meta = load_datadir(data).meta
    kind = mulaw.Kind(meta) if family == "mulaw" else Kind(with_settings(meta, {"frame_size": 256}))
    ref, _ = kind.reference(data)
    blob, entry = audit_index.pack(kind, data)
    assert entry["present"] and entry["info"]["form"] == ("codes" if family == "mulaw" else "int16")
    assert entry["bytes"] <= (1 if family == "mulaw" else 2) * 6 * SR + 1000
    back = audit_index.unpack(kind, blob, entry)
    assert len(back.pieces) == len(ref.pieces) == 3
    for a, b in zip(ref.pieces, back.pieces, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    copy = ref.pieces[1][SR // 4 :]  # a planted copy of 1.75 s of a training piece
    assert back.copy_audit(copy) == ref.copy_audit(copy)
    assert back.copy_audit(copy)["copied_seconds"] >= 1.5
    assert audit_index.pack(kind, tmp_path / "gone") == (None, {"present": False, "reason": ANY})


class _Any:
    def __eq__(self, other):
        return isinstance(other, str) and bool(other)


ANY = _Any()


def test_music_metrics_skip_the_set_figures_when_asked():
    """generate discards the set figures (seconds of the training audio's features): it asks
    for the per-clip figures only, and gets the same ones."""
    kind = _kind()
    clips = [kind.clip_type(sine(300 + 50 * i, 1.0, SR, amp=0.3)[:, 0], None) for i in range(2)]
    held = [sine(440, 2.0, SR, amp=0.3)[:, 0]]
    per, sets = kind.music_metrics(clips, None, held_out=held)
    assert sets["seconds"]["test"] == 2.0 and sets["frechet_to_test"] is not None
    assert kind.music_metrics(clips, None, held_out=held, sets=False) == (per, {})
