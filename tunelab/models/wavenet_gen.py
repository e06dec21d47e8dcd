"""Sample mu-law streams from a WaveNet: a naive reference, model.step(), and a fused numba kernel.

All three share one sampling rule (``sample_logits``) and take the randomness as explicit
uniforms u[B, N] in [0, 1), so for the same inputs they produce the same samples:
temperature 0 is argmax; otherwise the inverse CDF of softmax(z / T) at u, i.e. the first
class whose running sum of exp((z - max z) / T) (in float64) exceeds u * total.

``FusedWaveNet`` runs the whole per-sample network for all streams in one ``@njit``
kernel: embedding lookup, per-layer ring buffers, the dilated conv and the fused
residual/skip 1x1 as register-blocked loops over contiguous weights (two streams share
every weight load), a vectorisable rational tanh, the post layers and the sampling.
Streams are split into one block per thread (the kernel releases the GIL; plain threads,
not numba's ``prange``, whose OpenMP workers spin and starve PyTorch's on a small machine);
each block runs all N steps on its own, with no synchronisation. A single stream is bound
by memory bandwidth once the weights outgrow the cache; ``weights="bfloat16"`` halves
their bytes. The kernels are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import copy
import math

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from tunelab.models.fused import FusedDriver, check_weights
from tunelab.models.wavenet import _RES_SCALE, WaveNet

# -- the shared sampling rule ---------------------------------------------------------------


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


def _context(first: torch.Tensor, primer: torch.Tensor | None, keep: int) -> torch.Tensor:
    """The last ``keep`` samples of [primer, first]: LongTensor[B, <= keep]."""
    x = first[:, None] if primer is None else torch.cat([primer, first[:, None]], dim=1)
    return x[:, -keep:]


@torch.inference_mode()
def generate_naive(
    model: WaveNet,
    first: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float,
    label: torch.Tensor | None = None,
    primer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference: forward() over the last receptive_field inputs for every new sample.

    first: LongTensor[B], the input that precedes the first generated sample (after primer
    LongTensor[B, P] if given); uniforms: FloatTensor[B, N] -> LongTensor[B, N].
    """
    rf = model.receptive_field
    hist = _context(first, primer, rf)
    out = torch.empty(uniforms.shape, dtype=torch.long, device=first.device)
    for i in range(uniforms.shape[1]):
        x = sample_logits(model(hist, label)[:, -1], temperature, uniforms[:, i])
        out[:, i] = x
        hist = torch.cat([hist, x[:, None]], dim=1)[:, -rf:]
    return out


