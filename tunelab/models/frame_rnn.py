"""Frame RNN (the GRUV lineage): dense -> stacked GRU/LSTM -> dense over frames of audio.

Each position sees one frame of F normalised features (time samples, or rfft real/imaginary
parts; see ``tunelab.kinds.frames``) and predicts the next frame as F real numbers. One
``nn.GRU``/``nn.LSTM`` module per layer, so every layer's output can reach the output dense
(``skip``), as in the token RNN. Optional label conditioning: an embedding of the label added
to the input dense's output at every position. Optional ``linear_skip``: a linear map from
the input frame straight to the output, added to the RNN's prediction (linear prediction of
the next frame from the last; zero at the start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from tunelab.models.layers import rnn_layers, run_rnn_layers


@dataclass
class FrameRNNConfig:
    """A frame RNN run's ``model`` section: dense (``embed_dim``) -> ``layers`` GRU/LSTM layers
    (``cell``, ``hidden``, ``dropout``; ``skip``: every layer feeds the output dense) -> dense,
    over frames of normalised audio. The frame keys tell the kind how to cut and score the
    audio (``tunelab.kinds.frames``)."""

    family: str = "frame_rnn"
    cell: Literal["gru", "lstm"] = "gru"
    embed_dim: int = 128
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    skip: bool = False
    frame_size: int = 1024  # samples per frame
    frame_hop: int = 0  # samples between frame starts (0: frame_size // 2, 50% overlap)
    frame_form: Literal["time", "fft"] = "time"  # raw samples or rfft real/imag
    frame_loss: Literal["mse", "stft"] = "mse"  # stft: multi-resolution STFT + waveform terms
    stft_sizes: list[int] = field(default_factory=lambda: [256, 512, 1024])
    wave_l1: float = 1.0  # weight of the L1 waveform term of the stft loss
    wave_mse: float = 0.0  # weight of the time frames' squared error (in the data's power)
    stft_floor_db: float | None = None  # log-magnitude floor, dB under the data's RMS
    linear_skip: bool = False  # a linear map from the input frame straight to the output
    frame_labels: bool = False  # condition on the data's labels (an embedding added to input)


class FrameRNN(nn.Module):
    """Next-frame regression.

    Args:
        n_features: features per frame F.
        cell: "gru" or "lstm".
        dense: width of the input dense layer D.
        hidden: units per recurrent layer H.
        layers: recurrent layers L.
        dropout: dropout after the input dense and between layers (training only).
        skip: the output dense reads every layer's output ([B, T, L*H]), else the last.
        n_labels: number of labels to condition on (0: unconditioned).
        linear_skip: add a linear map of the input frame (F x F, zero at the start) to the
            output.
    """

    receptive_field = None  # recurrent: every earlier frame can matter

    def __init__(  # defaults: FrameRNNConfig's
        self,
        n_features: int,
        cell: str = FrameRNNConfig.cell,
        dense: int = FrameRNNConfig.embed_dim,
        hidden: int = FrameRNNConfig.hidden,
        layers: int = FrameRNNConfig.layers,
        dropout: float = FrameRNNConfig.dropout,
        skip: bool = FrameRNNConfig.skip,
        n_labels: int = 0,
        linear_skip: bool = FrameRNNConfig.linear_skip,
    ):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        if layers < 1 or hidden < 1 or dense < 1:
            raise ValueError("layers, hidden and embed_dim must be >= 1")
        self.n_features, self.cell, self.hidden, self.skip = n_features, cell, hidden, skip
        self.inp = nn.Linear(n_features, dense)
        self.label_embed = nn.Embedding(n_labels, dense) if n_labels else None
        self.rnns = rnn_layers(cell, dense, hidden, layers)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden * layers if skip else hidden, n_features)
        # the next frame as a linear function of the last one (linear prediction; in time form
        # half of the next frame is the last one's second half), the RNN adding the rest.
        # Zero at the start, so the model starts where the plain one does.
        self.lin = None
        if linear_skip:
            self.lin = nn.Linear(n_features, n_features, bias=False)
            nn.init.zeros_(self.lin.weight)

    @classmethod
    def from_config(
        cls, cfg: FrameRNNConfig | Mapping, vocab_size: int, n_labels: int = 0
    ) -> FrameRNN:
        """``cfg``: the config, or a mapping of some of its keys (the others: defaults).
        ``vocab_size``: the kind's features per frame; ``n_labels``: 0 unless the kind
        conditions on labels (``frame_labels``)."""
        c = cfg if isinstance(cfg, FrameRNNConfig) else FrameRNNConfig(**cfg)
        return cls(
            vocab_size,
            cell=c.cell,
            dense=c.embed_dim,
            hidden=c.hidden,
            layers=c.layers,
            dropout=c.dropout,
            skip=c.skip,
            n_labels=n_labels,
            linear_skip=c.linear_skip,
        )

    def _input(self, x: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        """x: [B, T, F] -> [B, T, D] (dense, tanh, plus the label embedding)."""
        h = torch.tanh(self.inp(x))
        if self.label_embed is not None:
            if label is None:
                raise ValueError("this model is conditioned on labels; pass label [B]")
            h = h + self.label_embed(label)[:, None, :]
        return self.drop(h)

    def forward(
        self, x: torch.Tensor, label: torch.Tensor | None = None, state: list | None = None
    ) -> torch.Tensor:
        """x: FloatTensor[B, T, F] -> FloatTensor[B, T, F]; position t predicts frame t+1.
        ``state``: per layer h [B, H] (GRU) or (h, c) (LSTM) to start from (default zeros)."""
        y, _ = self._run(self._input(x, label), state)
        return y if self.lin is None else y + self.lin(x)

    def _run(self, h: torch.Tensor, state: list | None) -> tuple[torch.Tensor, list]:
        feats, new = run_rnn_layers(self.rnns, self.drop, h, state, self.skip)
        return self.out(feats), new

    # -- generation ---------------------------------------------------------------
    def init_state(
        self, batch_size: int, device: torch.device | str | None = None, label=None
    ) -> dict:
        """Zero recurrent state for ``batch_size`` streams (what forward() starts from), with
        the streams' labels (LongTensor[B]) when the model is conditioned."""
        p = self.out.weight
        shape, dev = (batch_size, self.hidden), device or p.device
        z = lambda: torch.zeros(shape, device=dev, dtype=p.dtype)  # noqa: E731
        rnn = [(z(), z()) if self.cell == "lstm" else z() for _ in self.rnns]
        return {"rnn": rnn, "label": label}

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One frame per stream. x: FloatTensor[B, F] -> (next frame FloatTensor[B, F], state).
        Equal to forward() run frame by frame (call in eval mode: no dropout)."""
        h = self._input(x[:, None, :], state["label"])
        y, rnn = self._run(h, state["rnn"])
        y = y[:, 0] if self.lin is None else y[:, 0] + self.lin(x)
        return y, {"rnn": rnn, "label": state["label"]}
