"""`tunelab run`: a folder of music (or the built-in data) to a report page in one command,
within a budget.

prepare (with the settings the data calls for) -> train (what the budget leaves) -> generate a
few pieces -> evaluate the test split and the samples -> rank the checkpoints -> report. Every
choice is printed with its reason and kept in OUT/choices.json; key=value overrides and a
preset name win over the choices. Run again, it reuses the prepared data and resumes training.
``--builtin bach-chorales`` (MIDI) or ``--builtin bach-chorales-audio`` (the chorales rendered
in four timbres) takes the built-in data instead of a folder; ``tunelab demo`` is both.

The budget (``--minutes``) is wall clock for the whole command; ``tunelab.cli.budget`` says
how it is shared out and accounted for.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from tunelab.cli.budget import Clock, account, command_start, plan_training, previous_spent, reserve
from tunelab.cli.common import fail as _fail

# Audio: wavenet-bench (measured best; _preset prints why); below this many minutes of
# training the demo's wavenet-tiny learns more per second.
AUDIO_SMALL_MINUTES = 4.0
TINY_EVAL_EVERY = 200  # wavenet-tiny's preset validates every 30 updates, a setting for tests
# MIDI: on a small training split, validate about every this many passes over it (at least
# every MIN_EVAL_EVERY updates), when that comes before the preset's interval.
SMALL_DATA_PASSES = 10
MIN_EVAL_EVERY = 25
BUILTINS = {"bach-chorales": "midi", "bach-chorales-audio": "audio"}
# Rendering is counted against the budget: all 410 chorales in four timbres take a long first
# render; 8 (about 19 minutes of audio) are the demo's, more than minutes of training see.
BUILTIN_AUDIO_CHORALES = 8


@dataclass
class RunResult:
    """What a finished run gives its caller: the page, the two answers in words, the time."""

    page: Path
    learned: str
    clean: str
    spent: dict = field(default_factory=dict)  # stage -> seconds


def run_folder(
    srcs: list[Path],
    out: Path,
    *,
    builtin: str | None = None,
    limit: int | None = None,
    minutes: float = 8.0,
    kind: str = "auto",
    overrides: tuple[str, ...] = (),
    n: int = 3,
    seconds: float | None = None,
    seed: int = 0,
    started: float | None = None,
) -> RunResult | None:
    """Run every stage into ``out`` (OUT/data, OUT/run); returns the result, or None when a
    stage failed (it said why). ``builtin``: a name of ``BUILTINS`` instead of ``srcs``
    (``limit``: its first chorales only). ``started``: when the budget's clock started
    (default: now)."""
    clock = Clock(started)
    from tunelab import config as C
    from tunelab.data.scan import guess_kind
    from tunelab.train import train

    console = Console(stderr=True, soft_wrap=True)
    out = Path(out).resolve()
    data, run = out / "data", out / "run"
    choices: dict[str, dict] = {}

    def choose(key: str, value, why: str) -> None:
        choices[key] = {"value": value, "why": why}
        console.print(f"[bold]{key}[/]: {escape(str(value))} ({escape(why)})")

    preset = next((o for o in overrides if "=" not in o), None)
    keys = [o for o in overrides if "=" in o]
    if builtin is not None:
        kind = BUILTINS[builtin]
        choose("kind", kind, f"the built-in {builtin}")
        if limit is not None:
            choose("chorales", limit, "given")
        elif kind == "audio":  # rendering is counted: all 410 in four timbres take long
            limit = BUILTIN_AUDIO_CHORALES
            choose("chorales", limit, "each in four timbres, the demo's (--limit for more)")
    elif kind == "auto":
        kind = guess_kind(srcs)  # ValueError with both counts on a mixed folder
        choose("kind", kind, "the only kind of file found")
    else:
        choose("kind", kind, "given")
    console.rule("prepare")
    if (data / "meta.json").exists():
        console.print(escape(f"reusing the prepared data in {data}"))
    elif _prepare(kind, srcs, data, builtin, limit):
        return None
    stats = json.loads((data / "stats.json").read_text(encoding="utf-8"))
    for k, v in (stats.get("choices") or {}).items():
        if not k.startswith("why_"):
            why = {"steps_per_quarter": "why_grid", "keep_drums": "why_drums"}.get(k, f"why_{k}")
            choose(k, v, stats["choices"].get(why, "chosen by prepare"))
    clock.lap("start_and_prepare")
    kept, why_kept = reserve(minutes, previous_spent(out))
    train_minutes, why = plan_training(minutes, clock.minutes(), kept, why_kept)
    choose("train minutes", round(train_minutes, 2), why)
    if preset is None:
        preset, why, extra = _preset(kind, stats, train_minutes)
        choose("preset", preset, why)
        for key, (value, why) in extra.items():
            choose(key, value, why)
        keys = [f"{k}={v}" for k, (v, _) in extra.items()] + keys  # the user's keys win
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
    sources = [f"--builtin {builtin}"] if builtin else [str(Path(s).resolve()) for s in srcs]
    _write_choices(out, choices, sources, minutes)
    result = train(cfg)
    console.print(f"training: {result.status} at step {result.step}: {escape(result.message)}")
    clock.lap("train")
    if result.status == "nan":
        return None
    page, learned, clean = _judge(
        run, data, n=n, seconds=seconds, seed=seed, kind=kind, console=console, clock=clock
    )
    account(console, clock, minutes, train_minutes, kept)
    _write_choices(out, choices, sources, minutes, spent=clock.spent)
    return RunResult(page, learned, clean, dict(clock.spent))


@contextmanager
def _builtin_limit(limit: int | None):
    """The MIDI builtin's chorale limit, which prepare reads from the environment."""
    from tunelab.data.audio.builtin import LIMIT_ENV

    before = os.environ.get(LIMIT_ENV)
    if limit is not None:
        os.environ[LIMIT_ENV] = str(limit)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LIMIT_ENV, None)
        else:
            os.environ[LIMIT_ENV] = before


