"""`tunelab demo`: `tunelab run` on the built-in data, once for MIDI and once for audio.

MIDI:  ``tunelab run --builtin bach-chorales --out OUT/midi --minutes 4.25``: the 410 chorales
prepared with the fitted defaults (2 steps per quarter, ``steps``: what the chorales' onsets
call for) and the preset prepare advises for them (``midi-roll``), three 30-second pieces.
Audio: ``tunelab run --builtin bach-chorales-audio --limit 8 --out OUT/audio --minutes 2.75
--n 4 --seconds 3``: 8 chorales rendered as organ, strings, piano and choir, ``wavenet-tiny``
(under 4 minutes of training) conditioned on the timbre, one 3-second clip per timbre.

Each half is one ``run_folder`` call, with the run's layout (OUT/midi/data, run/,
choices.json), budget and report; a rerun resumes both. The built-in data is converted and
rendered first, once (cached), outside the budgets, as a download would be. The last two lines
printed are the two report pages, MIDI first.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

DEMO_MINUTES = 4.25  # MIDI: about 3.4 minutes of training after preparing and the reserve
DEMO_AUDIO_MINUTES = 2.75  # audio: about 2 minutes of training
DEMO_AUDIO_CHORALES = 8  # x 4 timbres: about 19 minutes of audio
DEMO_AUDIO_SECONDS = 3.0


def run_demo(
    out: Path,
    minutes: float = DEMO_MINUTES,
    n: int = 3,
    seconds: float = 30.0,
    seed: int = 0,
    audio_minutes: float = DEMO_AUDIO_MINUTES,
    audio_chorales: int = DEMO_AUDIO_CHORALES,
) -> int:
    """Both halves into ``out``; returns an exit code."""
    from tunelab.cli.folder import run_folder
    from tunelab.data.audio.synth import TIMBRES

    console = Console(stderr=True, soft_wrap=True)
    out = Path(out).resolve()
    _fetch(out, audio_chorales, console)
    halves = {}
    for name, kw in (
        ("MIDI", {"builtin": "bach-chorales", "minutes": minutes, "n": n, "seconds": seconds}),
        (
            "audio",
            {
                "builtin": "bach-chorales-audio",
                "limit": audio_chorales,
                "minutes": audio_minutes,
                "n": len(TIMBRES),  # one clip per timbre: sampling cycles through the labels
                "seconds": DEMO_AUDIO_SECONDS,
            },
        ),
    ):
        where = out / name.lower()
        console.rule(f"[bold]{name}")
        console.print(escape(_command(where, kw)))
        halves[name] = run_folder([], where, seed=seed, **kw)
        if halves[name] is None:
            return 1
    for name, r in halves.items():  # the two answers of each half, once more together
        choices = json.loads((out / name.lower() / "choices.json").read_text(encoding="utf-8"))
        console.print(
            f"[bold]{name}[/] ({choices['preset']['value']}, {r.spent['total'] / 60:.1f} "
            f"minutes, budget {choices['minutes']:g}): did it learn? {escape(r.learned)}; "
            f"are the samples clean? {escape(r.clean)}"
        )
    for r in halves.values():
        print(r.page)  # the last two lines: the pages to open
    return 0


def _command(where: Path, kw: dict) -> str:
    """The `tunelab run` command line that this half is."""
    line = f"tunelab run --builtin {kw['builtin']} --out {where} --minutes {kw['minutes']:g}"
    if "limit" in kw:
        line += f" --limit {kw['limit']}"
    return line + f" --n {kw['n']} --seconds {kw['seconds']:g}"


def _fetch(out: Path, audio_chorales: int, console) -> None:
    """Convert the chorales and render their audio once (cached): a download, not the runs'."""
    from tunelab.data.audio.builtin import builtin_chorale_audio, builtin_limit
    from tunelab.data.midi.chorales import builtin_chorale_midis

    if not (out / "midi" / "data" / "meta.json").exists():
        console.print("fetching the built-in chorales (once, cached; outside the budgets)")
        builtin_chorale_midis(builtin_limit())
    if not (out / "audio" / "data" / "meta.json").exists():
        console.print("rendering the chorale audio (once, cached; outside the budgets)")
        builtin_chorale_audio(16000, audio_chorales)


def demo(
    out: Path = typer.Option(Path("demo"), help="Folder for both runs (OUT/midi, OUT/audio)."),
    minutes: float = typer.Option(
        DEMO_MINUTES, help="Budget of the MIDI run, the whole `tunelab run --minutes`."
    ),
    audio_minutes: float = typer.Option(DEMO_AUDIO_MINUTES, help="Budget of the audio run."),
    n: int = typer.Option(3, "--n", help="MIDI pieces to generate (audio: one per timbre)."),
    seconds: float = typer.Option(30.0, help="Length of each MIDI piece in seconds."),
    seed: int = typer.Option(0, help="Seed for training and sampling."),
    audio_chorales: int = typer.Option(
        DEMO_AUDIO_CHORALES, help="Chorales rendered to audio (each in four timbres)."
    ),
) -> None:
    """`tunelab run` on the built-in data, twice: the Bach chorales as MIDI, and 8 of them
    rendered as organ, strings, piano and choir (audio, conditioned on the timbre). Each prints
    its choices and verdicts; the last two lines are the two report pages. Run again, it
    resumes."""
    raise typer.Exit(
        run_demo(
            out,
            minutes=minutes,
            n=n,
            seconds=seconds,
            seed=seed,
            audio_minutes=audio_minutes,
            audio_chorales=audio_chorales,
        )
    )
