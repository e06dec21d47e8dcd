"""Evaluation: likelihood of a split, and audits of generated (or any) MIDI files.

Likelihood accounting (``likelihood``), per piece ``x_0 .. x_T`` with ``x_0`` = BOS, ``x_T`` = EOS,
each piece scored whole from its first token (the model sees exactly what it would have seen
generating the piece from BOS):

* ``nll_per_token`` = sum_{t=1..T} -log p(x_t | x_<t) / ``tokens``, ``tokens`` = sum of T (every
  predicted token, EOS included; BOS is never predicted);
* ``nll_per_step``  = sum over predicted tokens that are neither BOS nor EOS of -log p, divided by
  ``steps`` = number of quantized grid steps (STEP tokens; for remi, whole bars x steps per bar).

So per-step NLL is the cost of the music itself in nats per grid step, comparable across
encodings and with the n-gram baseline (``tunelab.ngram``), which uses the same accounting.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from tunelab import metrics as M
from tunelab.atomic import write_json
from tunelab.constraints import check_tokens
from tunelab.data.midi import Rejected, codec_from_meta, quantize

FULL_FORWARD_MAX = 4096  # longer pieces of a full-attention Transformer are scored with step()


# ---------------------------------------------------------------------------
# Likelihood
# ---------------------------------------------------------------------------
@torch.inference_mode()
def piece_nll(model: torch.nn.Module, tokens: np.ndarray, device="cpu") -> torch.Tensor:
    """-log p(x_t | x_<t) for t = 1..T-1 of one piece: FloatTensor[T-1] (nats).

    RNNs: one forward over the whole piece. Sliding-window Transformers (``window=W``): chunks of
    W targets, each fed with the layers * (W-1) tokens before it (the receptive field of a
    stack of windowed layers), which is exact: no position depends on anything further back. Full-attention Transformers: one forward up to ``FULL_FORWARD_MAX`` tokens,
    else ``step()`` with the KV cache (exact, linear memory).
    """
    x = torch.as_tensor(np.asarray(tokens, np.int64), device=device)
    T = len(x)
    window = getattr(model, "window", None) if hasattr(model, "blocks") else None
    if hasattr(model, "blocks") and window is None and T > FULL_FORWARD_MAX:
        state = model.init_state(1, device)
        out = []
        for t in range(T - 1):
            logits, state = model.step(x[t : t + 1], state)
            out.append(F.cross_entropy(logits.float(), x[t + 1 : t + 2], reduction="none"))
        return torch.cat(out)
    if window is None or T - 1 <= window:
        logits = model(x[None, :-1])[0]
        return F.cross_entropy(logits.float(), x[1:], reduction="none")
    out = []
    # A layer sees W-1 tokens back through the previous layer's outputs, so a position's
    # receptive field is layers * (W - 1) tokens: that much context makes chunking exact.
    reach = len(model.blocks) * (window - 1)
    for s in range(0, T - 1, window):  # positions s .. end-1 predict targets s+1 .. end
        lo, end = max(0, s - reach), min(s + window, T - 1)
        logits = model(x[None, lo:end])[0][s - lo :]
        out.append(F.cross_entropy(logits.float(), x[s + 1 : end + 1], reduction="none"))
    return torch.cat(out)


def nll_summary(nll_sum: float, tokens: int, music_sum: float, steps: int, pieces: int) -> dict:
    return {
        "nll_per_token": nll_sum / tokens if tokens else None,
        "tokens": tokens,
        "nll_per_step": music_sum / steps if steps else None,
        "steps": steps,
        "pieces": pieces,
    }


def likelihood(model, pieces, meta: dict, device="cpu", progress: bool = False) -> dict:
    """Score ``pieces`` (iterable of int arrays, BOS..EOS) whole; see the module docstring."""
    codec = codec_from_meta(meta)
    bos, eos = meta["specials"]["bos"], meta["specials"]["eos"]
    pieces = list(pieces)
    it = pieces
    if progress:
        from tqdm import tqdm

        it = tqdm(pieces, desc="scoring", unit="piece")
    tot = music = 0.0
    n_tok = n_steps = 0
    for p in it:
        p = np.asarray(p, np.int64)
        if len(p) < 2:
            continue
        nll = piece_nll(model, p, device).double().cpu().numpy()
        tgt = p[1:]
        tot += float(nll.sum())
        music += float(nll[(tgt != bos) & (tgt != eos)].sum())
        n_tok += len(tgt)
        n_steps += codec.count_steps(p)
    return nll_summary(tot, n_tok, music, n_steps, len(pieces))


def evaluate_split(
    run_dir: str | Path,
    split: str = "test",
    which: str = "best",
    data: str | Path | None = None,
    device: str = "cpu",
    baseline: bool = True,
    progress: bool = True,
) -> tuple[Path, dict]:
    """Write RUN_DIR/eval/likelihood-<split>.json; returns (path, result)."""
    from tunelab.checkpoint import load_run
    from tunelab.data.store import load_datadir

    run = load_run(run_dir, which, device=device)
    if run.meta.get("kind", "midi") != "midi":
        raise ValueError(f"{run_dir}: likelihood of audio runs is not supported by this command")
    dd = load_datadir(data or run.config["data"])
    _check_same_encoding(run.meta, dd.meta, dd.path)
    pieces = dd.split(split)
    if not len(pieces):  # e.g. a collection too small for a test split
        have = [s for s in ("train", "valid", "test") if len(dd.split(s))]
        raise ValueError(
            f"{dd.path}: the {split} split has no pieces; choose --split from {', '.join(have)}"
        )
    result = {
        "split": split,
        "checkpoint": str(run.path),
        "checkpoint_step": run.step,
        "data": str(dd.path),
        **likelihood(run.model, pieces, run.meta, device, progress),
    }
    if baseline:
        from tunelab.ngram import ngram_baseline

        result.update(ngram_baseline(dd, split))
    path = write_json(Path(run_dir) / "eval" / f"likelihood-{split}.json", result)
    return path, result


def _check_same_encoding(meta: dict, data_meta: dict, where) -> None:
    for k in ("encoding", "vocab_size", "steps_per_quarter"):
        if meta.get(k) != data_meta.get(k):
            raise ValueError(
                f"{where}: data {k}={data_meta.get(k)!r} differs from the run's {meta.get(k)!r}"
            )


# ---------------------------------------------------------------------------
# Audits
# ---------------------------------------------------------------------------
def roll_from_tokens(tokens, meta: dict) -> M.Roll:
    """Grid roll of one token stream (remi: decoded, then quantized onto the grid)."""
    enc = meta.get("encoding", "steps")
    if enc in ("steps", "onsets"):
        sp = meta["specials"]
        return M.roll_from_grid_tokens(tokens, sp["step"], sp["bos"], 2 if enc == "onsets" else 1)
    codec = codec_from_meta(meta)
    try:
        grid = quantize(codec.decode(tokens), int(meta["steps_per_quarter"]), off_piano="drop")
    except Rejected:
        n = codec.count_steps(tokens)
        return M.Roll(
            *(np.zeros(0, np.int64),) * 2, np.zeros(n, np.int64), "onsets", np.zeros(0, bool)
        )
    return M.roll_from_notes(grid.pitch, grid.onset, grid.offset)


def roll_tail(roll: M.Roll, start: int) -> M.Roll:
    """The steps from ``start`` on (e.g. what was generated after a primer)."""
    keep = roll.step_of >= start
    return M.Roll(
        roll.ids[keep],
        roll.step_of[keep] - start,
        roll.piece_of_step[start:],
        roll.space,
        roll.onset[keep],
    )


def concat_rolls(rolls: list[M.Roll]) -> M.Roll:
    offs = np.cumsum([0] + [r.n_steps for r in rolls])
    return M.Roll(
        np.concatenate([r.ids for r in rolls] or [np.zeros(0, np.int64)]),
        np.concatenate(
            [r.step_of + o for r, o in zip(rolls, offs, strict=False)] or [np.zeros(0, np.int64)]
        ),
        np.concatenate(
            [np.full(r.n_steps, i) for i, r in enumerate(rolls)] or [np.zeros(0, np.int64)]
        ).astype(np.int64),
        rolls[0].space if rolls else "steps",
        np.concatenate([r.onset for r in rolls] or [np.zeros(0, bool)]),
    )


def training_index(meta: dict, data_dir: str | Path | None) -> tuple[M.TrainingIndex | None, str]:
    """The training split's window index, or (None, reason) when the data is not there."""
    from tunelab.data.store import DataDirError, load_datadir

    if not data_dir:
        return None, "no data directory recorded in the run"
    try:
        dd = load_datadir(data_dir)
        _check_same_encoding(meta, dd.meta, dd.path)
        train = dd.split("train")
    except (DataDirError, ValueError, OSError) as e:
        return None, str(e)
    enc = meta.get("encoding", "steps")
    if enc in ("steps", "onsets"):
        roll = roll_from_tokens(np.asarray(train.data, np.int64), meta)
    else:
        roll = concat_rolls([roll_from_tokens(np.asarray(p, np.int64), meta) for p in train])
    return M.TrainingIndex(roll, int(meta["steps_per_quarter"])), f"training split of {dd.path}"