def _prepare(kind: str, srcs: list[Path], data: Path, builtin: str | None, limit) -> int:
    if kind == "audio":
        from tunelab.data.audio.prepare import prepare_audio

        return prepare_audio(list(srcs), data, builtin=builtin, limit=limit)
    from tunelab.data.midi.prepare import prepare_midi

    with _builtin_limit(limit):
        return prepare_midi(list(srcs), data, builtin=builtin)


def _preset(kind: str, stats: dict, train_minutes: float) -> tuple[str, str, dict]:
    """The preset to start from, why, and the settings chosen with it ({key: (value, why)})."""
    if kind == "midi":
        rec = (stats.get("context") or {}).get("recommended") or {}
        preset = rec.get("preset", "midi-gru")
        why = f"prepare's advice for this collection: {rec.get('why', 'default')}"
        return preset, why, _small_data_eval(preset, stats)
    if train_minutes < AUDIO_SMALL_MINUTES:
        why = (
            f"under {AUDIO_SMALL_MINUTES:g} minutes of training: the smallest WaveNet (the demo's)"
        )
        every = (
            TINY_EVAL_EVERY,
            "the preset's 30 is a test setting; minutes of training make thousands of updates",
        )
        return "wavenet-tiny", why, {"train.eval_every": every}
    return (
        "wavenet-bench",
        "the measured best audio family: 30 minutes each on recorded music, its clips lie "
        "closest to the test recordings (Fréchet 82.6 against SampleRNN's 93.3 and the frame "
        "RNN's 100.6) and it scores 5.01 test bits/sample against SampleRNN's 5.27 "
        "(docs/benchmarks.md)",
        {},
    )


def _small_data_eval(preset: str, stats: dict) -> dict:
    """A validation interval for a small training split: a preset's interval (hundreds of
    updates) suits a collection of hours; nine pieces are memorised in a few hundred updates,
    and a first validation at 500 misses the best checkpoint (PianoBooster's lessons: valid
    1.17 at update 150, 1.56 at 500, docs/benchmarks.md). Validate about every
    SMALL_DATA_PASSES passes over the training tokens, when that is sooner."""
    from tunelab import config as C

    t = C.load(C.RunConfig, preset).train
    per_update = t.batch_tokens or t.batch_size * t.seq_len
    train_tokens = ((stats.get("splits") or {}).get("train") or {}).get("items")
    if not train_tokens:
        return {}
    every = max(MIN_EVAL_EVERY, round(SMALL_DATA_PASSES * train_tokens / per_update))
    if every >= t.eval_every:
        return {}
    why = (
        f"{train_tokens:,} training tokens are {train_tokens / per_update:.1f} updates of "
        f"{per_update:,}: validate every {SMALL_DATA_PASSES} passes, not the preset's "
        f"{t.eval_every} updates, so the best checkpoint is not missed"
    )
    return {"train.eval_every": (every, why)}


def _write_choices(out: Path, choices: dict, sources: list[str], minutes: float, spent=None):
    from tunelab.atomic import write_json

    extra = {"spent": spent} if spent else {}
    write_json(out / "choices.json", {"sources": sources, "minutes": minutes, **choices, **extra})


