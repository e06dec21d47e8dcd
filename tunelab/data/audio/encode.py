"""Pure audio encoders: int16 storage, 8-bit mu-law, and frames in time or FFT
(real/imaginary) form with an exact overlap-add inverse. numpy (and torch for mu-law)
only: no file decoding here, so training and generation never import the decoders."""

from __future__ import annotations

import numpy as np


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
