"""`tunelab run`: a folder of music to a report page in one command, within a budget.

prepare (with the settings the data calls for) -> train (what the budget leaves) -> generate a
few pieces -> evaluate the test split and the samples -> rank the checkpoints -> report. Every
choice is printed with its reason and kept in OUT/choices.json; key=value overrides and a
preset name win over the choices. Run again, it reuses the prepared data and resumes training.

The budget is wall clock for the whole command: preparing is counted, and training gets what
is left after a reserve for generating, scoring and the report (RESERVE_SHARE of the budget,
at least RESERVE_MIN minutes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from tunelab.cli.common import fail as _fail

RESERVE_SHARE = 0.25  # of the budget, kept for generate, evaluate, ranking and the report
RESERVE_MIN = 1.0  # minutes
MIN_TRAIN = 0.25  # minutes: training never gets less, even when preparing ate the budget
# Audio: wavenet-bench is the measured best at a 7-minute budget (5.953 test bits/sample
# against samplernn's 6.120 on the built-in chorale audio, docs/benchmarks.md); below this many
# minutes of training the demo's wavenet-tiny learns more per second.
AUDIO_SMALL_MINUTES = 4.0


def run_folder(
    srcs: list[Path],
    out: Path,
    *,
    minutes: float = 8.0,
    kind: str = "auto",
    overrides: tuple[str, ...] = (),
    n: int = 3,
    seconds: float | None = None,
    seed: int = 0,
) -> int:
    """Run every stage into ``out`` (OUT/data, OUT/run); returns an exit code."""
    from tunelab import config as C
    from tunelab.data.scan import guess_kind
    from tunelab.train import train

    console = Console(stderr=True, soft_wrap=True)
    t0 = time.time()
    out = Path(out).resolve()
    data, run = out / "data", out / "run"
    choices: dict[str, dict] = {}

    def choose(key: str, value, why: str) -> None:
        choices[key] = {"value": value, "why": why}
        console.print(f"[bold]{key}[/]: {escape(str(value))} ({escape(why)})")

    preset = next((o for o in overrides if "=" not in o), None)
    keys = [o for o in overrides if "=" in o]
    if kind == "auto":
        kind = guess_kind(srcs)  # ValueError with both counts on a mixed folder
        choose("kind", kind, "the only kind of file found")
    else:
        choose("kind", kind, "given")
    console.rule("prepare")
    if (data / "meta.json").exists():
        console.print(escape(f"reusing the prepared data in {data}"))
    elif _prepare(kind, srcs, data):
        return 1
    stats = json.loads((data / "stats.json").read_text(encoding="utf-8"))
    for k, v in (stats.get("choices") or {}).items():
        if not k.startswith("why_"):
            why = {"steps_per_quarter": "why_grid", "keep_drums": "why_drums"}.get(k, f"why_{k}")
            choose(k, v, stats["choices"].get(why, "chosen by prepare"))
    used = (time.time() - t0) / 60
    reserve = max(RESERVE_MIN, RESERVE_SHARE * minutes)
    train_minutes = max(MIN_TRAIN, minutes - used - reserve)
    choose(
        "train minutes",
        round(train_minutes, 2),
        f"budget {minutes:g} min - {used:.1f} spent preparing - {reserve:.1f} kept for "
        "generating, scoring and the report",
    )
    if preset is None:
        preset, why = _preset(kind, stats, train_minutes)
        choose("preset", preset, why)
    else:
        choose("preset", preset, "given")
    console.rule("train")
    if (run / "checkpoints" / "last.pt").exists():
        console.print(escape(f"resuming the run in {run} (train resumes from its last checkpoint)"))
    cfg = C.load(
        C.RunConfig,
        preset,
        [
            f"data={data}",
            f"out={run}",
            f"train.max_minutes={train_minutes:.3f}",
            "train.max_steps=1000000",
            f"seed={seed}",
            *keys,
        ],
    )
    _write_choices(out, choices, srcs, minutes)
    result = train(cfg)
    console.print(f"training: {result.status} at step {result.step}: {escape(result.message)}")
    if result.status == "nan":
        return 1
    judged = _judge(run, data, n=n, seconds=seconds, seed=seed, kind=kind, console=console)
    console.print(f"done in {(time.time() - t0) / 60:.1f} minutes (budget {minutes:g})")
    print(judged)  # the last line: the page to open
    return 0


def _prepare(kind: str, srcs: list[Path], data: Path) -> int:
    if kind == "audio":
        from tunelab.data.audio.prepare import prepare_audio

        return prepare_audio(list(srcs), data)
    from tunelab.data.midi.prepare import prepare_midi

    return prepare_midi(list(srcs), data)


def _preset(kind: str, stats: dict, train_minutes: float) -> tuple[str, str]:
    """The preset to start from, and why."""
    if kind == "midi":
        rec = (stats.get("context") or {}).get("recommended") or {}
        preset = rec.get("preset", "midi-gru")
        return preset, f"prepare's advice for this collection: {rec.get('why', 'default')}"
    if train_minutes < AUDIO_SMALL_MINUTES:
        return "wavenet-tiny", (
            f"under {AUDIO_SMALL_MINUTES:g} minutes of training: the smallest WaveNet (the demo's)"
        )
    return "wavenet-bench", (
        "the measured best audio family at a 7-minute budget (WaveNet 5.953 test bits/sample "
        "against SampleRNN 6.120, docs/benchmarks.md)"
    )


def _write_choices(out: Path, choices: dict, srcs: list[Path], minutes: float) -> None:
    from tunelab.atomic import write_json

    write_json(
        out / "choices.json",
        {"sources": [str(Path(s).resolve()) for s in srcs], "minutes": minutes, **choices},
    )


def _judge(run: Path, data: Path, *, n: int, seconds, seed: int, kind: str, console) -> Path:
    """Generate, score, audit, rank, report; returns the report page's path."""
    import torch

    from tunelab.data.store import load_datadir
    from tunelab.evaluate import audit_samples, evaluate_split
    from tunelab.generate import generate
    from tunelab.ranking import rank_checkpoints
    from tunelab.report.page import build_report

    console.rule("generate")
    torch.set_num_threads(1)  # batch-1 sampling is fastest on one thread
    seconds = seconds if seconds is not None else (30.0 if kind == "midi" else 4.0)
    samples = run / "samples"
    generate(run, n=n, seconds=seconds, seed=seed, out=samples)
    console.rule("evaluate")
    split = "test"
    dd = load_datadir(data)
    if not len(dd.split("test")):  # a tiny collection may leave test empty: say so
        split = "valid" if len(dd.split("valid")) else "train"
        console.print(f"[yellow]the test split is empty: scoring {split} instead")
    _, lik = evaluate_split(run, split)
    console.print(f"[bold]did it learn?[/] {escape(verdict(lik))}")
    _, audit = audit_samples(run, samples)
    flagged = {k: v for k, v in audit.get("flag_counts", {}).items() if v}
    console.print(
        f"[bold]are the samples clean?[/] {len(audit.get('files', []))} files, flags: "
        + (", ".join(f"{k} {v}" for k, v in flagged.items()) or "none")
    )
    console.rule("rank")
    rank_checkpoints(run, n=2, seed=seed)
    console.rule("report")
    return build_report(run).resolve()


