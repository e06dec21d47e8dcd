"""The ``tunelab`` command: thin Typer commands, no logic beyond argument handling."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tunelab.cli.common import device_name as _device
from tunelab.cli.common import fail as _fail
from tunelab.cli.common import os_error as _os_error
from tunelab.cli.demo import demo
from tunelab.cli.folder import run_command
from tunelab.cli.prepare import prepare

app = typer.Typer(
    help="Train generative music models on your own MIDI or audio collection, "
    "generate new pieces, and audit them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command()(prepare)


@app.callback(invoke_without_command=True)
def _main(
    version: bool = typer.Option(
        False, "--version", help="Print tunelab's version and commit, and exit.", is_eager=True
    ),
) -> None:
    if version:
        from tunelab.version import version_string

        typer.echo(f"tunelab {version_string()}")
        raise typer.Exit(0)


@app.command()
def info(
    path: Path = typer.Argument(..., help="A data directory (or a run directory)."),
    plots: bool = typer.Option(True, help="Write PNG plots next to the statistics."),
) -> None:
    """Show statistics of a data directory and write PNG plots into it."""
    from tunelab.cli.info import show_info

    raise typer.Exit(show_info(path, plots=plots))


def _train_keys() -> str:
    """Every config key with its default (every model family's keys), for `tunelab train --help`."""
    from tunelab.config import defaults

    keys = ", ".join(f"{k}={v}" for k, v in defaults().items())
    return "Config keys (defaults; presets override some): " + keys


class _TrainCommand(typer.core.TyperCommand):
    """`tunelab train`, whose help ends with the config keys. They live beside the models (and
    torch), so they are read only when the help is shown: the CLI starts without torch."""

    @property
    def epilog(self) -> str:
        return _train_keys()

    @epilog.setter
    def epilog(self, value) -> None:  # click sets it in __init__; the property computes it
        pass


def _preset_help() -> str:
    """The CONFIG argument's help: the presets, listed once, by kind of data."""
    from tunelab.config import presets

    names = presets()
    midi = [p for p in names if p.startswith("midi-") or p == "tiny"]
    audio = [p for p in names if p not in midi]
    return (
        f"A config YAML path or a preset name: MIDI data: {', '.join(midi)}; "
        f"audio data: {', '.join(audio)}."
    )


@app.command(cls=_TrainCommand)
def train(
    config: str = typer.Argument(
        ...,
        help=_preset_help(),
    ),
    overrides: list[str] = typer.Argument(
        None,
        help="key=value overrides, e.g. data=DATA_DIR out=RUN_DIR train.max_steps=2000 "
        "train.max_minutes=30 seed=1 model.hidden=512.",
    ),
    plot_only: bool = typer.Option(
        False, "--plot-only", help="Only redraw RUN_DIR/plots from metrics.jsonl and exit."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="The run directory (same as out=RUN_DIR)."),
) -> None:
    """Train a model (resumes by itself from RUN_DIR/checkpoints/last.pt). Works under torchrun."""
    from tunelab.config import ConfigError, RunConfig, load
    from tunelab.data.store import DataDirError

    overrides = [*(overrides or []), *([f"out={out}"] if out is not None else [])]
    try:
        cfg = load(RunConfig, config, overrides)
    except ConfigError as e:
        _fail(str(e))
    # Stored resolved: generate, evaluate, info and report find them from any directory.
    cfg.data, cfg.out = (str(Path(x).resolve()) if x else x for x in (cfg.data, cfg.out))
    if plot_only:
        plot(Path(cfg.out))
        return
    from tunelab.run.checkpoint import CheckpointError
    from tunelab.train import train as run_training

    try:
        result = run_training(cfg)
    except (ConfigError, DataDirError, CheckpointError, FileNotFoundError) as e:
        _fail(str(e))
    except OSError as e:  # disk full, read-only folder while writing logs or config
        _fail(_os_error(e, "the checkpoints already written are intact", cfg.out))
    if result.status in ("nan", "interrupted"):
        _fail(result.message, 1)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports
        best = f"{result.best_valid:.4f}" if result.best_valid is not None else "n/a"
        typer.echo(
            f"{result.message}. step {result.step}, best valid loss {best} nats/token; "
            f"run: {result.run_dir}"
        )


@app.command()
def plot(run_dir: Path = typer.Argument(..., help="A run directory with metrics.jsonl.")) -> None:
    """Draw RUN_DIR/plots/loss.png (train and valid loss vs step) and speed.png."""
    from tunelab.run.curves import plot_run

    if not (run_dir / "metrics.jsonl").exists():
        _fail(f"{run_dir}: no metrics.jsonl (not a run directory, or not trained yet)")
    for p in plot_run(run_dir):
        typer.echo(str(p))


@app.command()
def generate(
    run_dir: Path = typer.Argument(..., help="A trained run directory or an exported bundle."),
    n: int = typer.Option(1, "--n", help="Number of pieces (sampled together as one batch)."),
    seconds: float = typer.Option(
        None,
        help="Length to generate, in seconds (MIDI: at the training tempo). "
        "Default: 30 for MIDI, 4 for audio.",
    ),
    steps: int = typer.Option(None, help="Length in grid steps instead of --seconds."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same pieces."),
    out: Path = typer.Option(
        None, help="Output folder (default: RUN_DIR/samples, or NAME-output/samples by a bundle)."
    ),
    temperature: float = typer.Option(
        1.0, help="Softmax temperature (0: greedy); frame runs: the noise added to each frame."
    ),
    top_k: int = typer.Option(0, help="Sample among the k most likely tokens (0: off)."),
    top_p: float = typer.Option(
        1.0, help="Nucleus sampling: smallest set with this mass (1: off)."
    ),
    argmax_prob: float = typer.Option(
        0.0, help="At each step take the most likely token with this probability, else sample."
    ),
    primer: Path = typer.Option(
        None,
        help="A file to continue: MIDI (its notes open each piece) or, for audio runs, any "
        "audio file (its last receptive field primes the model).",
    ),
    label: str = typer.Option(
        None,
        help="Audio runs: the label (genre, timbre) to generate; default: the labels in turn.",
    ),
    save_every: float = typer.Option(
        None, help="Audio runs: rewrite each WAV every this many seconds of generated audio."
    ),
    join: str = typer.Option(
        None, help="Frame runs: ola (Hann overlap-add, the default) or concat (frames end to end)."
    ),
    from_training: bool = typer.Option(
        False, help="Frame runs: start from a training clip (flagged training_primer)."
    ),
    checkpoint: str = typer.Option("best", help="best, last, or a milestone name / .pt path."),
    device: str = typer.Option("cpu", help="cpu, cuda, or auto."),
    wav: bool = typer.Option(True, help="Also render a WAV preview with the SoundFont synth."),
    audit: bool = typer.Option(True, help="Audit each piece against the training split."),
    threads: int = typer.Option(
        1, help="CPU threads for torch (one is fastest for step-by-step sampling)."
    ),
    transpose_mix: int = typer.Option(
        None,
        help="MIDI token RNNs: sample the mixture over the input transposed by -N..N "
        "semitones (default: the run's model.transpose_mix; 0: the plain model, 3-6x faster "
        "than N=6 on a CPU).",
    ),
    piece_memory: bool = typer.Option(
        False,
        "--piece-memory/--no-piece-memory",
        help="MIDI token models: sample mixed with the memory of the piece so far, the model "
        "evaluate scores with model.piece_memory. Off by default: the memory learns from the "
        "piece's own output, and a loop (even of silence) can feed itself.",
        show_default=False,
    ),
) -> None:
    """Generate pieces: MIDI (+ WAV previews) or audio (WAV), each with a JSON sidecar holding
    its settings, audits and flags."""
    import torch

    torch.set_num_threads(max(1, threads))
    from tunelab.generate import Sampling
    from tunelab.generate import generate as run_generate
    from tunelab.run.checkpoint import CheckpointError

    if primer is not None and not primer.is_file():
        _fail(f"--primer {primer}: no such file")
    timing: dict = {}
    try:
        paths = run_generate(
            run_dir,
            n=n,
            seconds=seconds,
            steps=steps,
            seed=seed,
            out=out,
            sampling=Sampling(temperature, top_k, top_p, argmax_prob),
            primer=primer,
            which=checkpoint,
            device=_device(device),
            wav=wav,
            audit=audit,
            timing=timing,
            label=label,
            save_every=save_every,
            join=join,
            from_training=from_training,
            transpose_mix=transpose_mix,
            piece_memory=piece_memory,
        )
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    import json

    what = "samples" if paths and paths[0].suffix == ".wav" else "tokens"
    rate = timing["tokens"] * n / max(timing["sample_s"], 1e-9)
    typer.echo(
        f"sampled {timing['tokens'] * n:,} {what} in {timing['sample_s']:.2f} s "
        f"({rate:,.0f} {what}/s)"
    )

    for p in paths:
        side = json.loads(p.with_name(p.name + ".json").read_text(encoding="utf-8"))
        flags = side["flags"]
        if side.get("audited") is False:  # never a clean-looking empty flag list
            flags = [*flags, f"not audited ({side.get('not_audited_reason')})"]
        typer.echo(f"{p}" + (f"  flags: {', '.join(flags)}" if flags else ""))


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A trained run directory or an exported bundle."),
    split: str = typer.Option("test", help="Split to score: train, valid or test."),
    samples: Path = typer.Option(
        None,
        help="Audit the MIDI (or, for audio runs, audio) files in this folder instead "
        "-> RUN_DIR/eval/samples.json.",
    ),
    data: Path = typer.Option(None, help="Data directory (default: the one the run trained on)."),
    checkpoint: str = typer.Option("best", help="best, last, or a milestone name / .pt path."),
    device: str = typer.Option("cpu", help="cpu, cuda, or auto."),
    baseline: bool = typer.Option(
        True, help="Add a baseline (n-gram for MIDI, class histogram for audio) to the file."
    ),
    checkpoints: bool = typer.Option(
        False,
        "--checkpoints",
        help="Generate a short batch from every kept checkpoint (best, last, milestones) with "
        "fixed seeds and rank them by flags, distance to the training data, then validation "
        "loss -> RUN_DIR/eval/checkpoints.json.",
    ),
    n: int = typer.Option(4, "--n", help="With --checkpoints: pieces per checkpoint."),
    seconds: float = typer.Option(
        None, help="With --checkpoints: seconds per piece (default 8 for MIDI, 2 for audio)."
    ),
    seed: int = typer.Option(0, help="With --checkpoints: the seed every checkpoint uses."),
    transpose_mix: int = typer.Option(
        None,
        help="MIDI token RNNs: score the mixture over the input transposed by -N..N "
        "semitones (default: the run's model.transpose_mix; 0: the plain model).",
    ),
    piece_memory: bool = typer.Option(
        None,
        "--piece-memory/--no-piece-memory",
        help="MIDI token models: score mixed with the memory of the piece so far (default: the "
        "run's model.piece_memory).",
        show_default=False,
    ),
) -> None:
    """Score a split (RUN_DIR/eval/likelihood-SPLIT.json), audit a folder of samples, or rank
    the checkpoints by what they generate."""
    from tunelab.data.store import DataDirError
    from tunelab.run.checkpoint import CheckpointError

    try:
        if checkpoints:
            from tunelab.ranking import rank_checkpoints

            path, res = rank_checkpoints(run_dir, n, seconds, seed, _device(device))
            for r in res["checkpoints"]:
                loss = "n/a" if r["valid_loss"] is None else f"{r['valid_loss']:.4f}"
                dist = "n/a" if r["distance"] is None else f"{r['distance']:.4g}"
                typer.echo(
                    f"{r['rank']}. {r['name']} (step {r['step']}): {r['flagged']}/{r['pieces']} "
                    f"flagged, distance {dist}, valid loss {loss}"
                )
            if res.get("note"):
                typer.secho(f"note: {res['note']}", fg="yellow")
        elif samples is not None:
            from tunelab.evaluate import audit_samples

            path, result = audit_samples(run_dir, samples, data, checkpoint)
            from tunelab.cli.common import samples_table

            samples_table(result)
        else:
            from tunelab.evaluate import evaluate_split

            path, r = evaluate_split(
                run_dir,
                split,
                checkpoint,
                data,
                _device(device),
                baseline,
                True,
                transpose_mix,
                piece_memory,
            )
            extra = ""
            if r.get("nll_per_step"):
                extra = f", {r['nll_per_step']:.4f} nats/step"
            if r.get("bits_per_sample"):
                extra = f", {r['bits_per_sample']:.4f} bits/sample"
                base = r.get("baseline_histogram_bits_per_sample")
                extra += f" (histogram baseline {base:.4f})" if base else ""
            if "learned" in r:  # a frame run: loss beside its trivial baselines
                typer.echo(
                    f"{split}: {r['loss_name']} loss {r['loss']:.4f} per "
                    f"{'feature' if r['loss_name'] == 'mse' else 'frame'}; baselines: mean "
                    f"frame {r['baseline_mean_frame_loss']:.4f}, repeat last frame "
                    f"{r['baseline_repeat_last_frame_loss']:.4f}"
                )
                if not r["learned"]:
                    typer.echo("NOT LEARNED: the model does not beat both trivial baselines")
            elif r.get("fixed_model_nll_per_token") is not None:
                # The piece memory adapts to each piece as it is scored: the fixed model first.
                fixed = r.get("fixed_model_nll_per_step")
                fixed = f", {fixed:.4f} nats/step" if fixed else ""
                typer.echo(
                    f"{split}: fixed model {r['fixed_model_nll_per_token']:.4f} nats/token"
                    f"{fixed}; with piece memory (online adaptation) "
                    f"{r['nll_per_token']:.4f} nats/token{extra}"
                )
            else:
                typer.echo(f"{split}: {r['nll_per_token']:.4f} nats/token{extra}")
            if "learned" not in r and baseline:
                from tunelab.cli.folder import verdict

                typer.echo(f"verdict: {verdict(r)}")
    except (CheckpointError, DataDirError, ValueError, FileNotFoundError, KeyError) as e:
        _fail(str(e))
    typer.echo(str(path))


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory (trained, with samples)."),
) -> None:
    """Write RUN_DIR/report/index.html: run summary, data plots, learning curves, checkpoint
    ranking, and every sample with a player, a piano roll or spectrogram and its audit. Opens
    from disk; prints the page's path."""
    from tunelab.report.page import build_report

    try:
        path = build_report(run_dir)
    except FileNotFoundError as e:
        _fail(str(e))
    typer.echo(str(path))


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A trained run directory."),
    out: Path = typer.Option(..., "--out", "-o", help="The bundle file to write, e.g. model.tlb."),
    checkpoint: str = typer.Option("best", help="best, last, or a milestone name / .pt path."),
) -> None:
    """Write the run's model as one shareable file (generate and evaluate accept it).

    The bundle holds safetensors weights, the config, the data meta (labels, statistics) and
    a fingerprint of the training data; no pickled code."""
    from tunelab.run.checkpoint import CheckpointError, export_run

    try:
        header = export_run(run_dir, out, checkpoint)
    except CheckpointError as e:
        _fail(str(e))
    fp = (
        header["data_fingerprint"]
        or "unknown (prepared by an older tunelab and the data directory is gone)"
    )
    typer.echo(f"{out}: step {header['step']}, training data {fp}")


app.command(name="run")(run_command)
app.command()(demo)

if __name__ == "__main__":  # pragma: no cover
    app()
