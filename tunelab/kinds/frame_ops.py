"""Pure torch operations on audio frames: cutting, the FFT form, joining, the STFT loss.

A signal x [N] is cut into K = 1 + (N - S) // H whole frames of S samples every H samples.
Features per frame: the S samples ("time"), or the rfft real parts then imaginary parts
("fft", 2 (S/2 + 1) numbers, as in GRUV); ``to_time`` inverts the FFT form exactly (up to
float rounding). Joining frames back into a signal:

* ``ola``: windowed overlap-add, y[n] = sum_k w[n - kH] f_k[n - kH] / sum_k w[n - kH] with a
  periodic Hann window w (constant sum at H = S/2, so frames that disagree cross-fade), and the
  plain mean of the frames where that sum is 0 (the first sample). Fed the true frames of a
  signal it returns the signal exactly, wherever a frame covers it.
* ``concat``: the first H samples of each frame, then the rest of the last frame (at H = S,
  the original GRUV join: frames end to end).

Differentiable throughout, so the STFT loss can compare overlap-added waveforms.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tunelab.models.layers import stft_distance

JOINS = ("ola", "concat")


def cut(x: torch.Tensor, size: int, hop: int, form: str = "time") -> torch.Tensor:
    """x: FloatTensor[..., N] -> features FloatTensor[..., K, D] of its whole frames."""
    fr = x.unfold(-1, size, hop)
    if form == "time":
        return fr
    if form != "fft":
        raise ValueError(f"frame form must be 'time' or 'fft', not {form!r}")
    spec = torch.fft.rfft(fr.double(), dim=-1)
    return torch.cat([spec.real, spec.imag], dim=-1).to(x.dtype)


def to_time(f: torch.Tensor, size: int, form: str = "time") -> torch.Tensor:
    """Features FloatTensor[..., K, D] -> time frames FloatTensor[..., K, size]."""
    if form == "time":
        return f
    k = size // 2 + 1
    return torch.fft.irfft(torch.complex(f[..., :k], f[..., k:]), n=size, dim=-1)


def n_samples(k: int, size: int, hop: int) -> int:
    """Samples covered by k frames."""
    return (k - 1) * hop + size if k else 0


def join(frames: torch.Tensor, hop: int, how: str = "ola") -> torch.Tensor:
    """Time frames FloatTensor[B, K, S] -> FloatTensor[B, (K - 1) * hop + S] (module docstring)."""
    B, K, S = frames.shape
    if how == "concat":
        head = frames[:, :-1, :hop].reshape(B, -1)
        return torch.cat([head, frames[:, -1]], dim=1)
    if how != "ola":
        raise ValueError(f"join must be one of {', '.join(JOINS)}, not {how!r}")
    w = torch.hann_window(S, periodic=True, dtype=frames.dtype, device=frames.device)
    L = n_samples(K, S, hop)

    def fold(v: torch.Tensor) -> torch.Tensor:  # [B, K, S] -> overlap-added [B, L]
        return F.fold(v.transpose(1, 2), (1, L), (1, S), stride=(1, hop)).reshape(len(v), L)

    num, den = fold(frames * w), fold(w.expand(1, K, S))
    plain = fold(frames) / fold(torch.ones(1, K, S, dtype=frames.dtype, device=frames.device))
    covered = den > 1e-6
    return torch.where(covered, num / den.clamp(min=1e-6), plain)


def stft_loss(
    a: torch.Tensor, b: torch.Tensor, sizes: list[int], floor: float = 0.0
) -> torch.Tensor:
    """Multi-resolution STFT loss of prediction a against target b, FloatTensor[B, L] -> [B]:
    ``models.layers.stft_distance`` over the resolutions that fit in L (uncentred frames,
    magnitudes floored at 1e-7). ``floor``: the RMS of the white noise under which bins count
    as silent; 0 is the paper's form, whose log term is ruled by the inaudible bins
    (benchmarks.md, "frame-gru-stft: why it did not learn")."""
    return stft_distance(a, b, sizes, floor)
