"""What the fused numba generators (``wavenet_gen.FusedWaveNet``, ``samplernn_gen.FusedSampleRNN``)
share: the sampling rule, the numba building blocks of their kernels, the packing of weights
for them, and the driver (input checks, threading, the prime/run protocol).

The sampling rule: every generator takes its randomness as explicit uniforms u[B, N] in
[0, 1), so for the same inputs the PyTorch references and the kernels produce the same
samples. Temperature 0 is argmax; otherwise the inverse CDF of softmax(z / T) at u, i.e. the
first class whose running sum of exp((z - max z) / T) (in float64) exceeds u * total.

Kernel contract (``FusedDriver._kernel``, an ``@njit(nogil=True)`` function)::

    kernel(s0, s1, part, inputs, feed, uniforms, temperature, out, pos, weights, *state)

advances streams s0..s1-1 by N samples (part: which slice of split matrices this thread
runs, ``fused_parts``; 0 when streams are not split). inputs: int64[B, N] samples to feed (feed=True,
priming: no sampling, out untouched) or int64[B, 1] the first input (feed=False: sample N
into out int64[B, N], feeding each back); uniforms float64[B, N]; pos: samples fed before;
weights: the tuple of arrays the generator packed; state: its arrays, updated in place
(``_state()`` is called once per call, so it may hand out fresh scratch arrays). It
releases the GIL, so blocks of streams run on plain threads at once (not numba's
``prange``, whose OpenMP workers spin and starve PyTorch's on a small machine). Kernels are
compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
from numba import types
from numba.extending import overload
from torch import nn

from tunelab.models.fused_bf16 import MATMUL as matmul_dot
from tunelab.models.fused_bf16 import bits_as_f32
from tunelab.models.fused_int8 import quantise_int8, round_int8
from tunelab.models.fused_vnni import MATMUL as matmul_vnni

# -- the sampling rule, in PyTorch (the references) and in numba (the kernels) ---------------


def sample_logits(logits: torch.Tensor, temperature: float, u: torch.Tensor) -> torch.Tensor:
    """logits FloatTensor[B, V], u FloatTensor[B] in [0, 1) -> LongTensor[B] (rule in module doc)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    z = logits.double()
    p = torch.exp((z - z.max(dim=-1, keepdim=True).values) / temperature)
    c = torch.cumsum(p, dim=-1)
    target = u.to(c.device, torch.float64)[:, None] * c[:, -1:]
    # c is non-decreasing: the count of entries <= target is the first index where c > target.
    return (c <= target).sum(dim=-1).clamp_(max=logits.shape[-1] - 1)


@numba.njit(cache=True, error_model="numpy")
def sample_row(z, temperature, u):
    """The sampling rule for one row of logits z[V] (float32) and one uniform u."""
    V = z.shape[0]
    best = 0
    for i in range(1, V):
        if z[i] > z[best]:
            best = i
    if temperature == 0.0:
        return best
    m = np.float64(z[best])
    e = np.empty(V, np.float64)  # each exp once: the scan below adds the same values again
    total = 0.0
    for i in range(V):
        e[i] = math.exp((np.float64(z[i]) - m) / temperature)
        total += e[i]
    target = u * total
    c = 0.0
    for i in range(V):
        c += e[i]
        if c > target:
            return i
    return V - 1


# -- the kernels' building blocks --------------------------------------------------------------

_TANH_CLAMP = np.float32(7.90531110763549805)


@numba.njit(cache=True, inline="always")
def tanh32(x):
    """float32 tanh as a rational function (Eigen's fast tanh, |error| < 4e-7): unlike
    math.tanh it vectorises, and the gates would otherwise cost as much as the matmuls."""
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q


@numba.njit(cache=True, inline="always")
def sigmoid32(x):
    """float32 sigmoid through tanh32: sigmoid(x) = 1/2 + tanh(x/2)/2."""
    half = np.float32(0.5)
    return half + half * tanh32(half * x)


_FM = {"contract", "reassoc"}  # FMA and reordered sums: lets LLVM vectorise the dot products