def verdict(lik: dict) -> str:
    """The model against its baseline in one line (the fixed model's figure first)."""
    if "bits_per_sample" in lik:
        unit, model = "bits/sample", lik["bits_per_sample"]
        base = next((v for k, v in lik.items() if "baseline" in k and "bits" in k), None)
    else:
        per = "step" if "nll_per_step" in lik else "token"
        unit = f"nats/{per}"
        model = lik.get(f"fixed_model_nll_per_{per}", lik.get(f"nll_per_{per}"))
        base = next(
            (v for k, v in lik.items() if "baseline" in k and k.endswith(f"nll_per_{per}")), None
        )
    text = f"model {model:.3f} {unit}"
    if base is None or not isinstance(base, int | float):
        return text + " (no baseline to compare with)"
    better = model < base
    text += (
        f" against the baseline's {base:.3f}: {'better' if better else 'WORSE'} by "
        f"{abs(base - model):.3f} ({abs(base - model) / base:.0%})"
    )
    if lik.get("piece_memory") and "fixed_model_nll_per_step" in lik:
        text += f"; with piece memory (online adaptation) {lik['nll_per_step']:.3f}"
    return text


def run_command(
    args: list[str] = typer.Argument(
        ...,
        help="Folders or files of MIDI or audio to learn from, then optionally a preset name "
        "and key=value overrides (e.g. midi-gru train.batch_size=8).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the data, the run, the page."),
    minutes: float = typer.Option(
        8.0, help="Wall-clock budget of the whole command (training gets what is left)."
    ),
    kind: str = typer.Option("auto", help="midi, audio, or auto (the kind of file found)."),
    n: int = typer.Option(3, "--n", help="Pieces to generate."),
    seconds: float = typer.Option(None, help="Length of each piece (default 30 MIDI, 4 audio)."),
    seed: int = typer.Option(0, help="Seed for training and sampling."),
) -> None:
    """A folder to a report page: prepare with the settings the data calls for, train within
    the budget, generate, evaluate, rank the checkpoints, report. Prints every choice with its
    reason; the last line is the report page's path. Run again, it resumes."""
    from tunelab.config import presets

    known = set(presets())
    overrides = [a for a in args if "=" in a or (a in known and not Path(a).exists())]
    src = [Path(a) for a in args if a not in overrides]
    if not src:
        _fail("give at least one folder or file of MIDI or audio")
    if kind not in ("auto", "midi", "audio"):
        _fail(f"--kind {kind!r}: choose auto, midi or audio")
    try:
        code = run_folder(
            src,
            out,
            minutes=minutes,
            kind=kind,
            overrides=tuple(overrides or ()),
            n=n,
            seconds=seconds,
            seed=seed,
        )
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    raise typer.Exit(code)
