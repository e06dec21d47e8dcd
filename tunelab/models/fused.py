"""The driver shared by the fused numba generators (``wavenet_gen.FusedWaveNet``,
``samplernn_gen.FusedSampleRNN``): input checks, threading and the prime/run protocol.

A subclass sets ``_weights``, ``n``, ``classes``, ``threads`` (``_threads``), ``pos = 0`` and
``last = None``, and gives its kernel (``_kernel``, contract of ``wavenet_gen._steps``: it
advances streams s0..s1-1 by N samples, updating the state arrays in place) and the
kernel's state arrays (``_state()``). ``_primed`` is the hook for how much of a primer can
matter (all of it for an RNN; the last receptive_field - 1 samples for a WaveNet).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def check_weights(weights: str) -> bool:
    """True for "bfloat16", False for "float32"; anything else is an error."""
    if weights not in ("float32", "bfloat16"):
        raise ValueError(f"weights must be 'float32' or 'bfloat16', got {weights!r}")
    return weights == "bfloat16"


class FusedDriver:
    """Resumable fused generator for n streams: ``prime(x)`` feeds samples without sampling;
    ``run(first, uniforms, T)`` samples N more per stream, and can be called again with
    first=None to continue where it stopped."""

    _kernel = None  # the @njit kernel, wrapped in staticmethod by the subclass
    n: int
    pos: int
    classes: int
    threads: int
    last: np.ndarray | None  # the last sampled values, fed by run(None, ...)

    def _state(self) -> tuple:
        """The kernel's state arrays, updated in place."""
        raise NotImplementedError

    def _primed(self, x: np.ndarray) -> np.ndarray:
        """The part of a primer int64[n, P] that can reach a later output (default: all)."""
        return x

    @staticmethod
    def _threads(n: int, threads: int | None) -> int:
        """Blocks of streams run at once (default: the usable cores, at most n)."""
        return max(1, min(n, threads or len(os.sched_getaffinity(0))))

    def _call(self, inputs: np.ndarray, feed: bool, uniforms: np.ndarray, temperature: float):
        out = np.empty(uniforms.shape, np.int64)
        args = (inputs, feed, uniforms, float(temperature), out, self.pos, self._weights)
        state = self._state()
        n, k, steps = self.n, self.threads, self._kernel
        bounds = [(i * n // k, (i + 1) * n // k) for i in range(k)]
        if k == 1:
            steps(0, n, *args, *state)
        else:  # streams are independent: each block runs all N steps without synchronising
            with ThreadPoolExecutor(k - 1) as pool:
                jobs = [pool.submit(steps, s0, s1, *args, *state) for s0, s1 in bounds[1:]]
                steps(*bounds[0], *args, *state)
                for job in jobs:
                    job.result()
        self.pos += inputs.shape[1] if feed else uniforms.shape[1]
        return out

    def _ids(self, x, ndim: int) -> np.ndarray:
        x = np.ascontiguousarray(x.cpu().numpy() if isinstance(x, torch.Tensor) else x, np.int64)
        if x.ndim != ndim or x.shape[0] != self.n:
            raise ValueError(f"expected {ndim}-d samples with {self.n} rows, got {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= self.classes):
            raise ValueError("sample ids out of range")
        return x

    def prime(self, x: np.ndarray) -> None:
        """Feed samples int[n, P] unsampled (a primer, or silence to start from a steady
        state); only ``_primed(x)`` is fed."""
        x = np.ascontiguousarray(self._primed(self._ids(x, 2)))
        if x.shape[1]:
            self._call(x, True, np.empty((self.n, 0)), 0.0)
        self.last = None

    def run(self, first: np.ndarray | None, uniforms: np.ndarray, temperature: float) -> np.ndarray:
        """Sample N per stream -> int64[n, N]. first: int[n], or None to continue after the
        previous run(); uniforms: float[n, N] in [0, 1)."""
        if first is None:
            if self.last is None:
                raise ValueError("first=None continues a previous run(); nothing to continue")
            first = self.last
        first = self._ids(first, 1)[:, None]
        u = np.ascontiguousarray(uniforms, np.float64)
        if u.ndim != 2 or u.shape[0] != self.n:
            raise ValueError(f"uniforms must be [{self.n}, N], got {u.shape}")
        if u.shape[1] == 0:
            return np.empty((self.n, 0), np.int64)
        out = self._call(first, False, u, temperature)
        self.last = out[:, -1].copy()
        return out
