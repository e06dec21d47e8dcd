"""Two-tier SampleRNN over 8-bit mu-law audio: a frame-level GRU and a sample-level MLP.

Positions are counted from the start of the input; position t predicts x[t+1]. Frames are
the blocks x[kF : (k+1)F] of F (``frame_size``) inputs.

- Frame tier: a GRU reads frame k (its samples linearly scaled to [-2, 2], with the label
  embedding appended) and its last layer's output o_k is upsampled by one linear layer to F
  conditioning vectors c_k[0..F-1] of width H (the paper's learned upsampling). The learned
  initial state h0 gives the vectors used before the first frame is complete.
- Sample tier: position t (predicting target s = t + 1) sees the previous F inputs
  x[t-F+1 .. t] and c[s // F][s % F], the vectors of the last frame completed before s:

      a = sum_i table_i[x[t-F+1+i]] + c + label_proj       [H]
      logits = out(relu(fc_L(... relu(fc_1(relu(a))))))    [classes]

  ``table_i`` is the embedding of tap i followed by the input layer's weights for that tap:
  an embedding of the classes followed by a linear layer is exactly a lookup table (the
  paper's embedding has as many dimensions as classes, so nothing is lost), and a table
  costs F additions per position instead of an F*E x H matmul. Taps before position 0
  read a padding row that is zero.

The receptive field is unbounded (``receptive_field = None``), so exact scoring runs whole
pieces; ``forward_chunk`` continues from a state so a long piece is scored in chunks with
the same result. Training windows start mid-piece with a fresh state: ``warmup`` inputs
(whole frames) at the head of each window let the GRU settle before any target is scored,
and scoring and generation start after as much silence (see ``tunelab.kinds.mulaw``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class SampleRNNConfig:
    """A SampleRNN run's ``model`` section: ``hidden`` and ``layers`` are the frame-tier GRU's,
    ``gc_channels`` the label embedding's width (0: unconditioned)."""

    family: str = "samplernn"
    srnn_frame_size: int = 16  # samples per frame-tier step (and taps of the sample tier)
    hidden: int = 256
    layers: int = 2
    srnn_sample_hidden: int = 512  # width of the sample-level MLP
    srnn_sample_layers: int = 2  # hidden layers of that MLP between its input and output
    srnn_warmup_frames: int = 16  # unscored frames at the head of each training window
    gc_channels: int = 32


@dataclass
class SampleRNNState:
    """Incremental state for n streams, after ``pos`` inputs.

    hist: LongTensor[n, F], the last F inputs (``pad`` before position 0), oldest first.
    hidden: FloatTensor[layers, n, H_f], the GRU state after the frames completed so far.
    frame_label / sample_label: the label's contribution to the GRU input FloatTensor[n, gc]
    and to the sample tier FloatTensor[n, H] (None when unconditioned).
    """

    hist: torch.Tensor
    hidden: torch.Tensor
    frame_label: torch.Tensor | None
    sample_label: torch.Tensor | None
    pos: int = 0


