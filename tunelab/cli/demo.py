"""`tunelab demo`: the whole pipeline on the built-in Bach chorales, start to finish.

MIDI: prepare (built-in chorales) -> info -> train midi-gru for a few minutes -> generate
three 30-second pieces (MIDI + WAV) -> evaluate (likelihood + audits, checkpoints ranked).
Audio: render a few dozen chorales in four timbres -> train wavenet-tiny conditioned on
the timbre -> generate a few seconds per timbre -> evaluate (bits per sample + audits).
Then one summary table, and a report page per run (``tunelab report``); the last line printed
is the path of the MIDI run's ``report/index.html``.

Each stage reuses what an earlier run of the demo left behind (a prepared data
directory, a finished or resumable training run), so running it twice is cheap.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

# One step per eighth note: keeps the chorales' passing notes while sequences
# stay short enough for a GRU to learn in a few CPU minutes.
DEMO_STEPS_PER_QUARTER = 2


# Audio: 8 chorales x 4 timbres (~19 minutes of audio), wavenet-tiny for a few minutes.
DEMO_AUDIO_CHORALES = 8
DEMO_AUDIO_SECONDS = 3.0


def run_demo(
    out: Path,
    minutes: float,
    n: int = 3,
    seconds: float = 30.0,
    seed: int = 0,
    audio_minutes: float = 2.0,
    audio_chorales: int = DEMO_AUDIO_CHORALES,
) -> int:
    """Run every stage into ``out``; returns an exit code."""
    from tunelab import config as C
    from tunelab.cli.info import show_info
    from tunelab.data.midi.prepare import prepare_midi
    from tunelab.evaluate import audit_samples, evaluate_split
    from tunelab.generate import generate
    from tunelab.train import train

    console = Console()
    out = Path(out)
    data, run = out / "data", out / "run"
    t0 = time.time()
    timings: dict[str, float] = {}

    def stage(name: str) -> None:
        timings[name] = time.time()
        console.rule(f"[bold]{name}")

    stage("prepare")
    if (data / "meta.json").exists():
        console.print(f"reusing the prepared chorales in {data}")
    else:
        code = prepare_midi(
            [],
            data,
            builtin="bach-chorales",
            steps_per_quarter=DEMO_STEPS_PER_QUARTER,
            encoding="steps",
        )
        if code:
            return code
    stage("info")
    show_info(data, plots=True)

    stage("train")
    cfg = C.load(
        C.RunConfig,
        "midi-gru",
        [f"data={data}", f"out={run}", f"train.max_minutes={minutes}", f"seed={seed}"],
    )
    result = train(cfg)
    console.print(f"training: {result.status} at step {result.step}: {result.message}")
    if result.status == "nan":
        return 1

    stage("generate")
    import torch

    torch.set_num_threads(1)  # batch-1 sampling is fastest on one thread (see generate --threads)
    samples = run / "samples"
    files = generate(run, n=n, seconds=seconds, seed=seed, out=samples)

    stage("evaluate")
    lik_path, lik = evaluate_split(run, "test")
    aud_path, _ = audit_samples(run, samples)
    from tunelab.ranking import rank_checkpoints

    _, ranking = rank_checkpoints(run, n=3)  # for the report's checkpoint table
    console.print(f"best-ranked checkpoint: {ranking['best_ranked']}")

    audio = _audio_demo(out, audio_minutes, audio_chorales, seed, stage, console)
    if audio is None:
        return 1

    table = Table(title=f"tunelab demo: done in {time.time() - t0:.0f} s")
    table.add_column("what")
    table.add_column("where / value")
    table.add_row("data set", str(data))
    table.add_row("data plots", str(data / "plots"))
    table.add_row("run", str(run))
    table.add_row("loss curves", str(run / "plots"))
    fixed = lik.get("fixed_model_nll_per_step")
    if fixed is not None:  # the piece memory adapts to each test piece: the fixed model first
        table.add_row("test NLL / step (nats), fixed model", f"{fixed:.3f}")
        table.add_row("  with piece memory (online adaptation)", f"{lik['nll_per_step']:.3f}")
    else:
        table.add_row("test NLL / step (nats)", f"{lik['nll_per_step']:.3f}")
    for k, v in lik.items():
        if "baseline" in k and "per_step" in k and isinstance(v, int | float):
            table.add_row(f"  {k}", f"{v:.3f}")
    for f in files:
        side = json.loads(Path(f"{f}.json").read_text(encoding="utf-8"))
        wav = f.with_suffix(".wav")
        flags = ", ".join(side.get("flags", [])) or "none"
        table.add_row(f.name, f"{f}\n{wav if wav.exists() else '(no WAV)'}\nflags: {flags}")
    table.add_row("likelihood", str(lik_path))
    table.add_row("audits", str(aud_path))
    a_lik, wavs = audio
    table.add_row("audio run (wavenet-tiny)", str(out / "audio-run"))
    bits, base = a_lik["bits_per_sample"], a_lik.get("baseline_histogram_bits_per_sample")
    split = a_lik["split"]
    table.add_row(f"{split} bits / sample", f"{bits:.3f} (class histogram {base:.3f})")
    for w in wavs:
        side = json.loads(Path(f"{w}.json").read_text(encoding="utf-8"))
        flags = ", ".join(side.get("flags", [])) or "none"
        table.add_row(w.name, f"{w}\ntimbre: {side.get('label')}\nflags: {flags}")
    console.print(table)
    stage("report")
    from tunelab.report.page import build_report

    audio_page = build_report(out / "audio-run")
    console.print(f"audio run report: {audio_page}")
    page = build_report(run)
    print(page.resolve())  # the last line: the page to open
    return 0


def _audio_demo(out: Path, minutes: float, chorales: int, seed: int, stage, console):
    """The audio half: (test likelihood dict, generated WAV paths), or None on failure."""
    from tunelab import config as C
    from tunelab.data.audio.prepare import prepare_audio
    from tunelab.evaluate import audit_samples, evaluate_split
    from tunelab.generate import generate
    from tunelab.train import train

    data, run = out / "audio-data", out / "audio-run"
    stage("audio: prepare")
    if (data / "meta.json").exists():
        console.print(f"reusing the prepared chorale audio in {data}")
    elif prepare_audio([], data, builtin="bach-chorales-audio", limit=chorales):
        return None
    stage("audio: train")
    cfg = C.load(
        C.RunConfig,
        "wavenet-tiny",
        [
            f"data={data}",
            f"out={run}",
            f"train.max_minutes={minutes}",
            "train.max_steps=100000",
            "train.eval_every=200",
            f"seed={seed}",
        ],
    )
    result = train(cfg)
    console.print(f"training: {result.status} at step {result.step}: {result.message}")
    if result.status == "nan":
        return None
    stage("audio: generate")
    from tunelab.kinds.mulaw import Kind

    timbres = Kind(json.loads((data / "meta.json").read_text(encoding="utf-8"))).label_names
    samples = run / "samples"
    wavs = generate(run, n=len(timbres), seconds=DEMO_AUDIO_SECONDS, seed=seed, out=samples)
    stage("audio: evaluate")
    from tunelab.data.store import load_datadir

    # A handful of chorales may leave no test split (splits go by chorale): score what exists.
    dd = load_datadir(data)
    split = next((sp for sp in ("test", "valid", "train") if len(dd.split(sp))), "test")
    _, lik = evaluate_split(run, split)
    lik["split"] = split
    audit_samples(run, samples)
    return lik, wavs


def demo(
    out: Path = typer.Option(Path("demo"), help="Folder for the data, the run and the samples."),
    minutes: float = typer.Option(3.5, help="Training budget in minutes (midi-gru preset)."),
    n: int = typer.Option(3, "--n", help="Pieces to generate."),
    seconds: float = typer.Option(30.0, help="Length of each piece in seconds."),
    seed: int = typer.Option(0, help="Seed for training and sampling."),
    audio_minutes: float = typer.Option(2.0, help="Training budget of the audio model."),
    audio_chorales: int = typer.Option(
        8, help="Chorales rendered to audio (each in four timbres) for the audio half."
    ),
) -> None:
    """The built-in Bach chorales, end to end: MIDI (train midi-gru, generate, evaluate) and
    audio (render in four timbres, train wavenet-tiny conditioned on the timbre, generate one
    clip per timbre, evaluate)."""
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
