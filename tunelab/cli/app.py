"""The ``tunelab`` command: thin Typer commands, no logic beyond argument handling."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tunelab.cli.common import CHECKPOINT_HELP, DEVICES, FAILED, Group, check_device, plain_warnings
from tunelab.cli.common import checkpoint_name as _checkpoint
from tunelab.cli.common import fail as _fail
from tunelab.cli.common import os_error as _os_error
from tunelab.cli.demo import demo
from tunelab.cli.folder import run_command
from tunelab.cli.prepare import prepare
from tunelab.cli.revise import revise
from tunelab.cli.sample import evaluate, generate

# What a family's validation loss is in, where it is not nats per token (docs/models.md).
LOSS_UNITS = {"frame_rnn": " (the preset's frame loss)", "revision": " (STFT distance)"}

app = typer.Typer(
    cls=Group,  # click's usage errors in the commands' one-line style
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
    plain_warnings()
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
    device: str = typer.Option(
        None,
        metavar=DEVICES,
        help="Same as device=DEVICE; default: the config's device key (auto: cuda when a GPU "
        "is there, else cpu).",
        show_default=False,
    ),
) -> None:
    """Train a model (resumes by itself from RUN_DIR/checkpoints/last.pt). Works under torchrun."""
    from tunelab.config import ConfigError, RunConfig, load
    from tunelab.data.store import DataDirError

    overrides = list(overrides or [])
    for flag, value in (("out", out), ("device", device)):
        if value is None:
            continue
        given = [o for o in overrides if "=" in o and o.split("=", 1)[0].strip() == flag]
        if any(o.split("=", 1)[1].strip() != str(value) for o in given):
            _fail(f"--{flag} {value} and {given[-1]} disagree; give one of them")
        overrides.append(f"{flag}={value}")
    try:
        cfg = load(RunConfig, config, overrides)
    except ConfigError as e:
        _fail(str(e))
    try:  # the device key, checked as --device is everywhere (before any work)
        cfg.device = check_device(cfg.device)
    except typer.BadParameter as e:
        _fail(f"device={cfg.device}: {e}")
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
        _fail(str(e), FAILED if isinstance(e.__cause__, OSError) else 2)  # a failed write: 1
    except OSError as e:  # disk full, read-only folder while writing logs or config
        _fail(_os_error(e, "the checkpoints already written are intact", cfg.out), FAILED)
    if result.status in ("nan", "interrupted"):
        _fail(result.message, FAILED)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports
        best = f"{result.best_valid:.4f}" if result.best_valid is not None else "n/a"
        unit = LOSS_UNITS.get(cfg.model.family, " nats/token")
        typer.echo(
            f"{result.message}. step {result.step}, best valid loss {best}{unit}; "
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


app.command()(generate)
app.command()(evaluate)
app.command()(revise)


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
    checkpoint: str = typer.Option("best", help=CHECKPOINT_HELP),
    audit_index: bool = typer.Option(
        True,
        help="Carry the copy-audit index, so the receiver's audits need no data. An audio "
        "run's index is up to 30 minutes of its training audio: leave it out where that "
        "audio may not be shared.",
    ),
) -> None:
    """Write the run's model as one shareable file (generate and evaluate accept it).

    The bundle holds safetensors weights, the config, the data meta (labels, statistics), a
    fingerprint of the training data and the copy-audit index; no pickled code."""
    checkpoint = _checkpoint(run_dir, checkpoint)  # checked before any work
    from tunelab.run.checkpoint import CheckpointError, export_run

    try:
        header = export_run(run_dir, out, checkpoint, with_index=audit_index)
    except CheckpointError as e:
        _fail(str(e))
    fp = (
        header["data_fingerprint"]
        or "unknown (prepared by an older tunelab and the data directory is gone)"
    )
    idx = header.get("audit_index") or {}
    carried = (
        f"copy-audit index {idx['bytes'] / 1e6:.2f} MB"
        if idx.get("present")
        else f"no copy-audit index ({idx.get('reason', 'none')}): receivers' audits need the data"
    )
    typer.echo(f"{out}: step {header['step']}, training data {fp}, {carried}")


app.command(name="run")(run_command)
app.command()(demo)

if __name__ == "__main__":  # pragma: no cover
    app()
