"""``tunelab revise REV FILES...``: the revision pass (``tunelab.revise``) over any audio files.

Each file is decoded at the reviser's sample rate (mono), revised, and written as
``<name>.revised.wav`` beside it, or into ``--out``; ``<name>`` is the file's stem made safe
(``tunelab.generate.safe_name``), with ``-2``, ``-3`` ... when two inputs share it. Each output
gets a sidecar ``<output>.json``: the source, the reviser, the revised audio's audit figures and
flags, and the same for the input under ``draft``. The copy audit compares with the reviser's
training audio; where that is missing the sidecar says ``audited: false`` and why.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from tunelab.cli.common import CHECKPOINT_HELP, checkpoint_name, device_option
from tunelab.cli.common import device_name as _device
from tunelab.cli.common import fail as _fail


def revise(
    rev: Path = typer.Argument(..., help="A revision run (tunelab train revision) or its bundle."),
    files: list[Path] = typer.Argument(..., help="Audio files to revise (any format)."),
    out: Path = typer.Option(
        None, help="Output folder (default: beside each file, as NAME.revised.wav)."
    ),
    checkpoint: str = typer.Option("best", help=CHECKPOINT_HELP),
    device: str = device_option(),
    audit: bool = typer.Option(True, help="Audit each output against the training audio."),
    threads: int = typer.Option(
        1,
        help="CPU threads for torch (one is safest: on a busy 2-core machine two threads revised "
        "at 8x real time, one at about 300x).",
    ),
) -> None:
    """Revise audio files with a trained revision pass: NAME.revised.wav (+ .json sidecar)."""
    checkpoint = checkpoint_name(rev, checkpoint)  # checked before any work
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail(f"no such file: {', '.join(missing)}")
    if out is not None and out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file, not a folder")
    import torch

    torch.set_num_threads(max(1, threads))
    from tunelab.run.checkpoint import CheckpointError

    try:
        written = revise_files(rev, files, out, checkpoint, _device(device), audit)
    except (CheckpointError, ValueError) as e:
        _fail(str(e))
    for path, flags, speed in written:
        typer.echo(
            f"{path}  ({speed:.0f}x real time)" + (f"  flags: {', '.join(flags)}" if flags else "")
        )


def revise_files(rev, files, out, which: str, device: str, audit: bool) -> list[tuple]:
    """Revise ``files``; [(output path, its flags, x real time)]."""
    from tunelab.atomic import json_safe, write_json
    from tunelab.generate import safe_name
    from tunelab.kinds.audio_io import read_float
    from tunelab.revise import load_reviser
    from tunelab.run import audit_index
    from tunelab.run.checkpoint import find_data
    from tunelab.version import stamp

    reviser = load_reviser(rev, device, which)
    run, sr = reviser.run, reviser.sample_rate
    index, reference = None, "audit disabled"
    if audit:
        index, reference = audit_index.reference(run, rev, find_data(rev, run.config.get("data")))
    taken: set[Path] = set()
    done = []
    for f in files:
        audio = read_float(f, sr)
        start = time.perf_counter()
        revised = reviser.revise(audio, sr)
        speed = len(audio) / sr / max(time.perf_counter() - start, 1e-9)
        folder = Path(out) if out is not None else f.parent
        folder.mkdir(parents=True, exist_ok=True)
        stem, k = safe_name(f.stem), 1
        path = folder / f"{stem}.revised.wav"
        while path in taken:  # two inputs with one stem
            k += 1
            path = folder / f"{stem}-{k}.revised.wav"
        taken.add(path)
        # One at a time: audited together, the two would flag each other as identical.
        (draft_audit,) = run.kind.audit([run.kind.clip_type(audio, None)], None, index)
        (rev_audit,) = run.kind.audit([run.kind.clip_type(revised, None)], None, index)
        flags = sorted(rev_audit.pop("flags"))
        side = {
            "file": path.name,
            "source": str(f),
            "kind": "audio",
            "revision": {"checkpoint": str(reviser.path), "checkpoint_step": reviser.step},
            "version": stamp(),
            "duration_seconds": len(revised) / sr,
            "sample_rate": sr,
            "x_real_time": speed,
            "audit_reference": reference,
            "audited": index is not None,
            **({} if index is not None else {"not_audited_reason": reference}),
            "audit": rev_audit,
            "flags": flags,
            "draft": {
                "file": str(f),
                "flags": sorted(draft_audit.pop("flags")),
                "audit": draft_audit,
            },
        }
        run.kind.write_audio(revised, path)
        write_json(path.with_name(path.name + ".json"), json_safe(side))
        done.append((path, flags, speed))
    return done
