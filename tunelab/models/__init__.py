"""Model families: one explicit table, and the one place where a config meets a model.

Every model: ``forward(x: LongTensor[B, T]) -> FloatTensor[B, T, V]`` (causal),
``init_state(batch_size, device) -> state`` and
``step(x: LongTensor[B], state) -> (FloatTensor[B, V], state)``, equal to forward step by step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from tunelab.models.token_rnn import TokenRNN
from tunelab.models.transformer import Transformer

MODELS: dict[str, type[nn.Module]] = {
    "token_rnn": TokenRNN,
    "transformer": Transformer,
}


def build_model(model_cfg: Any, vocab_size: int) -> nn.Module:
    """Build a model from a model config (dataclass or dict with ``family`` and hyperparameters)."""
    cfg: Mapping = (
        dataclasses.asdict(model_cfg) if dataclasses.is_dataclass(model_cfg) else dict(model_cfg)
    )
    family = cfg.get("family")
    if family not in MODELS:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(MODELS)}")
    return MODELS[family].from_config(cfg, vocab_size)