def audit_rolls(
    rolls: list[M.Roll],
    problems: list[list[str]],
    index: M.TrainingIndex | None,
    spq: int,
) -> list[dict]:
    """One audit dict per piece: copy audit (when ``index``), statistics vs training,
    validity problems, the most similar other piece, and ``flags``."""
    sim = M.pairwise_similarity(rolls) if len(rolls) > 1 else np.ones((1, 1))
    out = []
    for i, roll in enumerate(rolls):
        a: dict = {"problems": problems[i]}
        stats = M.piece_stats(roll, spq)
        a.update(stats)
        if index is not None:
            a.update(M.copy_audit(roll, index))
            a.update(M.compare_stats(stats, index.stats))
        if len(rolls) > 1:
            others = np.delete(sim[i], i)
            j = int(np.argmax(others))
            a["max_similarity"] = float(others[j])
            a["most_similar"] = j + (j >= i)
        a["flags"] = M.flags_for(a, index.stats if index else None, spq)
        out.append(a)
    return out


def _clean(obj):
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def audit_samples(
    run_dir: str | Path,
    samples: str | Path,
    data: str | Path | None = None,
    which: str = "best",
) -> tuple[Path, dict]:
    """Audit every .mid/.midi file under ``samples``; write RUN_DIR/eval/samples.json.

    Each file is read, quantized and encoded with the run's codec (so it is judged on the
    training grid); an unreadable or unencodable file gets only the ``invalid`` flag and its
    reason. Flags recorded in a file's sidecar by ``generate`` (``training_primer``) are kept.
    """
    import symusic

    from tunelab.checkpoint import checkpoint_path, load_checkpoint
    from tunelab.data.store import printable

    ckpt = load_checkpoint(checkpoint_path(run_dir, which))
    meta, config = ckpt["meta"], ckpt["config"]
    if meta.get("kind", "midi") != "midi":
        raise ValueError(f"{run_dir}: auditing samples of audio runs is not supported yet")
    codec = codec_from_meta(meta)
    spq = int(meta["steps_per_quarter"])
    root = Path(samples)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of samples")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    index, where = training_index(meta, data or config.get("data"))
    if index is None:
        warnings.warn(f"copy audit skipped: {where}", stacklevel=2)
    entries, rolls, probs, ok = [], [], [], []
    for f in files:
        e = {"file": printable(str(f.relative_to(root)))}  # a non-UTF-8 name stays writable
        try:
            tokens = codec.encode(symusic.Score(str(f)))
        except Rejected as err:
            e.update(error=printable(f"{f}: {err}"), flags=["invalid"])
        except Exception as err:  # symusic raises RuntimeError/ValueError on broken files
            e.update(error=printable(f"{f}: cannot read MIDI ({err})"), flags=["invalid"])
        else:
            rolls.append(roll_from_tokens(tokens, meta))
            probs.append(check_tokens(tokens, meta))
            ok.append(len(entries))
        entries.append(e)
    for k, a in zip(ok, audit_rolls(rolls, probs, index, spq) if rolls else [], strict=True):
        flags = a.pop("flags")
        side = files[k].with_name(files[k].name + ".json")
        if side.exists():
            try:
                if "training_primer" in json.loads(side.read_text(encoding="utf-8")).get(
                    "flags", []
                ):
                    flags.append("training_primer")
            except (OSError, ValueError, AttributeError, TypeError):
                pass  # an unreadable or odd sidecar ({"flags": null}, a list, ...) adds nothing
        if "most_similar" in a:
            a["most_similar"] = entries[ok[a["most_similar"]]]["file"]
        entries[k].update(metrics=a, flags=flags)
    result = {
        "run": str(run_dir),
        "samples": str(root),
        "reference": where,
        "thresholds": M.thresholds(),
        "flag_counts": {
            f: sum(f in e["flags"] for e in entries)
            for f in ("copied", "silent", "noise", "identical", "training_primer", "invalid")
        },
        "files": entries,
    }
    result = _clean(result)
    return write_json(Path(run_dir) / "eval" / "samples.json", result), result
