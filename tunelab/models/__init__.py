"""Model families: one explicit table, and the one place where a config meets a model.

Every model: ``forward(x, label=None)`` for training (causal: position t predicts x[t+1]),
``init_state(n, device, label=None) -> state`` and ``step(x, state) -> (out, state)`` for
incremental generation, equal to forward step by step, and ``receptive_field`` (inputs an
output can see; None when unbounded). Families of kind ``mulaw`` also give
``generator(n, label, weights)``, their fast sampler (``prime``/``run``, see
``models/wavenet_gen.py``); unbounded ones may give ``warmup`` (unscored context at the
head of training windows) and ``forward_chunk(x, state)`` (exact scoring in chunks).

Each family's settings are a dataclass beside its model (``WaveNetConfig`` in ``wavenet.py``):
the run config's ``model`` section, and the only place its defaults are stated. Each row
names the kind of data the family takes (a module in ``tunelab.kinds``): ``tokens`` (MIDI),
``mulaw`` (8-bit audio samples), ``frames`` (float audio frames), and the training and
inference options the family supports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

from torch import nn

from tunelab.models.frame_rnn import FrameRNN, FrameRNNConfig
from tunelab.models.revision import RevisionConfig, RevisionGAN
from tunelab.models.samplernn import SampleRNN, SampleRNNConfig
from tunelab.models.token_rnn import TokenRNN, TokenRNNConfig
from tunelab.models.transformer import Transformer, TransformerConfig
from tunelab.models.wavenet import WaveNet, WaveNetConfig

# The run config's model section: one family's dataclass, told apart by its ``family`` key.
FamilyConfig = (
    TokenRNNConfig
    | TransformerConfig
    | WaveNetConfig
    | SampleRNNConfig
    | FrameRNNConfig
    | RevisionConfig
)


class Family(NamedTuple):
    cls: type[nn.Module]  # the model: cls.from_config(config, vocab_size, n_labels)
    config: type  # its config dataclass (one of FamilyConfig)
    kind: str  # the data kind: a module name in tunelab.kinds
    # train.carry_state: the model carries its state across a piece's windows (init_carry)
    carry_state: bool = False
    # train.burn_in: unscored context, run without gradients, before each training window
    burn_in: bool = False

    def has(self, key: str) -> bool:
        """Whether ``model.<key>`` is a setting of this family (``transpose_mix``, say, which
        only token RNNs have)."""
        return any(f.name == key for f in dataclasses.fields(self.config))


MODELS: dict[str, Family] = {
    "token_rnn": Family(TokenRNN, TokenRNNConfig, "tokens", carry_state=True, burn_in=True),
    "transformer": Family(Transformer, TransformerConfig, "tokens", carry_state=True),
    "wavenet": Family(WaveNet, WaveNetConfig, "mulaw"),
    "samplernn": Family(SampleRNN, SampleRNNConfig, "mulaw"),
    "frame_rnn": Family(FrameRNN, FrameRNNConfig, "frames"),
    # the revision pass: a denoising GAN over finished drafts (not a generator itself)
    "revision": Family(RevisionGAN, RevisionConfig, "revision"),
}


def family_of(model_cfg: Any) -> Family:
    """The MODELS row of a model config (a family's dataclass, or a mapping with ``family``)."""
    family = model_cfg.get("family") if isinstance(model_cfg, Mapping) else model_cfg.family
    if family not in MODELS:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(MODELS)}")
    return MODELS[family]


def family_config(model_cfg: Any) -> FamilyConfig:
    """A model config as its family's dataclass: a dataclass as it is; a mapping with its
    family's keys (the others take their defaults). A mapping in the flat layout that runs
    written before per-family configs have (every family's keys in one section) keeps its
    family's keys only: the model never read the others. ``tunelab.config.model_config``
    reads a user's config the same way, with its checks and messages."""
    if not isinstance(model_cfg, Mapping):
        return model_cfg
    cls = family_of(model_cfg).config
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in model_cfg.items() if k in names})


def build_model(model_cfg: Any, vocab_size: int, n_labels: int = 0) -> nn.Module:
    """Build a model from a model config (see ``family_config``); ``vocab_size`` and
    ``n_labels`` come from the data (see ``tunelab.kinds``)."""
    return family_of(model_cfg).cls.from_config(family_config(model_cfg), vocab_size, n_labels)
