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
``weights="bfloat16"`` halves their bytes and, with its inputs rounded too, runs the
matmuls as bfloat16 dot products (``tunelab.models.fused_bf16``).

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
    at,
    check_weights,
    mm,
    pack,
    pack_int8,
    round_bf16,
    rounded_copy,
    sample_logits,
    sample_row,
    sigmoid32,
    tanh32,
)
from tunelab.models.fused_bf16 import pack_dot
from tunelab.models.fused_int8 import quantise_int8
from tunelab.models.fused_parts import (
    PATIENCE_S,
    abandoned,
    barrier,
    busy,
    cycles,
    new_sync,
    split,
)
from tunelab.models.fused_vnni import GATE_SCALE, pack_vnni, round_input_int8

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

# Per-part timing slots (``FusedWaveNet.profile``): cycles spent in each part of the network.
PROFILE = ("taps", "dilated conv", "gate", "residual+skip 1x1", "residual and skip sums",
           "barrier", "output head", "sampling")  # fmt: skip


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _steps(s0, s1, part, inputs, feed, uniforms, temperature, out, pos, w, queues, sync, xch,
           prof):  # fmt: skip
    """Advance streams s0..s1-1 by N samples, every layer of every stream, in one call (the
    kernel contract of ``tunelab.models.fused``), as part ``part`` of P (``fused_parts``).

    w: the weights FusedWaveNet packed, each matrix cut into P slices: this part's gate
    channels of the dilated conv (its tanh rows, then its sigmoid rows), the same columns of
    the residual/skip 1x1, its rows of post1 and columns of post2. queues: float32[B,
    receptive_field - 1, R], every layer's ring buffer (layer li's written by part li % P
    once every part has read it). sync: the barrier state (``fused_parts.new_sync``); xch
    float32[2, P, B, W]: partial sums (residual, then after the last layer the skip sum; the
    logits), exchanged at each barrier, alternately in two buffers. prof int64[P, 8] (or [P, 0], off):
    cycles per PROFILE slot, added to.
    """
    emb, conv_w, cond, out_w, res_b, skip_b, post1_w, post1_b, post2_w, post2_b = w[:10]
    dil, offs, K, scale = w[10:]
    N = inputs.shape[1] if feed else uniforms.shape[1]
    P, L, Gp = xch.shape[1], dil.shape[0], cond.shape[3] // 2
    R, S, C, Sp = emb.shape[1], skip_b.shape[0], post2_b.shape[0], post1_b.shape[1]
    conv_w, out_w = at(conv_w, part), at(out_w, part)  # this part's slices
    post1_w, post2_w = at(post1_w, part), at(post2_w, part)
    KR = K * R
    cur = (K - 1) * R  # the current input's columns in X; the taps come first, oldest first
    zero = np.float32(0)
    m = s1 - s0
    X = np.empty((m, KR), np.float32)
    Z = np.empty((m, 2 * Gp), np.float32)
    H = np.empty((m, Gp), np.float32)
    RS = np.empty((m, R + S), np.float32)  # this part's share of residual | skip
    skip = np.zeros((m, S), np.float32)  # this part's share of the skip sum, then the whole
    Pp = np.empty((m, Sp), np.float32)
    logits = np.empty((m, C), np.float32)
    XB = np.empty((m, (max(KR, Gp, S, Sp) + 1) // 2 + 1), np.uint32)  # dot products' inputs (mm)
    last = np.empty(m, np.int64)  # the sample each stream feeds next (every part samples it)
    timed = prof.shape[1] > 0
    tick = cycles() if timed else 0
    epoch = 0
    for t in range(N):
        p = pos + t
        for j in range(m):
            X[j, cur:] = emb[inputs[s0 + j, t] if feed or t == 0 else last[j]]
            if part == 0:  # the bias first, as the unsplit kernel always added it
                skip[j] = skip_b
            else:
                skip[j] = zero
        for li in range(L):
            d = dil[li]
            n_slots = (K - 1) * d
            for j in range(m):
                q = queues[s0 + j]
                for k in range(K - 1):  # the input of time p-(K-1-k)*d: slot (p + k*d) % n_slots
                    X[j, k * R : (k + 1) * R] = q[offs[li] + (p + k * d) % n_slots]
            if timed:
                tick = _lap(prof, part, 0, tick)
            if not (feed and li == L - 1):  # priming: the last layer only feeds the skip sum
                mm(X, at(conv_w, li), Z, XB)
                if timed:
                    tick = _lap(prof, part, 1, tick)
                for j in range(m):
                    c = cond[part, s0 + j, li]
                    for g in range(Gp):
                        H[j, g] = tanh32(Z[j, g] + c[g]) * sigmoid32(Z[j, Gp + g] + c[Gp + g])
                if timed:
                    tick = _lap(prof, part, 2, tick)
                mm(H, at(out_w, li), RS, XB)
                if timed:
                    tick = _lap(prof, part, 3, tick)
                mine = xch[epoch & 1, part]
                for j in range(m):
                    for r in range(R):
                        mine[s0 + j, r] = RS[j, r]
                    for r in range(S):
                        skip[j, r] += RS[j, R + r]
                    if li == L - 1:  # the skip sum's share travels with the last exchange
                        mine[s0 + j, R : R + S] = skip[j]
                if timed:
                    tick = _lap(prof, part, 4, tick)
            epoch = barrier(sync, part, epoch)  # every part has read the taps and added its share
            if epoch < 0:
                return  # abandoned: a partner failed (fused_parts.barrier)
            if timed:
                tick = _lap(prof, part, 5, tick)
            for j in range(m):
                if part == li % P:  # replaces the oldest tap, read above by every part
                    queues[s0 + j, offs[li] + p % n_slots] = X[j, cur:]  # (parts take turns)
                if not (feed and li == L - 1):
                    for r in range(R):
                        res = _total(xch, epoch, s0 + j, r)
                        X[j, cur + r] = (X[j, cur + r] + (res + res_b[li, r])) * scale
            if timed:
                tick = _lap(prof, part, 4, tick)
        if feed:
            continue
        for j in range(m):
            for r in range(S):
                skip[j, r] = max(_total(xch, epoch, s0 + j, R + r), zero)
        mm(skip, post1_w, Pp, XB)
        for j in range(m):
            for r in range(Sp):
                Pp[j, r] = max(Pp[j, r] + post1_b[part, r], zero)
        mm(Pp, post2_w, logits, XB)
        mine = xch[epoch & 1, part]
        for j in range(m):
            mine[s0 + j, :C] = logits[j]
        if timed:
            tick = _lap(prof, part, 6, tick)
        epoch = barrier(sync, part, epoch)
        if epoch < 0:
            return
        if timed:
            tick = _lap(prof, part, 5, tick)
        for j in range(m):
            for r in range(C):
                logits[j, r] = _total(xch, epoch, s0 + j, r) + post2_b[r]
            last[j] = sample_row(logits[j], temperature, uniforms[s0 + j, t])
            if part == 0:
                out[s0 + j, t] = last[j]
        if timed:
            tick = _lap(prof, part, 7, tick)


@numba.njit(cache=True, inline="always")
def _total(xch, epoch, row, r):
    """Value r of stream ``row`` summed over the parts' shares from the exchange that
    ``epoch`` just passed, in part order: every part adds the same numbers the same way."""
    b = (epoch - 1) & 1
    v = xch[b, 0, row, r]
    for q in range(1, xch.shape[1]):
        v += xch[b, q, row, r]
    return v


@numba.njit(cache=True, inline="always")
def _lap(prof, part, slot, tick):
    """Add the cycles since tick to prof[part, slot]; returns the new tick."""
    now = cycles()
    prof[part, slot] += now - tick
    return now


def round_weights(model: nn.Module, weights: str) -> nn.Module:
    """A copy of model whose conv, 1x1 and post weights hold the values
    FusedWaveNet(weights=weights) multiplies by, and for "bfloat16" and "int8" whose matmul
    inputs are rounded as the generator rounds them (``fused_bf16``, ``fused_vnni``): the
    model that generator equals."""
    model = rounded_copy(
        model, lambda m: [lin.weight for lin in [*m.convs, *m.outs, m.post1, m.post2]], weights
    )
    if weights == "bfloat16":
        model.round_input = _round_bf16_input
    elif weights == "int8":
        model.round_input = round_input_int8
    return model


def _round_bf16_input(x: torch.Tensor, site: str) -> torch.Tensor:
    return round_bf16(x)


class FusedWaveNet(FusedDriver):
    """Resumable fused generator for n streams of a WaveNet (a float32 copy of its weights).

    weights: how the matmul weights are stored. "bfloat16" rounds them and the matmuls'
    inputs to bfloat16 and sums their products in float32 (half float32's bytes, and twice
    its multiply-adds per instruction on AVX-512 BF16: ``fused_bf16``); "int8" quantises each
    output channel and the matmuls' inputs per row, products summed in int32 (a quarter of
    the bytes, 64 multiply-adds per instruction on AVX-512 VNNI: ``fused_vnni``). The
    generator then equals generate_incremental on ``round_weights(model, weights)``.

    threads: how many threads run at once (default: the usable cores). parts: into how many
    slices every matrix is cut, one per thread, so that one stream runs on several cores
    (``fused_parts``; the threads meet at a barrier per layer); default: all threads when
    there are fewer streams than threads and the machine is not busy (``fused_parts.busy``),
    else 1 (blocks of streams, no barrier).

    ``prime(x)`` feeds samples without sampling; ``run(first, uniforms, T)`` samples N more
    per stream, and can be called again with first=None to continue where it stopped.
    ``prime(p[:, :-1])`` then ``run(p[:, -1], u, T)`` equals
    ``generate_incremental(model, p[:, -1], u, T, label, primer=p[:, :-1])``.
    ``profile``: set to True to count cycles per PROFILE slot into ``cycles_by_part``.
    """

    _kernel = staticmethod(_steps)

    def __init__(
        self,
        model: nn.Module,
        n: int,
        label: torch.Tensor | None = None,
        weights: str = "float32",
        threads: int | None = None,
        parts: int | None = None,
    ):
        weights = check_weights(weights)
        K, R, G = model.kernel_size, model.residual_channels, model.gate_channels
        L, S, C = len(model.convs), model.skip_channels, model.classes
        bias = lambda lin, n: torch.zeros(n) if lin.bias is None else lin.bias.cpu()  # noqa: E731
        super().__init__((), n, classes=C, threads=threads)
        cut = n < self.cores and not busy(self.cores)
        P = self.parts = parts or (self.cores if cut else 1)
        self.threads = max(self.threads, P)
        with torch.no_grad():
            state = model.init_state(n, label=label)  # cond: conv bias + label projection
            # Weights stay [out, in] (nn.Linear's layout): each output is a contiguous dot product.
            out_w = torch.zeros(L, R + S, G)  # the last layer has no residual rows: zeros
            res_b, skip_b = torch.zeros(L, R), torch.zeros(S)
            for i, o in enumerate(model.outs):
                out_w[i, R + S - o.out_features :] = o.weight.detach().cpu()
                b = bias(o, o.out_features)
                skip_b += b[-S:]
                if i < L - 1:
                    res_b[i] = b[:R]
            conv = torch.stack([c.weight.detach().cpu() for c in model.convs])  # [L, 2G, K*R]
            dil = np.asarray(model.dilations, dtype=np.int64)
            packed = (
                pack(model.embed.weight),
                # [P, L, 2Gp, K*R]: a part's gate channels, its tanh rows then its sigmoid rows
                _cut(conv.unflatten(1, (2, G)), P, weights, columns=False, merge=(2, 3)),
                pack(split(state.cond.cpu().unflatten(-1, (2, G)), 3, P).flatten(-2)),
                _cut(out_w, P, weights, columns=True, scale=GATE_SCALE),  # [P, L, R+S, Gp]
                pack(res_b),
                pack(skip_b),
                _cut(model.post1.weight, P, weights, columns=False, scale=None),  # [P, Sp, S]
                pack(split(bias(model.post1, S), 0, P)),
                _cut(model.post2.weight, P, weights, columns=True, scale=None),  # [P, C, Sp]
                pack(bias(model.post2, C)),
                dil,
                np.concatenate([[0], np.cumsum(dil * (K - 1))[:-1]]).astype(np.int64),
                K,
                np.float32(model.res_scale),
            )
        self._packed = packed
        self.weights = weights
        self.queues = np.zeros((n, model.receptive_field - 1, R), np.float32)
        self._width = max(R + S, C)
        self.profile = False
        self.cycles_by_part = np.zeros((P, len(PROFILE)), np.int64)

    def _jobs(self) -> list[tuple[int, int, int]]:
        if self.parts == 1:
            return super()._jobs()
        return [(0, self.n, part) for part in range(self.parts)]

    def _state(self) -> tuple:
        xch = np.empty((2, self.parts, self.n, self._width), np.float32)
        prof = self.cycles_by_part if self.profile else np.zeros((self.parts, 0), np.int64)
        return (self.queues, new_sync(self.parts), xch, prof)

    def _check(self, state: tuple) -> None:
        if abandoned(state[1]):
            raise RuntimeError(
                "generation stopped: a generator thread waited "
                f"{PATIENCE_S:.0f} s for another that never came (the output is incomplete)"
            )

    def _primed(self, x: np.ndarray) -> np.ndarray:
        """Only the last receptive_field - 1 can reach a later output, so only those are fed."""
        return x[:, -self.queues.shape[1] :]


def _cut(w: torch.Tensor, parts: int, weights: str, columns: bool, merge=None, scale=0.0):
    """w[..., n, k] cut into parts along its columns (k) or rows (n), packed as weights:
    [parts, ..., n or n / parts, k / parts or k] (zero-padded). merge: two axes of the cut
    to flatten into one afterwards. int8 scales come from whole rows, before the cut, so a
    cut model equals the uncut one. scale (int8): the inputs' fixed scale for dot products
    (0: per row, for a matrix cut by rows, whose every part sees whole input rows; a
    column cut needs a fixed one), or None for int8 weights with float math."""
    q = w.detach().cpu().float()
    s = None
    if weights == "int8":
        q, s = quantise_int8(q)
        # every part's slice of a row shares the row's scale; cut rows take theirs along
        s = s.expand(parts, *s.shape) if columns else split(s, s.dim() - 1, parts)
    q = split(q, q.dim() - (1 if columns else 2), parts)
    if merge:
        q = q.flatten(*merge)
        s = None if s is None else s.flatten(*merge)
    if weights == "bfloat16":  # blocks for bfloat16 dot products, inputs rounded too
        return pack_dot(q)
    if s is None:
        return pack(q, weights)
    return pack_int8(q, s) if scale is None else pack_vnni(q, s, scale)
