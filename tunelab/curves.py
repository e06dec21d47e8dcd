"""PNG plots of a run from its metrics.jsonl: loss vs step (train and valid), speed per step.

The same two plots the older tools produced; written at the end of training and
on demand with ``tunelab plot RUN_DIR``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl (a torn last line from a crash is skipped)."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write RUN_DIR/plots/loss.png and speed.png; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    recs = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in recs if "loss" in r]
    valid = [r for r in recs if "valid_loss" in r]
    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train", lw=1)
    if valid:
        ax.plot(
            [r["step"] for r in valid], [r["valid_loss"] for r in valid], "o-", label="valid", ms=3
        )
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=f"loss: {run_dir.name}")
    ax.grid(alpha=0.3)
    if train or valid:
        ax.legend()
    written.append(_save(fig, out_dir / "loss.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    speed = [r for r in train if "sec_per_step" in r]
    if speed:
        ax.plot([r["step"] for r in speed], [r["sec_per_step"] for r in speed], lw=1)
    ax.set(xlabel="step", ylabel="seconds per step", title=f"speed: {run_dir.name}")
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "speed.png"))
    plt.close("all")
    return written


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return path
