"""Decoding any audio file to mono float at one rate (soundfile, then PyAV), clips, rejection
reasons, and the conditioning after it (DC, silence trim, loudness)."""

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from tests.helpers_audio import dominant_hz, sine, wav_header, write_av
from tunelab.data.audio import decode as A

SR = 16000


SF_FLAVOURS = [
    ("u8.wav", {"subtype": "PCM_U8"}),
    ("i16.wav", {"subtype": "PCM_16"}),
    ("i24.wav", {"subtype": "PCM_24"}),
    ("i32.wav", {"subtype": "PCM_32"}),
    ("f32.wav", {"subtype": "FLOAT"}),
    ("ext.wav", {"format": "WAVEX", "subtype": "PCM_24"}),
    ("big.rf64", {"format": "RF64", "subtype": "PCM_16"}),
    ("x.flac", {}),
    ("x.ogg", {"format": "OGG", "subtype": "VORBIS"}),
    ("x.mp3", {"format": "MP3"}),
]


@pytest.mark.parametrize("name,kw", SF_FLAVOURS, ids=[n for n, _ in SF_FLAVOURS])
def test_decode_soundfile_flavours(tmp_path, name, kw):
    path = tmp_path / name
    sf.write(str(path), sine(440, 1.0, 44100, channels=2), 44100, **kw)
    d = A.decode(path, SR)
    assert d.backend == "soundfile" and d.source_rate == 44100 and d.channels == 2
    assert d.audio.dtype == np.float32 and d.audio.ndim == 1
    assert abs(len(d.audio) - SR) <= 0.02 * SR  # codecs may pad a few ms
    assert abs(dominant_hz(d.audio, SR) - 440) < 3
    assert 0.3 < np.abs(d.audio).max() < 0.7


@pytest.mark.parametrize(
    "name,fmt,codec",
    [("x.m4a", "ipod", "aac"), ("x.webm", "webm", "libopus"), ("x.oga", "ogg", "flac")],
)
def test_decode_containers_via_pyav(tmp_path, name, fmt, codec):
    path = tmp_path / name
    sr = 48000
    write_av(path, sine(440, 1.0, sr, channels=2), sr, fmt, codec)
    d = A.decode(path, SR, offset=0.25, seconds=0.5)
    assert d.backend == "av"
    assert len(d.audio) == SR // 2
    assert abs(dominant_hz(d.audio, SR) - 440) < 5
    # stereo downmix averages, like the soundfile path (not FFmpeg's -3 dB sum)
    assert 0.35 < np.abs(d.audio).max() < 0.65
    # truncated copies: the part that decodes is kept, or a reason names the file
    raw = path.read_bytes()
    for cut in (200, len(raw) // 2):
        t = tmp_path / f"cut{cut}{path.suffix}"
        t.write_bytes(raw[:cut])
        try:
            assert len(A.decode(t, SR).audio) > 0
        except A.AudioError as e:
            assert t.name in str(e)


def test_clip_offset_and_length_pick_the_right_part(tmp_path):
    sr = 22050
    x = np.concatenate([sine(440, 2.0, sr), sine(880, 2.0, sr)])
    path = tmp_path / "two.flac"
    sf.write(str(path), x, sr)
    d = A.decode(path, SR, offset=2.5, seconds=1.0)
    assert len(d.audio) == SR
    assert abs(dominant_hz(d.audio, SR) - 880) < 3
    assert abs(dominant_hz(A.decode(path, SR, seconds=1.5).audio, SR) - 440) < 3
    with pytest.raises(A.AudioError, match="past the end"):
        A.decode(path, SR, offset=10)


def test_clip_decoding_does_not_load_the_whole_file(tmp_path):
    sr = 48000
    path = tmp_path / "long.wav"
    with sf.SoundFile(str(path), "w", sr, 2, subtype="PCM_16") as f:
        block = sine(220, 10.0, sr, channels=2)
        for _ in range(12):  # 2 minutes of stereo 48 kHz: 44 MB as float32
            f.write(block)
    tracemalloc.start()
    d = A.decode(path, SR, offset=60.0, seconds=1.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(d.audio) == SR
    assert peak < 4_000_000  # a few blocks, not the file


@pytest.mark.parametrize("rate", [1000, 8000, 192000])
def test_decode_any_rate_and_many_channels(tmp_path, rate):
    path = tmp_path / f"r{rate}.wav"
    sf.write(str(path), sine(200, 0.5, rate, channels=20), rate)
    d = A.decode(path, SR)
    assert d.channels == 20
    assert abs(len(d.audio) - SR // 2) <= 2
    assert abs(dominant_hz(d.audio, SR) - 200) < 5


def test_bad_files_are_rejected_with_a_reason(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), sine(440, 1.0, 44100), 44100)
    raw = good.read_bytes()
    cases = {
        "empty.wav": (b"", "empty"),
        "header_only.wav": (raw[:44], "no audio samples"),
        "text.mp3": (b"this is not audio\n" * 50, "not a readable audio file"),
        "zero_ch.wav": (wav_header(0, 44100, n_data=400) + b"\0" * 400, "0 channels|not a"),
        "zero_sr.wav": (wav_header(1, 0, n_data=400) + b"\0" * 400, "sample rate|not a"),
        "low_sr.wav": (wav_header(1, 200, n_data=400) + b"\1" * 400, "sample rate|not a"),
    }
    for name, (data, why) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(A.AudioError, match=why) as exc:
            A.decode(tmp_path / name, SR)
        assert name in str(exc.value)
    # truncated in the middle of the data chunk: the part present decodes
    (tmp_path / "trunc.wav").write_bytes(raw[: len(raw) // 2])
    d = A.decode(tmp_path / "trunc.wav", SR)
    assert abs(len(d.audio) - SR // 2) < 200


def test_dc_trim_and_loudness():
    tone = sine(300, 1.0, SR)[:, 0] * 0.1
    x = np.concatenate([np.zeros(SR), tone, np.zeros(SR // 2)]) + 0.2  # DC offset
    x = A.remove_dc(x.astype(np.float32))
    assert abs(x.mean()) < 1e-6
    # the silent parts carry the DC step after removal; trim needs them quiet
    x = np.concatenate([np.zeros(SR), tone, np.zeros(SR // 2)]).astype(np.float32)
    y, a, b = A.trim_silence(x, SR, -50)
    assert abs(a - 1.0) <= 0.02 and abs(b - 0.5) <= 0.02
    assert abs(len(y) - SR) <= 0.02 * SR
    z, gain = A.normalize_loudness(y, -20.0)
    assert abs(A.rms_db(z) - (-20.0)) < 0.1
    assert gain > 0
    loud, _ = A.normalize_loudness(np.array([0.0, 0.9, -0.1, 0.0], np.float32), -3.0)
    assert np.abs(loud).max() <= 0.99 + 1e-6  # the peak cap wins over the RMS target
    silent, lead, trail = A.trim_silence(np.zeros(SR, np.float32), SR, -50)
    assert len(silent) == 0 and lead == 1.0