@torch.inference_mode()
def generate_incremental(
    model: WaveNet,
    first: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float,
    label: torch.Tensor | None = None,
    primer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Same contract as generate_naive, with model.step() (constant cost per sample)."""
    state = model.init_state(first.shape[0], first.device, label)
    if primer is not None:
        # Only the last receptive_field - 1 primer samples can reach any future output.
        for x in primer[:, -(model.receptive_field - 1) :].unbind(1):
            _, state = model.step(x, state)
    x = first
    out = torch.empty(uniforms.shape, dtype=torch.long, device=first.device)
    for i in range(uniforms.shape[1]):
        logits, state = model.step(x, state)
        x = sample_logits(logits, temperature, uniforms[:, i])
        out[:, i] = x
    return out


# -- the fused numba kernel -------------------------------------------------------------------

_TANH_CLAMP = np.float32(7.90531110763549805)


@numba.njit(cache=True, inline="always")
def _tanh(x):
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


@numba.njit(cache=True, error_model="numpy")
def _sample(z, temperature, u):
    """The shared sampling rule for one row of logits z[V] (float32)."""
    V = z.shape[0]
    best = 0
    for i in range(1, V):
        if z[i] > z[best]:
            best = i
    if temperature == 0.0:
        return best
    m = np.float64(z[best])
    total = 0.0
    for i in range(V):
        total += math.exp((np.float64(z[i]) - m) / temperature)
    target = u * total
    c = 0.0
    for i in range(V):
        c += math.exp((np.float64(z[i]) - m) / temperature)
        if c > target:
            return i
    return V - 1


_FM = {"contract", "reassoc"}  # FMA and reordered sums: lets LLVM vectorise the dot products


@intrinsic
def _bits_as_f32(typingctx, u):
    """Reinterpret uint32 bits as float32 (numba has no scalar bit cast)."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@numba.njit(cache=True, fastmath=_FM)
def _matmul(X, WT, Z):
    """Z[m, n] = X[m, k] @ WT[n, k].T for m streams (float32, contiguous).

    Written out rather than np.dot: BLAS (with threads of its own) is slower for these small
    shapes and oversubscribes the cores when streams run on several threads. Dot products over contiguous rows, 4 outputs x 2 streams at a time:
    every weight load feeds two streams, every input load four outputs.
    """
    m, k = X.shape
    n = WT.shape[0]
    n4 = n - n % 4
    for j in range(0, m - m % 2, 2):
        for o in range(0, n4, 4):
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0)
            for i in range(k):
                x, y = X[j, i], X[j + 1, i]
                w0, w1 = WT[o, i], WT[o + 1, i]
                w2, w3 = WT[o + 2, i], WT[o + 3, i]
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
                w0 = WT[o, i]
                a0 += X[j, i] * w0
                b0 += X[j + 1, i] * w0
            Z[j, o], Z[j + 1, o] = a0, b0
    if m % 2:
        j = m - 1
        for o in range(0, n4, 4):
            a0 = a1 = a2 = a3 = np.float32(0)
            for i in range(k):
                x = X[j, i]
                a0 += x * WT[o, i]
                a1 += x * WT[o + 1, i]
                a2 += x * WT[o + 2, i]
                a3 += x * WT[o + 3, i]
            Z[j, o], Z[j, o + 1], Z[j, o + 2], Z[j, o + 3] = a0, a1, a2, a3
        for o in range(n4, n):
            a0 = np.float32(0)
            for i in range(k):
                a0 += X[j, i] * WT[o, i]
            Z[j, o] = a0


