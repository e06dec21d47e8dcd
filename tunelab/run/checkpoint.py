"""Checkpoints: atomic saves, safe loads (weights_only), loading a run for generation.

Every checkpoint ends in an integrity footer, ``\nTUNELAB-SHA256 <64 hex>\n``, the
SHA-256 of the bytes before it (``torch.load`` ignores bytes after its zip archive, so
the file stays a plain PyTorch checkpoint). Loading checks it first: a truncated file or
a flipped byte is reported as damaged, naming the file, before any unpickling. Files
written before the footer existed load as before.

A checkpoint is a dict of tensors and plain Python data only::

    {"model": state_dict, "ema": state_dict | None, "optimizer": ..., "step": int,
     "config": resolved run config (dict), "meta": data meta.json (dict), "rng": ..., ...,
     "version": {"tunelab": version, "commit": git commit or None}}

(``version`` is added by ``save_checkpoint``; checkpoints written before it load as before.)

so ``torch.load(weights_only=True)`` can read it and a run directory alone is
enough to rebuild the model.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.atomic import atomic_path
from tunelab.config import model_config, to_dict
from tunelab.kinds import kind_for
from tunelab.models import build_model, family_of
from tunelab.run import audit_index
from tunelab.run.bundle import BundleError, export_bundle, is_bundle, load_weights, read_bundle
from tunelab.version import stamp


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read, with the path and reason."""


FOOTER = b"\nTUNELAB-SHA256 "  # then 64 hex digits and a newline
_TAIL = len(FOOTER) + 65


def save_checkpoint(path: str | Path, obj: dict) -> None:
    """Write ``obj`` to ``path`` atomically, with its SHA-256 footer: a crash leaves the
    previous checkpoint intact. A failed write (disk full, read-only folder) raises
    CheckpointError naming the path, and the previous file is untouched."""
    # Serialised in memory first: torch's file writer turns a failed write (disk full)
    # into a bare RuntimeError, while a Python write raises OSError with the reason.
    buf = io.BytesIO()
    # Which tunelab wrote it (the trainer's dict need not say): {"tunelab", "commit"}.
    torch.save({**obj, "version": obj.get("version") or stamp()}, buf)
    body = buf.getbuffer()
    digest = hashlib.sha256(body).hexdigest().encode()
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(body)
            f.write(FOOTER + digest + b"\n")
    except OSError as e:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {e.strerror or e} (the previous checkpoint, "
            "if any, is intact)"
        ) from e


def verified_bytes(path: Path) -> bytes:
    """The checkpoint's bytes without the footer, after checking its SHA-256."""
    data = path.read_bytes()
    at = data.rfind(FOOTER, max(0, len(data) - _TAIL))
    if at >= 0:  # a footer, whole or cut short
        body, want = data[:at], data[at + len(FOOTER) :]
        if len(want) != 65 or hashlib.sha256(body).hexdigest().encode() + b"\n" != want:
            raise CheckpointError(
                f"{path}: damaged checkpoint: its SHA-256 does not match the one written with "
                "it (the file was cut short or altered)"
            )
        return body
    if data[-22:-18] != b"PK\x05\x06":  # a torch file without footer ends in its zip directory
        raise CheckpointError(
            f"{path}: damaged checkpoint: its integrity footer is missing or altered (the file "
            "was cut short or altered)"
        )
    return data  # no footer: written before footers existed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint: integrity footer checked, then ``torch.load(weights_only=True)``,
    which refuses pickled code (nothing in the file is ever run)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        body = verified_bytes(path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror or e})") from e
    try:
        return torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: the file holds pickled objects other than tensors and plain "
            "data (code could run when loading it); it was not written by tunelab or was "
            f"altered. Nothing in it was run. ({str(e).splitlines()[0]})"
        ) from e
    except Exception as e:  # truncated file without footer, not a checkpoint at all, ...
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({first})") from e


def remove_stale_temps(folder: str | Path) -> None:
    """Delete temporary files that a killed writer left (``.NAME.tmp-PID-...``, see
    atomic.py); a live process's temporary file is left alone."""
    for tmp in Path(folder).glob(".*.tmp-*"):
        pid = tmp.name.split(".tmp-", 1)[1].split("-", 1)[0]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass


