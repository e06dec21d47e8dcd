"""A run's learning curves: written as they happen, drawn as PNG.

``RunLog`` appends records to RUN_DIR/metrics.jsonl and mirrors them as TensorBoard
scalars. ``plot_run`` draws loss vs step (train and valid) and seconds per step, the
two plots the older tools produced; written at the end of training and on demand
with ``tunelab plot RUN_DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.atomic import atomic_path, write_text


class RunLog:
    """metrics.jsonl + TensorBoard for one run (rank 0 only).

    On resume at ``resume_step``, records logged after that step (by the interrupted
    process, past its last checkpoint) are dropped so the curve continues cleanly.
    """

    def __init__(self, run_dir: Path, resume_step: int | None, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))
        self.file = open(self.path, "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def log(self, rec: dict) -> None:
        """Append one record (must hold "step"); numbers become scalars train/* or valid/*."""
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if k != "step" and isinstance(v, int | float) and not isinstance(v, bool):
                    tag = k.replace("_", "/", 1) if k.startswith("valid_") else f"train/{k}"
                    self.tb.add_scalar(tag, v, rec["step"])

    def preview(self, kind, model, step: int, device) -> None:
        """A short sample from ``model`` as TensorBoard audio, for kinds that can make one."""
        if self.tb is None:
            return
        clip = kind.preview(model, device)
        if clip is not None:
            audio, sample_rate = clip
            self.tb.add_audio("sample", audio[None], step, sample_rate=sample_rate)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path