@numba.njit(cache=True, fastmath=_FM)
def _matmul_bf16(X, WP, Z):
    """_matmul with bfloat16 weights packed in pairs: WP[n, k//2 (+1 if k is odd)] uint32
    holds w[o, i] in its high half and w[o, i + k//2] in its low half. The high half is a
    float32 once masked, the low half once shifted: two cheap ops per two weights, which
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
                a0 += x * _bits_as_f32(u0 & mask) + y * _bits_as_f32(u0 << shift)
                a1 += x * _bits_as_f32(u1 & mask) + y * _bits_as_f32(u1 << shift)
                a2 += x * _bits_as_f32(u2 & mask) + y * _bits_as_f32(u2 << shift)
                a3 += x * _bits_as_f32(u3 & mask) + y * _bits_as_f32(u3 << shift)
            Z[j, o], Z[j, o + 1], Z[j, o + 2], Z[j, o + 3] = a0, a1, a2, a3
        for o in range(n4, n):
            a0 = np.float32(0)
            for i in range(h):
                u0 = WP[o, i]
                a0 += X[j, i] * _bits_as_f32(u0 & mask) + X[j, i + h] * _bits_as_f32(u0 << shift)
            Z[j, o] = a0
        if k % 2:  # the odd last column sits alone in the high half of an extra column
            for o in range(n):
                Z[j, o] += X[j, k - 1] * _bits_as_f32(WP[o, h] & mask)


def _mm(X, W, Z):
    """Z = X @ W.T: _matmul for float32 weights, _matmul_bf16 for packed bfloat16 pairs."""


@overload(_mm)
def _mm_impl(X, W, Z):
    if W.dtype == types.uint32:
        return lambda X, W, Z: _matmul_bf16(X, W, Z)
    return lambda X, W, Z: _matmul(X, W, Z)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _steps(s0, s1, inputs, feed, uniforms, temperature, out, pos, w, queues):
    """Advance streams s0..s1-1 by N samples, every layer of every stream, in one call.

    inputs: int64[B, N] samples to feed (feed=True, priming: no sampling, out untouched) or
    int64[B, 1] the first input (feed=False: sample N into out int64[B, N], feeding each
    back); uniforms float64[B, N]; pos: samples fed before; w: the weights (FusedWaveNet);
    queues: float32[B, receptive_field - 1, R], every layer's ring buffer, updated in place.
    Releases the GIL, so blocks of streams run on several threads at once.
    """
    emb, conv_w, cond, out_w, res_b, skip_b, post1_w, post1_b, post2_w, post2_b, dil, offs, K = w
    N = inputs.shape[1] if feed else uniforms.shape[1]
    L, G2 = conv_w.shape[:2]  # not the last axis: packed bfloat16 weights have half the columns
    R, S = emb.shape[1], skip_b.shape[0]
    G, KR = G2 // 2, K * R
    cur = (K - 1) * R  # the current input's columns in X; the taps come first, oldest first
    scale, half, zero = np.float32(_RES_SCALE), np.float32(0.5), np.float32(0)
    m = s1 - s0
    X = np.empty((m, KR), np.float32)
    Z = np.empty((m, G2), np.float32)
    H = np.empty((m, G), np.float32)
    RS = np.empty((m, R + S), np.float32)  # residual | skip
    skip = np.empty((m, S), np.float32)
    P = np.empty((m, S), np.float32)
    logits = np.empty((m, post2_w.shape[0]), np.float32)
    for t in range(N):
        p = pos + t
        for j in range(m):
            tok = inputs[s0 + j, t] if feed or t == 0 else out[s0 + j, t - 1]
            X[j, cur:] = emb[tok]
            skip[j] = skip_b
        for li in range(L):
            d = dil[li]
            n_slots = (K - 1) * d
            for j in range(m):
                q = queues[s0 + j]
                for k in range(K - 1):  # the input of time p-(K-1-k)*d: slot (p + k*d) % n_slots
                    X[j, k * R : (k + 1) * R] = q[offs[li] + (p + k * d) % n_slots]
                q[offs[li] + p % n_slots] = X[j, cur:]  # replaces the oldest tap, read above
            if feed and li == L - 1:
                break  # priming: the last layer's output only feeds the skip sum
            _mm(X, conv_w[li], Z)
            for j in range(m):
                c = cond[s0 + j, li]
                for g in range(G):
                    a = _tanh(Z[j, g] + c[g])
                    b = half + half * _tanh(half * (Z[j, G + g] + c[G + g]))  # sigmoid
                    H[j, g] = a * b
            _mm(H, out_w[li], RS)
            for j in range(m):
                for r in range(R):
                    X[j, cur + r] = (X[j, cur + r] + (RS[j, r] + res_b[li, r])) * scale
                for r in range(S):
                    skip[j, r] += RS[j, R + r]
        if feed:
            continue
        for j in range(m):
            for r in range(S):
                skip[j, r] = max(skip[j, r], zero)
        _mm(skip, post1_w, P)
        for j in range(m):
            for r in range(S):
                P[j, r] = max(P[j, r] + post1_b[r], zero)
        _mm(P, post2_w, logits)
        for j in range(m):
            logits[j] += post2_b
            out[s0 + j, t] = _sample(logits[j], temperature, uniforms[s0 + j, t])


def _np(t: torch.Tensor, bf16: bool = False) -> np.ndarray:
    """float32 array; with bf16, weights [..., n, k] rounded to bfloat16 and packed in pairs
    as _matmul_bf16 reads them: uint32[..., n, k//2 (+1 if k is odd)]."""
    t = t.detach().to("cpu", torch.float32).contiguous()
    if not bf16:
        return t.numpy()
    b = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).astype(np.uint32)
    h = b.shape[-1] // 2
    pairs = [(b[..., :h] << 16) | b[..., h : 2 * h]]
    if b.shape[-1] % 2:
        pairs.append(b[..., 2 * h :] << 16)
    return np.ascontiguousarray(np.concatenate(pairs, axis=-1))