@contextmanager
def _one_thread():
    """Batch-1 sampling is fastest on one thread; scoring and a later training are not, so the
    setting is put back (the demo trains its audio model in the same process)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _judge(
    run: Path, data: Path, *, n: int, seconds, seed: int, kind: str, console, clock: Clock
) -> tuple[Path, str, str]:
    """Generate, score, audit, rank, report; returns the report page's path and the answers
    to "did it learn?" and "are the samples clean?"."""
    from tunelab.data.store import load_datadir
    from tunelab.evaluate import audit_samples, evaluate_split
    from tunelab.generate import generate
    from tunelab.ranking import rank_checkpoints
    from tunelab.report.page import build_report

    console.rule("generate")
    seconds = seconds if seconds is not None else (30.0 if kind == "midi" else 4.0)
    samples = run / "samples"
    with _one_thread():
        generate(run, n=n, seconds=seconds, seed=seed, out=samples)
    clock.lap("generate")
    console.rule("evaluate")
    split = "test"
    dd = load_datadir(data)
    if not len(dd.split("test")):  # a tiny collection may leave test empty: say so
        split = "valid" if len(dd.split("valid")) else "train"
        console.print(f"[yellow]the test split is empty: scoring {split} instead")
    _, lik = evaluate_split(run, split)
    learned = verdict(lik)
    console.print(f"[bold]did it learn?[/] {escape(learned)}")
    _, audit = audit_samples(run, samples)
    flagged = {k: v for k, v in audit.get("flag_counts", {}).items() if v}
    clean = f"{len(audit.get('files', []))} files, flags: " + (
        ", ".join(f"{k} {v}" for k, v in flagged.items()) or "none"
    )
    console.print(f"[bold]are the samples clean?[/] {escape(clean)}")
    clock.lap("evaluate")
    console.rule("rank")
    with _one_thread():
        rank_checkpoints(run, n=2, seed=seed)
    clock.lap("rank")
    console.rule("report")
    page = build_report(run).resolve()
    clock.lap("report")
    return page, learned, clean


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
        None,
        help="Folders or files of MIDI or audio to learn from (or none, with --builtin), then "
        "optionally a preset name and key=value overrides (e.g. midi-gru train.batch_size=8).",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the data, the run, the page."),
    minutes: float = typer.Option(
        8.0,
        help="Wall-clock budget of the whole command, start-up and preparing included "
        "(training gets what is left after a reserve for generating, scoring and the report).",
    ),
    kind: str = typer.Option("auto", help="midi, audio, or auto (the kind of file found)."),
    builtin: str = typer.Option(
        None,
        help="The built-in data instead of folders: bach-chorales (MIDI) or bach-chorales-audio "
        "(the chorales rendered in four timbres).",
    ),
    limit: int = typer.Option(
        None,
        help="With --builtin: the first N chorales only (default: all 410 for MIDI, "
        f"{BUILTIN_AUDIO_CHORALES} for the audio, each in four timbres).",
    ),
    n: int = typer.Option(3, "--n", help="Pieces to generate."),
    seconds: float = typer.Option(None, help="Length of each piece (default 30 MIDI, 4 audio)."),
    seed: int = typer.Option(0, help="Seed for training and sampling."),
) -> None:
    """A folder (or the built-in data) to a report page: prepare with the settings the data
    calls for, train within the budget, generate, evaluate, rank the checkpoints, report.
    Prints every choice with its reason; the last line is the report page's path. Run again,
    it resumes."""
    started = command_start()
    from tunelab.config import did_you_mean, presets
    from tunelab.data.store import DataDirError

    known = set(presets())
    args = list(args or [])
    overrides = [a for a in args if "=" in a or (a in known and not Path(a).exists())]
    src = [Path(a) for a in args if a not in overrides]
    for s in src:  # a mistyped preset reads as a missing folder: say which was meant
        hint = "" if s.exists() else did_you_mean(str(s), sorted(known))
        if hint:
            _fail(f"{s}: no such file or folder, nor a preset;{hint}")
    if builtin is not None:
        if builtin not in BUILTINS:
            _fail(f"--builtin {builtin!r}: choose {' or '.join(BUILTINS)}")
        if src:
            _fail("give either folders or --builtin, not both")
        if kind not in ("auto", BUILTINS[builtin]):
            _fail(f"--kind {kind}: the built-in {builtin} is {BUILTINS[builtin]}")
    elif not src:
        _fail("give at least one folder or file of MIDI or audio, or --builtin bach-chorales")
    if limit is not None and (builtin is None or limit < 1):
        _fail(f"--limit {limit}: give a positive number of chorales, with --builtin")
    if kind not in ("auto", "midi", "audio"):
        _fail(f"--kind {kind!r}: choose auto, midi or audio")
    try:
        result = run_folder(
            src,
            out,
            builtin=builtin,
            limit=limit,
            minutes=minutes,
            kind=kind,
            overrides=tuple(overrides),
            n=n,
            seconds=seconds,
            seed=seed,
            started=started,
        )
    except (ValueError, FileNotFoundError, DataDirError) as e:
        _fail(str(e))
    if result is None:
        raise typer.Exit(1)
    print(result.page)  # the last line: the page to open
