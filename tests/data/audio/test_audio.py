"""Audio decoding, conditioning, encoders, tempo and tags, on files the tests make."""

import struct
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from tunelab.data.audio import decode as A
from tunelab.data.audio import encode as E
from tunelab.data.audio.tags import clean_label, load_sidecar, read_tags, sidecar_label
from tunelab.data.audio.tempo import estimate_tempo, fold_to, stretch_to_tempo

SR = 16000

# -- helpers (also used by test_audio_prepare.py) ----------------------------------


def sine(freq=440.0, seconds=1.0, sr=44100, amp=0.5, channels=1) -> np.ndarray:
    """float32[N, C] sine."""
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def drum_loop(bpm: float, seconds: float = 8.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A synthetic drum loop, float32[N]: kick on each bar's downbeat, a noise snare on
    every beat, quiet short hats on the off-beat eighths."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    x = np.zeros(n, np.float32)
    length = int(0.05 * sr)
    t = np.arange(length)
    i = 0
    while (s := int(round(i * 30.0 / bpm * sr))) < n:
        if i % 8 == 0:
            hit = np.sin(2 * np.pi * 60 * t / sr) * np.exp(-t / (0.008 * sr))
        elif i % 2 == 0:
            hit = 0.6 * 0.7 * rng.standard_normal(length) * np.exp(-t / (0.008 * sr))
        else:
            hit = 0.25 * rng.standard_normal(length) * np.exp(-t / (0.002 * sr))
        e = min(n, s + length)
        x[s:e] += hit[: e - s]
        i += 1
    return 0.5 * x


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


def write_av(path, x: np.ndarray, sr: int, fmt: str, codec: str) -> None:
    """Encode float32[N, C] with PyAV (for containers libsndfile cannot write)."""
    import av

    layout = "mono" if x.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as c:
        st = c.add_stream(codec, rate=sr, layout=layout)
        for i in range(0, len(x), 1024):
            blk = np.ascontiguousarray(x[i : i + 1024].T)
            frame = av.AudioFrame.from_ndarray(blk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = sr, i
            for p in st.encode(frame):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)


def wav_header(channels: int, rate: int, bits: int = 16, n_data: int = 0) -> bytes:
    """A canonical 44-byte PCM WAV header with arbitrary (possibly invalid) fields."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + n_data)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", n_data)
    )


# -- decoding ---------------------------------------------------------------------

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


# -- conditioning -------------------------------------------------------------------


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


def test_int16_round_trip():
    x = np.linspace(-1, 1, 1001, dtype=np.float32)
    assert np.abs(E.from_int16(E.to_int16(x)) - x).max() < 1e-4


# -- encoders ---------------------------------------------------------------------


def test_mu_law_round_trip_numpy_and_torch():
    import torch

    x = np.linspace(-1, 1, 20001)
    q = E.mu_law_encode(x)
    assert q.dtype == np.int64 and q.min() == 0 and q.max() == 255
    assert np.all(np.diff(q) >= 0)  # monotone
    y = E.mu_law_decode(q)
    # companded quantisation: small error near zero, larger for loud samples
    err = np.abs(y - x)
    assert err[np.abs(x) < 0.01].max() < 0.0005 and err.max() < 0.035
    assert np.array_equal(E.mu_law_decode(np.arange(256))[[0, 255]], [-1.0, 1.0])
    qt = E.mu_law_encode(torch.from_numpy(x.astype(np.float32)))
    assert qt.dtype == torch.int64 and np.array_equal(qt.numpy(), E.mu_law_encode(x))
    assert np.allclose(E.mu_law_decode(qt).numpy(), E.mu_law_decode(q), atol=1e-6)


@pytest.mark.parametrize("form", ["time", "fft"])
@pytest.mark.parametrize("hop", [None, 256])
def test_frames_inverse_is_exact(form, hop):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, 5000).astype(np.float32)
    fr = E.frames(x, 1024, hop, form)
    assert fr.shape[1] == E.frame_dim(1024, form)
    assert fr.shape[0] == E.n_frames(len(x), 1024, hop or 1024)
    y = E.frames_inverse(fr, 1024, hop, form, length=len(x))
    assert np.abs(y - x).max() < 1e-5
    if form == "time" and hop is None:
        assert np.array_equal(fr[1], x[1024:2048])


# -- tempo --------------------------------------------------------------------------

TEMPI = [70, 86, 103, 121, 139, 157, 180]


def _close(est: float, true: float) -> str | None:
    """'same', 'double' or 'half' when within 2% of that multiple, else None."""
    for name, k in (("same", 1), ("double", 2), ("half", 0.5)):
        if abs(est / (true * k) - 1) <= 0.02:
            return name
    return None


@pytest.mark.parametrize("bpm", TEMPI)
def test_tempo_estimate_and_stretch(bpm):
    x = drum_loop(bpm, seconds=8, seed=bpm)
    est = estimate_tempo(x, SR)
    assert est is not None and _close(est.bpm, bpm), (bpm, est)
    target = 120.0
    y, rate = stretch_to_tempo(x, SR, est.bpm, target)
    assert abs(len(y) - len(x) / rate) < 0.01 * len(x)
    est2 = estimate_tempo(y, SR)
    assert est2 is not None and _close(est2.bpm, target), (bpm, est2)


def test_tempo_fold_and_silence():
    assert fold_to(70, 140) == 140 and fold_to(250, 120) == 125 and fold_to(100, 120) == 100
    assert estimate_tempo(np.zeros(SR * 4, np.float32), SR) is None
    assert estimate_tempo(np.zeros(100, np.float32), SR) is None


# -- tags ---------------------------------------------------------------------------


def test_tags_from_id3_vorbis_flac_mp4_wav(tmp_path):
    from mutagen.easyid3 import EasyID3
    from mutagen.flac import FLAC
    from mutagen.id3 import TCON, TDRC
    from mutagen.mp4 import MP4
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    x = sine(440, 0.5, 44100)
    sf.write(str(tmp_path / "a.mp3"), x, 44100, format="MP3")
    t = EasyID3()
    t.update({"genre": "Rock", "date": "1997-05-01", "artist": "Band", "title": "Song"})
    t.save(str(tmp_path / "a.mp3"))
    sf.write(str(tmp_path / "a.flac"), x, 44100)
    f = FLAC(str(tmp_path / "a.flac"))
    f.update({"genre": "Jazz", "date": "1959"})
    f.save()
    sf.write(str(tmp_path / "a.ogg"), x, 44100, format="OGG", subtype="VORBIS")
    f = OggVorbis(str(tmp_path / "a.ogg"))
    f["genre"] = "  Hip\tHop\x00 "
    f.save()
    write_av(tmp_path / "a.m4a", x, 44100, "ipod", "aac")
    f = MP4(str(tmp_path / "a.m4a"))
    f["\xa9gen"], f["\xa9day"] = ["Pop"], ["2001-02-03"]
    f.save()
    sf.write(str(tmp_path / "a.wav"), x, 44100)
    w = WAVE(str(tmp_path / "a.wav"))
    w.add_tags()
    w.tags.add(TCON(encoding=3, text=["Classical"]))
    w.tags.add(TDRC(encoding=3, text=["1801"]))
    w.save()
    assert read_tags(tmp_path / "a.mp3") == {
        "genre": "rock",
        "year": "1997",
        "artist": "band",
        "title": "song",
    }
    assert read_tags(tmp_path / "a.flac")["genre"] == "jazz"
    assert read_tags(tmp_path / "a.flac")["year"] == "1959"
    assert read_tags(tmp_path / "a.ogg")["genre"] == "hip hop"
    assert read_tags(tmp_path / "a.m4a")["genre"] == "pop"
    assert read_tags(tmp_path / "a.m4a")["year"] == "2001"
    assert read_tags(tmp_path / "a.wav")["genre"] == "classical"
    (tmp_path / "junk.mp3").write_bytes(b"junk")
    assert read_tags(tmp_path / "junk.mp3")["genre"] is None


def test_labels_are_sanitised_and_sidecars_read(tmp_path):
    assert clean_label("../../etc/passwd\n") == "../../etc/passwd"
    assert clean_label("\x00\x01 ") is None
    assert len(clean_label("x" * 500)) == 64
    (tmp_path / "l.csv").write_text("file,label\nsub/a.wav,Rock\nb.wav,Jazz\n")
    m = load_sidecar(tmp_path / "l.csv")
    assert sidecar_label(m, tmp_path / "sub" / "a.wav", [tmp_path]) == "rock"
    assert sidecar_label(m, tmp_path / "x" / "b.wav", [tmp_path]) == "jazz"
    (tmp_path / "l.json").write_text('{"a": "Folk"}')
    assert sidecar_label(load_sidecar(tmp_path / "l.json"), tmp_path / "a.wav", []) == "folk"
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError):
        load_sidecar(tmp_path / "bad.json")
