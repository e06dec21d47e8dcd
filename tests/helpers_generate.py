"""Tiny synthetic MIDI data sets and runs for the generate/evaluate/metrics tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import symusic
import torch

from tunelab.data.midi import make_codec
from tunelab.data.store import DataDirWriter
from tunelab.models import build_model
from tunelab.run.checkpoint import save_checkpoint


def random_piece(
    rng: np.random.Generator, n_steps: int, voices: int = 3, lo: int = 20, hi: int = 70
):
    """A steps-encoding token stream: chords of ``voices`` keys, each held 1-3 steps."""
    toks = [89]
    t = 0
    while t < n_steps:
        keys = sorted(rng.choice(np.arange(lo, hi), voices, replace=False).tolist(), reverse=True)
        for _ in range(min(int(rng.integers(1, 4)), n_steps - t)):
            toks += keys + [88]
            t += 1
    return np.array(toks + [90], np.int64)


def random_score(seed: int, n: int = 120) -> symusic.Score:
    """A one-track score of ``n`` random notes (pitches 30..99) over 30 quarters."""
    rng = np.random.default_rng(seed)
    s = symusic.Score(480)
    tr = symusic.Track("p", 0, False)
    tr.notes = symusic.Note.from_numpy(
        time=rng.integers(0, 480 * 30, n).astype(np.int32),
        duration=rng.integers(120, 960, n).astype(np.int32),
        pitch=rng.integers(30, 100, n).astype(np.int8),
        velocity=np.full(n, 80, np.int8),
    )
    s.tracks.append(tr)
    return s


def steps_meta(max_poly: int = 4, spq: int = 2, qpm: float = 120.0) -> dict:
    codec = make_codec("steps", spq)
    return {**codec.meta(), "kind": "midi", "max_polyphony": max_poly, "tempo_qpm": qpm}


def make_datadir(path: Path, n_pieces: int = 12, n_steps: int = 48, seed: int = 0) -> dict:
    """A finished data directory of random 3-voice pieces (steps encoding, 2 steps/quarter)."""
    rng = np.random.default_rng(seed)
    meta = steps_meta()
    with DataDirWriter(path, "uint16") as w:
        for i in range(n_pieces):
            p = random_piece(rng, n_steps)
            w.add_piece(p, {"source": f"piece{i:02d}.mid", "label": None, "steps": n_steps})
            w.add_manifest({"path": f"piece{i:02d}.mid", "status": "accepted"})
        w.finish(meta, {}, ratios=(0.7, 0.15, 0.15))
    return meta


def make_run(run_dir: Path, data_dir: Path, meta: dict, family: str = "token_rnn") -> Path:
    """A run directory with an untrained tiny model checkpoint (best.pt and last.pt)."""
    torch.manual_seed(0)
    model_cfg = {"family": family, "cell": "gru", "embed_dim": 16, "hidden": 32, "layers": 1}
    if family == "transformer":
        model_cfg = {"family": family, "d_model": 32, "layers": 1, "heads": 2, "window": 16}
    model = build_model(model_cfg, meta["vocab_size"])
    ckpt = {
        "model": model.state_dict(),
        "step": 0,
        "config": {"data": str(data_dir), "out": str(run_dir), "seed": 0, "model": model_cfg},
        "meta": meta,
    }
    for name in ("best", "last"):
        save_checkpoint(run_dir / "checkpoints" / f"{name}.pt", ckpt)
    return run_dir


def assert_samples_in_format(model, steps: int) -> None:
    """Three pieces sampled from ``model`` (a `steps` model at 2 steps per quarter) are valid
    token streams with at least one step."""
    from tunelab.kinds.constraints import check_tokens
    from tunelab.kinds.sampling import sample

    meta = steps_meta(max_poly=4)
    for piece in sample(model, meta, n=3, steps=steps, seed=5):
        assert not check_tokens(piece, meta)
        assert meta["specials"]["step"] in piece
