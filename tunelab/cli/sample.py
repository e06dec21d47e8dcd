"""``tunelab generate`` and ``tunelab evaluate``: sampling from a trained run or bundle, and
scoring it (a split, a folder of samples, or its checkpoints ranked by what they generate)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from tunelab.cli.common import AUDIO, CHECKPOINT_HELP, MIDI, checkpoint_name, device_option
from tunelab.cli.common import device_name as _device
from tunelab.cli.common import fail as _fail


class Precision(StrEnum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    int8 = "int8"


class Split(StrEnum):
    train = "train"
    valid = "valid"
    test = "test"


class Join(StrEnum):
    """The frame kind's joins (``tunelab.kinds.frame_ops.JOINS``; a test keeps them equal)."""

    ola = "ola"
    concat = "concat"


RANKING = "Checkpoint ranking (--checkpoints)"


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
    checkpoint: str = typer.Option("best", help=CHECKPOINT_HELP),
    device: str = device_option(),
    audit: bool = typer.Option(True, help="Audit each piece against the training split."),
    threads: int = typer.Option(
        1, help="CPU threads for torch (one is fastest for step-by-step sampling)."
    ),
    transpose_mix: int = typer.Option(
        None,
        help="MIDI token RNNs: sample the mixture over the input transposed by -N..N "
        "semitones (default: the run's model.transpose_mix; 0: the plain model, 3-6x faster "
        "than N=6 on a CPU).",
        rich_help_panel=MIDI,
    ),
    piece_memory: bool = typer.Option(
        False,
        "--piece-memory/--no-piece-memory",
        help="MIDI token models: sample mixed with the memory of the piece so far, the model "
        "evaluate scores with model.piece_memory. Off by default: the memory learns from the "
        "piece's own output, and a loop (even of silence) can feed itself.",
        show_default=False,
        rich_help_panel=MIDI,
    ),
    wav: bool = typer.Option(
        True, help="Also render a WAV preview with the SoundFont synth.", rich_help_panel=MIDI
    ),
    label: str = typer.Option(
        None,
        help="The label (genre, timbre) to generate; default: the labels in turn.",
        rich_help_panel=AUDIO,
    ),
    save_every: float = typer.Option(
        None,
        help="Rewrite each WAV every this many seconds of generated audio.",
        rich_help_panel=AUDIO,
    ),
    join: Join = typer.Option(
        None,
        help="Frame runs: ola (Hann overlap-add, the default) or concat (frames end to end).",
        rich_help_panel=AUDIO,
    ),
    from_training: bool = typer.Option(
        False,
        help="Frame runs: start from a training clip (flagged training_primer).",
        rich_help_panel=AUDIO,
    ),
    revise: Path = typer.Option(
        None,
        help="A revision run (tunelab train revision) or its bundle: each draft is revised; "
        "the revision is written as x.wav and the draft beside it as x.draft.wav, both audited.",
        rich_help_panel=AUDIO,
    ),
    precision: Precision = typer.Option(
        Precision.auto,
        help="A WaveNet or SampleRNN generator's number type: float32; bfloat16 (weights and "
        "matmul inputs rounded, products summed in float32); int8 (weights per channel and "
        "matmul inputs quantised, products summed in int32). "
        "auto: the fastest of int8 and bfloat16 whose validation bits/sample stay within 0.01 "
        "of float32's, checked once per checkpoint; the sidecar records the choice.",
        rich_help_panel=AUDIO,
    ),
) -> None:
    """Generate pieces: MIDI (+ WAV previews) or audio (WAV), each with a JSON sidecar holding
    its settings, audits and flags."""
    checkpoint = checkpoint_name(run_dir, checkpoint)  # checked before any work
    if primer is not None and not primer.is_file():
        _fail(f"--primer {primer}: no such file")
    import torch

    torch.set_num_threads(max(1, threads))
    from tunelab.generate import Sampling
    from tunelab.generate import generate as run_generate
    from tunelab.run.checkpoint import CheckpointError

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
            join=join.value if join else None,
            from_training=from_training,
            transpose_mix=transpose_mix,
            piece_memory=piece_memory,
            revise=revise,
            precision=precision.value,
        )
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    import json

    what = "samples" if paths and paths[0].suffix == ".wav" else "tokens"
    rate = timing["tokens"] * n / max(timing["sample_s"], 1e-9)
    sides = [json.loads(p.with_name(p.name + ".json").read_text(encoding="utf-8")) for p in paths]
    settings = sides[0].get("settings", {}) if sides else {}
    weights = settings.get("weights")
    chosen = f", {weights} weights" + (" (auto)" if settings.get("precision") == "auto" else "")
    typer.echo(
        f"sampled {timing['tokens'] * n:,} {what} in {timing['sample_s']:.2f} s "
        f"({rate:,.0f} {what}/s{chosen if weights else ''})"
    )

    for p, side in zip(paths, sides, strict=True):
        flags = side["flags"]
        if side.get("audited") is False:  # never a clean-looking empty flag list
            flags = [*flags, f"not audited ({side.get('not_audited_reason')})"]
        draft = side.get("draft")  # --revise: the draft's flags too
        if draft:
            flags = [*flags, f"draft {draft['file']}: {', '.join(draft['flags']) or 'no flags'}"]
        typer.echo(f"{p}" + (f"  flags: {', '.join(flags)}" if flags else ""))


