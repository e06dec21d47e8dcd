"""Audio decoding, conditioning and the encoders models train on.

Decoding reads only the clip it needs, block by block, downmixing to mono and
resampling with a streaming soxr resampler as it goes, so memory is bounded by
the *output* clip whatever the file's length, rate or channel count:

- libsndfile (soundfile) first: WAV in all its flavours (8/16/24/32-bit int,
  float, WAVE_FORMAT_EXTENSIBLE, RF64, W64), FLAC, OGG/Vorbis, Opus, MP3, AIFF...
- PyAV (FFmpeg bundled in the wheel) for what libsndfile cannot open: M4A/AAC,
  MP4, WebM, Ogg-FLAC, WMA...

Conditioning (``condition``): DC removal, trimming of leading/trailing silence
by an RMS threshold in dBFS, loudness normalisation to a target RMS.

Encoders: 8-bit mu-law (``mu_law_encode``/``mu_law_decode``) and frames in time
or FFT (real/imaginary) form with an exact overlap-add inverse (``frames`` /
``frames_inverse``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

BLOCK = 1 << 16  # frames read per block
MIN_RATE, MAX_RATE = 1000, 768000
MAX_CHANNELS = 64


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the problem.

    ``key`` is a short category for statistics (empty, not_audio, bad_header, ...).
    """

    def __init__(self, message: str, key: str = "unreadable"):
        super().__init__(message)
        self.key = key


@dataclass
class Decoded:
    """A decoded, mono, resampled clip and what we learned about its source."""

    audio: np.ndarray  # float32[N] mono at ``sample_rate``
    sample_rate: int
    source_rate: int
    channels: int
    duration: float | None  # seconds of the whole file, when the container says
    format: str  # e.g. "WAV/PCM_24", "av:aac"
    backend: str  # "soundfile" | "av"


def _check_stream(path: Path, rate: int, channels: int) -> None:
    if channels <= 0:
        raise AudioError(f"{path.name}: header says 0 channels", "bad_header")
    if channels > MAX_CHANNELS:
        raise AudioError(
            f"{path.name}: {channels} channels (more than {MAX_CHANNELS})", "too_many_channels"
        )
    if rate <= 0:
        raise AudioError(f"{path.name}: header says sample rate {rate} Hz", "bad_header")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(
            f"{path.name}: sample rate {rate} Hz outside the supported {MIN_RATE}..{MAX_RATE} Hz",
            "bad_sample_rate",
        )


