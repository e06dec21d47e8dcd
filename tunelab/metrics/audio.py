"""Audit metrics for generated audio: silence, noise, copies of the training audio, duplicates.

Inputs are mono float waveforms in [-1, 1] at a sample rate ``sr``. numpy/scipy only (no torch,
no file decoding), so audits stay cheap.

* RMS envelope   e_k = 20 log10(max(rms(x[kF:(k+1)F]), 1e-10)) dBFS over non-overlapping frames
                 of F = FRAME_S * sr samples; a frame is silent when e_k < SILENCE_DB.
* Flatness       (Wiener entropy) per Hann-windowed STFT frame, over the power spectrum P_f
                 without DC: exp(mean_f ln P_f) / mean_f P_f; averaged over non-silent frames.
                 White noise ~0.56 (exp(-Euler gamma)), tonal audio ~0.
* Copy audit     ncc(w, t_l) = <w - mean w, t_l> / (||w - mean w|| * ||t_l - mean t_l||) for each
                 COPY_WINDOW_S window w of x (hop COPY_HOP_S) and every training segment t_l of
                 the same length inside one piece (the numerator needs no mean removal of t_l,
                 as w - mean w sums to 0). Coarse search at ~COARSE_SR (anti-alias decimation)
                 with FFT overlap-save over training blocks and segment norms from running sums,
                 then the best COPY_CANDIDATES blocks per window are refined at full rate in
                 float64 within +-2 coarse samples.
* Sameness       s(a, b) = max_lag |xcorr(a - mean a, b - mean b)| / (||a - mean a|| ||b - mean b||)
                 (global norms: 1 for the same audio, 1/sqrt(1 + N/S) for the same plus noise at
                 noise-to-signal N/S, about the shared fraction of energy for partial overlaps).

* Tail level     t = 20 log10(rms(last TAIL_S seconds of x as written to 16-bit PCM)) dBFS: the
                 plain measurement a listener (or a check) makes of a WAV that died out.
* Distance       d(a, b) = ||a - b|| / sqrt((||a||^2 + ||b||^2) / 2) over the common length
                 (0 for the same audio, sqrt(2) for unrelated signals of equal level).
* Mean frame     (frame models) the median over generated time frames f_k of the cosine
                 <f_k, m> / (||f_k|| ||m||) with the training split's mean frame m, and the
                 output's RMS level relative to the training audio's (dB).

Flags (named thresholds below; see ``audit_audio``): ``silent`` (exactly: the tail level is
below SILENCE_DB), ``noise``, ``copied``, ``identical``, ``unpitched`` (``tunelab.metrics.pitch``:
little pitch where the training audio is pitched) (and ``training_primer``, passed in by the
caller); ``mean_frame`` from ``mean_frame_dominance`` for frame models.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from scipy import fft as sfft
from scipy.signal import resample_poly

from tunelab.metrics import pitch

FRAME_S = 0.05  # RMS envelope frame (seconds)
SILENCE_DB = -50.0  # a frame (or a copy window) quieter than this (dBFS) is silent
SILENT_TAIL_S = 0.5  # "fell silent for good" needs at least this much silence at the end
FLATNESS_FRAME_S = 0.064  # STFT frame for the spectral flatness (rounded up to a power of 2)
COPY_WINDOW_S = 1.0  # copy audit window...
COPY_HOP_S = 0.5  # ...and hop (seconds)
COARSE_SR = 4000  # coarse copy search rate (Hz)
COPY_CANDIDATES = 3  # training blocks refined at full rate per window

# Flag thresholds.
NOISE_FLATNESS = 0.3  # noise: mean spectral flatness at least this (white noise ~0.56)
COPY_NCC = 0.9  # a window is copied when its best ncc with training reaches this...
COPY_MIN_SECONDS = 1.0  # ...and copied: the copied windows cover at least this many seconds
IDENTICAL_SIMILARITY = 0.9  # identical: sameness with another stream at least this
TAIL_S = 1.0  # silent: the RMS of the last TAIL_S seconds of the written WAV below SILENCE_DB
MEAN_FRAME_COSINE = 0.9  # mean_frame: median cosine of generated frames with the mean frame
ENVELOPE_S = 0.5  # the RMS envelope recorded in frame models' audits (seconds per value)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).ravel()


def _db(rms) -> np.ndarray:
    return 20 * np.log10(np.maximum(rms, 1e-10))


def rms_envelope(x, sr: int, frame_s: float = FRAME_S) -> np.ndarray:
    """float64[K]: dBFS of non-overlapping frames of ``frame_s`` seconds (a trailing partial
    frame is dropped unless x is shorter than one frame): 20 log10(max(rms, 1e-10))."""
    x = _f64(x)
    F = max(1, int(round(frame_s * sr)))
    if len(x) == 0:
        return np.zeros(0)
    K = max(1, len(x) // F)
    frames = x[: K * F].reshape(K, -1) if len(x) >= F else x[None]
    return _db(np.sqrt(np.mean(frames**2, axis=1)))


def silence(x, sr: int) -> dict:
    """``silence_fraction``: share of FRAME_S frames below SILENCE_DB (1.0 for empty audio);
    ``silent_from_seconds``: end of the last non-silent frame when every frame after it is
    silent and that silence lasts at least SILENT_TAIL_S (0.0 when all frames are silent),
    else None."""
    env = rms_envelope(x, sr)
    if len(env) == 0:
        return {"silence_fraction": 1.0, "silent_from_seconds": 0.0}
    quiet = env < SILENCE_DB
    loud = np.flatnonzero(~quiet)
    end = 0 if len(loud) == 0 else int(loud[-1]) + 1
    tail = (len(env) - end) * FRAME_S
    silent_from = end * FRAME_S if (end == 0 or tail >= SILENT_TAIL_S - 1e-9) else None
    return {"silence_fraction": float(quiet.mean()), "silent_from_seconds": silent_from}


def spectral_flatness(x, sr: int) -> float:
    """Mean over non-silent STFT frames (Hann, 2**ceil(log2(FLATNESS_FRAME_S * sr)) samples,
    hop half that) of exp(mean_f ln P_f) / mean_f P_f, P_f = |X_f|^2 + 1e-12 for f = 1..N/2
    (DC left out). 0.0 when no frame is above SILENCE_DB."""
    x = _f64(x)
    n = 1 << int(np.ceil(np.log2(max(FLATNESS_FRAME_S * sr, 16))))
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 2]
    loud = _db(np.sqrt(np.mean(frames**2, axis=1))) >= SILENCE_DB
    if not loud.any():
        return 0.0
    P = np.abs(sfft.rfft(frames[loud] * np.hanning(n), axis=1)[:, 1:]) ** 2 + 1e-12
    flat = np.exp(np.mean(np.log(P), axis=1)) / np.mean(P, axis=1)
    return float(flat.mean())


def _windows(n: int, sr: int) -> tuple[np.ndarray, int]:
    """Start samples and length W of the copy windows of an n-sample signal (one window of
    the whole signal when it is shorter than COPY_WINDOW_S)."""
    W = int(round(COPY_WINDOW_S * sr))
    if n < W:
        return (np.zeros(1, np.int64) if n > 1 else np.zeros(0, np.int64)), n
    hop = max(1, int(round(COPY_HOP_S * sr)))
    return np.arange(0, n - W + 1, hop, dtype=np.int64), W


class TrainingAudio:
    """Copy index of the training pieces: full-rate pieces (float32), and the decimated
    concatenation with, per coarse window length, the inverse segment norms (0 for segments
    crossing a piece end or quieter than SILENCE_DB) and the FFTs of overlap-save blocks."""

    def __init__(self, pieces, sr: int):
        self.sr = sr
        self.pieces = [np.asarray(p, dtype=np.float32).ravel() for p in pieces]
        self.q = max(1, sr // COARSE_SR)
        coarse = [
            (resample_poly(p, 1, self.q) if self.q > 1 else p).astype(np.float32)
            for p in self.pieces
        ]
        lens = np.array([len(c) for c in coarse], np.int64)
        self.cstart = np.concatenate([[0], np.cumsum(lens)])
        self.coarse = np.concatenate(coarse) if coarse else np.zeros(0, np.float32)
        self._cache: dict[int, tuple] = {}

    @property
    def seconds(self) -> float:
        return sum(len(p) for p in self.pieces) / self.sr

    @cached_property
    def pitch_salience(self) -> float | None:
        """The training audio's pitch salience (``pitch.data_pitch_salience``; computed once)."""
        return pitch.data_pitch_salience(self.pieces, self.sr)

    def _blocks(self, L: int) -> tuple:
        """(inverse norms float32[T], nfft, advance A, block FFTs complex64[B, nfft/2+1])."""
        if L not in self._cache:
            t = self.coarse
            T = len(t)
            c1 = np.concatenate([[0.0], np.cumsum(t, dtype=np.float64)])
            c2 = np.concatenate([[0.0], np.cumsum(np.square(t, dtype=np.float64))])
            inv = np.zeros(T, np.float32)
            if T >= L:
                s1, s2 = c1[L:] - c1[:-L], c2[L:] - c2[:-L]
                energy = s2 - s1 * s1 / L  # sum of squares about the segment mean
                piece = np.searchsorted(self.cstart, np.arange(T - L + 1), side="right")
                inside = np.arange(T - L + 1) + L <= self.cstart[piece]
                ok = inside & (energy > L * 10 ** (SILENCE_DB / 10))
                inv[: T - L + 1][ok] = 1 / np.sqrt(energy[ok])
            nfft = 1 << int(np.ceil(np.log2(8 * L)))
            A = nfft - L + 1
            nb = max(1, -(-T // A))
            padded = np.pad(t, (0, nb * A + nfft - T))
            blocks = np.lib.stride_tricks.sliding_window_view(padded, nfft)[::A][:nb]
            self._cache = {L: (inv, nfft, A, sfft.rfft(blocks, axis=1))}  # keep one length
        return self._cache[L]

    def copy_audit(self, x) -> dict:
        """Copies of training audio in x (formulas in the module docstring).

        Returns ``max_xcorr`` (best full-rate ncc of any non-silent window, 0.0 if none),
        ``copied_seconds`` (length of the union of the windows with ncc >= COPY_NCC),
        ``copy_source`` ({"piece", "offset_seconds" in that piece, "at_seconds" in x} of the
        best window; None if none) and ``copy_windows`` (non-silent windows searched).
        """
        x = _f64(x)
        sr, q = self.sr, self.q
        out = {"max_xcorr": 0.0, "copied_seconds": 0.0, "copy_source": None, "copy_windows": 0}
        starts, W = _windows(len(x), sr)
        if len(starts) == 0:
            return out
        wins = np.stack([x[s : s + W] for s in starts])
        wins -= wins.mean(axis=1, keepdims=True)
        norms = np.sqrt(np.sum(wins**2, axis=1))
        live = norms > np.sqrt(W) * 10 ** (SILENCE_DB / 20)
        starts, wins, norms = starts[live], wins[live], norms[live]
        out["copy_windows"] = len(starts)
        L = W // q
        if len(starts) == 0 or L < 2 or len(self.coarse) < L:
            return out
        xc = (resample_poly(x, 1, q) if q > 1 else x).astype(np.float32)
        wc = np.stack([xc[s // q : s // q + L] for s in starts])
        wc -= wc.mean(axis=1, keepdims=True)
        wcn = np.maximum(np.sqrt(np.sum(np.square(wc, dtype=np.float64), axis=1)), 1e-10)
        inv, nfft, A, TB = self._blocks(L)
        Wf = np.conj(sfft.rfft(wc, nfft, axis=1))
        nb = len(TB)
        best = np.zeros((len(starts), nb), np.float32)
        arg = np.zeros((len(starts), nb), np.int64)
        scale = (1 / wcn).astype(np.float32)[:, None]
        for b in range(nb):
            corr = sfft.irfft(TB[b][None] * Wf, nfft, axis=1)[:, :A]
            seg = inv[b * A : (b + 1) * A]
            ncc = corr[:, : len(seg)] * seg * scale
            arg[:, b] = np.argmax(ncc, axis=1)
            best[:, b] = ncc[np.arange(len(starts)), arg[:, b]]
        top = np.argsort(-best, axis=1)[:, :COPY_CANDIDATES]
        scores = np.zeros(len(starts))
        where = [None] * len(starts)
        for i in range(len(starts)):
            for b in top[i]:
                lag = int(b * A + arg[i, b])
                if best[i, b] <= 0 or inv[lag] == 0:
                    continue
                r, p, off = self._refine(wins[i], norms[i], lag)
                if r > scores[i]:
                    scores[i], where[i] = r, (p, off)
        i = int(np.argmax(scores))
        out["max_xcorr"] = float(scores[i])
        if where[i] is not None:
            p, off = where[i]
            out["copy_source"] = {
                "piece": p,
                "offset_seconds": off / sr,
                "at_seconds": float(starts[i]) / sr,
            }
        hit = starts[scores >= COPY_NCC]
        if len(hit):  # union of [s, s + W) over the copied windows
            ends = np.maximum.accumulate(hit + W)
            gaps = np.maximum(hit[1:] - ends[:-1], 0).sum()
            out["copied_seconds"] = float(ends[-1] - hit[0] - gaps) / sr
        return out

    def _refine(self, w: np.ndarray, wn: float, lag: int) -> tuple[float, int, int]:
        """Best full-rate (float64) ncc of window w (mean removed, norm wn) near coarse lag."""
        p = int(np.searchsorted(self.cstart, lag, side="right")) - 1
        piece, W, q = self.pieces[p], len(w), self.q
        guess = (lag - int(self.cstart[p])) * q
        a = max(0, guess - 2 * q - 1)
        b = min(len(piece) - W, guess + 2 * q + 1)
        if b < a:
            return 0.0, p, 0
        seg = piece[a : b + W].astype(np.float64)
        n = sfft.next_fast_len(len(seg), real=True)  # FFT, not BLAS: no thread spinning
        num = sfft.irfft(sfft.rfft(seg, n) * np.conj(sfft.rfft(w, n)), n)[: b - a + 1]
        c1 = np.concatenate([[0.0], np.cumsum(seg)])
        c2 = np.concatenate([[0.0], np.cumsum(seg * seg)])
        s1, s2 = c1[W:] - c1[:-W], c2[W:] - c2[:-W]
        energy = np.maximum(s2 - s1 * s1 / W, W * 10 ** (SILENCE_DB / 10))
        ncc = num / (wn * np.sqrt(energy))
        k = int(np.argmax(ncc))
        return float(ncc[k]), p, a + k


def as_written(x) -> np.ndarray:
    """float64: x as a 16-bit PCM WAV of ``tunelab.data.audio.synth.write_wav`` reads back: float32,
    clipped to [-1, 1]; libsndfile stores floor(32768 x) (measured; the tests compare with a
    written file), reading divides by 32768."""
    x32 = np.clip(np.asarray(x, np.float32).ravel(), -1.0, 1.0).astype(np.float64)
    return np.clip(np.floor(x32 * 32768.0), -32768, 32767) / 32768.0


def tail_dbfs(x, sr: int, seconds: float = TAIL_S) -> float:
    """dBFS of the RMS of the last ``seconds`` of x as written (all of x when shorter; -200
    for empty audio)."""
    x = as_written(x)[-max(1, int(round(seconds * sr))) :]
    return float(_db(np.sqrt(np.mean(x * x)) if len(x) else 0.0))


def distances(streams) -> np.ndarray:
    """float64[n, n]: d(a, b) of the module docstring for every pair (0 on the diagonal)."""
    xs = [_f64(s) for s in streams]
    n = len(xs)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            m = min(len(xs[i]), len(xs[j]))
            a, b = xs[i][:m], xs[j][:m]
            scale = np.sqrt(max((a @ a + b @ b) / 2, 1e-20))
            d[i, j] = d[j, i] = float(np.sqrt(np.sum((a - b) ** 2)) / scale) if m else 0.0
    return d


def mean_frame_dominance(frames, mean_frame, x, data_rms: float) -> dict:
    """``mean_frame_cosine``: median over the time frames [K, S] (all-zero frames skipped, 0.0
    when none is left) of their cosine with ``mean_frame`` [S]; ``energy_vs_data_db``: the RMS
    level of the audio x relative to ``data_rms`` (the training audio's RMS)."""
    fr = np.asarray(frames, np.float64).reshape(-1, len(mean_frame))
    m = np.asarray(mean_frame, np.float64)
    norms = np.linalg.norm(fr, axis=1) * max(np.linalg.norm(m), 1e-20)
    live = norms > 0
    cos = float(np.median(fr[live] @ m / norms[live])) if live.any() else 0.0
    x = _f64(x)
    level = np.sqrt(np.mean(x * x)) if len(x) else 0.0
    return {
        "mean_frame_cosine": cos,
        "energy_vs_data_db": float(_db(level) - _db(max(data_rms, 1e-10))),
    }


def sameness(streams, sr: int) -> np.ndarray:
    """float64[n, n]: s(a, b) of the module docstring for every pair (1 on the diagonal).
    Streams with no frame above SILENCE_DB match only each other (s = 1) and nothing else."""
    xs = [_f64(s) for s in streams]
    n = len(xs)
    sim = np.eye(n)
    if n < 2:
        return sim
    quiet = [bool(np.all(rms_envelope(x, sr) < SILENCE_DB)) for x in xs]
    xs = [x - x.mean() if len(x) else x for x in xs]
    norms = [float(np.sqrt(np.sum(x * x))) for x in xs]
    nfft = sfft.next_fast_len(2 * max(len(x) for x in xs) + 1, real=True)
    F = [sfft.rfft(x, nfft) for x in xs]
    for i in range(n):
        for j in range(i + 1, n):
            if quiet[i] or quiet[j]:
                s = 1.0 if quiet[i] and quiet[j] else 0.0
            else:
                c = sfft.irfft(F[i] * np.conj(F[j]), nfft)
                s = float(np.max(np.abs(c)) / (norms[i] * norms[j]))
            sim[i, j] = sim[j, i] = min(s, 1.0)
    return sim


def audit_audio(
    streams, sr: int, index: TrainingAudio | None = None, primer_from_training: bool = False
) -> list[dict]:
    """One dict per stream: ``seconds``, ``rms_dbfs`` (whole stream), ``last_second_dbfs``,
    ``silence_fraction``, ``silent_from_seconds``, ``spectral_flatness``, ``pitch_salience``
    and ``data_pitch_salience`` (the index's; None without one, and then ``pitch_audited`` is
    False: unpitched was not judged); with an index the ``copy_audit`` keys; with n > 1 streams
    ``max_similarity``, ``most_similar`` (index of the most similar other stream) and
    ``min_distance``; and ``flags``: sorted subset of silent / noise / copied / identical /
    unpitched / training_primer (thresholds at the top of the module)."""
    xs = [_f64(s) for s in streams]
    sim = sameness(xs, sr) if len(xs) > 1 else None
    dist = distances(xs) if len(xs) > 1 else None
    audits = []
    for i, x in enumerate(xs):
        a = {
            "seconds": len(x) / sr,
            "rms_dbfs": float(_db(np.sqrt(np.mean(x * x)) if len(x) else 0.0)),
            "last_second_dbfs": tail_dbfs(x, sr),
        }
        a |= silence(x, sr)
        a["spectral_flatness"] = spectral_flatness(x, sr)
        a["pitch_salience"] = pitch.pitch_salience(x, sr)
        a["data_pitch_salience"] = None if index is None else index.pitch_salience
        a["pitch_audited"] = index is not None
        if index is not None:
            a |= index.copy_audit(x)
        if sim is not None:
            others = np.where(np.arange(len(xs)) == i, -np.inf, sim[i])
            j = int(np.argmax(others))
            a["max_similarity"], a["most_similar"] = float(sim[i, j]), j
            a["min_distance"] = float(np.min(np.where(np.arange(len(xs)) == i, np.inf, dist[i])))
        flags = set()
        # exactly what a plain measurement of the written WAV finds: it ends in silence
        if a["last_second_dbfs"] < SILENCE_DB:
            flags.add("silent")
        if a["spectral_flatness"] >= NOISE_FLATNESS:
            flags.add("noise")
        if a.get("copied_seconds", 0.0) >= COPY_MIN_SECONDS:
            flags.add("copied")
        if a.get("max_similarity", 0.0) >= IDENTICAL_SIMILARITY:
            flags.add("identical")
        if pitch.unpitched(a["pitch_salience"], a["data_pitch_salience"]):
            flags.add("unpitched")
        if primer_from_training:
            flags.add("training_primer")
        a["flags"] = sorted(flags)
        audits.append(a)
    return audits


def thresholds() -> dict:
    """The flag thresholds (and the settings they depend on), recorded in every audit file."""
    names = ("SILENCE_DB", "SILENT_TAIL_S", "NOISE_FLATNESS", "COPY_NCC")
    names += ("COPY_MIN_SECONDS", "COPY_WINDOW_S", "COPY_HOP_S", "IDENTICAL_SIMILARITY")
    names += ("TAIL_S", "MEAN_FRAME_COSINE")
    return {k: globals()[k] for k in names} | pitch.thresholds()