def newest_readable(ckpt_dir: str | Path) -> tuple[Path, dict, list[str]] | None:
    """The checkpoint a run resumes from: ``last.pt``, else the readable milestone or
    ``best.pt`` with the highest step. Returns (path, checkpoint, problems with the
    damaged ones), None when the folder holds no checkpoint at all, and raises
    CheckpointError when checkpoints exist but none is readable."""
    ckpt_dir = Path(ckpt_dir)
    last = ckpt_dir / "last.pt"
    others = sorted(ckpt_dir.glob("milestone-*.pt"), reverse=True) + [ckpt_dir / "best.pt"]
    problems: list[str] = []
    found = None
    for p in [last, *others]:
        if not p.exists():
            continue
        try:
            ck = load_checkpoint(p)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if p == last:
            return p, ck, problems
        if found is None or int(ck.get("step", -1)) > int(found[1].get("step", -1)):
            found = (p, ck)
    if found is not None:
        return found[0], found[1], problems
    if problems:
        raise CheckpointError(
            f"{ckpt_dir}: no readable checkpoint, so this run cannot resume: "
            + "; ".join(problems)
            + ". Not starting from scratch over it: move the run folder away or choose another out="
        )
    return None


@dataclass
class LoadedRun:
    model: nn.Module  # in eval mode, requires_grad off, on the requested device
    config: dict  # resolved run config
    meta: dict  # the data directory's meta.json
    step: int
    path: Path
    kind: Any  # the run's kind object (tunelab.kinds.kind_for), built once on loading
    transpose_mix: int = 0  # the model is the mixture over shifts -n..n (0: the plain model)
    piece_memory: bool = False  # the model is mixed with the memory of the piece so far


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


def rebuild_model(
    config: dict, meta: dict, weights: dict | bytes, where: str | Path, device=None
) -> tuple[nn.Module, Any, dict]:
    """A run's model, rebuilt from its config and its data's meta, with its weights: the one
    way a saved model comes back (``load_run``, bundles, the export at the end of training).

    ``weights``: a checkpoint (its EMA weights when the run kept them, else its model's) or a
    bundle's safetensors bytes. The config's model section may have the flat layout of runs
    written before per-family configs (``tunelab.config.model_config`` reads either).
    Returns (the model in eval mode, requires_grad off, on ``device`` (default: the CPU);
    the run's kind; the config with the model section in its family's layout). Raises
    KeyError, TypeError, ValueError (ConfigError, BundleError) or RuntimeError (weights that
    do not fit) for what is not a tunelab run: the callers say which file it was."""
    model_cfg = model_config(config["model"])
    kind = kind_for(model_cfg, meta, str(where))
    model = build_model(model_cfg, kind.vocab_size, kind.n_labels)
    if isinstance(weights, bytes):
        load_weights(model, weights, Path(where))
    else:
        model.load_state_dict(weights.get("ema") or weights["model"])
    # Inference only: no autograd bookkeeping, and RNN step() keeps its cached fast weights.
    model.to(device or "cpu").eval().requires_grad_(False)
    return model, kind, {**config, "model": to_dict(model_cfg)}