class _MonoResampler:
    """Collects blocks [n, C] -> mono float32 at the target rate, streaming through soxr."""

    def __init__(self, src_rate: int, dst_rate: int):
        self.stream = (
            soxr.ResampleStream(src_rate, dst_rate, 1, dtype="float32", quality="HQ")
            if src_rate != dst_rate
            else None
        )
        self.parts: list[np.ndarray] = []

    def add(self, block: np.ndarray, last: bool = False) -> None:
        mono = block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self.stream is not None:
            mono = self.stream.resample_chunk(mono, last=last)
        if len(mono):
            self.parts.append(mono)

    def result(self) -> np.ndarray:
        self.add(np.zeros((0,), np.float32), last=True)
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def _decode_soundfile(
    path: Path, sample_rate: int, offset: float, seconds: float | None
) -> Decoded:
    with sf.SoundFile(str(path)) as f:
        _check_stream(path, f.samplerate, f.channels)
        total = f.frames if f.seekable() else None
        start = int(round(offset * f.samplerate))
        if start:
            if total is not None and start >= total:
                raise AudioError(
                    f"{path.name}: --clip-offset {offset:g}s is past the end "
                    f"({total / f.samplerate:.2f}s)",
                    "shorter_than_offset",
                )
            f.seek(start)
        want = None if seconds is None else int(round(seconds * f.samplerate))
        rs = _MonoResampler(f.samplerate, sample_rate)
        got = 0
        while want is None or got < want:
            n = BLOCK if want is None else min(BLOCK, want - got)
            block = f.read(n, dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            got += len(block)
            rs.add(block)
        audio = rs.result()
        dur = None if total is None or total < 0 else total / f.samplerate
        return Decoded(
            audio,
            sample_rate,
            f.samplerate,
            f.channels,
            dur,
            f"{f.format}/{f.subtype}",
            "soundfile",
        )


def _decode_av(path: Path, sample_rate: int, offset: float, seconds: float | None) -> Decoded:
    import av

    try:
        container = av.open(str(path), mode="r")
    except Exception as e:  # av raises many error types; all mean "cannot open"
        raise AudioError(
            f"{path.name}: not a readable audio file ({_short(e)})", "not_audio"
        ) from e
    with container:
        if not container.streams.audio:
            raise AudioError(
                f"{path.name}: container '{container.format.name}' has no audio stream", "no_audio"
            )
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        channels = int(stream.codec_context.channels or 0)
        _check_stream(path, rate, channels)
        dur = None
        if stream.duration is not None and stream.time_base is not None:
            dur = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            dur = container.duration / 1e6
        if offset > 0:
            # seek lands on a packet at or before the offset; the exact cut is below
            container.seek(int(offset * 1e6), any_frame=False)
        # FFmpeg converts the sample format only (packed float); we downmix by averaging
        # like the soundfile path (FFmpeg's -3 dB downmix would make levels differ) and
        # soxr resamples.
        conv = av.AudioResampler(format="flt", rate=rate)
        start = int(round(offset * rate))
        want = None if seconds is None else int(round(seconds * rate))
        rs = _MonoResampler(rate, sample_rate)
        pos = None  # source frame index of the next decoded sample
        got = 0
        try:
            for frame in container.decode(stream):
                if pos is None:
                    pos = (
                        int(round(float(frame.pts * frame.time_base) * rate))
                        if frame.pts is not None and frame.time_base is not None
                        else 0
                    )
                for out in conv.resample(frame):
                    nch = max(1, len(out.layout.channels))
                    x = out.to_ndarray().reshape(-1, nch).mean(axis=1, dtype=np.float32)
                    n = len(x)
                    lo = max(0, start - pos)
                    pos += n
                    x = x[lo:]
                    if want is not None:
                        x = x[: want - got]
                    if len(x):
                        rs.add(x)
                        got += len(x)
                if want is not None and got >= want:
                    break
        except av.error.FFmpegError as e:
            if got == 0:
                what = f"{stream.codec_context.name} audio in {container.format.name}"
                raise AudioError(
                    f"{path.name}: cannot decode {what} ({_short(e)})", "corrupt"
                ) from e
            # a truncated tail: keep what decoded cleanly
        audio = rs.result()
        fmt = f"av:{container.format.name}/{stream.codec_context.name}"
        return Decoded(audio, sample_rate, rate, channels, dur, fmt, "av")


def _short(e: Exception) -> str:
    """The gist of a decoder error: first line, without errno prefixes or quoted paths
    (the manifest entry already names the file)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    msg = re.sub(r"\[Errno -?\d+\]\s*", "", msg)
    msg = re.sub(r"(Error opening )?'[^']*'\s*:?\s*", "", msg).strip(" :")
    return (msg or type(e).__name__)[:160]


def decode(
    path: str | Path,
    sample_rate: int = 16000,
    offset: float = 0.0,
    seconds: float | None = None,
) -> Decoded:
    """Decode ``seconds`` of ``path`` from ``offset`` to mono float32 at ``sample_rate``.

    Raises AudioError naming the file and the problem (empty, not audio, bad
    header, unsupported container...). Only the requested clip is decoded.
    """
    path = Path(path)
    if offset < 0 or (seconds is not None and seconds <= 0):
        raise ValueError("clip offset must be >= 0 and clip seconds > 0")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise AudioError(f"{path.name}: cannot read ({e.strerror})", "unreadable") from e
    if size == 0:
        raise AudioError(f"{path.name}: empty file (0 bytes)", "empty")
    try:
        dec = _decode_soundfile(path, sample_rate, offset, seconds)
    except AudioError:
        raise
    except Exception as e:  # libsndfile cannot open it: let FFmpeg try
        sf_reason = _short(e)
        try:
            dec = _decode_av(path, sample_rate, offset, seconds)
        except AudioError as e2:
            raise AudioError(f"{e2} [libsndfile: {sf_reason}]", e2.key) from e2
    if len(dec.audio) == 0:
        if offset > 0:
            raise AudioError(
                f"{path.name}: nothing left after --clip-offset {offset:g}s", "shorter_than_offset"
            )
        raise AudioError(f"{path.name}: no audio samples ({dec.format}, header only?)", "empty")
    if not np.isfinite(dec.audio).all():
        raise AudioError(f"{path.name}: decoded samples hold NaN or infinity", "corrupt")
    return dec


# -- conditioning -------------------------------------------------------------


def remove_dc(x: np.ndarray) -> np.ndarray:
    """Subtract the mean: float32[N] -> float32[N]."""
    return (x - x.mean(dtype=np.float64)).astype(np.float32) if len(x) else x


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS (a full-scale sine is -3 dB); -inf for silence."""
    if len(x) == 0:
        return float("-inf")
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20 * np.log10(r) if r > 0 else float("-inf")


def trim_silence(
    x: np.ndarray, sr: int, threshold_db: float = -50.0, frame_seconds: float = 0.02
) -> tuple[np.ndarray, float, float]:
    """Drop leading/trailing frames whose RMS is below ``threshold_db`` dBFS.

    Returns (trimmed float32[M], seconds cut at the start, seconds cut at the end).
    An all-silent input comes back empty.
    """
    n = max(1, int(sr * frame_seconds))
    nf = len(x) // n + (len(x) % n > 0)
    if nf == 0:
        return x, 0.0, 0.0
    pad = np.zeros(nf * n, np.float32)
    pad[: len(x)] = x
    ms = np.mean(np.square(pad.reshape(nf, n), dtype=np.float64), axis=1)
    loud = np.flatnonzero(ms > 10 ** (threshold_db / 10))
    if len(loud) == 0:
        return x[:0], len(x) / sr, 0.0
    a = loud[0] * n
    b = min(len(x), (loud[-1] + 1) * n)
    return x[a:b], a / sr, (len(x) - b) / sr


def normalize_loudness(
    x: np.ndarray, target_db: float = -20.0, max_gain_db: float = 40.0, peak: float = 0.99
) -> tuple[np.ndarray, float]:
    """Scale to ``target_db`` RMS dBFS, never past ``peak`` and never by more than ``max_gain_db``.

    Returns (scaled float32[N], gain in dB applied).
    """
    level = rms_db(x)
    if not np.isfinite(level):
        return x, 0.0
    gain_db = min(target_db - level, max_gain_db)
    top = float(np.abs(x).max())
    if top > 0:
        gain_db = min(gain_db, 20 * np.log10(peak / top))
    return (x * 10 ** (gain_db / 20)).astype(np.float32), float(gain_db)


def to_int16(x: np.ndarray) -> np.ndarray:
    """float32[-1, 1] -> int16 (clipped, rounded)."""
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def from_int16(x: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1)."""
    return np.asarray(x, dtype=np.float32) / 32768.0


# -- encoders -----------------------------------------------------------------


def mu_law_encode(x, channels: int = 256):
    """Mu-law companding and quantisation: float in [-1, 1] -> int64 in 0..channels-1.

    Works on numpy arrays and torch tensors (same type out).
    """
    mu = channels - 1
    if _is_torch(x):
        import torch

        x = x.float().clamp(-1, 1)  # same float32 operations as the numpy path below
        y = torch.copysign(torch.log1p(mu * x.abs()) * float(np.float32(1 / np.log1p(mu))), x)
        return ((y + 1) * (mu / 2) + 0.5).floor().long().clamp(0, mu)
    # float32 throughout: 256 levels need nothing finer, and float64 temporaries would
    # be most of the memory of encoding a long piece
    x = np.clip(np.asarray(x, dtype=np.float32), -1, 1)
    y = np.log1p(np.float32(mu) * np.abs(x)) * np.float32(1 / np.log1p(mu))
    y = np.copysign(y, x)
    q = np.floor((y + 1) * np.float32(mu / 2) + np.float32(0.5))
    return np.clip(q, 0, mu).astype(np.int64)


def mu_law_decode(q, channels: int = 256):
    """Inverse of ``mu_law_encode``: int in 0..channels-1 -> float32 in [-1, 1]."""
    mu = channels - 1
    if _is_torch(q):
        import torch

        y = 2 * q.float() / mu - 1
        return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu
    y = 2 * np.asarray(q, dtype=np.float64) / mu - 1
    return (np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu).astype(np.float32)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def n_frames(n: int, frame_size: int, hop: int) -> int:
    """Frames needed to cover ``n`` samples (the tail is zero-padded)."""
    if n <= frame_size:
        return 1
    return -(-(n - frame_size) // hop) + 1


def frame_dim(frame_size: int, form: str) -> int:
    """Features per frame: ``frame_size`` for time, ``2 * (frame_size // 2 + 1)`` for fft."""
    return frame_size if form == "time" else 2 * (frame_size // 2 + 1)


def frames(
    x: np.ndarray, frame_size: int, hop: int | None = None, form: str = "time"
) -> np.ndarray:
    """Cut float[N] into frames: float32[F, frame_dim(frame_size, form)].

    ``form="time"``: the raw samples of each frame. ``form="fft"``: the real FFT
    of each (unwindowed) frame, real parts then imaginary parts, as in GRUV.
    ``hop`` defaults to ``frame_size`` (no overlap). The tail is zero-padded.
    """
    hop = hop or frame_size
    if form not in ("time", "fft"):
        raise ValueError(f"form must be 'time' or 'fft', not {form!r}")
    x = np.asarray(x, dtype=np.float32)
    f = n_frames(len(x), frame_size, hop)
    padded = np.zeros((f - 1) * hop + frame_size, np.float32)
    padded[: len(x)] = x
    idx = np.arange(f)[:, None] * hop + np.arange(frame_size)[None, :]
    fr = padded[idx]
    if form == "time":
        return fr
    spec = np.fft.rfft(fr, axis=1)
    return np.concatenate([spec.real, spec.imag], axis=1).astype(np.float32)


def frames_inverse(
    fr: np.ndarray,
    frame_size: int,
    hop: int | None = None,
    form: str = "time",
    length: int | None = None,
) -> np.ndarray:
    """Overlap-add frames back to float32[N] (exact inverse of ``frames`` for its output).

    Overlapping regions are averaged, so frames a model produced that disagree
    where they overlap blend smoothly instead of doubling in level.
    """
    hop = hop or frame_size
    fr = np.asarray(fr, dtype=np.float32)
    if form == "fft":
        k = frame_size // 2 + 1
        fr = np.fft.irfft(fr[:, :k] + 1j * fr[:, k:], n=frame_size, axis=1).astype(np.float32)
    elif form != "time":
        raise ValueError(f"form must be 'time' or 'fft', not {form!r}")
    f = len(fr)
    n = (f - 1) * hop + frame_size if f else 0
    out = np.zeros(n, np.float64)
    weight = np.zeros(n, np.float64)
    for i in range(f):
        out[i * hop : i * hop + frame_size] += fr[i]
        weight[i * hop : i * hop + frame_size] += 1
    out = (out / np.maximum(weight, 1)).astype(np.float32)
    return out if length is None else out[:length]
