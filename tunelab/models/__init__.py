"""Model families: one explicit table, and the one place where a config meets a model.

Every model: ``forward(x, label=None)`` for training (causal: position t predicts x[t+1]),
``init_state(n, device, label=None) -> state`` and ``step(x, state) -> (out, state)`` for
incremental generation, equal to forward step by step, and ``receptive_field`` (inputs an
output can see; None when unbounded). Families of kind ``mulaw`` also give
``generator(n, label, weights)``, their fast sampler (``prime``/``run``, see
``models/wavenet_gen.py``); unbounded ones may give ``warmup`` (unscored context at the
head of training windows) and ``forward_chunk(x, state)`` (exact scoring in chunks).
Each row names the kind of data the family takes (a module in ``tunelab.kinds``):
``tokens`` (MIDI), ``mulaw`` (8-bit audio samples), ``frames`` (float audio frames).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

from torch import nn

from tunelab.models.frame_rnn import FrameRNN
from tunelab.models.samplernn import SampleRNN
from tunelab.models.token_rnn import TokenRNN
from tunelab.models.transformer import Transformer
from tunelab.models.wavenet import WaveNet


class Family(NamedTuple):
    cls: type[nn.Module]
    kind: str  # the data kind: a module name in tunelab.kinds


MODELS: dict[str, Family] = {
    "token_rnn": Family(TokenRNN, "tokens"),
    "transformer": Family(Transformer, "tokens"),
    "wavenet": Family(WaveNet, "mulaw"),
    "samplernn": Family(SampleRNN, "mulaw"),
    "frame_rnn": Family(FrameRNN, "frames"),
}


def _as_dict(model_cfg: Any) -> Mapping:
    return dataclasses.asdict(model_cfg) if dataclasses.is_dataclass(model_cfg) else dict(model_cfg)


def family_of(model_cfg: Any) -> Family:
    """The MODELS row of a model config (dataclass or dict with ``family``)."""
    family = _as_dict(model_cfg).get("family")
    if family not in MODELS:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(MODELS)}")
    return MODELS[family]


def build_model(model_cfg: Any, vocab_size: int, n_labels: int = 0) -> nn.Module:
    """Build a model from a model config (dataclass or dict with ``family`` and hyperparameters);
    ``vocab_size`` and ``n_labels`` come from the data (see ``tunelab.kinds``)."""
    return family_of(model_cfg).cls.from_config(_as_dict(model_cfg), vocab_size, n_labels)
