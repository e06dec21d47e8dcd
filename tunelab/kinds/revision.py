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
leave clean audio alone. Batches are a pure function of (seed, step): windows from
``PieceWindows``, and each global row's corruption from an RNG seeded by (seed, step, row),
the same on any number of processes; resume is exact. Validation: fixed windows and fixed
drafts; its loss is the STFT distance of the revised draft to the real audio, and
``valid_figures`` adds the draft's own distance (``draft_loss``), the baseline to beat.

x [B, N, 2] holds (draft, real) and y [B, N] the real audio, so the model's training forward
sees both (``RevisionGAN.forward``). A revision run generates nothing itself: ``tunelab
generate RUN --revise REV`` and ``tunelab revise REV FILES`` use it (``tunelab.revise``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from tunelab.data.audio.encode import from_int16, mu_law_decode, mu_law_encode
from tunelab.data.dataset import PieceWindows, piece_windows
from tunelab.kinds.audio_io import AudioKind, label_names_of
from tunelab.models.revision import GanLosses, stft_distance

DRAFTS = ("blur", "seams", "noise", "mulaw")  # in the order they are applied
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
    real: torch.Tensor, seeds: list, drafts: list[str], clean: float, sr: int
) -> torch.Tensor:
    """Drafts of real FloatTensor[B, N], row i from an RNG seeded by ``seeds[i]``."""
    rows = [
        make_draft(r, np.random.default_rng(s), drafts, clean, sr)
        for r, s in zip(real, seeds, strict=True)
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
        self.sample_rate = int(meta["sample_rate"])
        self.label_names: list[str] = label_names_of(meta)
        self.n_labels = 0  # the reviser is unconditioned
        self.vocab_size = 1  # audio in, audio out
        self.draft_loss: float | None = None  # the validation drafts' own distance
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

    # -- training -------------------------------------------------------------------------
    def _pair(self, real: torch.Tensor, seeds: list) -> tuple:
        draft = make_drafts(real, seeds, self.drafts, self.clean, self.sample_rate)
        return torch.stack([draft, real], dim=-1), real, None

    def train_batches(self, split, t, seed: int, rank: int, world: int, receptive_field):
        sampler = PieceWindows(
            split.data, split.pieces, length=t.seq_len, batch_size=t.batch_size,
            seed=seed, rank=rank, world=world,
        )  # fmt: skip
        rows = range(t.batch_size)[sampler.rows]  # this rank's global row numbers

        def batch(step: int):
            w, _ = sampler.batch(step)
            real = torch.from_numpy(from_int16(w)).float()
            return self._pair(real, [[seed, step, r] for r in rows])

        return batch

    def valid_batches(self, split, t, receptive_field) -> list[tuple]:
        wins = piece_windows(list(split), t.seq_len, t.eval_batches * t.batch_size)
        out, dist, n = [], 0.0, 0
        for a in range(0, len(wins), t.batch_size):
            chunk = wins[a : a + t.batch_size]
            real = torch.from_numpy(from_int16(np.stack([w for _, w in chunk]))).float()
            x, y, lab = self._pair(real, [[VALID_SEED, a + j] for j in range(len(chunk))])
            dist += float(stft_distance(x[..., 0], y, self.stft_sizes).sum())
            n += len(chunk)
            out.append((x, y, lab))
        if n:
            self.draft_loss = dist / n
            self._preview = out[0][0][:1, :, 0]
        return out

    def loss(self, out, y: torch.Tensor, x=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training (``GanLosses``): the summed objective of both players per row; eval (the
        revised audio [B, N]): the summed STFT distance to the real audio y [B, N]."""
        if isinstance(out, GanLosses):
            return out.total.sum(), torch.tensor(len(out.total), device=y.device)
        per = stft_distance(out, y, self.stft_sizes)
        return per.sum(), torch.tensor(len(per), device=y.device)

    def valid_figures(self, loss: float) -> dict:
        return {} if self.draft_loss is None else {"draft_loss": self.draft_loss}

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
