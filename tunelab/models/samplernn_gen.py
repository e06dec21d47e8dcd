"""Sample mu-law streams from a SampleRNN: a PyTorch reference (model.step()) and a fused numba kernel.

Both take the randomness as explicit uniforms u[B, N] and share one sampling rule
(``tunelab.models.fused.sample_logits``), so for the same inputs they produce the same
samples.

``FusedSampleRNN`` runs the whole per-sample network for a block of streams in one
``@njit`` kernel, built from the blocks WaveNet's uses (``tunelab.models.fused``:
register-blocked matmuls over float32, bfloat16 or int8 weights, rational tanh, sampling):
the sample tier's input layer is F table lookups (an embedding followed by a linear layer is
a table, see ``tunelab.models.samplernn``), then the MLP; every F samples the GRU steps once
and the upsampling layer writes the next frame's F conditioning vectors. The GRU's input
weights for the label are folded into a per-stream bias. Streams are split into one block
per thread, as for WaveNet.

The model is read, never imported (``SampleRNN.generator`` imports this module): every
function here takes a ``tunelab.models.samplernn.SampleRNN``.
"""

from __future__ import annotations

import copy

import numba
import numpy as np
import torch
from torch import nn

from tunelab.models.fused import (
    ROUND,
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
from tunelab.models.fused_vnni import pack_vnni, round_rows_int8


@torch.inference_mode()
def generate_reference(
    model: nn.Module,
    first: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float,
    label: torch.Tensor | None = None,
    primer: torch.Tensor | None = None,
) -> torch.Tensor:
    """The plain PyTorch loop: primer LongTensor[B, P] (optional) fed with model.step(), then
    from first LongTensor[B] one sample per column of uniforms FloatTensor[B, N] -> LongTensor[B, N]."""
    state = model.init_state(first.shape[0], first.device, label)
    if primer is not None:
        for x in primer.unbind(1):  # an RNN: every primer sample can matter
            _, state = model.step(x, state)
    x = first
    out = torch.empty(uniforms.shape, dtype=torch.long, device=first.device)
    for i in range(uniforms.shape[1]):
        logits, state = model.step(x, state)
        x = sample_logits(logits, temperature, uniforms[:, i])
        out[:, i] = x
    return out


def _rounded_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The matrices FusedSampleRNN packs as bfloat16 or int8 (rounded as whole rows)."""
    mats = [model.upsample.weight, *(fc.weight for fc in model.fcs), model.out.weight]
    return mats + [getattr(model.gru, f"weight_{k}_l{i}") for i in range(model.frame_layers)
                   for k in ("ih", "hh")]  # fmt: skip


# How the upsampling and MLP matmuls' inputs are rounded, per weights type (every matmul
# here reads whole rows: int8 scales per row); float32 leaves them as they are.
ROUND_INPUT = {"bfloat16": round_bf16, "int8": round_rows_int8}


def round_weights(model: nn.Module, weights: str) -> nn.Module:
    """A copy of model holding the values FusedSampleRNN(weights=weights) multiplies by, and
    for "bfloat16" and "int8" rounding the inputs of its upsampling and MLP matmuls as the
    generator does (the GRU's inputs stay float32): the model that generator equals."""
    model = rounded_copy(model, _rounded_matrices, weights)
    if weights in ROUND_INPUT:
        rnd = ROUND_INPUT[weights]
        model.round_input = lambda x, site: rnd(x)
    return model


def _dot(t: torch.Tensor, weights: str):
    """An upsampling or MLP matrix packed as weights: "bfloat16" and "int8" as blocks for dot
    products (their inputs rounded too), float32 as ``pack``."""
    if weights == "int8":
        return pack_vnni(*quantise_int8(t.detach().cpu().float()))
    return pack_dot(t) if weights == "bfloat16" else pack(t, weights)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _steps(s0, s1, part, inputs, feed, uniforms, temperature, out, pos, w, hist, hidden, cond):
    """Advance streams s0..s1-1 by N samples (the kernel contract of ``tunelab.models.fused``).

    hist int64[B, F]: the last F inputs (Q = padding); hidden float32[L, B, H_f];
    cond float32[B, F*H]: the current frame's conditioning vectors. All updated in place.
    """
    table, wih0, wih, whh, bih0, bih, bhh, up_w, up_b, fc_w, fc_b, out_w, out_b, sbias = w
    N = inputs.shape[1] if feed else uniforms.shape[1]
    Fs, Q1, H = table.shape
    Q = Q1 - 1
    L, Hf = hidden.shape[0], hidden.shape[2]
    m = s1 - s0
    zero, scale = np.float32(0), np.float32(2.0 / (Q / 2.0))
    X0 = np.empty((m, Fs), np.float32)
    Hin = np.empty((m, Hf), np.float32)
    Hold = np.empty((m, Hf), np.float32)
    GI = np.empty((m, 3 * Hf), np.float32)
    GH = np.empty((m, 3 * Hf), np.float32)
    C = np.empty((m, Fs * H), np.float32)
    A = np.empty((m, H), np.float32)
    B = np.empty((m, H), np.float32)
    logits = np.empty((m, out_b.shape[0]), np.float32)
    XB = np.empty((m, (max(H, Hf) + 1) // 2 + 1), np.uint32)  # dot products' inputs (mm)
    for t in range(N):
        p = pos + t
        for j in range(m):
            hj = hist[s0 + j]
            for i in range(Fs - 1):
                hj[i] = hj[i + 1]
            hj[Fs - 1] = inputs[s0 + j, t] if feed or t == 0 else out[s0 + j, t - 1]
        if (p + 1) % Fs == 0:  # a frame is complete: one GRU step, the next F vectors
            for j in range(m):
                for i in range(Fs):
                    X0[j, i] = np.float32(hist[s0 + j, i]) * scale - np.float32(2)
            for li in range(L):
                for j in range(m):
                    Hold[j] = hidden[li, s0 + j]
                if li == 0:
                    mm(X0, wih0, GI)
                else:
                    mm(Hin, at(wih, li - 1), GI)
                mm(Hold, at(whh, li), GH)
                for j in range(m):
                    bi = bih0[s0 + j] if li == 0 else bih[li - 1]
                    bh = bhh[li]
                    for g in range(Hf):  # torch's gate order: reset, update, new
                        r = sigmoid32(GI[j, g] + bi[g] + GH[j, g] + bh[g])
                        z = sigmoid32(GI[j, Hf + g] + bi[Hf + g] + GH[j, Hf + g] + bh[Hf + g])
                        c = tanh32(
                            GI[j, 2 * Hf + g]
                            + bi[2 * Hf + g]
                            + r * (GH[j, 2 * Hf + g] + bh[2 * Hf + g])
                        )
                        hn = (np.float32(1) - z) * c + z * Hold[j, g]
                        hidden[li, s0 + j, g] = hn
                        Hin[j, g] = hn
            mm(Hin, up_w, C, XB)
            for j in range(m):
                for r in range(Fs * H):
                    cond[s0 + j, r] = C[j, r] + up_b[r]
        if feed:
            continue  # priming: the sample tier's output is not needed
        k = ((p + 1) % Fs) * H
        for j in range(m):
            for r in range(H):
                A[j, r] = cond[s0 + j, k + r] + sbias[s0 + j, r]
            for i in range(Fs):
                row = table[i, hist[s0 + j, i]]
                for r in range(H):
                    A[j, r] += row[r]
            for r in range(H):
                A[j, r] = max(A[j, r], zero)
        for li in range(fc_b.shape[0]):
            mm(A, at(fc_w, li), B, XB)
            for j in range(m):
                for r in range(H):
                    A[j, r] = max(B[j, r] + fc_b[li, r], zero)
        mm(A, out_w, logits, XB)
        for j in range(m):
            logits[j] += out_b
            out[s0 + j, t] = sample_row(logits[j], temperature, uniforms[s0 + j, t])


def _stack(ts: list[torch.Tensor], empty: tuple[int, ...]) -> torch.Tensor:
    """torch.stack, or zeros of shape ``empty`` for no tensors (a kernel argument needs one)."""
    return torch.stack([t.detach().cpu() for t in ts]) if ts else torch.zeros(empty)


def _gru(gru: torch.nn.GRU, name: str, layers) -> list[torch.Tensor]:
    """One weight or bias ("weight_ih", "bias_hh", ...) of each of the given GRU layers."""
    return [getattr(gru, f"{name}_l{i}") for i in layers]


def _first_columns(w: torch.Tensor, k: int, weights: str):
    """w[:, :k] packed as weights; int8 keeps the scales of whole rows (as round_weights)."""
    w = w.detach().cpu().float()
    if weights != "int8":
        return pack(w[:, :k], weights)
    q, s = quantise_int8(w)
    return pack_int8(q[:, :k], s)


class FusedSampleRNN(FusedDriver):
    """Resumable fused generator for n streams of a SampleRNN (a float32 copy of its weights).

    weights="bfloat16" or "int8" stores the GRU, upsampling and MLP matrices rounded to
    bfloat16 or quantised per row; it then equals generate_reference on
    ``round_weights(model, weights)``. Both round the upsampling and MLP matmuls' inputs too
    and run them as dot products (``fused_bf16``, ``fused_vnni``), while the GRU's matmuls
    keep float32 inputs and arithmetic (torch's GRU, the reference, has no place to round
    them).
    ``prime(x)`` feeds samples without sampling; ``run(first, uniforms, T)`` samples N more
    per stream and can be called again with first=None to continue. ``prime(p[:, :-1])``
    then ``run(p[:, -1], u, T)`` equals ``generate_reference(model, p[:, -1], u, T, label,
    primer=p[:, :-1])``. Every primer sample is fed: an RNN's memory is unbounded.
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
        weights = check_weights(weights)
        if model.h0.device.type != "cpu":  # the kernel runs on the CPU: a CPU copy to read from
            model = copy.deepcopy(model).cpu()
        Fs, Q, H, L = model.frame_size, model.classes, model.sample_hidden, model.frame_layers
        gru = model.gru
        rnd = ROUND[weights]
        with torch.no_grad():
            state = model.init_state(n, "cpu", None if label is None else label.cpu())
            w_ih0 = rnd(gru.weight_ih_l0.detach().cpu().float())
            bih0 = gru.bias_ih_l0.detach().cpu().float().expand(n, -1)
            if state.frame_label is not None:  # the label's GRU input columns: a bias
                bih0 = bih0 + state.frame_label.float() @ w_ih0[:, Fs:].t()
            table = model.taps_embed.weight.detach().cpu().float()[: Fs * Q].view(Fs, Q, H)
            table = torch.cat([table, torch.zeros(Fs, 1, H)], dim=1)  # row Q: padding
            rest, G3 = range(1, L), 3 * gru.hidden_size  # layers after the first; gate rows
            sbias = torch.zeros(n, H) if state.sample_label is None else state.sample_label
            packed = (
                pack(table),
                _first_columns(gru.weight_ih_l0, Fs, weights),
                pack(_stack(_gru(gru, "weight_ih", rest), (0, G3, 1)), weights),
                pack(_stack(_gru(gru, "weight_hh", range(L)), ()), weights),
                pack(bih0),
                pack(_stack(_gru(gru, "bias_ih", rest), (0, G3))),
                pack(_stack(_gru(gru, "bias_hh", range(L)), ())),
                _dot(model.upsample.weight, weights),
                pack(model.upsample.bias),
                _dot(_stack([fc.weight for fc in model.fcs], (0, H, H)), weights),
                pack(_stack([fc.bias for fc in model.fcs], (0, H))),
                _dot(model.out.weight, weights),
                pack(model.out.bias),
                pack(sbias),
            )
            self.hidden = pack(state.hidden).copy()  # [L, n, H_f]
            # the vectors before the first frame (with the bf16 run's rounded upsampling)
            up_w = rnd(model.upsample.weight.detach().cpu().float())
            src = state.hidden[-1]
            src = ROUND_INPUT[weights](src) if weights in ROUND_INPUT else src
            cond = torch.nn.functional.linear(src, up_w, model.upsample.bias.cpu())
            self.cond = pack(cond).copy()  # [n, F*H]
        super().__init__(packed, n, classes=Q, threads=threads)
        self.hist = np.full((n, Fs), Q, np.int64)

    def _state(self) -> tuple:
        return (self.hist, self.hidden, self.cond)
