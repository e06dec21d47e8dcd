"""One small module per kind of data the models see.

The training loop, the evaluator and ``tunelab generate`` call only a kind object; a
kind decides everything that depends on the data: the model's dimensions from
``meta.json``, the batches ``(x, y, label)``, the loss (sum and count), likelihood
accounting and its baseline, and how a finished piece is sampled, written and audited.
The contract is ``tunelab.kinds.base.Kind`` (a ``typing.Protocol``, re-exported here).

- ``tokens``: MIDI tokens (``tunelab.kinds.tokens``)
- ``mulaw``: 8-bit mu-law audio samples (``tunelab.kinds.mulaw``)
- ``frames``: float audio frames, time or FFT form (``tunelab.kinds.frames``)
- ``revision``: real audio and drafts made from it, for the revision pass
  (``tunelab.kinds.revision``)
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch.nn import functional as F

from tunelab.kinds.base import Kind

__all__ = ["DATA_KIND", "IGNORE", "Kind", "categorical_loss", "kind_for"]

IGNORE = -100  # target value that is not scored (cross_entropy's ignore_index)
# kind -> the meta.json "kind" it reads
DATA_KIND = {"tokens": "midi", "mulaw": "audio", "frames": "audio", "revision": "audio"}


def kind_for(model_cfg: Any, meta: dict, where: str = "the data", base: str | None = None) -> Kind:
    """The kind object of a model family (its MODELS row) on data described by ``meta``;
    ``base``: the run whose own drafts a revision pass learns from (``revision.base``)."""
    from tunelab.models import family_of

    name = family_of(model_cfg).kind
    want, have = DATA_KIND[name], meta.get("kind", "midi")
    if have != want:
        family = model_cfg["family"] if isinstance(model_cfg, dict) else model_cfg.family
        raise ValueError(
            f"{where} holds {have} data, but model family {family!r} trains on {want} data; "
            f"prepare {want} data or choose a {have} preset"
        )
    kind = importlib.import_module(f"tunelab.kinds.{name}").Kind.for_model(model_cfg, meta)
    if base:
        kind.use_base(base)
    return kind


def categorical_loss(
    logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor | None = None, prev_bias=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy (nats) and the number of scored targets.

    logits: FloatTensor[B, T, V]; y: LongTensor[B, T] with IGNORE where nothing is scored;
    x: LongTensor[B, T], the inputs, used only with ``prev_bias`` (FloatTensor[V, V], 0 or
    -inf: the row of x[b, t] is added to the logits that predict y[b, t], so the softmax
    runs over the tokens the format allows after x[b, t]). A window whose head is context
    only (``train.burn_in``) has x longer than y: its last y.shape[1] positions are used.
    """
    logits = logits.float()
    if prev_bias is not None:
        x = x[:, x.shape[1] - y.shape[1] :]
        logits = logits + prev_bias.to(logits.device)[x]
    total = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum")
    return total, (y != IGNORE).sum()
