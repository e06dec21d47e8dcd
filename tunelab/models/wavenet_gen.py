"""Sample mu-law streams from a WaveNet: a naive reference, model.step(), and a fused numba kernel.

All three share one sampling rule (``tunelab.models.fused.sample_logits``) and take the
randomness as explicit uniforms u[B, N] in [0, 1), so for the same inputs they produce the
same samples.

``FusedWaveNet`` runs the whole per-sample network for all streams in one ``@njit``
kernel: embedding lookup, per-layer ring buffers, the dilated conv and the fused
residual/skip 1x1 as register-blocked loops over contiguous weights (two streams share
every weight load), a vectorisable rational tanh, the post layers and the sampling (the
building blocks and the threading are in ``tunelab.models.fused``). Streams are split into
one block per thread; each block runs all N steps on its own, with no synchronisation. A
single stream is bound by memory bandwidth once the weights outgrow the cache;
``weights="bfloat16"`` halves their bytes.

The model is read, never imported (``WaveNet.generator`` imports this module): every
function here takes a ``tunelab.models.wavenet.WaveNet``.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import nn

from tunelab.models.fused import (
    FusedDriver,
    check_weights,
    mm,
    pack,
    rounded_copy,
    sample_logits,
    sample_row,
    sigmoid32,
    tanh32,
)

# -- the PyTorch references ------------------------------------------------------------------


def _context(first: torch.Tensor, primer: torch.Tensor | None, keep: int) -> torch.Tensor:
    """The last ``keep`` samples of [primer, first]: LongTensor[B, <= keep]."""
    x = first[:, None] if primer is None else torch.cat([primer, first[:, None]], dim=1)
    return x[:, -keep:]


@torch.inference_mode()
def generate_naive(
    model: nn.Module,
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
    model: nn.Module,
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


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _steps(s0, s1, inputs, feed, uniforms, temperature, out, pos, w, queues):
    """Advance streams s0..s1-1 by N samples, every layer of every stream, in one call (the
    kernel contract of ``tunelab.models.fused``). w: the weights FusedWaveNet packed;
    queues: float32[B, receptive_field - 1, R], every layer's ring buffer, updated in place.
    """
    emb, conv_w, cond, out_w, res_b, skip_b, post1_w, post1_b, post2_w, post2_b = w[:10]
    dil, offs, K, scale = w[10:]
    N = inputs.shape[1] if feed else uniforms.shape[1]
    L, G2 = conv_w.shape[:2]  # not the last axis: packed bfloat16 weights have half the columns
    R, S = emb.shape[1], skip_b.shape[0]
    G, KR = G2 // 2, K * R
    cur = (K - 1) * R  # the current input's columns in X; the taps come first, oldest first
    zero = np.float32(0)
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
            mm(X, conv_w[li], Z)
            for j in range(m):
                c = cond[s0 + j, li]
                for g in range(G):
                    H[j, g] = tanh32(Z[j, g] + c[g]) * sigmoid32(Z[j, G + g] + c[G + g])
            mm(H, out_w[li], RS)
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
        mm(skip, post1_w, P)
        for j in range(m):
            for r in range(S):
                P[j, r] = max(P[j, r] + post1_b[r], zero)
        mm(P, post2_w, logits)
        for j in range(m):
            logits[j] += post2_b
            out[s0 + j, t] = sample_row(logits[j], temperature, uniforms[s0 + j, t])


def round_weights_bf16(model: nn.Module) -> nn.Module:
    """A copy of model with the weights FusedWaveNet(weights="bfloat16") rounds, rounded."""
    return rounded_copy(
        model, lambda m: [lin.weight for lin in [*m.convs, *m.outs, m.post1, m.post2]]
    )


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
        model: nn.Module,
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
            packed = (
                pack(model.embed.weight),
                pack(torch.stack([c.weight for c in model.convs]), bf16),  # [L, 2G, K*R]
                pack(state.cond),  # [n, L, 2G]
                pack(out_w, bf16),
                pack(res_b),
                pack(skip_b),
                pack(model.post1.weight, bf16),
                pack(bias(model.post1, S)),
                pack(model.post2.weight, bf16),
                pack(bias(model.post2, model.classes)),
                dil,
                np.concatenate([[0], np.cumsum(dil * (K - 1))[:-1]]).astype(np.int64),
                K,
                np.float32(model.res_scale),
            )
        super().__init__(packed, n, classes=model.classes, threads=threads)
        self.queues = np.zeros((n, model.receptive_field - 1, R), np.float32)

    def _state(self) -> tuple:
        return (self.queues,)

    def _primed(self, x: np.ndarray) -> np.ndarray:
        """Only the last receptive_field - 1 can reach a later output, so only those are fed."""
        return x[:, -self.queues.shape[1] :]
