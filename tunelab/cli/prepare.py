"""``tunelab prepare``: a folder of MIDI or audio files -> a prepared data directory (the
command's arguments; the work is in ``tunelab.data.midi.prepare`` and
``tunelab.data.audio.prepare``)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from tunelab.cli.common import AUDIO, FAILED, MIDI
from tunelab.cli.common import fail as _fail
from tunelab.cli.common import os_error as _os_error


class Builtin(StrEnum):
    bach_chorales = "bach-chorales"
    bach_chorales_audio = "bach-chorales-audio"


BUILTINS = tuple(b.value for b in Builtin)


class Kind(StrEnum):
    auto = "auto"
    midi = "midi"
    audio = "audio"


class Encoding(StrEnum):
    auto = "auto"
    steps = "steps"
    onsets = "onsets"
    remi = "remi"
    remi_programs = "remi-programs"


class OffPiano(StrEnum):
    auto = "auto"
    reject = "reject"
    drop = "drop"
    fold = "fold"


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


def prepare(
    src: list[Path] = typer.Argument(None, help="Folders or files to scan (recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Data directory to create."),
    kind: Kind = typer.Option(Kind.auto, help="midi or audio; auto picks by the files found."),
    builtin: Builtin = typer.Option(None, help="Use a built-in collection instead of SRC."),
    overwrite: bool = typer.Option(False, help="Replace an existing data directory at --out."),
    workers: int = typer.Option(0, help="Parallel worker processes (0: one per CPU core)."),
    split: str = typer.Option(
        "0.9,0.05,0.05", help="train,valid,test fractions when SRC has no train/valid/test folders."
    ),
    dedup_splits: bool = typer.Option(
        False,
        help="Move pieces of valid/ or test/ folders whose tokens equal an earlier split's piece "
        "into that split (by default the folders' split is kept and duplicates only reported).",
    ),
    encoding: Encoding = typer.Option(
        Encoding.auto,
        rich_help_panel=MIDI,
        help="Token encoding; auto: remi-programs for several instruments, else steps "
        "(remi when a bar costs over twice the tokens), printed with the reason.",
    ),
    steps_per_quarter: str = typer.Option(
        "auto",
        rich_help_panel=MIDI,
        help="Grid steps per quarter note; auto: the finest grid that holds 90% of the "
        "onsets, capped so that a bar fits a 128-token window.",
    ),
    off_piano: OffPiano = typer.Option(
        OffPiano.auto,
        rich_help_panel=MIDI,
        help="Notes outside the encoding's range (the 88 keys; all 128 pitches with "
        "remi-programs): reject the file, drop them, fold by octaves, or auto (drop when at "
        "most 5% of a piece's notes, else reject the piece).",
    ),
    keep_drums: bool = typer.Option(
        None,
        "--keep-drums/--drop-drums",
        rich_help_panel=MIDI,
        help="Keep drum tracks; default: kept by remi-programs, dropped by the piano encodings.",
        show_default=False,
    ),
    sample_rate: int = typer.Option(16000, rich_help_panel=AUDIO, help="Target sample rate in Hz."),
    clip_seconds: float = typer.Option(
        None, rich_help_panel=AUDIO, help="Keep at most this many seconds per file."
    ),
    clip_offset: float = typer.Option(
        0.0, rich_help_panel=AUDIO, help="Start each clip this many seconds in."
    ),
    trim_db: float = typer.Option(
        -50.0,
        rich_help_panel=AUDIO,
        help="Trim leading/trailing audio quieter than this RMS level (dBFS).",
    ),
    tempo: float = typer.Option(
        None,
        rich_help_panel=AUDIO,
        help="Time-stretch every clip to this tempo (BPM), pitch kept; a clip without "
        "a beat (too short or too steady) is kept at its own tempo and counted.",
    ),
    tempo_strict: bool = typer.Option(
        False,
        "--tempo-strict",
        rich_help_panel=AUDIO,
        help="With --tempo: reject clips without a beat instead.",
    ),
    label: str = typer.Option(
        "auto",
        rich_help_panel=AUDIO,
        help="Label source: auto (genre tag when tags exist), genre, year, artist, "
        "title, folder, none, or a path to a CSV/JSON sidecar mapping file to label.",
    ),
    min_label_count: int = typer.Option(
        1, rich_help_panel=AUDIO, help="Merge labels with fewer files than this into 'other'."
    ),
) -> None:
    """Turn a folder of MIDI or audio files into a prepared data directory."""
    from tunelab.data.store import DataDirError

    ratios = _ratios(split)
    if steps_per_quarter != "auto" and not steps_per_quarter.isdigit():
        _fail(f"--steps-per-quarter {steps_per_quarter!r}: give a whole number or auto")
    if builtin is None and not src:
        _fail("give SRC folders/files or --builtin bach-chorales")
    if builtin is not None and src:
        _fail("give either SRC or --builtin, not both")
    builtin = builtin.value if builtin is not None else None
    try:
        is_audio = kind == Kind.audio or (builtin or "").endswith("-audio")
        if kind == Kind.auto and builtin is None:
            from tunelab.data.scan import guess_kind

            try:
                is_audio = guess_kind(src) == "audio"
            except ValueError as e:  # both MIDI and audio files: the user chooses
                _fail(str(e))
        common = {
            "builtin": builtin,
            "overwrite": overwrite,
            "workers": workers,
            "ratios": ratios,
            "dedup_splits": dedup_splits,
        }
        if is_audio:
            from tunelab.data.audio.prepare import prepare_audio

            result = prepare_audio(
                src or [],
                out,
                **common,
                sample_rate=sample_rate,
                clip_seconds=clip_seconds,
                clip_offset=clip_offset,
                trim_db=trim_db,
                tempo=tempo,
                tempo_strict=tempo_strict,
                label=label,
                min_label_count=min_label_count,
            )
        else:
            from tunelab.data.midi.prepare import prepare_midi

            result = prepare_midi(
                src or [],
                out,
                **common,
                encoding=encoding.value,
                steps_per_quarter=(
                    steps_per_quarter if steps_per_quarter == "auto" else int(steps_per_quarter)
                ),
                off_piano=off_piano.value,
                keep_drums=keep_drums,
            )
    except (DataDirError, FileNotFoundError) as e:
        _fail(str(e))
    except OSError as e:  # disk full, read-only folder: the earlier data set is untouched
        _fail(_os_error(e, "the earlier data directory, if any, is intact", out), FAILED)
    raise typer.Exit(result)
