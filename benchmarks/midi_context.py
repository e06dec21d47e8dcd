"""Context on a real multi-instrument collection: windows only vs carried state vs a
Transformer with memory vs REMI with programs (carried state and windows), at equal CPU time.

The collection: the 31 General MIDI compositions of Debian's ``openttd-openmsx`` package
(``apt-get install -y openttd-openmsx``; any folder of MIDI files works with ``--src``).
Each configuration trains from scratch for ``--minutes`` on ``--threads`` CPU threads, then:

* test NLL in nats per quarter note: the test split scored whole with the accounting of
  ``tunelab evaluate`` (BOS/EOS excluded), nll_per_step x steps per quarter, so grids and
  encodings compare (remi-programs also pays for the instruments: a harder task); scored as
  the preset does (the token RNNs' transposition mixture, the piece memory), without the
  memory, and as the plain model;
* ``--samples`` pieces of ``--seconds`` generated from the best checkpoint and audited against
  the training split: note density and polyphony ratios, the share of onsets on the beat
  (phase-aligned; the training data's share next to it) and the audit flags;
* ``pianoroll-<config>.png``: the first sample next to the first training piece (first
  ``--quarters`` quarter notes, both on a 12-steps-per-quarter grid).

    python benchmarks/midi_context.py --minutes 20 --threads 2         # the README table
    python benchmarks/midi_context.py --minutes 0.1 --seconds 4 --samples 1   # smoke test

Runs go to ``--out/<config>`` and resume by themselves (a larger ``--minutes`` continues).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

SRC = Path("/usr/share/games/openttd/baseset/openmsx")
ROLL_SPQ = 12  # the grid both panels of a piano roll are drawn on

# name -> (encoding, steps per quarter, preset, overrides)
CONFIGS = {
    "steps24-windows": (
        "steps",
        24,
        "midi-gru",
        # today's midi-gru: fixed 128-token windows, batch 16, no carried state
        [
            "train.seq_bars=null",
            "train.batch_tokens=null",
            "train.seq_len=128",
            "train.batch_size=16",
        ],
    ),
    "steps24-carry": ("steps", 24, "midi-gru-carry", []),
    "steps24-transformer-xl": ("steps", 24, "midi-transformer-xl", []),
    "remi-programs12-carry": ("remi-programs", 12, "midi-gru-carry", []),
    # the recommended encoding with today's windows: does carried state matter there?
    "remi-programs12-windows": ("remi-programs", 12, "midi-gru", []),
}


def prepare(src: Path, root: Path, encoding: str, spq: int) -> Path:
    from tunelab.data.midi.prepare import prepare_midi

    out = root / f"{encoding}-{spq}"
    if not (out / "meta.json").exists():
        code = prepare_midi(
            [src], out, encoding=encoding, steps_per_quarter=spq, off_piano="fold", workers=1
        )
        if code:
            raise SystemExit(f"prepare failed for {src}")
    return out


def test_nats_per_quarter(
    run_dir: Path, data: Path, transpose_mix: int | None = None, memory: bool | None = None
) -> tuple[float, list[str]]:
    """Test NLL in nats per quarter note, scored as the run's config says (its transposition
    mixture and piece memory, if any) or with ``transpose_mix`` (0: the plain model) and
    ``memory``."""
    from tunelab.data.store import load_datadir
    from tunelab.run.checkpoint import load_run

    run = load_run(run_dir, "best", transpose_mix=transpose_mix, piece_memory=memory)
    split = load_datadir(data).split("test")
    with torch.inference_mode():
        lik = run.kind.likelihood(run.model, list(split))
    names = [Path(p["source"]).name for p in split.pieces]
    return lik["nll_per_step"] * int(run.meta["steps_per_quarter"]), names


def sample_audits(run_dir: Path, out: Path, n: int, seconds: float, seed: int) -> list[dict]:
    from tunelab.generate import generate

    files = generate(run_dir, n=n, seconds=seconds, seed=seed, out=out, progress=False)
    return [json.loads(f.with_name(f.name + ".json").read_text()) for f in files]


def mean_of(sides: list[dict], key: str) -> float:
    return float(np.mean([s["audit"].get(key) or 0.0 for s in sides]))


def training_shares(run_dir: Path) -> dict:
    from tunelab.run.checkpoint import load_run

    run = load_run(run_dir, "best", transpose_mix=0, piece_memory=False)
    index, _ = run.kind.reference(run.config["data"])
    return index.stats if index is not None else {}


def roll_of(score, quarters: int) -> np.ndarray:
    """bool [88, quarters * ROLL_SPQ]: keys sounding, from a symusic score (all tracks)."""
    from tunelab.data.midi import quantize

    grid = quantize(score, ROLL_SPQ, off_piano="fold", keep_drums=False)
    roll = np.zeros((88, quarters * ROLL_SPQ), bool)
    for p, a, b in zip(grid.pitch, grid.onset, grid.offset, strict=True):
        if a < roll.shape[1]:
            roll[p - 21, a : min(b, roll.shape[1])] = True
    return roll


def piano_roll_png(sample: Path, data: Path, path: Path, quarters: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import symusic

    from tunelab.data.midi import codec_from_meta
    from tunelab.data.store import load_datadir

    dd = load_datadir(data)
    train = dd.split("train")
    piece = codec_from_meta(dd.meta).decode(np.asarray(train.piece(0), np.int64))
    rolls = [
        (f"training: {Path(train.pieces[0]['source']).name}", roll_of(piece, quarters)),
        (f"sample: {sample.name}", roll_of(symusic.Score(str(sample)), quarters)),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5), sharey=True)
    for ax, (name, roll) in zip(axes, rolls, strict=True):
        ax.imshow(roll, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest")
        ax.set(title=name, xlabel="quarter notes")
        ticks = np.arange(0, roll.shape[1] + 1, 4 * ROLL_SPQ)
        ax.set_xticks(ticks, (ticks // ROLL_SPQ).tolist())
    axes[0].set_ylabel("key (MIDI pitch - 21)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", type=Path, default=SRC, help="folder of MIDI files")
    ap.add_argument("--out", type=Path, default=Path("runs/midi-context"))
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget per config")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--samples", type=int, default=4, help="pieces generated per config")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each piece")
    ap.add_argument("--quarters", type=int, default=64, help="length of the piano rolls")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    if not args.src.is_dir():
        raise SystemExit(f"{args.src}: no such folder (apt-get install -y openttd-openmsx)")
    torch.set_num_threads(args.threads)

    from tunelab.config import RunConfig, load
    from tunelab.train import train

    rows = []
    for name in args.configs:
        encoding, spq, preset, extra = CONFIGS[name]
        data = prepare(args.src, args.out / "data", encoding, spq)
        run_dir = args.out / name
        overrides = [f"data={data}", f"out={run_dir}", f"seed={args.seed}"]
        overrides += [f"train.max_minutes={args.minutes}", "train.progress=false"]
        cfg = load(RunConfig, preset, overrides + extra + args.overrides)
        t0 = time.perf_counter()
        res = train(cfg)
        print(f"{name}: {res.message} ({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
        # The preset's settings, even for a run trained before the preset had them.
        mix = int(getattr(cfg.model, "transpose_mix", 0) or 0)
        memory = bool(getattr(cfg.model, "piece_memory", False))
        nats_q, test_names = test_nats_per_quarter(run_dir, data, mix, memory)
        mix_q = test_nats_per_quarter(run_dir, data, mix, False)[0] if memory else nats_q
        plain_q = test_nats_per_quarter(run_dir, data, 0, False)[0] if mix or memory else nats_q
        sides = sample_audits(run_dir, run_dir / "samples", args.samples, args.seconds, args.seed)
        ref = training_shares(run_dir)
        flags = sorted({f for s in sides for f in s["flags"]})
        png = args.out / f"pianoroll-{name}.png"
        piano_roll_png(
            run_dir / "samples" / sides[0]["file"], data, png, args.quarters, f"{name} ({preset})"
        )
        rows.append(
            {
                "config": name,
                "preset": preset,
                "encoding": f"{encoding} @{spq}",
                "seq_len": cfg.train.seq_len,
                "batch": cfg.train.batch_size,
                "updates": res.step,
                "transpose_mix": mix,
                "piece_memory": memory,
                "test_nats_per_quarter": nats_q,
                "test_nats_per_quarter_no_memory": mix_q,
                "test_nats_per_quarter_plain": plain_q,
                "test_pieces": test_names,
                "density_ratio": mean_of(sides, "density_ratio"),
                "polyphony_ratio": mean_of(sides, "polyphony_ratio"),
                "on_beat_share": mean_of(sides, "on_beat_share"),
                "data_on_beat_share": ref.get("on_beat_share"),
                "flags": flags,
                "pianoroll": str(png),
            }
        )
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print()
    print(
        f"{args.src}: {args.minutes} min per config, {args.threads} thread(s), "
        f"torch {torch.__version__}; {args.samples} samples of {args.seconds:g} s each"
    )
    head = (
        "config",
        "preset",
        "encoding",
        "window x batch",
        "updates",
        "test nats/quarter",
        "no memory",
        "plain model",
        "density ratio",
        "polyphony ratio",
        "on-beat share (data)",
        "flags",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(
            f"| {r['config']} | {r['preset']} | {r['encoding']} | {r['seq_len']} x {r['batch']} "
            f"| {r['updates']} | {r['test_nats_per_quarter']:.3f}"
            f"{' (mixture)' if r['transpose_mix'] else ''}"
            f"{' (memory)' if r['piece_memory'] else ''} "
            f"| {r['test_nats_per_quarter_no_memory']:.3f} "
            f"| {r['test_nats_per_quarter_plain']:.3f} | {r['density_ratio']:.2f} | "
            f"{r['polyphony_ratio']:.2f} | {r['on_beat_share']:.2f} "
            f"({(r['data_on_beat_share'] or 0):.2f}) | {', '.join(r['flags']) or '-'} |"
        )
    print(f"test pieces: {', '.join(rows[0]['test_pieces']) if rows else '-'}")
    if args.json:  # the same rows as --out/results.json, with the settings
        from tunelab.atomic import json_safe, write_json

        head = {"src": str(args.src), "minutes": args.minutes, "threads": args.threads}
        head |= {"samples": args.samples, "seconds": args.seconds, "torch": torch.__version__}
        write_json(args.json, json_safe({**head, "configs": rows}))


if __name__ == "__main__":
    main()
