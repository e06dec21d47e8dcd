"""Checkpoints: atomic saves, safe loads (weights_only), loading a run for generation.

A checkpoint is a dict of tensors and plain Python data only::

    {"model": state_dict, "ema": state_dict | None, "optimizer": ..., "step": int,
     "config": resolved run config (dict), "meta": data meta.json (dict), "rng": ..., ...}

so ``torch.load(weights_only=True)`` can read it and a run directory alone is
enough to rebuild the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tunelab.atomic import atomic_path
from tunelab.kinds import kind_for
from tunelab.models import build_model


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read, with the path and reason."""


def save_checkpoint(path: str | Path, obj: dict) -> None:
    """Write ``obj`` to ``path`` atomically: a crash leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code from pickles)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, foreign pickle, ...
        raise CheckpointError(f"{path}: cannot read checkpoint ({e})") from e


@dataclass
class LoadedRun:
    model: nn.Module  # in eval mode, requires_grad off, on the requested device
    config: dict  # resolved run config
    meta: dict  # the data directory's meta.json
    step: int
    path: Path


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """checkpoints/{which}.pt; ``which`` may also be a path to a .pt file. best falls back to last."""
    p = Path(which)
    if p.suffix == ".pt" and p.exists():
        return p
    ckpt_dir = Path(run_dir) / "checkpoints"
    path = ckpt_dir / f"{which}.pt"
    if not path.exists() and which == "best" and (ckpt_dir / "last.pt").exists():
        path = ckpt_dir / "last.pt"  # a run stopped before its first validation
    if not path.exists():
        have = sorted(q.stem for q in ckpt_dir.glob("*.pt")) if ckpt_dir.exists() else []
        raise CheckpointError(
            f"{path}: no such checkpoint in run {run_dir}"
            + (f"; available: {', '.join(have)}" if have else " (has this run been trained?)")
        )
    return path


def load_run(
    run_dir: str | Path, which: str = "best", device: str | torch.device | None = None
) -> LoadedRun:
    """Rebuild the model of a run from its checkpoint (EMA weights when the run kept them)."""
    path = checkpoint_path(run_dir, which)
    ckpt = load_checkpoint(path)
    try:
        config, meta = ckpt["config"], ckpt["meta"]
        kind = kind_for(config["model"], meta, str(path))
        model = build_model(config["model"], kind.vocab_size, kind.n_labels)
        model.load_state_dict(ckpt.get("ema") or ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # not a tunelab checkpoint
        raise CheckpointError(f"{path}: not a tunelab checkpoint ({type(e).__name__}: {e})") from e
    # Inference only: no autograd bookkeeping, and RNN step() keeps its cached fast weights.
    model.to(device or "cpu").eval().requires_grad_(False)
    return LoadedRun(model, config, meta, int(ckpt["step"]), path)


def export_safetensors(model: nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    """Write the model's weights to a .safetensors file (atomically; tied weights stored once)."""
    from safetensors.torch import save_model

    with atomic_path(path) as tmp:
        save_model(model, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})


INDEX_NAME = "index.json"  # beside the checkpoints: what each one scored when it was saved


def record_checkpoint(path: str | Path, step: int, valid_loss: float | None) -> None:
    """Set ``path``'s entry in checkpoints/index.json to {"step", "valid_loss"} (atomically).

    ``valid_loss``: the validation loss of exactly these weights (None when they were not
    validated at this step, e.g. a milestone or an interrupted run's ``last``). Readers check
    ``step`` against the checkpoint's own, so a stale entry is never taken for a fresh one.
    """
    import time

    from tunelab.atomic import json_safe, write_json

    path = Path(path)
    index = read_index(path.parent)
    index[path.stem] = {"step": int(step), "valid_loss": valid_loss, "saved_at": time.time()}
    write_json(path.parent / INDEX_NAME, json_safe(index))


def read_index(ckpt_dir: str | Path) -> dict:
    """checkpoints/index.json as {name: {"step", "valid_loss", ...}}; {} when absent or torn."""
    import json

    try:
        index = json.loads((Path(ckpt_dir) / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}