def load_run(
    run_dir: str | Path,
    which: str = "best",
    device: str | torch.device | None = None,
    transpose_mix: int | None = None,
    piece_memory: bool | None = None,
) -> LoadedRun:
    """Rebuild the model of a run from its checkpoint (EMA weights when the run kept them).
    ``run_dir`` may also be a bundle file from ``tunelab export`` (``which`` is then moot).

    ``transpose_mix``: token models come back as their mixture over transpositions by
    -n..n semitones (``tunelab.models.transpose_mix``); None: the run's ``model.transpose_mix``,
    0: the plain model (what ``export`` saves). ``piece_memory``: mixed with the memory of the
    piece so far (``tunelab.models.piece_memory``); None: the run's ``model.piece_memory``."""
    if is_bundle(run_dir):
        return _inference(_load_bundle(Path(run_dir), device), transpose_mix, piece_memory)
    path = checkpoint_path(run_dir, which)
    ckpt = load_checkpoint(path)
    try:
        model, kind, config = rebuild_model(ckpt["config"], ckpt["meta"], ckpt, path, device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # not a tunelab checkpoint
        raise CheckpointError(f"{path}: not a tunelab checkpoint ({type(e).__name__}: {e})") from e
    run = LoadedRun(model, config, ckpt["meta"], int(ckpt["step"]), path, kind)
    return _inference(run, transpose_mix, piece_memory)


def find_data(run_dir: str | Path, data: str | None) -> str | None:
    """The run's data directory as stored in its config, found from any working directory: as
    stored (absolute, or relative to here), else relative to the run's folder or the folder
    above it (runs trained before paths were stored resolved kept them as typed, relative to
    where ``train`` ran, usually beside the run). None when there is none."""
    if not data:
        return data
    p = Path(data)
    if p.is_absolute() or (p / "meta.json").exists():
        return str(p)
    run_dir = Path(run_dir).resolve()
    for base in (run_dir, run_dir.parent):
        if (base / p / "meta.json").exists():
            return str(base / p)
    return data


def _inference(run: LoadedRun, transpose_mix: int | None, piece_memory: bool | None) -> LoadedRun:
    """The run with its model wrapped as the config's transposition mixture and piece memory,
    where asked for (the memory sees the mixture's output)."""
    cfg = run.config["model"]
    family = family_of(cfg)
    n = cfg.get("transpose_mix", 0) if transpose_mix is None else transpose_mix
    memory = cfg.get("piece_memory", False) if piece_memory is None else piece_memory
    if int(n) < 0:
        raise ValueError(f"transpose_mix must be >= 0 (semitones either way), got {n}")
    mix_error = f"{run.path}: transpose_mix needs a token_rnn model on MIDI data"
    memory_error = f"{run.path}: piece_memory needs a token model on MIDI data"
    if n and not family.has("transpose_mix"):
        raise CheckpointError(mix_error)
    if memory and not family.has("piece_memory"):
        raise CheckpointError(memory_error)
    # The kind builds each wrapper, and returns None where its data has none (audio kinds).
    if n:
        mixed = run.kind.inference_model(run.model, int(n))
        if mixed is None:
            raise CheckpointError(mix_error)
        run.model, run.transpose_mix = mixed.eval(), int(n)
    if memory:
        remembered = run.kind.memory_model(run.model)
        if remembered is None:
            raise CheckpointError(memory_error)
        run.model, run.piece_memory = remembered.eval(), True
    return run


def _load_bundle(path: Path, device) -> LoadedRun:
    try:
        header, blob = read_bundle(path)
        model, kind, config = rebuild_model(header["config"], header["meta"], blob, path, device)
    except BundleError as e:
        raise CheckpointError(str(e)) from e
    except (KeyError, TypeError, ValueError) as e:
        msg = f"{path}: not a usable tunelab bundle ({type(e).__name__}: {e})"
        raise CheckpointError(msg) from e
    return LoadedRun(model, config, header["meta"], int(header.get("step", 0)), path, kind)


def export_run(
    run_dir: str | Path, out: str | Path, which: str = "best", with_index: bool = True
) -> dict:
    """``tunelab export``: the run's model as one shareable bundle file (see bundle.py).
    ``with_index=False`` leaves the copy-audit index out (an audio run's index is training
    audio: share it only where that audio may be shared); the receiver's audit then needs
    the data."""
    out = Path(out)
    if out.is_dir():
        raise CheckpointError(f"--out {out} is a folder; give a file name, e.g. {out}/model.tlb")
    # The weights alone; the config keeps the mixture and memory settings.
    run = load_run(run_dir, which, transpose_mix=0, piece_memory=False)
    # The copy-audit index travels with the model, so the receiver's audit needs no data.
    if with_index:
        index = audit_index.pack(run.kind, find_data(run_dir, run.config.get("data")))
    else:
        index = (None, {"present": False, "reason": "left out on export (--no-audit-index)"})
    extra = {}
    if hasattr(run.model, "generator_weights"):  # the receiver's --precision auto needs no data
        from tunelab.run.precision import cached_check

        data = find_data(run_dir, run.config.get("data"))
        extra["precision_check"] = cached_check(run, run_dir, data)
    try:
        return export_bundle(
            run.config, run.meta, run.step, run.model, out, audit_index=index, extra=extra
        )
    except OSError as e:
        raise CheckpointError(f"cannot write {out}: {e.strerror or e}") from e


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