@numba.njit(cache=True, fastmath=_FM)
def matmul(X, WT, Z):
    """Z[m, n] = X[m, k] @ WT[n, k].T for m streams (X, Z float32; WT float32, or int8 that
    each load converts: ``matmul_i8``).

    Written out rather than np.dot: BLAS (with threads of its own) is slower for these small
    shapes and oversubscribes the cores when streams run on several threads. Dot products
    over contiguous rows, 4 outputs x 2 streams at a time: every weight load feeds two
    streams, every input load four outputs.
    """
    m, k = X.shape
    n = WT.shape[0]
    n4 = n - n % 4
    for j in range(0, m - m % 2, 2):
        for o in range(0, n4, 4):
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0)
            for i in range(k):
                x, y = X[j, i], X[j + 1, i]
                w0, w1 = np.float32(WT[o, i]), np.float32(WT[o + 1, i])
                w2, w3 = np.float32(WT[o + 2, i]), np.float32(WT[o + 3, i])
                a0 += x * w0
                a1 += x * w1
                a2 += x * w2
                a3 += x * w3
                b0 += y * w0
                b1 += y * w1
                b2 += y * w2
                b3 += y * w3
            Z[j, o], Z[j, o + 1], Z[j, o + 2], Z[j, o + 3] = a0, a1, a2, a3
            Z[j + 1, o], Z[j + 1, o + 1], Z[j + 1, o + 2], Z[j + 1, o + 3] = b0, b1, b2, b3
        for o in range(n4, n):
            a0 = b0 = np.float32(0)
            for i in range(k):
                w0 = np.float32(WT[o, i])
                a0 += X[j, i] * w0
                b0 += X[j + 1, i] * w0
            Z[j, o], Z[j + 1, o] = a0, b0
    if m % 2:
        j = m - 1
        for o in range(0, n4, 4):
            a0 = a1 = a2 = a3 = np.float32(0)
            for i in range(k):
                x = X[j, i]
                a0 += x * np.float32(WT[o, i])
                a1 += x * np.float32(WT[o + 1, i])
                a2 += x * np.float32(WT[o + 2, i])
                a3 += x * np.float32(WT[o + 3, i])
            Z[j, o], Z[j, o + 1], Z[j, o + 2], Z[j, o + 3] = a0, a1, a2, a3
        for o in range(n4, n):
            a0 = np.float32(0)
            for i in range(k):
                a0 += X[j, i] * np.float32(WT[o, i])
            Z[j, o] = a0


@numba.njit(cache=True, fastmath=_FM)
def matmul_i8(X, Q, s, Z):
    """Z[m, n] = X[m, k] @ (Q[n, k] * s[n]).T, Q int8 (``fused_int8``): matmul's loops with
    the int8 -> float32 conversion in the loads (a sign extension and a convert per 16
    weights, vectorised), then one scale per output."""
    matmul(X, Q, Z)
    for j in range(Z.shape[0]):
        for o in range(Z.shape[1]):
            Z[j, o] *= s[o]


@numba.njit(cache=True, fastmath=_FM)
def matmul_bf16(X, WP, Z):
    """matmul with bfloat16 weights packed in pairs (``pack``): WP[n, k//2 (+1 if k is odd)]
    uint32 holds w[o, i] in its high half and w[o, i + k//2] in its low half. The high half
    is a float32 once masked, the low half once shifted: two cheap ops per two weights, which
    matters as the single-stream case is bound by weight bytes, then by these ops."""
    m, k = X.shape
    n = WP.shape[0]
    h = k // 2
    mask, shift = np.uint32(0xFFFF0000), np.uint32(16)
    n4 = n - n % 4
    for j in range(m):
        for o in range(0, n4, 4):
            a0 = a1 = a2 = a3 = np.float32(0)
            for i in range(h):
                x, y = X[j, i], X[j, i + h]
                u0, u1, u2, u3 = WP[o, i], WP[o + 1, i], WP[o + 2, i], WP[o + 3, i]
                a0 += x * bits_as_f32(u0 & mask) + y * bits_as_f32(u0 << shift)
                a1 += x * bits_as_f32(u1 & mask) + y * bits_as_f32(u1 << shift)
                a2 += x * bits_as_f32(u2 & mask) + y * bits_as_f32(u2 << shift)
                a3 += x * bits_as_f32(u3 & mask) + y * bits_as_f32(u3 << shift)
            Z[j, o], Z[j, o + 1], Z[j, o + 2], Z[j, o + 3] = a0, a1, a2, a3
        for o in range(n4, n):
            a0 = np.float32(0)
            for i in range(h):
                u0 = WP[o, i]
                a0 += X[j, i] * bits_as_f32(u0 & mask) + X[j, i + h] * bits_as_f32(u0 << shift)
            Z[j, o] = a0
        if k % 2:  # the odd last column sits alone in the high half of an extra column
            for o in range(n):
                Z[j, o] += X[j, k - 1] * bits_as_f32(WP[o, h] & mask)


