"""The report's pictures (PNG, matplotlib Agg): data distributions, piano rolls, spectrograms.

Each function draws one figure into the path it is given (atomically) and returns that path,
or None when there is nothing to draw. Untrusted text (labels) reaches only the picture, with
``$`` escaped so matplotlib never parses it as math.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from tunelab.atomic import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path


def _text(s) -> str:
    return str(s).replace("$", r"\$")[:40]


def label_counts(counts: Counter, path: Path) -> Path | None:
    """Bar chart of the pieces per label (the 30 most common)."""
    if not counts:
        return None
    plt = _plt()
    names, values = zip(*counts.most_common(30), strict=True)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(range(len(names)), values, color="tab:purple")
    ax.set_xticks(range(len(names)), [_text(n) for n in names], rotation=60, ha="right")
    ax.set(ylabel="pieces", title="Labels")
    return _save(fig, path)


def pitch_histogram(pitches: np.ndarray, path: Path) -> Path | None:
    """Histogram of MIDI pitches (note onsets of the training split)."""
    if not len(pitches):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    counts = np.bincount(pitches, minlength=128)
    ax.bar(np.arange(128), counts, width=1.0)
    lo, hi = int(pitches.min()), int(pitches.max())
    ax.set_xlim(lo - 2, hi + 2)
    ax.set(xlabel="MIDI pitch", ylabel="notes", title="Pitches (training split)")
    return _save(fig, path)


def loudness_histogram(values: list[float], path: Path) -> Path | None:
    """Histogram of the pieces' RMS loudness (dBFS) before normalisation."""
    if not values:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(values, bins=min(40, max(5, len(values) // 3)), color="tab:green")
    ax.set(xlabel="RMS dBFS", ylabel="pieces", title="Loudness before normalisation")
    return _save(fig, path)


def piano_roll(midi_path: Path, path: Path) -> Path | None:
    """Piano roll of a MIDI file: one bar per note, time in seconds vs pitch."""
    import symusic

    score = symusic.Score(str(midi_path)).to("second")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 2.6))
    lo, hi = 127, 0
    for track in score.tracks:
        n = track.notes.numpy()
        if len(n["pitch"]):
            ax.barh(n["pitch"], n["duration"], left=n["time"], height=0.8, color="tab:blue")
            lo, hi = min(lo, int(n["pitch"].min())), max(hi, int(n["pitch"].max()))
    if hi >= lo:
        ax.set_ylim(lo - 2, hi + 2)
    ax.set(xlabel="seconds", ylabel="pitch")
    return _save(fig, path)


def spectrogram(audio: np.ndarray, sr: int, path: Path) -> Path | None:
    """Log-magnitude spectrogram (dB, 1024-sample Hann STFT) of a mono waveform."""
    from scipy.signal import spectrogram as stft

    if len(audio) < 16:
        return None
    plt = _plt()
    nper = min(1024, len(audio))
    f, t, s = stft(audio, sr, nperseg=nper, noverlap=nper // 2)
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.pcolormesh(t, f, 10 * np.log10(s + 1e-12), shading="auto", cmap="magma", vmin=-120)
    ax.set(xlabel="seconds", ylabel="Hz")
    return _save(fig, path)
