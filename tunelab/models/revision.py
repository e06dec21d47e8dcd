"""The revision pass: a denoising GAN that rewrites a finished draft with the whole clip in view.

Generator (``Reviser``): non-causal, in the STFT domain. The draft's log magnitudes
(``n_fft``, ``hop``; Hann window) go through a 1x1 conv, ``conv_layers`` residual dilated convs
over frames (dilation 1, 2, 4, ...; both directions) and a 1x1 conv to one gain per bin and
frame, bounded to [-max_cut_db, +max_boost_db] by a tanh on each side. The revised STFT is the
draft's times that gain: the draft's phase is kept, so the revision can clean and reshape the
spectrum (noise between partials, mu-law hiss, dull highs, frame seams) but cannot move notes
or time: it stays with the draft's music. The last conv starts at zero, so an untrained
reviser returns its input (up to the STFT round trip). Cost per second of 16 kHz audio:
125 frames through a few 128-channel convs, far above real time on a CPU.

Discriminators (``WaveDiscriminator``, MelGAN style): one small strided conv stack per scale,
on the waveform at 1x, 2x and 4x average pooling; each returns its feature maps and a score
map.

Training (``RevisionGAN.forward`` in train mode) takes x [B, N, 2] (draft, real) and returns
the per-row losses of both players at once, least-squares GAN:

    D: (D(real) - 1)^2 + D(G(draft).detach())^2
    G: adv_weight (D'(G(draft)) - 1)^2 + fm_weight |feats D'(real) - feats D'(G(draft))|
       + rec_weight STFT distance(G(draft), real)

where D' is D with its parameters detached (``torch.func.functional_call``): one backward
gives D only its own loss's gradients and G only its own, so the one training loop and its one
optimizer train both (resume, EMA, budgets, DDP unchanged). In eval mode ``forward`` returns
the revised audio [B, N]; the kind scores it with ``stft_distance`` against the real audio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.models import layers


@dataclass
class RevisionConfig:
    """A revision run's ``model`` section: the reviser (STFT size, conv width and depth, gain
    bounds), the discriminators, the loss weights, and how the kind makes drafts from real
    audio (``drafts``: which corruptions, ``clean``: the share of rows left as they are;
    ``tunelab.kinds.revision``)."""

    family: str = "revision"
    n_fft: int = 512
    hop: int = 128
    conv_channels: int = 128
    conv_layers: int = 4  # residual dilated convs over frames, dilation 2**i
    conv_kernel: int = 5
    max_boost_db: float = 12.0
    max_cut_db: float = 40.0
    disc_channels: int = 16
    disc_scales: int = 3  # waveform at 1x, 2x, 4x, ... average pooling
    adv_weight: float = 0.1
    fm_weight: float = 1.0
    rec_weight: float = 1.0
    stft_sizes: list[int] = field(default_factory=lambda: [256, 512, 1024])
    drafts: list[str] = field(default_factory=lambda: ["mulaw", "noise", "blur", "seams"])
    clean: float = 0.1  # share of training rows whose draft is the real audio itself


# -- spectra --------------------------------------------------------------------------------


def stft_distance(a: torch.Tensor, b: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Multi-resolution STFT distance of a to b, FloatTensor[B, N] each -> [B]: per size n,
    spectral convergence ||B - A|| / ||B|| plus mean |log B - log A| (Parallel WaveGAN), the
    mean over the sizes (``layers.stft_distance``: centred frames, magnitudes floored at
    1e-5, in float32 whatever the autocast dtype)."""
    return layers.stft_distance(a.float(), b.float(), sizes, center=True, min_mag=1e-5)


# -- generator ------------------------------------------------------------------------------