def mm(X, W, Z, scratch=None):
    """Z = X @ W.T inside a kernel: W float32, packed bfloat16 pairs (uint32), an int8 pair
    (Q, scales) (``fused_int8``), bfloat16 blocks for dot products (uint16: X is rounded to
    bfloat16 too, ``fused_bf16``) or an int8 4-tuple for dot products (X quantised too,
    ``fused_vnni``); the rounded X goes to scratch uint32[>= m, >= k/2 + 1] when given (a
    kernel allocates it once rather than once per matmul)."""


@overload(mm)
def _mm_impl(X, W, Z, scratch=None):
    no_scratch = scratch is None or isinstance(scratch, (types.NoneType, types.Omitted))
    if isinstance(W, types.BaseTuple) and len(W) == 4:  # int8 dot products (``fused_vnni``)
        if no_scratch:
            return lambda X, W, Z, scratch=None: matmul_vnni(
                X,
                W[0],
                W[1],
                W[2],
                W[3][0],
                Z,
                np.empty((X.shape[0], W[0].shape[1] + 1), np.uint32),
            )
        return lambda X, W, Z, scratch=None: matmul_vnni(X, W[0], W[1], W[2], W[3][0], Z, scratch)
    if isinstance(W, types.BaseTuple):
        return lambda X, W, Z, scratch=None: matmul_i8(X, W[0], W[1], Z)
    if W.dtype == types.uint32:
        return lambda X, W, Z, scratch=None: matmul_bf16(X, W, Z)
    if W.dtype == types.uint16:  # bfloat16 blocks for dot products (``fused_bf16``)
        if no_scratch:
            return lambda X, W, Z, scratch=None: matmul_dot(
                X, W, Z, np.empty((X.shape[0], W.shape[1]), np.uint32)
            )
        return lambda X, W, Z, scratch=None: matmul_dot(X, W, Z, scratch)
    return lambda X, W, Z, scratch=None: matmul(X, W, Z)


def at(W, i):
    """W[i] inside a kernel, for a weights array or an int8 pair (Q, scales) alike."""


@overload(at)
def _at_impl(W, i):
    if isinstance(W, types.BaseTuple) and len(W) == 4:  # the scale is the same for every i
        return lambda W, i: (W[0][i], W[1][i], W[2][i], W[3])
    if isinstance(W, types.BaseTuple):
        return lambda W, i: (W[0][i], W[1][i])
    return lambda W, i: W[i]


# -- packing weights for a kernel ----------------------------------------------------------------


WEIGHTS = ("float32", "bfloat16", "int8")  # how a fused generator can store its matrices


def pack(t: torch.Tensor, weights: str = "float32"):
    """A kernel's copy of a tensor: a float32 array; for weights [..., n, k] as "bfloat16",
    rounded and packed in pairs as matmul_bf16 reads them: uint32[..., n, k//2 (+1 if k is
    odd)]; as "int8", the pair (Q int8[..., n, k], scales float32[..., n]) matmul_i8 reads."""
    t = t.detach().to("cpu", torch.float32).contiguous()
    if weights == "int8":
        return pack_int8(*quantise_int8(t))
    if weights != "bfloat16":
        return t.numpy()
    b = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).astype(np.uint32)
    h = b.shape[-1] // 2
    pairs = [(b[..., :h] << 16) | b[..., h : 2 * h]]
    if b.shape[-1] % 2:
        pairs.append(b[..., 2 * h :] << 16)
    return np.ascontiguousarray(np.concatenate(pairs, axis=-1))


