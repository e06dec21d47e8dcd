"""SoundFont rendering (midirenderer + TimGM6mb) and atomic WAV writing."""

import numpy as np
import pytest
import soundfile as sf
import symusic

from tunelab.data.audio.synth import TIMBRES, SynthError, render_midi, soundfont_path, write_wav


def _score(pitches, dur_q=1, program=0, drum_track=False) -> symusic.Score:
    s = symusic.Score(480)
    s.tempos.append(symusic.Tempo(0, 120.0))
    t = symusic.Track("melody", program=program)
    for i, p in enumerate(pitches):
        t.notes.append(symusic.Note(i * 480 * dur_q, 480 * dur_q, p, 100))
    s.tracks.append(t)
    if drum_track:
        d = symusic.Track("drums", program=0, is_drum=True)
        for i in range(len(pitches) * dur_q):
            d.notes.append(symusic.Note(i * 480, 120, 36, 120))
        s.tracks.append(d)
    return s


def _dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


def test_soundfont_ships_with_pretty_midi():
    assert soundfont_path().name == "TimGM6mb.sf2"
    assert soundfont_path().stat().st_size > 1_000_000


def test_render_is_mono_float_deterministic_and_timed(tmp_path):
    score = _score([60, 64, 67, 72])  # 4 quarters at 120 qpm = 2 s
    a = render_midi(score, sample_rate=16000)
    assert a.dtype == np.float32 and a.ndim == 1
    assert 2.0 * 16000 <= len(a) <= 4.5 * 16000  # notes plus release tail
    assert 0 < np.abs(a).max() <= 1.0
    assert np.array_equal(a, render_midi(score, sample_rate=16000))
    path = tmp_path / "x.mid"
    score.dump_midi(str(path))
    assert np.array_equal(a, render_midi(path, sample_rate=16000))
    b = render_midi(score, sample_rate=8000)
    assert abs(len(b) - len(a) / 2) <= 2


def test_rendered_pitch_is_right():
    sr = 16000
    a = render_midi(_score([69], dur_q=4, program=TIMBRES["organ"]), sample_rate=sr)
    seg = a[int(0.3 * sr) : int(1.5 * sr)]  # steady part of a sustained A4
    f0 = _dominant_hz(seg, sr)
    # the strongest partial is the fundamental or a low harmonic of 440 Hz
    ratio = f0 / 440.0
    assert abs(ratio - round(ratio)) < 0.02 and 1 <= round(ratio) <= 4


def test_program_override_changes_timbre_but_not_drums():
    score = _score([60, 62, 64, 65])
    renders = {name: render_midi(score, program=p) for name, p in TIMBRES.items()}
    names = list(renders)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            x, y = renders[names[i]], renders[names[j]]
            n = min(len(x), len(y))
            assert not np.allclose(x[:n], y[:n], atol=1e-3), (names[i], names[j])
    # a drum-only score sounds the same whatever program is asked for
    drums = symusic.Score(480)
    d = symusic.Track("drums", is_drum=True)
    for i in range(4):
        d.notes.append(symusic.Note(i * 480, 120, 38, 120))
    drums.tracks.append(d)
    assert np.array_equal(render_midi(drums, program=19), render_midi(drums, program=52))


def test_empty_and_broken_midi(tmp_path):
    assert render_midi(symusic.Score(480)).shape == (0,)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(SynthError, match="bad.mid"):
        render_midi(bad)
    with pytest.raises(ValueError):
        render_midi(_score([60]), program=200)


def test_peak_normalisation():
    a = render_midi(_score([60, 64]), peak=0.5)
    assert np.isclose(np.abs(a).max(), 0.5, atol=1e-4)


def test_write_wav_round_trip_and_atomic(tmp_path):
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    out = tmp_path / "sub" / "a.wav"
    write_wav(out, x, 16000)
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    y, _ = sf.read(str(out), dtype="float32")
    assert np.abs(y - x).max() < 1 / 16000
    write_wav(out, np.full(10, 2.0), 16000)  # overwrite; out-of-range values are clipped
    assert sf.read(str(out))[0].max() <= 1.0
    assert [p.name for p in out.parent.iterdir()] == ["a.wav"]  # no temp files left