class Reviser(nn.Module):
    """Draft audio [B, N] -> revised audio [B, N]: a bounded gain per STFT bin (module doc)."""

    def __init__(
        self,
        n_fft: int = RevisionConfig.n_fft,
        hop: int = RevisionConfig.hop,
        channels: int = RevisionConfig.conv_channels,
        layers: int = RevisionConfig.conv_layers,
        kernel_size: int = RevisionConfig.conv_kernel,
        max_boost_db: float = RevisionConfig.max_boost_db,
        max_cut_db: float = RevisionConfig.max_cut_db,
    ):
        super().__init__()
        if kernel_size % 2 == 0 or hop > n_fft or hop < 1:
            raise ValueError("need an odd kernel_size and 1 <= hop <= n_fft")
        bins = n_fft // 2 + 1
        self.n_fft, self.hop = n_fft, hop
        self.boost = max_boost_db * math.log(10) / 20  # dB -> natural log of amplitude
        self.cut = max_cut_db * math.log(10) / 20
        self.inp = nn.Conv1d(bins, channels, 1)
        self.blocks = nn.ModuleList(
            nn.Conv1d(
                channels, channels, kernel_size, dilation=2**i, padding=2**i * (kernel_size // 2)
            )
            for i in range(layers)
        )
        self.out = nn.Conv1d(channels, bins, 1)
        nn.init.zeros_(self.out.weight)  # an untrained reviser keeps the draft
        nn.init.zeros_(self.out.bias)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        # Frames either side that an output frame sees: chunked revision keeps this margin.
        self.context_frames = sum(2**i * (kernel_size // 2) for i in range(layers))

    @property
    def context_samples(self) -> int:
        """Samples either side of a point that its revision depends on (frames + a window)."""
        return self.context_frames * self.hop + self.n_fft

    def gain(self, mag: torch.Tensor) -> torch.Tensor:
        """|STFT| FloatTensor[B, F, K] -> log-amplitude gain FloatTensor[B, F, K], in
        [-max_cut, +max_boost] (natural log units)."""
        h = F.gelu(self.inp(0.25 * (mag + 1e-4).log()))  # log magnitudes of -20 dBFS audio: ~-10..2
        for conv in self.blocks:
            h = h + F.gelu(conv(h))
        g = self.out(h).float()
        return torch.where(g > 0, self.boost * torch.tanh(g), self.cut * torch.tanh(g))

    def forward(self, draft: torch.Tensor) -> torch.Tensor:
        """draft: FloatTensor[B, N] -> revised FloatTensor[B, N] (the draft's phase kept)."""
        n = draft.shape[-1]
        spec = torch.stft(
            draft.float(), self.n_fft, self.hop, window=self.window, return_complex=True
        )
        revised = spec * torch.exp(self.gain(spec.abs()))
        return torch.istft(revised, self.n_fft, self.hop, window=self.window, length=n)


# -- discriminators -------------------------------------------------------------------------


class WaveDiscriminator(nn.Module):
    """One scale of MelGAN's discriminator, small: audio [B, N] -> (feature maps, scores
    FloatTensor[B, 1, N / 64])."""

    def __init__(self, c: int = RevisionConfig.disc_channels):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(1, c, 15, padding=7),
                nn.Conv1d(c, 4 * c, 11, stride=4, padding=5, groups=4),
                nn.Conv1d(4 * c, 8 * c, 11, stride=4, padding=5, groups=8),
                nn.Conv1d(8 * c, 8 * c, 11, stride=4, padding=5, groups=8),
                nn.Conv1d(8 * c, 8 * c, 5, padding=2),
            ]
        )
        self.score = nn.Conv1d(8 * c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        # Training audio sits at -20 dBFS (RMS 0.1): at unit scale the default init's layers
        # pass differences on; at 0.1 the score is all bias and the discriminator learns
        # nothing for dozens of steps (measured).
        h, feats = 10.0 * x[:, None], []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            feats.append(h)
        return feats, self.score(h)


class MultiScale(nn.Module):
    """Discriminators on the waveform at 1x, 2x, 4x ... average pooling."""

    def __init__(
        self, scales: int = RevisionConfig.disc_scales, c: int = RevisionConfig.disc_channels
    ):
        super().__init__()
        self.ds = nn.ModuleList(WaveDiscriminator(c) for _ in range(scales))

    def forward(self, x: torch.Tensor) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        out = []
        for i, d in enumerate(self.ds):
            if i:
                x = F.avg_pool1d(x[:, None], 4, stride=2, padding=1, count_include_pad=False)[:, 0]
            out.append(d(x))
        return out


# -- the GAN --------------------------------------------------------------------------------


class GanLosses(NamedTuple):
    """The per-row losses of one training forward: ``total`` [B] (what is minimised) and its
    unweighted parts [B] each."""

    total: torch.Tensor
    d: torch.Tensor  # the discriminators' LSGAN loss on (real, revised)
    adv: torch.Tensor  # the reviser's LSGAN loss through the discriminators
    fm: torch.Tensor  # feature matching
    rec: torch.Tensor  # STFT distance of the revised audio to the real audio


def _row_mean(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).float().mean(dim=1)


class RevisionGAN(nn.Module):
    """The reviser ``g`` and the discriminators ``d`` in one module (module docstring)."""

    receptive_field = None  # non-causal: not a next-sample model

    def __init__(self, cfg: RevisionConfig):
        super().__init__()
        if not cfg.stft_sizes:
            raise ValueError("stft_sizes must name at least one STFT size")
        self.g = Reviser(
            cfg.n_fft, cfg.hop, cfg.conv_channels, cfg.conv_layers, cfg.conv_kernel,
            cfg.max_boost_db, cfg.max_cut_db,
        )  # fmt: skip
        self.d = MultiScale(cfg.disc_scales, cfg.disc_channels)
        self.weights = (cfg.adv_weight, cfg.fm_weight, cfg.rec_weight)
        self.stft_sizes = list(cfg.stft_sizes)

    @classmethod
    def from_config(
        cls, cfg: RevisionConfig | Mapping, vocab_size: int = 1, n_labels: int = 0
    ) -> RevisionGAN:
        """``vocab_size`` and ``n_labels`` come from the kind and are unused: audio in, audio
        out, unconditioned."""
        return cls(cfg if isinstance(cfg, RevisionConfig) else RevisionConfig(**cfg))

    def revise(self, draft: torch.Tensor) -> torch.Tensor:
        """draft FloatTensor[B, N] -> revised FloatTensor[B, N]."""
        return self.g(draft)

    def losses(self, draft: torch.Tensor, real: torch.Tensor) -> GanLosses:
        """Both players' losses per row, for one backward (module docstring)."""
        revised = self.g(draft)
        real_out = self.d(real)
        d_loss = 0.0
        for (_, s_real), (_, s_fake) in zip(real_out, self.d(revised.detach()), strict=True):
            d_loss = d_loss + _row_mean((s_real - 1) ** 2) + _row_mean(s_fake**2)
        # The reviser's view through frozen discriminators: gradients reach g only.
        frozen = {k: v.detach() for k, v in self.d.named_parameters()}
        seen = torch.func.functional_call(self.d, frozen, (revised,))
        adv, fm = 0.0, 0.0
        for (f_fake, s_fake), (f_real, _) in zip(seen, real_out, strict=True):
            adv = adv + _row_mean((s_fake - 1) ** 2)
            pairs = zip(f_fake, f_real, strict=True)
            fm = fm + sum(_row_mean((a - b.detach()).abs()) for a, b in pairs) / len(f_fake)
        rec = stft_distance(revised, real, self.stft_sizes)
        wa, wf, wr = self.weights
        total = d_loss + wa * adv + wf * fm + wr * rec
        return GanLosses(total, d_loss, adv, fm, rec)

    def forward(self, x: torch.Tensor, label=None):
        """x FloatTensor[B, N, 2] (draft, real). Training: ``GanLosses``; eval: the revised
        draft FloatTensor[B, N]."""
        draft, real = x[..., 0], x[..., 1]
        if not self.training:
            return self.g(draft)
        return self.losses(draft, real)
