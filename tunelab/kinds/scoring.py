"""Exact likelihood of one whole sequence under any model family.

A piece is scored the way it is generated: from its first element, each position seeing
everything before it that the model can see. Models with a finite ``receptive_field`` R
(windowed Transformers, WaveNet) are scored in chunks, each chunk fed the R - 1 inputs
before it, which is exact because no output depends on anything further back. Models
with unbounded context (RNNs, full attention) get one forward over the whole piece, or
``step()`` when the piece is longer than the model's ``max_forward_len`` (full attention:
memory grows as T^2, the cache keeps it linear), or, when the model has
``forward_chunk(x, state)`` (SampleRNN), chunks that carry the state from one to the next,
which is the same computation as one forward and keeps memory flat. A model with
``rescore(x, nll)`` (the piece memory) is scored by mixing its inner model's figures.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

CHUNK_TARGETS = 8192  # targets per forward() for finite receptive fields (bounds memory)


@torch.inference_mode()
def piece_nll(
    model: torch.nn.Module,
    tokens,
    device="cpu",
    label: int | None = None,
    chunk: int | None = None,
    prev_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """-log p(x_t | x_<t) for t = 1..T-1 of one sequence x: FloatTensor[T-1] (nats).

    tokens: int array or LongTensor[T] (x_0 is context only, never predicted);
    label: the piece's label index for conditioned models;
    prev_bias: FloatTensor[V, V] of 0/-inf, row x_{t-1} added to the logits predicting x_t
    (the format's rules, as in ``kinds.categorical_loss``).
    """
    x = torch.as_tensor(tokens, dtype=torch.long, device=device)
    if hasattr(model, "rescore"):  # a wrapper that mixes its inner model's predictions
        inner = piece_nll(model.base, x, device, label=label, chunk=chunk, prev_bias=prev_bias)
        return model.rescore(x.cpu(), inner.cpu()).to(inner.device)
    T = len(x)
    lab = None if label is None else torch.tensor([label], device=device)
    bias = None if prev_bias is None else prev_bias.to(device)

    def nll(logits: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Logits [n, V] of positions start..end-1 against targets start+1..end."""
        logits = logits.float()
        if bias is not None:
            logits = logits + bias[x[start:end]]
        return F.cross_entropy(logits, x[start + 1 : end + 1], reduction="none")

    def run(inputs):  # unconditioned models are called as model(x)
        return model(inputs) if lab is None else model(inputs, lab)

    rf = getattr(model, "receptive_field", None)
    if rf is None and hasattr(model, "forward_chunk"):
        state = model.init_state(1, device, label=lab)
        size, out = chunk or CHUNK_TARGETS, []
        for s in range(0, T - 1, size):
            end = min(s + size, T - 1)
            logits, state = model.forward_chunk(x[None, s:end], state)
            out.append(nll(logits[0], s, end))
        return torch.cat(out)
    if rf is None:
        limit = getattr(model, "max_forward_len", None)
        if limit is not None and T > limit:
            state = model.init_state(1, device, label=lab)
            out = []
            for t in range(T - 1):
                logits, state = model.step(x[t : t + 1], state)
                out.append(nll(logits, t, t + 1))
            return torch.cat(out)
        return nll(run(x[None, :-1])[0], 0, T - 1)
    size = chunk or getattr(model, "window", None) or CHUNK_TARGETS
    out = []
    for s in range(0, T - 1, size):  # positions s .. end-1 predict targets s+1 .. end
        lo, end = max(0, s - (rf - 1)), min(s + size, T - 1)
        out.append(nll(run(x[None, lo:end])[0][s - lo :], s, end))
    return torch.cat(out)