def round_weights_bf16(model: WaveNet) -> WaveNet:
    """A copy of model with the weights FusedWaveNet(weights="bfloat16") rounds, rounded."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for lin in [*model.convs, *model.outs, model.post1, model.post2]:
            lin.weight.copy_(lin.weight.to(torch.bfloat16))
    return model


class FusedWaveNet(FusedDriver):
    """Resumable fused generator for n streams of a WaveNet (a float32 copy of its weights).

    weights="bfloat16" stores the matmul weights rounded to bfloat16 (math stays float32):
    half the bytes, so the bench layout's weights fit in cache (a single stream is bound by
    memory bandwidth); it then equals generate_incremental on a model whose conv, 1x1 and
    post weights were rounded to bfloat16 (``round_weights_bf16``). threads: blocks of
    streams run at once (default: the usable cores, at most n).

    ``prime(x)`` feeds samples without sampling; ``run(first, uniforms, T)`` samples N more
    per stream, and can be called again with first=None to continue where it stopped.
    ``prime(p[:, :-1])`` then ``run(p[:, -1], u, T)`` equals
    ``generate_incremental(model, p[:, -1], u, T, label, primer=p[:, :-1])``.
    """

    _kernel = staticmethod(_steps)

    def __init__(
        self,
        model: WaveNet,
        n: int,
        label: torch.Tensor | None = None,
        weights: str = "float32",
        threads: int | None = None,
    ):
        bf16 = check_weights(weights)
        K, R, G = model.kernel_size, model.residual_channels, model.gate_channels
        L, S = len(model.convs), model.skip_channels
        bias = lambda lin, n: torch.zeros(n) if lin.bias is None else lin.bias.cpu()  # noqa: E731
        with torch.no_grad():
            state = model.init_state(n, label=label)  # cond: conv bias + label projection
            # Weights stay [out, in] (nn.Linear's layout): each output is a contiguous dot product.
            out_w = torch.zeros(L, R + S, G)  # the last layer has no residual rows: zeros
            res_b, skip_b = torch.zeros(L, R), torch.zeros(S)
            for i, o in enumerate(model.outs):
                out_w[i, R + S - o.out_features :] = o.weight.cpu()
                b = bias(o, o.out_features)
                skip_b += b[-S:]
                if i < L - 1:
                    res_b[i] = b[:R]
            dil = np.asarray(model.dilations, dtype=np.int64)
            self._weights = (
                _np(model.embed.weight),
                _np(torch.stack([c.weight for c in model.convs]), bf16),  # [L, 2G, K*R]
                _np(state.cond),  # [n, L, 2G]
                _np(out_w, bf16),
                _np(res_b),
                _np(skip_b),
                _np(model.post1.weight, bf16),
                _np(bias(model.post1, S)),
                _np(model.post2.weight, bf16),
                _np(bias(model.post2, model.classes)),
                dil,
                np.concatenate([[0], np.cumsum(dil * (K - 1))[:-1]]).astype(np.int64),
                K,
            )
        self.queues = np.zeros((n, model.receptive_field - 1, R), np.float32)
        self.n, self.pos, self.classes = n, 0, self._weights[0].shape[0]
        self.threads = self._threads(n, threads)
        self.last = None

    def _state(self) -> tuple:
        return (self.queues,)

    def _primed(self, x: np.ndarray) -> np.ndarray:
        """Only the last receptive_field - 1 can reach a later output, so only those are fed."""
        return x[:, -self.queues.shape[1] :]
