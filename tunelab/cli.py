"""The ``tunelab`` command: thin Typer commands, no logic beyond argument handling."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

app = typer.Typer(
    help="Train generative music models on your own MIDI or audio collection, "
    "generate new pieces, and audit them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Kind(StrEnum):
    auto = "auto"
    midi = "midi"
    audio = "audio"


class Encoding(StrEnum):
    steps = "steps"
    onsets = "onsets"
    remi = "remi"


class OffPiano(StrEnum):
    reject = "reject"
    drop = "drop"
    fold = "fold"


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        _fail(
            f"--split {text!r}: give three non-negative fractions that sum to 1, e.g. 0.9,0.05,0.05"
        )
    return parts  # type: ignore[return-value]


@app.command()
def prepare(
    src: list[Path] = typer.Argument(None, help="Folders or files to scan (recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Data directory to create."),
    kind: Kind = typer.Option(Kind.auto, help="midi or audio; auto picks by the files found."),
    builtin: str = typer.Option(
        None, help="Use a built-in collection instead of SRC: bach-chorales or bach-chorales-audio."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing data directory at --out."),
    workers: int = typer.Option(0, help="Parallel worker processes (0: one per CPU core)."),
    split: str = typer.Option(
        "0.9,0.05,0.05", help="train,valid,test fractions when SRC has no train/valid/test folders."
    ),
    # MIDI
    encoding: Encoding = typer.Option(Encoding.steps, help="[midi] Token encoding."),
    steps_per_quarter: int = typer.Option(24, help="[midi] Grid steps per quarter note."),
    off_piano: OffPiano = typer.Option(
        OffPiano.reject,
        help="[midi] Notes outside MIDI 21-108: reject the file, drop them, or fold by octaves.",
    ),
    keep_drums: bool = typer.Option(False, help="[midi] Keep drum tracks (dropped by default)."),
    # audio
    sample_rate: int = typer.Option(16000, help="[audio] Target sample rate in Hz."),
    clip_seconds: float = typer.Option(
        None, help="[audio] Keep at most this many seconds per file."
    ),
    clip_offset: float = typer.Option(0.0, help="[audio] Start each clip this many seconds in."),
    trim_db: float = typer.Option(
        -50.0, help="[audio] Trim leading/trailing audio quieter than this RMS level (dBFS)."
    ),
    tempo: float = typer.Option(
        None, help="[audio] Time-stretch every clip to this tempo (BPM), pitch kept."
    ),
    label: str = typer.Option(
        "auto",
        help="[audio] Label source: auto (genre tag when tags exist), genre, year, artist, "
        "title, folder, none, or a path to a CSV/JSON sidecar mapping file to label.",
    ),
    min_label_count: int = typer.Option(
        1, help="[audio] Merge labels with fewer files than this into 'other'."
    ),
) -> None:
    """Turn a folder of MIDI or audio files into a prepared data directory."""
    from tunelab.data.store import DataDirError

    ratios = _ratios(split)
    if builtin is None and not src:
        _fail("give SRC folders/files or --builtin bach-chorales")
    if builtin is not None and src:
        _fail("give either SRC or --builtin, not both")
    try:
        is_audio = kind == Kind.audio or (builtin or "").endswith("-audio")
        if kind == Kind.auto and builtin is None:
            from tunelab.data.scan import guess_kind

            is_audio = guess_kind(src) == "audio"
        if is_audio:
            from tunelab.data.audio_prepare import prepare_audio

            result = prepare_audio(
                src or [],
                out,
                builtin=builtin,
                overwrite=overwrite,
                workers=workers,
                ratios=ratios,
                sample_rate=sample_rate,
                clip_seconds=clip_seconds,
                clip_offset=clip_offset,
                trim_db=trim_db,
                tempo=tempo,
                label=label,
                min_label_count=min_label_count,
            )
        else:
            from tunelab.data.prepare import prepare_midi

            result = prepare_midi(
                src or [],
                out,
                builtin=builtin,
                overwrite=overwrite,
                workers=workers,
                ratios=ratios,
                encoding=encoding.value,
                steps_per_quarter=steps_per_quarter,
                off_piano=off_piano.value,
                keep_drums=keep_drums,
            )
    except (DataDirError, FileNotFoundError) as e:
        _fail(str(e))
    raise typer.Exit(result)


@app.command()
def info(
    path: Path = typer.Argument(..., help="A data directory (or a run directory)."),
    plots: bool = typer.Option(True, help="Write PNG plots next to the statistics."),
) -> None:
    """Show statistics of a data directory and write PNG plots into it."""
    from tunelab.info import show_info

    raise typer.Exit(show_info(path, plots=plots))


if __name__ == "__main__":  # pragma: no cover
    app()
