"""Music statistics of audio clips, and a Fréchet distance to the training audio.

Inputs are mono float waveforms in [-1, 1] at sample rate ``sr``. The RMS envelope, silence and
spectral flatness are those of ``tunelab.metrics.audio`` (the audits); this module adds the
spectral centroid, chroma and a set-level distance, computed with librosa (no downloaded model).

* Spectral centroid  sum_f f |X_f| / sum_f |X_f| per STFT frame (librosa), averaged over the
                     frames above SILENCE_DB. Dull audio is low, hiss and clicks are high.
* Chroma             librosa's STFT chroma at A440 tuning (energy folded onto the 12 pitch
                     classes; each frame scaled to max 1), averaged over non-silent frames and
                     normalised to sum 1.
* Feature set (fixed, ``second_features``): per whole second of audio, the mean and standard
  deviation over frames of 13 MFCCs (librosa defaults: 2048-sample FFT, hop 512, 128 mel bands,
  at the clip's rate) and the mean of the 12 chroma bins: 38 numbers per second.
* Fréchet distance   d^2 = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between
                     Gaussians fitted to the per-second feature vectors of two sets of clips
                     (Heusel et al. 2017, FID; Kilgour et al. 2019, "Fréchet Audio Distance",
                     here on MFCC + chroma statistics instead of a learnt embedding).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from tunelab.metrics.audio import SILENCE_DB, rms_envelope, silence, spectral_flatness

N_MFCC = 13
N_FFT = 2048
HOP = 512
FEATURES_PER_SECOND = 2 * N_MFCC + 12  # MFCC means and deviations, chroma means


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).ravel()


def _loud_frames(x: np.ndarray, n_frames: int) -> np.ndarray:
    """bool[n_frames]: librosa frames (centred, hop HOP) whose RMS is above SILENCE_DB."""
    import librosa

    rms = librosa.feature.rms(y=x, frame_length=N_FFT, hop_length=HOP)[0][:n_frames]
    return 20 * np.log10(np.maximum(rms, 1e-10)) >= SILENCE_DB


def spectral_centroid(x, sr: int) -> float:
    """Mean spectral centroid (Hz) over non-silent frames; 0.0 when all are silent."""
    import librosa

    x = _f32(x)
    if len(x) < 2:
        return 0.0
    c = librosa.feature.spectral_centroid(y=x, sr=sr, n_fft=N_FFT, hop_length=HOP)[0]
    loud = _loud_frames(x, len(c))
    return float(c[loud].mean()) if loud.any() else 0.0


def chroma(x, sr: int) -> list[float]:
    """12 shares (C, C#, ..., B) of the mean chroma over non-silent frames; zeros if silent."""
    import librosa

    x = _f32(x)
    if len(x) < 2:
        return [0.0] * 12
    c = librosa.feature.chroma_stft(y=x, sr=sr, n_fft=N_FFT, hop_length=HOP, tuning=0.0)
    loud = _loud_frames(x, c.shape[1])
    if not loud.any():
        return [0.0] * 12
    m = c[:, loud].mean(axis=1)
    return (m / m.sum()).round(5).tolist() if m.sum() else [0.0] * 12


def second_features(x, sr: int) -> np.ndarray:
    """float64[K, 38]: the fixed feature set of the module docstring for each of the clip's K
    whole seconds (K = 0 for clips shorter than a second). Frames are computed once over the
    clip (centred, hop HOP); frame i belongs to second floor(i * HOP / sr)."""
    import librosa

    x = _f32(x)
    K = len(x) // sr
    if K == 0:
        return np.zeros((0, FEATURES_PER_SECOND))
    mf = librosa.feature.mfcc(y=x, sr=sr, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP)
    ch = librosa.feature.chroma_stft(y=x, sr=sr, n_fft=N_FFT, hop_length=HOP, tuning=0.0)
    sec = np.arange(mf.shape[1]) * HOP // sr
    out = np.zeros((K, FEATURES_PER_SECOND))
    for k in range(K):
        f = sec == k
        out[k] = np.concatenate([mf[:, f].mean(1), mf[:, f].std(1), ch[:, f].mean(1)])
    return out


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """d^2 of the module docstring between the rows of a [N, D] and b [M, D] (None when a set
    has fewer than two rows). Covariances are the unbiased sample covariances."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return None
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # tr (S_a S_b)^(1/2) = sum_i sqrt(lambda_i) of the symmetric PSD S_a^(1/2) S_b S_a^(1/2):
    # stable where sqrtm of the product is not (few rows make both covariances singular).
    w, v = linalg.eigh(sa)
    half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = linalg.eigvalsh(half @ sb @ half)
    tr_root = float(np.sqrt(np.clip(lam, 0, None)).sum())
    d2 = float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2 * tr_root)
    return max(d2, 0.0)


def audio_features(x, sr: int) -> dict:
    """One clip's statistics: ``rms_mean_db`` and ``rms_std_db`` of the RMS envelope (dBFS,
    ``audio_metrics.rms_envelope`` frames), ``silence_fraction``, ``spectral_flatness``,
    ``spectral_centroid_hz`` and ``chroma`` (12 shares)."""
    env = rms_envelope(x, sr)
    return {
        "rms_mean_db": float(env.mean()) if len(env) else None,
        "rms_std_db": float(env.std()) if len(env) else None,
        "silence_fraction": silence(x, sr)["silence_fraction"],
        "spectral_flatness": spectral_flatness(x, sr),
        "spectral_centroid_hz": spectral_centroid(x, sr),
        "chroma": chroma(x, sr),
    }


def set_frechet(clips, reference, sr: int) -> float | None:
    """Fréchet distance between the per-second features of ``clips`` and of ``reference``
    (lists of waveforms at ``sr``); None when either set has fewer than two seconds."""
    feats = [second_features(c, sr) for c in clips]
    ref = [second_features(r, sr) for r in reference]
    a = np.concatenate(feats) if feats else np.zeros((0, FEATURES_PER_SECOND))
    b = np.concatenate(ref) if ref else np.zeros((0, FEATURES_PER_SECOND))
    return frechet_distance(a, b)