def evaluate(
    run_dir: Path = typer.Argument(..., help="A trained run directory or an exported bundle."),
    split: Split = typer.Option(Split.test, help="The split to score."),
    samples: Path = typer.Option(
        None,
        help="Audit the MIDI (or, for audio runs, audio) files in this folder instead "
        "-> RUN_DIR/eval/samples.json.",
    ),
    data: Path = typer.Option(None, help="Data directory (default: the one the run trained on)."),
    checkpoint: str = typer.Option("best", help=CHECKPOINT_HELP),
    device: str = device_option(),
    baseline: bool = typer.Option(
        True, help="Add a baseline (n-gram for MIDI, class histogram for audio) to the file."
    ),
    checkpoints: bool = typer.Option(
        False,
        "--checkpoints",
        help="Generate a short batch from every kept checkpoint (best, last, milestones) with "
        "fixed seeds and rank them by flags, distance to the training data, then validation "
        "loss -> RUN_DIR/eval/checkpoints.json.",
        rich_help_panel=RANKING,
    ),
    n: int = typer.Option(4, "--n", help="Pieces per checkpoint.", rich_help_panel=RANKING),
    seconds: float = typer.Option(
        None,
        help="Seconds per piece (default 8 for MIDI, 2 for audio).",
        rich_help_panel=RANKING,
    ),
    seed: int = typer.Option(0, help="The seed every checkpoint uses.", rich_help_panel=RANKING),
    transpose_mix: int = typer.Option(
        None,
        help="MIDI token RNNs: score the mixture over the input transposed by -N..N "
        "semitones (default: the run's model.transpose_mix; 0: the plain model).",
        rich_help_panel=MIDI,
    ),
    piece_memory: bool = typer.Option(
        None,
        "--piece-memory/--no-piece-memory",
        help="MIDI token models: score mixed with the memory of the piece so far (default: the "
        "run's model.piece_memory).",
        show_default=False,
        rich_help_panel=MIDI,
    ),
) -> None:
    """Score a split (RUN_DIR/eval/likelihood-SPLIT.json), audit a folder of samples, or rank
    the checkpoints by what they generate."""
    checkpoint = checkpoint_name(run_dir, checkpoint)  # checked before any work
    split = split.value
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
            quality_table(result.get("set_metrics") or {}, result.get("read_seconds_per_file"))
            if result.get("drafts_left_out"):
                typer.echo(
                    f"left out {result['drafts_left_out']} drafts (x.draft.wav beside its "
                    "revision x.wav: the revision's sidecar holds the draft's audit)"
                )
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


def quality_table(sets: dict, read_seconds: float | None) -> None:
    """``evaluate --samples`` on an audio run: the set against the held-out test audio and
    the training audio (``kinds.audio_quality``): the Fréchet distances and the per-second
    quartiles, and, for scale, the test audio's own distance to the training audio."""
    if "frechet_to_test" not in sets:
        return
    from rich.console import Console
    from rich.table import Table

    def num(v) -> str:
        return "n/a" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"

    def q(m: str, k: str) -> str:
        v = (sets.get(f"{m}_quartiles") or {}).get(k)
        return "n/a" if v is None else " / ".join(f"{x:.3g}" for x in v)

    seconds = sets.get("seconds") or {}
    table = Table(title="against the real recordings (per-second quartiles 25 / 50 / 75%)")
    for col in ("set", "seconds", "Fréchet to test", "Fréchet to train"):
        table.add_column(col, justify="left" if col == "set" else "right")
    for col in ("flatness", "loudness dBFS", "pitch salience"):
        table.add_column(col)
    names = {"samples": "these files", "test": "test audio", "train": "training audio"}
    fd = {
        "samples": (sets.get("frechet_to_test"), sets.get("frechet_to_train")),
        "test": (None, sets.get("frechet_test_to_train")),
        "train": (None, None),
    }
    for k, name in names.items():
        if seconds.get(k) is None:
            continue
        cells = [q(m, k) for m in ("flatness", "loudness_dbfs", "pitch_salience")]
        to_test = "" if k != "samples" else num(fd[k][0])
        to_train = "" if k == "train" else num(fd[k][1])
        table.add_row(name, f"{seconds[k]:.0f}", to_test, to_train, *cells)
    Console(soft_wrap=True).print(table)
    typer.echo(
        "Fréchet distance over per-second MFCC + chroma statistics (lower is closer); the "
        "test audio's distance to the training audio is where real music of this collection "
        f"lies. test audio: {sets.get('test_reference')}."
    )
    if sets.get("frechet_to_test_recordings") is not None:
        typer.echo(
            "these files to the test audio as recorded (not through the mu-law round trip, "
            "the reading for audio the model did not draw itself: a revision, a recording): "
            f"{num(sets['frechet_to_test_recordings'])}"
        )
    if sets.get("flagged_share") is not None:
        typer.echo(f"flagged: {sets['flagged_share']:.0%} of the files")
    if read_seconds:
        typer.echo(f"each file is read for its first {read_seconds:g} s")
