"""The revision pass's data: real audio windows, and drafts made from them on the fly.

The reviser (``tunelab.models.revision``) learns to turn a draft back into the real audio it
came from. Its drafts are corruptions of the training audio that resemble what the generators
write (``make_drafts``): needing no base run, it trains on any audio data directory, and every
family's drafts are covered. Each row draws, independently with probability 1/2 each (at
least one), from the model config's ``drafts``, applied in this order:

* ``blur``: what a frame model trained on MSE gives: STFT magnitudes averaged over 3-7 frames
  (transients smeared), highs rolled off above 2.5-7 kHz; the phase kept.
* ``seams``: frame seams: a gain step of 1-3 dB (std) at every 256-1024 samples, as frames
  joined end to end give.
* ``noise``: broadband noise between the partials, 5-35 dB below the row's level.
* ``mulaw``: 8-bit mu-law quantisation with sampling noise: each code moved by a rounded
  Gaussian of 0.3-3 codes (std), as sampling from a WaveNet's or SampleRNN's softmax does.

A share ``clean`` of the rows keeps the real audio as its draft, so the reviser also learns to
leave clean audio alone.

With ``revision.base=RUN`` a share ``own_share`` of the rows are the base run's own drafts:
windows of ``own_seconds`` of clips it generates at the start of training (``own_drafts``,
seed OWN_SEED, brought to the data's loudness), beside an unrelated real window. They have no real
audio to be rewritten into, so they teach through the discriminators and by their spectral
statistics as a set (``RevisionGAN.losses``): corruptions teach what to take out, the base's
drafts what its clips lack against the music. Why both: a real model's drafts of recorded
music can be far from any corruption of it (no partials, 10-20 dB quiet; docs/benchmarks.md).

Batches are a pure function of (seed, step): windows from ``PieceWindows``, and each global
row's corruption (or own draft window) from an RNG seeded by (seed, step, row),
the same on any number of processes; resume is exact. Validation: fixed windows and fixed
drafts; its loss is the STFT distance of the revised drafts to the real audio they came
from, and ``valid_figures`` adds the drafts' own distance (``draft_loss``), the baseline to
beat, and for the rows of a held-out generated clip the gap of their spectral statistics to
the real windows' (``own_gap``; not in the loss: ``loss``).

x [B, N, 3] holds (draft, real, paired: 1 where real is the draft's own source) and y [B, N]
the real audio, so the model's training forward sees both (``RevisionGAN.forward``). A
revision run generates nothing itself: ``tunelab generate RUN --revise REV`` and ``tunelab
revise REV FILES`` use it (``tunelab.revise``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from tunelab.data.audio.encode import from_int16, mu_law_decode, mu_law_encode
from tunelab.data.dataset import PieceWindows, piece_windows
from tunelab.kinds.audio_io import AudioKind, label_names_of
from tunelab.models.revision import GanLosses, RevisionConfig, spectral_stats_gap, stft_distance

DRAFTS = ("blur", "seams", "noise", "mulaw")  # in the order they are applied
OWN_CLIP_S = 8.0  # seconds per generated clip of a base run's own drafts
# The seed of those clips: not `tunelab generate`'s default 0, so that the drafts a user (or
# benchmarks/revision.py) revises with the default seed are not the ones it trained on.
OWN_SEED = 0x0D5EED
N_FFT_STATS = 512  # the STFT of the validation's spectral statistics (own drafts)
VALID_SEED = 0x5EED  # the validation drafts' RNG (fixed: every validation sees the same)
NOT_A_GENERATOR = (
    "a revision run revises drafts, it does not generate or score music itself: use "
    "`tunelab generate RUN --revise REV` or `tunelab revise REV FILES...`"
)


# -- drafts -------------------------------------------------------------------------------


def _blur(x: torch.Tensor, rng: np.random.Generator, sr: int) -> torch.Tensor:
    n, hop = 1024, 256
    w = torch.hann_window(n)
    s = torch.stft(x, n, hop, window=w, return_complex=True)  # [F, K]
    k = int(rng.choice([3, 5, 7]))
    mag = F.avg_pool1d(s.abs()[None], k, 1, k // 2, count_include_pad=False)[0]
    cutoff = rng.uniform(2500, min(7000, 0.45 * sr))
    f = torch.linspace(0, sr / 2, s.shape[0])[:, None]
    mag = mag / (1 + (f / cutoff) ** 4)
    return torch.istft(torch.polar(mag, s.angle()), n, hop, window=w, length=len(x))


def _seams(x: torch.Tensor, rng: np.random.Generator, sr: int) -> torch.Tensor:
    size = int(rng.choice([256, 512, 1024]))
    blocks = -(-len(x) // size)
    gain_db = rng.normal(0, rng.uniform(1, 3), blocks)
    gain = torch.from_numpy(10 ** (gain_db / 20)).float().repeat_interleave(size)[: len(x)]
    return x * gain


def _noise(x: torch.Tensor, rng: np.random.Generator, sr: int) -> torch.Tensor:
    level = x.square().mean().sqrt() * 10 ** (-rng.uniform(5, 35) / 20)
    return x + level * torch.from_numpy(rng.standard_normal(len(x))).float()


def _mulaw(x: torch.Tensor, rng: np.random.Generator, sr: int) -> torch.Tensor:
    codes = mu_law_encode(x)
    jitter = np.rint(rng.normal(0, rng.uniform(0.3, 3.0), len(x))).astype(np.int64)
    return mu_law_decode((codes + torch.from_numpy(jitter)).clamp(0, 255))


CORRUPT = {"blur": _blur, "seams": _seams, "noise": _noise, "mulaw": _mulaw}


def make_draft(
    real: torch.Tensor, rng: np.random.Generator, drafts: list[str], clean: float, sr: int
) -> torch.Tensor:
    """A draft of real audio FloatTensor[N]: the real audio (with probability ``clean``) or
    corrupted by a random non-empty subset of ``drafts`` (module docstring)."""
    if rng.random() < clean or not drafts:
        return real
    chosen = {d for d in drafts if rng.random() < 0.5} or {drafts[rng.integers(len(drafts))]}
    x = real
    for name in DRAFTS:
        if name in chosen:
            x = CORRUPT[name](x, rng, sr)
    return x.float().clamp(-1, 1)


def make_drafts(
    real: torch.Tensor, seeds: list, drafts: list[str], clean: float, sr: int, given=None
) -> torch.Tensor:
    """Drafts of real FloatTensor[B, N], row i from an RNG seeded by ``seeds[i]``; where
    ``given[i]`` is a FloatTensor[N] (a base run's own draft), row i is that instead, and no
    corruption is made for it (the other rows' RNGs are their own: they do not change)."""
    given = given or [None] * len(real)
    rows = [
        make_draft(r, np.random.default_rng(s), drafts, clean, sr) if g is None else g
        for r, s, g in zip(real, seeds, given, strict=True)
    ]
    return torch.stack(rows)


# -- the kind -----------------------------------------------------------------------------


@dataclass
class Clip:
    """Audio read or revised: float32 [N] and its label name."""

    audio: np.ndarray
    label: str | None


def with_settings(meta: dict, model_cfg) -> dict:
    """A copy of the data's meta with ``revision``: the draft settings of the model config."""
    cfg = dict(model_cfg) if isinstance(model_cfg, dict) else vars(model_cfg)
    drafts = list(cfg.get("drafts", DRAFTS))
    unknown = [d for d in drafts if d not in CORRUPT]
    if unknown:
        raise ValueError(f"model.drafts: unknown {unknown}; choose among {', '.join(DRAFTS)}")
    settings = {"drafts": drafts, "clean": float(cfg.get("clean", 0.1))}
    settings["stft_sizes"] = list(cfg.get("stft_sizes", [256, 512, 1024]))
    settings["own_share"] = float(cfg.get("own_share", 0.5))
    settings["own_seconds"] = float(cfg.get("own_seconds", 64.0))
    settings["chroma_weight"] = float(cfg.get("chroma_weight", RevisionConfig.chroma_weight))
    if not 0 <= settings["own_share"] < 1 or settings["own_seconds"] <= 0:
        raise ValueError("model.own_share must be in [0, 1) and model.own_seconds positive")
    settings["base"] = (meta.get("revision") or {}).get("base")
    return {**meta, "revision": settings}


class Kind(AudioKind):
    """Real audio and its drafts (module docstring); files are read and audited as audio."""

    name = "revision"
    clip_type = Clip

    @classmethod
    def for_model(cls, model_cfg, meta: dict) -> Kind:
        return cls(with_settings(meta, model_cfg))

    def __init__(self, meta: dict):
        if not isinstance(meta.get("revision"), dict):
            raise ValueError("meta has no revision settings (use tunelab.kinds.kind_for)")
        self.meta = meta
        r = meta["revision"]
        self.drafts, self.clean, self.stft_sizes = r["drafts"], r["clean"], r["stft_sizes"]
        self.base: str | None = r.get("base")  # the run whose own drafts it also learns from
        self._pool: list[np.ndarray] | None = None  # the base run's drafts (own_drafts)
        self.sample_rate = int(meta["sample_rate"])
        self.label_names: list[str] = label_names_of(meta)
        self.n_labels = 0  # the reviser is unconditioned
        self.vocab_size = 1  # audio in, audio out
        self.draft_loss: float | None = None  # the validation drafts' own distance
        self._own_gaps: list[float] = []  # the held-out own drafts' gaps since the last report
        self._preview: torch.Tensor | None = None

    def signature(self) -> dict:
        return {"sample_rate": self.sample_rate}

    def check_data(self, data_meta: dict, where) -> None:
        if data_meta.get("kind") != "audio" or data_meta.get("sample_rate") != self.sample_rate:
            raise ValueError(f"{where}: not audio data at {self.sample_rate} Hz")

    def _data(self, clip: Clip) -> np.ndarray:
        return clip.audio

    def _encode_audio(self, audio: np.ndarray) -> np.ndarray:
        return audio

    def _decode_audio(self, data: np.ndarray) -> np.ndarray:
        return data

    def use_base(self, run: str) -> None:
        """Learn from the drafts of ``run`` too (``revision.base``): a share ``own_share`` of
        the rows are windows of its own generated clips (``own_drafts``), recorded in meta."""
        if not Path(run).exists():
            raise ValueError(f"revision.base={run}: no such run (train the base run first)")
        self.base = str(Path(run).resolve())
        self.meta = {**self.meta, "revision": {**self.meta["revision"], "base": self.base}}

    @property
    def own_share(self) -> float:
        """The share of rows that are the base run's own drafts: 0 without a base."""
        return float(self.meta["revision"]["own_share"]) if self.base else 0.0

    def own_drafts(self, progress: bool = True) -> list[np.ndarray]:
        """The base run's own drafts: ``own_seconds`` of audio in clips of OWN_CLIP_S seconds
        generated with seed OWN_SEED (``tunelab generate``'s sampling and precision), each brought
        to the data's loudness as ``tunelab.revise`` brings a draft; the last clip is kept
        for validation. Generated once per process: a pure function of the base run, so every
        process, and a resumed run, has the same."""
        if self._pool is None:
            import tempfile

            import soundfile as sf

            from tunelab.generate import generate

            n = max(2, round(self.meta["revision"]["own_seconds"] / OWN_CLIP_S))
            with tempfile.TemporaryDirectory() as tmp:
                files = generate(
                    self.base, n=n, seconds=OWN_CLIP_S, seed=OWN_SEED, out=tmp, audit=False,
                    progress=progress,
                )  # fmt: skip
                clips = [sf.read(str(f), dtype="float32")[0] for f in files]
            self._pool = [self._at_level(c) for c in clips]
        return self._pool

    def _at_level(self, x: np.ndarray) -> np.ndarray:
        from tunelab.revise import level_gain

        gain = level_gain(x, float(self.meta.get("loudness_target_db") or -20.0))
        return x.astype(np.float32) if gain is None else (x * gain).clip(-1, 1).astype(np.float32)

    # -- training -------------------------------------------------------------------------
    def _pair(self, real: torch.Tensor, seeds: list, own: list | None = None) -> tuple:
        """(x [B, N, 3], y [B, N], None): x holds (draft, real, paired) per sample. Rows
        with a window of the base's own drafts in ``own`` (FloatTensor[N] or None per row)
        take it as their draft beside an unrelated real window, paired 0."""
        draft = make_drafts(real, seeds, self.drafts, self.clean, self.sample_rate, own)
        paired = torch.tensor([w is None for w in own or [None] * len(real)], dtype=real.dtype)
        return torch.stack([draft, real, paired[:, None].expand_as(real)], dim=-1), real, None

    def _own_window(self, pool: list, n: int, rng: np.random.Generator) -> torch.Tensor:
        clip = pool[int(rng.integers(len(pool)))]
        a = int(rng.integers(max(1, len(clip) - n + 1)))
        w = clip[a : a + n]
        return torch.from_numpy(np.pad(w, (0, n - len(w))))

    def _is_own(self, row: int) -> bool:
        """Global row ``row`` takes an own draft: own_share of the rows, spread evenly."""
        return math.floor((row + 1) * self.own_share) > math.floor(row * self.own_share)

    def train_batches(self, split, t, seed: int, rank: int, world: int, receptive_field):
        sampler = PieceWindows(
            split.data, split.pieces, length=t.seq_len, batch_size=t.batch_size,
            seed=seed, rank=rank, world=world,
        )  # fmt: skip
        rows = range(t.batch_size)[sampler.rows]  # this rank's global row numbers
        pool = self.own_drafts(progress=t.progress)[:-1] if self.own_share else []

        def batch(step: int):
            w, _ = sampler.batch(step)
            real = torch.from_numpy(from_int16(w)).float()
            own = [
                self._own_window(pool, t.seq_len, np.random.default_rng([seed, step, r, 1]))
                if pool and self._is_own(r) else None
                for r in rows
            ]  # fmt: skip
            return self._pair(real, [[seed, step, r] for r in rows], own)

        return batch

    def valid_batches(self, split, t, receptive_field) -> list[tuple]:
        wins = piece_windows(list(split), t.seq_len, t.eval_batches * t.batch_size)
        held = self.own_drafts(progress=t.progress)[-1:] if self.own_share else []  # held out
        out, dist, n = [], 0.0, 0
        for a in range(0, len(wins), t.batch_size):
            chunk = wins[a : a + t.batch_size]
            real = torch.from_numpy(from_int16(np.stack([w for _, w in chunk]))).float()
            own = [
                self._own_window(held, t.seq_len, np.random.default_rng([VALID_SEED, a + j]))
                if held and self._is_own(j) else None
                for j in range(len(chunk))
            ]  # fmt: skip
            seeds = [[VALID_SEED, a + j] for j in range(len(chunk))]
            x, y, lab = self._pair(real, seeds, own)
            total, count = self.loss(x[..., 0], y, x)
            dist, n = dist + float(total), n + int(count)
            out.append((x, y, lab))
        self._own_gaps.clear()  # (the drafts' own gaps are not the reviser's)
        if n:
            self.draft_loss = dist / n
            self._preview = out[0][0][:1, :, 0]
        return out

    def loss(self, out, y: torch.Tensor, x=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training (``GanLosses``): the summed objective of both players per row; eval (the
        revised audio [B, N]): the summed STFT distance to the real audio y [B, N] over the
        rows whose real audio is their draft's source. Rows of the base's held-out drafts are
        not in it: the gap of their spectral statistics to the real windows' is kept for
        ``valid_figures`` (``own_gap``). Why: on one held-out clip that gap is noisy and rises
        as training goes on, and with it in the loss `best` came early, at checkpoints
        whose revised drafts lay farther from the valid recordings (Fréchet distance) than
        the later ones in 5 of 7 Wesnoth revisers (docs/benchmarks.md)."""
        if isinstance(out, GanLosses):
            return out.total.sum(), torch.tensor(len(out.total), device=y.device)
        own = (x[:, 0, 2] < 0.5) if x is not None and x.shape[-1] > 2 else None
        if own is not None and own.any():  # own drafts: their spectra as a set against y's
            w = self.meta["revision"].get("chroma_weight", 0.0)
            gap = spectral_stats_gap(out[own], y, N_FFT_STATS, N_FFT_STATS // 4, w)
            self._own_gaps.append(float(gap))
            out, y = out[~own], y[~own]
        per = stft_distance(out, y, self.stft_sizes)
        return per.sum(), torch.tensor(len(per), device=y.device)

    def valid_figures(self, loss: float) -> dict:
        """``draft_loss``: the validation drafts' own distance, the baseline to beat;
        ``own_gap``: the mean gap of the revised held-out own drafts' spectral statistics to
        the real windows' (this process's share of the validation batches)."""
        out = {} if self.draft_loss is None else {"draft_loss": self.draft_loss}
        if self._own_gaps:
            out["own_gap"] = sum(self._own_gaps) / len(self._own_gaps)
            self._own_gaps.clear()
        return out

    @torch.no_grad()
    def preview(self, model, device) -> tuple[np.ndarray, int] | None:
        """The first validation draft, revised (for TensorBoard)."""
        if self._preview is None:
            return None
        return model.revise(self._preview.to(device))[0].float().cpu().numpy(), self.sample_rate

    # -- what a revision run does not do ---------------------------------------------------
    def likelihood(self, model, split, device="cpu", progress: bool = False) -> dict:
        raise ValueError(NOT_A_GENERATOR)

    def plan(self, seconds, steps, primer, label, sampling):
        raise ValueError(NOT_A_GENERATOR)

    def sample(
        self, model, plan, n, seed, sampling, device, progress, timing,
        save_every=None, partial=None,
    ) -> list:  # fmt: skip
        raise ValueError(NOT_A_GENERATOR)

    def audit(self, clips, plan, index) -> list[dict]:
        """The audio audits (``tunelab.metrics.audio``) of audio files, e.g. revised ones."""
        from tunelab.metrics.audio import audit_audio

        return audit_audio([c.audio for c in clips], self.sample_rate, index)
