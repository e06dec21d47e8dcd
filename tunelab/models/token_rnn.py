"""Token RNN: embedding -> stacked GRU or LSTM layers -> linear, the classic MIDI event model.

Training uses ``nn.GRU``/``nn.LSTM`` (one module per layer so every layer's
output can feed the head when ``skip`` is on). Generation uses ``step()``, a
hand-written cell: the first layer's input projection ``embedding @ W_ih + b_ih``
is precomputed into a [V, gates*H] table, so a step of the first layer is one
row gather plus one ``h @ W_hh`` matmul, with no ``nn.GRU`` call overhead; the
other matrices are kept transposed and contiguous while generating.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tunelab.models.layers import rnn_layers, run_rnn_layers
from tunelab.models.roll import (
    N_KEYS,
    PitchHead,
    roll_features,
    roll_init,
    roll_layout,
    roll_step,
)

# GRU: [h] per layer, each [B, H]; LSTM: [(h, c)] per layer; with ``roll``, then (prev, cur).
State = list


@dataclass
class TokenRNNConfig:
    """A token RNN run's ``model`` section (``TokenRNN``'s arguments say what each key does).

    ``transpose_mix`` and ``piece_memory`` change scoring and sampling only, never training.
    """

    family: str = "token_rnn"
    cell: Literal["gru", "lstm"] = "gru"
    embed_dim: int = 128
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    skip: bool = False
    roll: bool = False  # piano-roll inputs (tunelab.models.roll); steps/onsets only
    pitch_head: int = 0  # channels of the pitch-relative key head (needs roll); 0 = off
    weight_drop: float = 0.0  # DropConnect on hidden-to-hidden weights while training
    # evaluate and generate with the mixture over transpositions -n..n semitones of the input
    # (tunelab.models.transpose_mix; 2n + 1 model rows per piece); 0 = off
    transpose_mix: int = 0
    # evaluate (and generate --piece-memory) mixed with the memory of the piece so far: what
    # followed the longest recent context that occurred before (tunelab.models.piece_memory)
    piece_memory: bool = False


class TokenRNN(nn.Module):
    """GRU/LSTM language model over tokens.

    Args:
        vocab_size: number of token ids V.
        cell: "gru" or "lstm".
        embed_dim: embedding size E.
        hidden: units per layer H.
        layers: number of recurrent layers L.
        dropout: dropout on the embedding, between layers and before the head.
        skip: feed the concatenated outputs of all layers ([B, T, L*H]) to the head.
        roll: also feed the first layer the piano roll of the previous step and of the current
            step so far (``tunelab.models.roll``, 176 inputs); steps/onsets vocabularies only.
        pitch_head: channels of a pitch-relative head (``roll.PitchHead``) added to the key
            logits; 0 = none. Needs ``roll``.
        weight_drop: DropConnect rate on the recurrent matrices while training
            (``layers.run_rnn_layers``); generation and scoring use the full weights.
    """

    def __init__(  # defaults: TokenRNNConfig's
        self,
        vocab_size: int,
        cell: str = TokenRNNConfig.cell,
        embed_dim: int = TokenRNNConfig.embed_dim,
        hidden: int = TokenRNNConfig.hidden,
        layers: int = TokenRNNConfig.layers,
        dropout: float = TokenRNNConfig.dropout,
        skip: bool = TokenRNNConfig.skip,
        roll: bool = TokenRNNConfig.roll,
        pitch_head: int = TokenRNNConfig.pitch_head,
        weight_drop: float = TokenRNNConfig.weight_drop,
    ):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        if layers < 1:
            raise ValueError("layers must be >= 1")
        self.vocab_size, self.cell, self.hidden, self.skip = vocab_size, cell, hidden, skip
        self.weight_drop = weight_drop
        self.roll_step_id = roll_layout(vocab_size) if roll else None
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnns = rnn_layers(cell, embed_dim + (2 * N_KEYS if roll else 0), hidden, layers)
        self.drop = nn.Dropout(dropout)
        feat_dim = hidden * layers if skip else hidden
        self.head = nn.Linear(feat_dim, vocab_size)
        if pitch_head and not roll:
            raise ValueError("pitch_head needs roll inputs (model.roll: true)")
        self.pitch_head = (
            PitchHead(feat_dim, pitch_head, self.roll_step_id // N_KEYS) if pitch_head else None
        )
        self._table_key: tuple | None = None  # cache of _fast_weights()
        self._table: tuple | None = None
        self._params: list[nn.Parameter] = []

    receptive_field = None  # recurrent: every earlier token can matter

    @classmethod
    def from_config(
        cls, cfg: TokenRNNConfig | Mapping, vocab_size: int, n_labels: int = 0
    ) -> TokenRNN:
        """``cfg``: the config, or a mapping of some of its keys (the others: defaults).
        ``n_labels`` is accepted for the common interface; token models are unconditioned."""
        c = cfg if isinstance(cfg, TokenRNNConfig) else TokenRNNConfig(**cfg)
        return cls(
            vocab_size,
            cell=c.cell,
            embed_dim=c.embed_dim,
            hidden=c.hidden,
            layers=c.layers,
            dropout=c.dropout,
            skip=c.skip,
            roll=c.roll,
            pitch_head=c.pitch_head,
            weight_drop=c.weight_drop,
        )

    # -- training -----------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        label: torch.Tensor | None = None,
        state: State | None = None,
        tail: int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, State]:
        """x: LongTensor[B, T] -> logits FloatTensor[B, T, V] (position t predicts token t+1).
        ``label`` is ignored (token models are unconditioned).

        With ``state`` (as from ``init_state``/``init_carry``: per layer h [B, H], or (h, c)),
        the layers start from it and ``(logits, state after the last position)`` is returned,
        so consecutive windows of a piece chain exactly into one long forward pass.

        ``tail`` N < T (``train.burn_in``): the first T - N positions are context only, run
        without gradients; returns the logits of the last N positions [B, N, V].
        """
        if tail is not None and tail < x.shape[1]:
            with torch.no_grad():
                start = self.init_carry(len(x), x.device) if state is None else state
                _, start = self.forward(x[:, : x.shape[1] - tail], state=start)
            out = self.forward(x[:, x.shape[1] - tail :], state=start)  # no grad into start
            return out if state is not None else out[0]
        h = self.drop(self.embed(x))
        n = len(self.rnns)
        if self.roll_step_id is not None:
            roll, roll_last = roll_features(
                x, self.roll_step_id, None if state is None else state[n]
            )
            h = torch.cat([h, roll.to(h.dtype)], dim=-1)
        feats, last = run_rnn_layers(
            self.rnns,
            self.drop,
            h,
            None if state is None else state[:n],
            self.skip,
            self.weight_drop if self.training else 0.0,
        )
        logits = self.head(feats)
        if self.pitch_head is not None:
            logits = self._add_keys(logits, self.pitch_head(roll, feats))
        if state is None:
            return logits
        return logits, (last + [roll_last] if self.roll_step_id is not None else last)

    def init_carry(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """State carried across training windows (train.carry_state): zeros, as init_state."""
        return self.init_state(batch_size, device)

    # -- generation ---------------------------------------------------------------
    def init_state(
        self, batch_size: int, device: torch.device | str | None = None, label=None
    ) -> State:
        """Zero hidden state for ``batch_size`` sequences (what forward() starts from)."""
        p = self.head.weight
        z = lambda: torch.zeros(batch_size, self.hidden, device=device or p.device, dtype=p.dtype)  # noqa: E731
        layers = [(z(), z()) if self.cell == "lstm" else z() for _ in self.rnns]
        if self.roll_step_id is not None:
            layers.append(roll_init(batch_size, device or p.device, p.dtype))
        return layers

    def _fast_weights(self) -> tuple:
        """Weights laid out for single steps, cached while the parameters stay unchanged.

        Returns (table [V, gates*H] = embedding @ W_ih^T + b_ih of layer 0, per layer
        (W_ih^T, b_ih, W_hh^T, b_hh) with contiguous transposes (a row vector times a
        contiguous [in, out] matrix is the fastest matvec layout), head W^T, head b, and the
        roll inputs' part of layer 0's W_ih^T [176, gates*H], empty without ``roll``).
        """
        # Checked every step, so kept cheap: the parameter list is cached; _version changes on
        # every in-place update (optimizer step, load_state_dict); .to()/.half() move the data.
        params = self._params if self._table is not None else list(self.parameters())
        live = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        key = None
        if not live:
            key = (params[0].data_ptr(), params[0].dtype, *(p._version for p in params))
        if live or key != self._table_key:
            params = self._params = list(self.parameters())
            key = (params[0].data_ptr(), params[0].dtype, *(p._version for p in params))
            with contextlib.nullcontext() if live else torch.no_grad():
                r0, E = self.rnns[0], self.embed.embedding_dim
                table = torch.addmm(r0.bias_ih_l0, self.embed.weight, r0.weight_ih_l0[:, :E].t())
                # The roll inputs' share of layer 0's input projection ([176, gates*H]).
                roll_w = r0.weight_ih_l0[:, E:].t().contiguous()
                layers = [
                    (r.weight_ih_l0.t().contiguous(), r.bias_ih_l0)
                    + (r.weight_hh_l0.t().contiguous(), r.bias_hh_l0)
                    for r in self.rnns
                ]
                fast = (table, layers, self.head.weight.t().contiguous(), self.head.bias, roll_w)
            if live:
                return fast
            self._table, self._table_key = fast, key
        return self._table

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token per sequence. x: LongTensor[B] -> (logits FloatTensor[B, V], new state).

        Equal to forward() run token by token (dropout is inactive: call in eval mode).
        """
        H = self.hidden
        table, layers, head_wt, head_b, roll_w = self._fast_weights()
        gi = table.index_select(0, x)
        new_state, outs, h_in = [], [], None
        if self.roll_step_id is not None:
            roll, roll_state = roll_step(x, state[len(layers)], self.roll_step_id)
            gi = torch.addmm(gi, roll.to(gi.dtype), roll_w)
        for i, (w_ih_t, b_ih, w_hh_t, b_hh) in enumerate(layers):
            if i > 0:
                gi = torch.addmm(b_ih, h_in, w_ih_t)
            if self.cell == "gru":
                h = state[i]
                gh = torch.addmm(b_hh, h, w_hh_t)
                rz = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])
                n = torch.tanh(torch.addcmul(gi[:, 2 * H :], rz[:, :H], gh[:, 2 * H :]))
                h = torch.lerp(n, h, rz[:, H:])  # (1 - z) * n + z * h
                new_state.append(h)
            else:
                h, c = state[i]
                g = gi + torch.addmm(b_hh, h, w_hh_t)
                ig, fg, cg, og = g.chunk(4, dim=1)
                c = torch.sigmoid(fg) * c + torch.sigmoid(ig) * torch.tanh(cg)
                h = torch.sigmoid(og) * torch.tanh(c)
                new_state.append((h, c))
            outs.append(h)
            h_in = h
        feat = torch.cat(outs, dim=-1) if self.skip else h_in
        logits = torch.addmm(head_b, feat, head_wt)
        if self.pitch_head is not None:
            logits = self._add_keys(logits, self.pitch_head(roll, feat))
        if self.roll_step_id is not None:
            new_state.append(roll_state)
        return logits, new_state

    def _add_keys(self, logits: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """logits [..., V] with ``keys`` [..., K] added to the first K ids (the key blocks)."""
        return torch.cat([logits[..., : keys.shape[-1]] + keys, logits[..., keys.shape[-1] :]], -1)
