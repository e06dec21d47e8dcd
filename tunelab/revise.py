"""The revision pass at inference: a trained reviser (``tunelab train revision``) applied to
any audio, of any length.

``load_reviser(REV)`` loads a revision run directory or an exported bundle; its ``revise(audio,
sr)`` returns the revised audio, the same length, at the same rate. The audio is brought to the
reviser's rate (soxr) and to its training data's loudness (the reviser's gains depend on
level), revised in chunks, and brought back. Chunks overlap by the reviser's context
(``Reviser.context_samples``) on each side and start on its hop grid, so the chunked result
equals revising the whole file at once (up to float rounding) at bounded memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHUNK_SECONDS = 20.0  # audio revised per chunk (plus the context either side)


@dataclass
class LoadedReviser:
    """A trained reviser, ready to revise audio (``revise``)."""

    model: torch.nn.Module  # RevisionGAN in eval mode
    sample_rate: int  # of its training data
    loudness_db: float  # RMS level of its training data (dBFS)
    path: Path  # the checkpoint or bundle it came from
    step: int
    device: torch.device
    run: Any  # its LoadedRun (kind, config, meta): the audits use its training audio

    @torch.no_grad()
    def revise(
        self, audio: np.ndarray, sr: int, chunk_seconds: float = CHUNK_SECONDS
    ) -> np.ndarray:
        """float audio [N] at ``sr`` -> the revised audio float32 [N] at ``sr``."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if len(x) == 0:
            return x.copy()
        if sr != self.sample_rate:
            import soxr

            y = soxr.resample(x, sr, self.sample_rate)
            out = self._revise(y, chunk_seconds)
            return _fit(soxr.resample(out, self.sample_rate, sr).astype(np.float32), len(x))
        return self._revise(x, chunk_seconds)

    def _revise(self, x: np.ndarray, chunk_seconds: float) -> np.ndarray:
        gain = level_gain(x, self.loudness_db)
        if gain is None:  # silence: nothing to revise (and no level to match)
            return x.copy()
        g = self.model.g
        hop = g.hop
        margin = math.ceil(g.context_samples / hop) * hop
        body = max(hop, int(chunk_seconds * self.sample_rate) // hop * hop)
        src = torch.from_numpy(x * gain)
        out = np.empty_like(x)
        for a in range(0, len(x), body):
            s0, s1 = max(0, a - margin), min(len(x), a + body + margin)
            seg = src[s0:s1][None].to(self.device)
            if seg.shape[1] < g.n_fft:  # a file shorter than a window: zeros after it
                seg = torch.nn.functional.pad(seg, (0, g.n_fft - seg.shape[1]))
            rev = self.model.revise(seg)[0].float().cpu().numpy()
            keep = min(body, len(x) - a)
            out[a : a + keep] = rev[a - s0 : a - s0 + keep]
        return (out / gain).astype(np.float32)


def level_gain(x: np.ndarray, loudness_db: float) -> float | None:
    """The gain that brings x's RMS level to ``loudness_db`` dBFS, within 0.01..100 (-40 to
    +40 dB); None for silence (RMS under 1e-6), which has no level to bring."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return None if rms < 1e-6 else min(100.0, max(0.01, 10 ** (loudness_db / 20) / rms))


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """x cut or zero-padded to n samples (resampling rounds the length)."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def load_reviser(
    path: str | Path, device: str | torch.device = "cpu", which: str = "best"
) -> LoadedReviser:
    """The reviser of a revision run directory or bundle (``which`` checkpoint of a run).
    ValueError when ``path`` holds another family's run; CheckpointError when it holds none."""
    from tunelab.run.checkpoint import load_run

    run = load_run(path, which, device=device)
    family = run.config["model"].get("family")
    if family != "revision":
        raise ValueError(
            f"{path} is a {family} run, not a revision run (train one with "
            "`tunelab train revision data=DATA out=REV`)"
        )
    loudness = float(run.meta.get("loudness_target_db") or -20.0)
    rev = LoadedReviser(
        run.model,
        int(run.meta["sample_rate"]),
        loudness,
        run.path,
        run.step,
        torch.device(device),
        run,
    )
    # Once through, so that a first file's speed does not include torch's set-up.
    sr = rev.sample_rate
    rev.revise(0.01 * np.random.default_rng(0).standard_normal(sr // 10).astype(np.float32), sr)
    return rev