def pack_int8(q: torch.Tensor, s: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The pair matmul_i8 reads, from int8 values q (any float dtype) and their row scales s,
    as ``quantise_int8`` gives them or cut afterwards (scales of whole rows kept)."""
    return q.to(torch.int8).contiguous().numpy(), s.to(torch.float32).contiguous().numpy()


def check_weights(weights: str) -> str:
    """weights if it is one of WEIGHTS; anything else is an error."""
    if weights not in WEIGHTS:
        choices = ", ".join(repr(w) for w in WEIGHTS)
        raise ValueError(f"weights must be one of {choices}, got {weights!r}")
    return weights


def round_bf16(t: torch.Tensor) -> torch.Tensor:
    """t rounded to bfloat16, in t's dtype: the values a packed bfloat16 weight holds."""
    return t.to(torch.bfloat16).to(t.dtype)


ROUND = {"float32": lambda t: t, "bfloat16": round_bf16, "int8": round_int8}


def rounded_copy(
    model: nn.Module,
    matrices: Callable[[nn.Module], Iterable[torch.Tensor]],
    weights: str = "bfloat16",
):
    """A copy of model whose ``matrices(copy)`` (the weights a generator packs) hold the
    values a fused generator with these weights multiplies by: the model it equals."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for w in matrices(model):
            w.copy_(ROUND[check_weights(weights)](w))
    return model


# -- the driver --------------------------------------------------------------------------------


class FusedDriver:
    """Resumable fused generator for n streams: ``prime(x)`` feeds samples without sampling;
    ``run(first, uniforms, T)`` samples N more per stream, and can be called again with
    first=None to continue where it stopped.

    A subclass packs its weights, calls ``__init__``, and gives its kernel (``_kernel``, see
    the module doc) and the kernel's state arrays (``_state()``). ``_primed`` is the hook for
    how much of a primer can matter (all of it for an RNN; the last receptive_field - 1
    samples for a WaveNet).
    """

    _kernel = None  # the @njit kernel, wrapped in staticmethod by the subclass

    def __init__(self, packed: tuple, n: int, classes: int, threads: int | None):
        """packed: the kernel's weights; threads: blocks of streams run at once (default:
        the usable cores, at most n)."""
        self._packed = packed
        self.n, self.pos, self.classes = n, 0, classes
        self.cores = threads or len(os.sched_getaffinity(0))  # threads it may use
        self.threads = max(1, min(n, self.cores))
        self.last: np.ndarray | None = None  # the last sampled values, fed by run(None, ...)
        self._pool: ThreadPoolExecutor | None = None  # the threads beside the caller's

    def __del__(self):
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=False)

    def _state(self) -> tuple:
        """The kernel's state arrays, updated in place."""
        raise NotImplementedError

    def _primed(self, x: np.ndarray) -> np.ndarray:
        """The part of a primer int64[n, P] that can reach a later output (default: all)."""
        return x

    def _check(self, state: tuple) -> None:
        """Raise if the call that used these state arrays did not finish (default: it did)."""

    def _jobs(self) -> list[tuple[int, int, int]]:
        """(s0, s1, part) per thread: by default one block of streams each, part 0. A kernel
        that splits its matrices gives every part all the streams (``fused_parts``)."""
        n, k = self.n, self.threads
        return [(i * n // k, (i + 1) * n // k, 0) for i in range(k)]

    def _call(self, inputs: np.ndarray, feed: bool, uniforms: np.ndarray, temperature: float):
        out = np.empty(uniforms.shape, np.int64)
        args = (inputs, feed, uniforms, float(temperature), out, self.pos, self._packed)
        state, jobs, steps = self._state(), self._jobs(), self._kernel
        if len(jobs) == 1:
            steps(*jobs[0], *args, *state)
        else:  # each job runs all N steps; only split matrices meet at barriers
            if self._pool is None:  # kept: generate() calls run() once per chunk
                self._pool = ThreadPoolExecutor(len(jobs) - 1)
            futures = [self._pool.submit(steps, *job, *args, *state) for job in jobs[1:]]
            steps(*jobs[0], *args, *state)
            for f in futures:
                f.result()
        self._check(state)
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
