"""MIDI -> audio with a real SoundFont synthesizer, and atomic WAV writing.

Why midirenderer and not tinysoundfont: both install from PyPI with no system
library, but tinysoundfont declares pyaudio (for live playback) as a
dependency, and pyaudio needs PortAudio headers to build, so a plain
``pip install tunelab`` would fail on a clean machine unless tinysoundfont were
installed with ``--no-deps``, which a package's dependency list cannot ask for.
midirenderer is a self-contained Rust wheel (no Python dependencies, ~30 ms to
render a few seconds), deterministic, and takes bytes in and gives WAV bytes out,
so nothing touches the disk. Its output is fixed at 48 kHz stereo 16-bit, so we
downmix and resample with soxr.

The General MIDI SoundFont is TimGM6mb.sf2 (6 MB), which ships inside the
pretty_midi wheel, so rendering works offline out of the box.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tunelab.atomic import atomic_path

# General MIDI programs for the built-in timbres (0-based program numbers).
TIMBRES = {"organ": 19, "strings": 48, "piano": 0, "choir": 52}


class SynthError(RuntimeError):
    """MIDI that could not be rendered, with the reason."""


@lru_cache(maxsize=1)
def soundfont_path() -> Path:
    """Path of TimGM6mb.sf2 inside the installed pretty_midi package."""
    import importlib.util

    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        raise SynthError("pretty_midi is not installed; it provides the TimGM6mb.sf2 SoundFont")
    path = Path(spec.origin).parent / "TimGM6mb.sf2"
    if not path.exists():
        raise SynthError(f"SoundFont not found at {path}")
    return path


@lru_cache(maxsize=1)
def _soundfont_bytes() -> bytes:
    return soundfont_path().read_bytes()


def _midi_bytes(score_or_path, program: int | None) -> bytes | None:
    """Standard MIDI file bytes, with every non-drum track's program set to ``program``.

    None when the score has no notes (the renderer panics on note-less files).
    """
    import symusic

    if isinstance(score_or_path, str | os.PathLike):
        try:
            score = symusic.Score(str(score_or_path))
        except Exception as e:
            raise SynthError(f"{score_or_path}: not a readable MIDI file ({e})") from e
    elif isinstance(score_or_path, symusic.Score):
        score = score_or_path
    else:
        raise TypeError(f"render_midi takes a symusic.Score or a path, not {type(score_or_path)}")
    if score.note_num() == 0:
        return None
    if program is not None:
        if not 0 <= program <= 127:
            raise ValueError(f"program must be a GM program 0..127, got {program}")
        score = score.copy()
        for track in score.tracks:
            if not track.is_drum:
                track.program = program
    return bytes(score.dumps_midi())


def render_midi(
    score_or_path,
    sample_rate: int = 16000,
    program: int | None = None,
    *,
    peak: float | None = None,
) -> np.ndarray:
    """Render MIDI to mono audio with the General MIDI SoundFont.

    Args:
        score_or_path: a ``symusic.Score`` or the path of a .mid file.
        sample_rate: output rate in Hz (rendered at 48 kHz, resampled with soxr).
        program: if given, the GM program (0..127) for every non-drum track,
            e.g. 19 church organ, 48 string ensemble, 0 acoustic grand, 52 choir aahs.
        peak: if given, scale so the largest sample is ``peak`` (TimGM6mb renders
            quietly, around -20 dBFS, which is fine for training but faint for listening).

    Returns:
        float32[N] mono in [-1, 1]; deterministic for the same input. Empty MIDI
        gives an empty array.
    """
    midi = _midi_bytes(score_or_path, program)
    if midi is None:
        return np.zeros(0, dtype=np.float32)
    try:
        wav = midirenderer_render(midi)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # the Rust side raises pyo3 PanicException (a BaseException)
        raise SynthError(f"could not render MIDI: {e}") from e
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if sr != sample_rate and len(mono):
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    top = float(np.abs(mono).max()) if len(mono) else 0.0
    if peak is not None and top > 0:
        mono *= peak / top
    return np.clip(mono, -1.0, 1.0)


def midirenderer_render(midi: bytes) -> bytes:
    """WAV bytes (48 kHz stereo int16) for standard MIDI file bytes."""
    import midirenderer

    return midirenderer.render_wave_from(_soundfont_bytes(), midi)


def write_wav(path: str | Path, audio: np.ndarray, sr: int) -> Path:
    """Write float audio (``[N]`` or ``[N, C]``, in [-1, 1]) as 16-bit PCM WAV, atomically.

    The file appears complete or not at all: written to a temp file in the same
    folder, then renamed over ``path``.
    """
    path = Path(path)
    a = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, a, int(sr), subtype="PCM_16", format="WAV")
    return path
