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

import functools
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
    stat_weight: float = 1.0  # spectral statistics of revised own drafts (revision.base)
    chroma_weight: float = 4.0  # within them: the gap of the chroma profile (pitch gathering)
    stft_sizes: list[int] = field(default_factory=lambda: [256, 512, 1024])
    drafts: list[str] = field(default_factory=lambda: ["mulaw", "noise", "blur", "seams"])
    clean: float = 0.1  # share of training rows whose draft is the real audio itself
    # With revision.base=RUN: the share of rows that are RUN's own generated drafts, and
    # how many seconds of them it generates to draw from (tunelab.kinds.revision).
    own_share: float = 0.5
    own_seconds: float = 64.0


# -- spectra --------------------------------------------------------------------------------


def stft_distance(a: torch.Tensor, b: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Multi-resolution STFT distance of a to b, FloatTensor[B, N] each -> [B]: per size n,
    spectral convergence ||B - A|| / ||B|| plus mean |log B - log A| (Parallel WaveGAN), the
    mean over the sizes (``layers.stft_distance``: centred frames, magnitudes floored at
    1e-5, in float32 whatever the autocast dtype)."""
    return layers.stft_distance(a.float(), b.float(), sizes, center=True, min_mag=1e-5)


@functools.lru_cache(maxsize=8)
def band_matrix(n_fft: int, bands: int = 48) -> torch.Tensor:
    """FloatTensor[K, n_fft // 2 + 1]: rectangular bands of STFT bins, log-spaced from bin 1
        to Nyquist (about a sixth of an octave at 48 bands, one bin wide at the bottom; K <= bands
        once equal edges merge). Independent of the sample rate, as the reviser is. Cached: every
    training step asks for it; callers do not write to it."""
    f = n_fft // 2 + 1
    edges = sorted({int(round(e)) for e in torch.logspace(0, math.log10(f), bands + 1).tolist()})
    m = torch.zeros(len(edges) - 1, f)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        m[i, a:b] = 1.0
    m[-1, -1] = 1.0  # Nyquist's bin joins the top band
    return m


def band_log_power(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Log band power FloatTensor[B, K, T] of audio FloatTensor[B, N] (``band_matrix``)."""
    w = torch.hann_window(n_fft, device=x.device)
    power = torch.stft(x.float(), n_fft, hop, window=w, return_complex=True).abs().square()
    return (band_matrix(n_fft).to(x.device) @ power + 1e-8).log()


CHROMA_FFT = 2048  # the chroma profile's STFT (the audits' chroma uses the same at 16 kHz)
CHROMA_SR = 16000  # nominal: the profile is sorted, so a rate that moves every class alike is moot


@functools.lru_cache(maxsize=4)
def chroma_matrix(n_fft: int) -> torch.Tensor:
    """FloatTensor[12, n_fft // 2 + 1]: librosa's chroma filter bank, STFT bins folded onto 12
    pitch classes per octave at CHROMA_SR. Cached; callers do not write to it."""
    import librosa

    fb = librosa.filters.chroma(sr=CHROMA_SR, n_fft=n_fft, tuning=0.0)
    return torch.from_numpy(fb).float()


def chroma_profile(x: torch.Tensor, n_fft: int = CHROMA_FFT) -> torch.Tensor:
    """How much each frame's energy gathers on a few pitch classes, over a set of audio
    FloatTensor[B, N]: FloatTensor[12], every frame's chroma (power folded onto 12 classes,
    divided by its largest, as librosa's chroma) sorted from high to low, the mean over
    frames. Sorted, it does not care which classes: recorded music reads about 1, 0.52, 0.36,
    0.27, ... and broadband noise 1, 0.89, 0.81, 0.76, ... (the Wesnoth test audio and a
    WaveNet's drafts of it)."""
    w = torch.hann_window(n_fft, device=x.device)
    power = torch.stft(x.float(), n_fft, n_fft // 4, window=w, return_complex=True).abs().square()
    c = chroma_matrix(n_fft).to(x.device) @ power  # [B, 12, T]
    c = c / (c.amax(1, keepdim=True) + 1e-10)
    return c.sort(dim=1, descending=True).values.mean((0, 2))


def spectral_stats_gap(
    a: torch.Tensor, b: torch.Tensor, n_fft: int, hop: int, chroma_weight: float = 0.0
) -> torch.Tensor:
    """How far the spectra of set a FloatTensor[A, N] lie from set b's [B, M], a scalar: per
    log-spaced band (``band_log_power``), the mean |difference| of the sets' mean log power,
    of its standard deviation over frames (how much the music moves) and of its mean change
    from one frame to the next (how much it flickers: gains that jump from frame to frame
    make "musical noise" that real music does not have); plus ``chroma_weight`` times the
    mean |difference| of their ``chroma_profile`` (how much a frame's sound gathers on a few
    pitch classes: the bands are too wide to see it). Zero for sets of equal statistics."""
    la, lb = band_log_power(a, n_fft, hop), band_log_power(b, n_fft, hop)

    def stats(lp: torch.Tensor) -> torch.Tensor:  # [3, K]
        flat = lp.transpose(0, 1).flatten(1)  # [K, rows * frames]
        flicker = (lp[..., 1:] - lp[..., :-1]).abs().mean((0, 2))
        return torch.stack([flat.mean(1), flat.std(1), flicker])

    gap = (stats(la) - stats(lb)).abs().mean(1).sum()
    if chroma_weight:  # rows shorter than CHROMA_FFT (a short train.seq_len): a shorter STFT
        n = min(CHROMA_FFT, 2 ** int(math.log2(min(a.shape[-1], b.shape[-1]))))
        gap = gap + chroma_weight * (chroma_profile(a, n) - chroma_profile(b, n)).abs().mean()
    return gap


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
    rec: torch.Tensor  # STFT distance of the revised audio to the real audio (paired rows)
    stat: torch.Tensor  # spectral statistics of the own drafts, revised, against the real rows'


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
        self.weights = (cfg.adv_weight, cfg.fm_weight, cfg.rec_weight, cfg.stat_weight)
        self.stft_sizes = list(cfg.stft_sizes)
        self.chroma_weight = cfg.chroma_weight

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

    def losses(
        self, draft: torch.Tensor, real: torch.Tensor, paired: torch.Tensor | None = None
    ) -> GanLosses:
        """Both players' losses per row, for one backward (module docstring). ``paired``
        BoolTensor[B] (default all): rows whose real audio is the draft's own source. The
        others (a base run's own drafts beside unrelated real windows) have no target: their
        feature matching and spectral statistics are matched to the real rows' as a set."""
        b = len(draft)
        paired = torch.ones(b, dtype=torch.bool, device=draft.device) if paired is None else paired
        own = ~paired
        has_own = bool(own.any())  # once: each test is a device sync
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
            for a, r in zip(f_fake, f_real, strict=True):
                r = r.detach()
                per_row = _row_mean((a - r).abs())
                if has_own:  # the set's mean features against the real rows' (Salimans)
                    gap = (a[own].mean((0, 2)) - r.mean((0, 2))).abs().mean()
                    per_row = torch.where(paired, per_row, gap.expand(b))
                fm = fm + per_row / len(f_fake)
        rec = stft_distance(revised, real, self.stft_sizes) * paired
        stat = torch.zeros(b, device=draft.device)
        if has_own:
            gap = spectral_stats_gap(
                revised[own], real, self.g.n_fft, self.g.hop, self.chroma_weight
            )
            stat = torch.where(own, gap.expand(b), stat)
        wa, wf, wr, ws = self.weights
        total = d_loss + wa * adv + wf * fm + wr * rec + ws * stat
        return GanLosses(total, d_loss, adv, fm, rec, stat)

    def forward(self, x: torch.Tensor, label=None):
        """x FloatTensor[B, N, 2] (draft, real). Training: ``GanLosses``; eval: the revised
        draft FloatTensor[B, N]."""
        draft, real = x[..., 0], x[..., 1]
        if not self.training:
            return self.g(draft)
        paired = x[:, 0, 2] > 0.5 if x.shape[-1] > 2 else None
        return self.losses(draft, real, paired)