class SampleRNN(nn.Module):
    """forward(x: LongTensor[B, T]) -> logits FloatTensor[B, T, classes] (see module doc).

    Args:
        classes: quantisation levels (input ids and output classes), 256 for 8-bit mu-law.
        frame_size: F, samples per frame-tier step and taps of the sample tier.
        frame_hidden: H_f, width of the GRU. frame_layers: GRU layers.
        sample_hidden: H, width of the sample-level MLP (and of the conditioning vectors).
        sample_layers: hidden layers of the MLP between its input layer and the output.
        warmup_frames: frames of unscored context at the head of each training window.
        n_labels, gc_channels: global label conditioning (0 either: unconditioned).
    """

    def __init__(  # defaults: SampleRNNConfig's
        self,
        classes: int = 256,
        frame_size: int = SampleRNNConfig.srnn_frame_size,
        frame_hidden: int = SampleRNNConfig.hidden,
        frame_layers: int = SampleRNNConfig.layers,
        sample_hidden: int = SampleRNNConfig.srnn_sample_hidden,
        sample_layers: int = SampleRNNConfig.srnn_sample_layers,
        warmup_frames: int = SampleRNNConfig.srnn_warmup_frames,
        n_labels: int = 0,
        gc_channels: int = SampleRNNConfig.gc_channels,
    ):
        super().__init__()
        if frame_size < 1 or frame_layers < 1 or sample_layers < 0 or warmup_frames < 0:
            raise ValueError(
                "need frame_size >= 1, frame_layers >= 1, sample_layers >= 0, warmup_frames >= 0"
            )
        Fs, H = frame_size, sample_hidden
        self.classes, self.frame_size, self.sample_hidden = classes, Fs, H
        self.frame_hidden, self.frame_layers = frame_hidden, frame_layers
        self.receptive_field = None  # an RNN: every output can depend on every earlier input
        self.warmup = warmup_frames * Fs
        self.pad = Fs * classes  # the zero row of the tap tables
        self.conditioned = n_labels > 0 and gc_channels > 0
        gc = gc_channels if self.conditioned else 0

        self.h0 = nn.Parameter(torch.zeros(frame_layers, frame_hidden))
        self.gru = nn.GRU(Fs + gc, frame_hidden, frame_layers, batch_first=True)
        self.upsample = nn.Linear(frame_hidden, Fs * H)
        # Tap i of class c is row i * classes + c; the last row is the (zero) padding.
        self.taps_embed = nn.Embedding(Fs * classes + 1, H, padding_idx=self.pad)
        self.fcs = nn.ModuleList(nn.Linear(H, H) for _ in range(sample_layers))
        self.out = nn.Linear(H, classes)
        self.label_embed = nn.Embedding(n_labels, gc) if self.conditioned else None
        self.label_proj = nn.Linear(gc, H, bias=False) if self.conditioned else None
        with torch.no_grad():  # the F taps are summed: unit variance for the sum, not each
            self.taps_embed.weight.normal_(0.0, Fs**-0.5)
            self.taps_embed.weight[self.pad] = 0

    @classmethod
    def from_config(
        cls, cfg: SampleRNNConfig | Mapping, vocab_size: int, n_labels: int = 0
    ) -> SampleRNN:
        """``cfg``: the config, or a mapping of some of its keys (the others: defaults)."""
        c = cfg if isinstance(cfg, SampleRNNConfig) else SampleRNNConfig(**cfg)
        return cls(
            vocab_size,
            frame_size=c.srnn_frame_size,
            frame_hidden=c.hidden,
            frame_layers=c.layers,
            sample_hidden=c.srnn_sample_hidden,
            sample_layers=c.srnn_sample_layers,
            warmup_frames=c.srnn_warmup_frames,
            n_labels=n_labels,
            gc_channels=c.gc_channels,
        )

    def _labels(self, label: torch.Tensor | None, n: int):
        """(GRU input part FloatTensor[n, gc], sample tier part FloatTensor[n, H]) or Nones."""
        if not self.conditioned:
            if label is not None:
                raise ValueError(
                    "this SampleRNN has no label conditioning (n_labels=0); pass label=None"
                )
            return None, None
        if label is None:
            raise ValueError("this SampleRNN is label-conditioned: pass label=LongTensor[B]")
        if label.shape != (n,):
            raise ValueError(f"label must have shape ({n},), got {tuple(label.shape)}")
        e = self.label_embed(label)
        return e, self.label_proj(e)

    def frame_input(self, frames: torch.Tensor) -> torch.Tensor:
        """Class ids LongTensor[..., F] -> the GRU's sample inputs in [-2, 2) FloatTensor[..., F]."""
        return (frames.to(self.h0.dtype) / (self.classes / 2) - 1) * 2

    # -- training and scoring --------------------------------------------------------
    def forward(
        self, x: torch.Tensor, label: torch.Tensor | None = None, tail: int | None = None
    ) -> torch.Tensor:
        """x: LongTensor[B, T], label: LongTensor[B] -> logits FloatTensor[B, T, classes].

        Causal: position t sees x[..t] and predicts x[t+1]. ``tail=N``: the logits of the
        last N positions only, [B, N, classes]; the sample tier then runs only there (the
        head of a training window is warm-up for the frame tier).
        """
        state = self.init_state(x.shape[0], x.device, label)
        return self.forward_chunk(x, state, tail)[0]

    def forward_chunk(
        self, x: torch.Tensor, state: SampleRNNState, tail: int | None = None
    ) -> tuple[torch.Tensor, SampleRNNState]:
        """forward() continued from ``state``: x LongTensor[n, C] are the inputs at positions
        state.pos .. state.pos + C - 1 -> (logits FloatTensor[n, C or tail, classes], new state).

        Chunks of any length give the same logits as one forward() over their concatenation.
        """
        n, C = x.shape
        Fs, p0 = self.frame_size, state.pos
        hx = torch.cat([state.hist, x], dim=1)  # inputs p0 - F .. p0 + C - 1
        # Frames k completing inside the chunk ((k+1)F - 1 in [p0, p0 + C - 1]) lie inside hx.
        k_lo, nf = p0 // Fs, (p0 + C) // Fs - p0 // Fs
        hidden = state.hidden
        sources = [hidden[-1][:, None]]  # conditioning sources: the state's last layer, then o_k
        if nf:
            s0 = k_lo * Fs - p0 + Fs
            frames = self.frame_input(hx[:, s0 : s0 + nf * Fs].view(n, nf, Fs))
            if state.frame_label is not None:
                frames = torch.cat([frames, state.frame_label[:, None].expand(n, nf, -1)], -1)
            out, hidden = self.gru(frames, hidden.contiguous())
            sources.append(out)
        # Position t uses source (t+1)//F - k_lo, vector (t+1) % F: flat index (t+1) - k_lo*F.
        t0 = 0 if tail is None else C - tail
        first = p0 % Fs + 1 + t0  # flat index of the first position wanted
        lo = first // Fs
        src = torch.cat(sources, dim=1)[:, lo:]
        cond = self.upsample(self._in(src)).view(n, -1, self.sample_hidden)
        cond = cond[:, first - lo * Fs : first - lo * Fs + C - t0]
        # Taps: position t reads hx[t - p0 + 1 .. t - p0 + F] (its previous F inputs).
        taps = hx.unfold(1, Fs, 1)[:, 1 + t0 :]  # [n, C - t0, F]
        ids = taps + torch.arange(Fs, device=x.device) * self.classes
        ids = torch.where(taps == self.pad, self.pad, ids)
        a = F.embedding_bag(
            ids.reshape(-1, Fs), self.taps_embed.weight, mode="sum", padding_idx=self.pad
        ).view(n, C - t0, -1)
        a = a + cond
        if state.sample_label is not None:
            a = a + state.sample_label[:, None]
        h = F.relu(a)
        for fc in self.fcs:
            h = F.relu(fc(self._in(h)))
        new = SampleRNNState(hx[:, -Fs:], hidden, state.frame_label, state.sample_label, p0 + C)
        return self.out(self._in(h)), new

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        """x as the upsampling and MLP matmuls read it (``round_input``)."""
        return x if self.round_input is None else self.round_input(x, "rows")

    # -- generation ------------------------------------------------------------------
    def init_state(
        self, n: int, device: torch.device | str | None = None, label: torch.Tensor | None = None
    ) -> SampleRNNState:
        """The state forward() starts from, for n streams; label: LongTensor[n] if conditioned."""
        device = device or self.h0.device
        lab = None if label is None else label.to(device)
        frame_label, sample_label = self._labels(lab, n)
        hist = torch.full((n, self.frame_size), self.pad, dtype=torch.long, device=device)
        hidden = self.h0[:, None].expand(-1, n, -1)
        return SampleRNNState(hist, hidden, frame_label, sample_label, 0)

    @torch.no_grad()
    def step(self, x: torch.Tensor, state: SampleRNNState) -> tuple[torch.Tensor, SampleRNNState]:
        """x: LongTensor[n] -> (logits FloatTensor[n, classes], state); equal to forward()
        step by step."""
        logits, state = self.forward_chunk(x[:, None], state)
        return logits[:, 0], state

    generator_weights = ("float32", "bfloat16", "int8")  # how generator() can store weights
    # What the inputs of the upsampling and MLP matmuls pass through: None, or (in a rounded
    # copy, ``samplernn_gen.round_weights``) the rounding the fused generator applies to them.
    round_input = None

    def generator(self, n: int, label: torch.Tensor | None = None, weights: str = "float32"):
        """The fused numba generator for n streams (``tunelab.models.samplernn_gen``)."""
        from tunelab.models.samplernn_gen import FusedSampleRNN

        return FusedSampleRNN(self, n, label, weights=weights)

    def rounded(self, weights: str) -> nn.Module:
        """A copy holding the weights generator(weights=weights) multiplies by."""
        from tunelab.models.samplernn_gen import round_weights

        return round_weights(self, weights)
