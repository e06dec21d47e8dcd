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

The encoders that models train on (mu-law, frames) are in ``tunelab.data.audio.encode``.
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
