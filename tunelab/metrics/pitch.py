"""Pitch content of audio, and the ``unpitched`` audit flag judged against the data.

Inputs are mono float waveforms in [-1, 1] at sample rate ``sr``; numpy/scipy only.

* Harmonic peak salience, per Hann STFT frame of 2**ceil(log2(PITCH_FRAME_S sr)) samples (8 Hz
  bins at 16 kHz), hop a quarter of that, over PITCH_FMIN..PITCH_FMAX Hz: the share of the
  frame's power in held peaks, i.e. local maxima of the power spectrum at least PITCH_PEAK_DB
  above its local level (the mean of the dB spectrum over PITCH_LOCAL_HZ around the bin) that
  have a peak within PITCH_DRIFT_BINS bins in the frames before and after. A held partial
  counts; a peak of noise or of a click is not held. A peak counts with its bin and the two
  beside it (the Hann main lobe). Averaged over the frames above SILENCE_DB.
  Measured (benchmarks/pitch_content.py, 4 s excerpts): a harmonic tone 0.997, a chord 0.99,
  rendered chorales 0.61-0.99, recorded music 0.04-0.82 (median 0.49); white and pink noise,
  clicks, noise bursts and a lightly trained WaveNet's hiss below 0.005.
* The data's level: the median salience of PITCH_EXCERPTS excerpts of PITCH_EXCERPT_S seconds
  spread evenly over the training audio (a drum intro or a fade does not decide).
* ``unpitched``: the data's level is at least PITCHED_DATA (pitched data; drums and effects
  score lower and are never judged) and the clip's salience is below UNPITCHED_RATIO of it.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import maximum_filter1d, uniform_filter1d

# Frames quieter than this (dBFS) have no pitch to judge: audio.SILENCE_DB's level (a test keeps
# them equal; metrics.audio imports this module, so it cannot import audio's constant back).
SILENCE_DB = -50.0

PITCH_FRAME_S = 0.128  # pitch salience STFT frame (rounded up to a power of 2; 8 Hz bins)...
PITCH_FMIN, PITCH_FMAX = 50.0, 5000.0  # ...over this band (Hz)
PITCH_PEAK_DB = 10.0  # a peak stands this far above the spectrum's local level...
PITCH_LOCAL_HZ = 300.0  # ...the mean dB over this width around it
PITCH_DRIFT_BINS = 2  # a held partial moves at most this many bins from frame to frame
PITCH_EXCERPTS = 15  # the data's pitch salience: the median of this many excerpts...
PITCH_EXCERPT_S = 4.0  # ...of this many seconds, spread evenly over the training audio

# Flag thresholds (docs/evaluation.md has the measurements they come from).
PITCHED_DATA = 0.2  # unpitched is judged only where the data's pitch salience reaches this...
UNPITCHED_RATIO = 0.25  # ...and raised when a clip's is below this share of the data's


def pitch_salience(x, sr: int) -> float | None:
    """The harmonic peak salience of the module docstring, in [0, 1]; None when no frame
    (with a frame before and after it) is above SILENCE_DB: silence has no pitch to judge."""
    x = np.asarray(x, np.float64).ravel()
    n = 1 << int(np.ceil(np.log2(max(PITCH_FRAME_S * sr, 16))))
    if len(x) < n:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 4]
    loud = np.mean(frames**2, axis=1) >= 10 ** (SILENCE_DB / 10)
    loud[[0, -1]] = False  # only frames with a frame before and after can hold a partial
    if not loud.any():
        return None
    f = np.fft.rfftfreq(n, 1 / sr)
    band = (f >= PITCH_FMIN) & (f <= min(PITCH_FMAX, sr / 2))
    P = np.abs(sfft.rfft(frames * np.hanning(n), axis=1)) ** 2 + 1e-20
    db = 10 * np.log10(P)
    width = max(3, int(round(PITCH_LOCAL_HZ * n / sr)) | 1)
    local = uniform_filter1d(db, width, axis=1, mode="nearest")
    inner = np.zeros_like(db, dtype=bool)
    inner[:, 1:-1] = (db[:, 1:-1] >= db[:, :-2]) & (db[:, 1:-1] >= db[:, 2:])
    peak = inner & (db >= local + PITCH_PEAK_DB) & band
    near = maximum_filter1d(peak.astype(np.uint8), 2 * PITCH_DRIFT_BINS + 1, axis=1) > 0
    held = np.zeros_like(peak)
    held[1:-1] = peak[1:-1] & near[:-2] & near[2:]  # a peak in the frames before and after
    lobe = maximum_filter1d(held.astype(np.uint8), 3, axis=1) > 0  # the peak and its neighbours
    share = np.sum(P * (lobe & band), axis=1) / np.sum(P * band, axis=1)
    return float(share[loud].mean())


def data_pitch_salience(pieces, sr: int) -> float | None:
    """The median ``pitch_salience`` of PITCH_EXCERPTS excerpts of PITCH_EXCERPT_S seconds at
    evenly spaced places of the pieces (each excerpt inside one piece; a shorter piece is one
    excerpt), over the excerpts that are not silent; None without any. The median, so a drum
    intro or a fade does not decide."""
    W = int(round(PITCH_EXCERPT_S * sr))
    spans = []  # (piece, start) of every whole excerpt, or the whole of a short piece
    for i, p in enumerate(pieces):
        starts = range(0, len(p) - W + 1, W) if len(p) >= W else [0] * (len(p) > 0)
        spans += [(i, s) for s in starts]
    pick = np.unique(np.linspace(0, len(spans) - 1, min(PITCH_EXCERPTS, len(spans))).astype(int))
    vals = [pitch_salience(pieces[spans[k][0]][spans[k][1] : spans[k][1] + W], sr) for k in pick]
    vals = [v for v in vals if v is not None]
    return float(np.median(vals)) if vals else None


def unpitched(clip: float | None, data: float | None) -> bool:
    """The ``unpitched`` flag: the data is pitched (salience at least PITCHED_DATA) and the
    clip's salience is below UNPITCHED_RATIO of the data's; never without both figures (a
    silent clip is ``silent``, not unpitched)."""
    if clip is None or data is None:
        return False
    return data >= PITCHED_DATA and clip < UNPITCHED_RATIO * data


def thresholds() -> dict:
    """The unpitched flag's thresholds and the peak level they rest on."""
    return {
        "PITCHED_DATA": PITCHED_DATA,
        "UNPITCHED_RATIO": UNPITCHED_RATIO,
        "PITCH_PEAK_DB": PITCH_PEAK_DB,
    }
