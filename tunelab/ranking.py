"""``tunelab evaluate --checkpoints``: rank a run's kept checkpoints by what they generate.

The lowest validation loss often does not make the best-sounding checkpoint (a model can
fall into loops, silence or copying as it fits the data better), so every kept checkpoint
(``best``, ``last``, the milestones) generates the same short batch, with the same seeds,
through ``tunelab.generate``, into ``RUN_DIR/eval/checkpoints/<name>/``, and is ranked by:

1. the share of its pieces with a failure flag (``copied``, ``silent``, ``noise``,
   ``identical``, ``invalid``), fewest first;
2. then its distance to the training data, smallest first: for MIDI the mean over pieces of
   the pitch-class and interval histogram distances (total variation, 0..1;
   ``music_metrics.music_metrics``), for audio the Fréchet distance of the batch's per-second
   MFCC + chroma features to the training audio's (``audio_features``);
3. then its validation loss, lowest first, read from ``checkpoints/index.json`` only when that
   entry's step equals the checkpoint's own (a figure of other weights is never used);
4. then the later step.

The result goes to ``RUN_DIR/eval/checkpoints.json``, which says when the best-loss checkpoint
is not the best-ranked one.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from tunelab.atomic import json_safe, write_json

RANK_FLAGS = ("copied", "silent", "noise", "unpitched", "identical", "invalid")
DEFAULT_SECONDS = {"midi": 8.0, "audio": 2.0}  # per piece; short: every checkpoint generates
RULE = (
    "rank by (1) share of pieces flagged copied/silent/noise/unpitched/identical/invalid, "
    "fewest first; "
    "(2) distance to the training data (MIDI: mean pitch-class + interval histogram distance; "
    "audio: Frechet distance of per-second MFCC+chroma features), smallest first; "
    "(3) validation loss recorded at that checkpoint's step, lowest first; (4) later step"
)


def kept_checkpoints(run_dir: str | Path) -> list[Path]:
    """checkpoints/best.pt, last.pt and milestone-*.pt that exist, milestones by name (step)."""
    d = Path(run_dir) / "checkpoints"
    named = [d / "best.pt", d / "last.pt"]
    milestones = sorted(p for p in d.glob("milestone-*.pt") if re.fullmatch(r"[\w.-]+", p.name))
    return [p for p in named if p.exists()] + milestones


def rank_checkpoints(
    run_dir: str | Path,
    n: int = 4,
    seconds: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[Path, dict]:
    """Generate from every kept checkpoint, rank them (module docstring), write
    RUN_DIR/eval/checkpoints.json; returns (path, result)."""
    from tunelab.generate import generate
    from tunelab.kinds import kind_for
    from tunelab.run.checkpoint import CheckpointError, load_checkpoint, read_index

    run_dir = Path(run_dir)
    paths = kept_checkpoints(run_dir)
    if not paths:
        raise CheckpointError(f"{run_dir}: no checkpoints to rank (has this run been trained?)")
    index = read_index(run_dir / "checkpoints")
    rows, reference, kind = [], None, None
    for path in paths:
        ck = load_checkpoint(path)
        step, meta = int(ck["step"]), ck["meta"]
        kind = kind_for(ck["config"]["model"], meta, str(path))
        if reference is None:
            reference = kind.reference(ck["config"].get("data"))[0]
        data_kind = meta.get("kind", "midi")
        out = run_dir / "eval" / "checkpoints" / path.stem
        for old in out.glob("*") if out.is_dir() else []:
            if old.is_file():  # files of an earlier ranking must not be read as this one's
                old.unlink()
        length = seconds if seconds is not None else DEFAULT_SECONDS.get(data_kind, 4.0)
        files = generate(
            run_dir,
            n=n,
            seconds=length,
            seed=seed,
            out=out,
            which=str(path),
            device=device,
            wav=False,
            progress=progress,
            precision="float32",  # the checkpoints' own weights: nothing to check, nothing cached
        )
        rows.append(_score(path, step=step, entry=index.get(path.stem), files=files))
        _, summary = kind.music_metrics(_readable(kind, files), reference)
        rows[-1]["distance"] = _distance(summary)
        rows[-1]["set_metrics"] = summary
    rows.sort(key=_key)
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    fresh = [r for r in rows if r["valid_loss"] is not None]
    best_loss = min(fresh, key=lambda r: r["valid_loss"])["name"] if fresh else None
    result = {
        "run": str(run_dir),
        "rule": RULE,
        "pieces_per_checkpoint": n,
        "seed": seed,
        "best_ranked": rows[0]["name"],
        "best_loss": best_loss,
        "best_loss_is_best_ranked": best_loss is None or best_loss == rows[0]["name"],
        "checkpoints": rows,
    }
    if not result["best_loss_is_best_ranked"]:
        result["note"] = (
            f"the lowest validation loss ({best_loss}) is not the best-ranked checkpoint "
            f"({rows[0]['name']}): generate with --checkpoint {rows[0]['name']}"
        )
    path = write_json(run_dir / "eval" / "checkpoints.json", json_safe(result))
    return path, result


def _score(path: Path, step: int, entry, files: list[Path]) -> dict:
    import json

    flags = []
    for f in files:
        side = json.loads(f.with_name(f.name + ".json").read_text(encoding="utf-8"))
        flags.append([x for x in side.get("flags", []) if x in RANK_FLAGS])
    valid, source = None, "not recorded"
    if isinstance(entry, dict) and entry.get("step") == step:
        valid = entry.get("valid_loss")
        source = "index" if valid is not None else "not validated at this step"
    elif isinstance(entry, dict):
        source = f"stale (index has step {entry.get('step')})"
    return {
        "name": path.stem,
        "file": str(path),
        "step": step,
        "valid_loss": valid,
        "valid_loss_source": source,
        "pieces": len(files),
        "flagged": sum(bool(f) for f in flags),
        "flag_counts": {k: sum(k in f for f in flags) for k in RANK_FLAGS},
        "samples": [str(f) for f in files],
    }


def _readable(kind, files: list[Path]) -> list:
    """The pieces that read back (a MIDI file with no notes does not; it is flagged silent)."""
    pieces = []
    for f in files:
        try:
            pieces.append(kind.read(f))
        except ValueError:
            pass
    return pieces


def _distance(summary: dict) -> float | None:
    """One number per checkpoint: the Fréchet distance (audio) or the mean histogram distance."""
    if "frechet_distance" in summary:
        return summary["frechet_distance"]
    vals = [summary[k] for k in summary if k.endswith("hist_distance")]
    return sum(vals) / len(vals) if vals else None


def _key(r: dict) -> tuple:
    inf = math.inf
    return (
        r["flagged"] / max(1, r["pieces"]),
        inf if r["distance"] is None else r["distance"],
        inf if r["valid_loss"] is None else r["valid_loss"],
        -r["step"],
    )
