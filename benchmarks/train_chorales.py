"""Train each MIDI preset on a piano-roll benchmark and print test NLL per step.

Setting (issues 3 and 10): pieces prepared with ``--steps-per-quarter 1 --encoding steps``,
each preset trained for at most ``--minutes`` (30 in the target) on this machine's CPU cores,
then scored on the test split whole, piece by piece from BOS, with the accounting of
``tunelab.evaluate`` (nats per quantized time step, BOS/EOS targets excluded; with the
preset's ``model.transpose_mix`` and ``model.piece_memory``, and beside it the test figures
without the memory and of the plain model). ``--data``
defaults to the built-in chorales (music21's 410, split by tunelab); the standard benchmark
split (Boulanger-Lewandowski's JSB chorales, 229/76/77) and the long piano benchmark
(Piano-midi.de, 87/12/25, from its pickle) come from ``benchmarks/pianoroll_to_midi.py``, a
stand-in of long classical pieces from ``benchmarks/long_pieces.py``:

    .venv/bin/python benchmarks/pianoroll_to_midi.py jsb-chorales-quarter.json /tmp/jsb-midi
    .venv/bin/tunelab prepare /tmp/jsb-midi --steps-per-quarter 1 --encoding steps --out /tmp/jsb
    .venv/bin/python benchmarks/train_chorales.py --data /tmp/jsb --minutes 30 --threads 2 \
        --presets midi-roll
    .venv/bin/python benchmarks/train_chorales.py --minutes 2 --presets midi-gru --threads 1

Runs go to ``--out/<preset>`` and resume by themselves: rerunning with a larger
``--minutes`` continues them (``train.max_minutes`` counts total training time).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tunelab.atomic import json_safe, write_json


def ensure_data(path: Path) -> Path:
    if not (path / "meta.json").exists():
        cmd = [sys.executable, "-m", "tunelab.cli", "prepare", "--builtin", "bach-chorales"]
        cmd += ["--steps-per-quarter", "1", "--encoding", "steps", "--out", str(path)]
        subprocess.run(cmd, check=True)
    return path


def test_nll(
    run_dir: Path,
    data_dir: Path,
    split: str = "test",
    mix: int | None = None,
    memory: bool | None = None,
) -> dict:
    """nll_per_token / nll_per_step of the run's best checkpoint on ``split``, as ``tunelab
    evaluate`` scores it (``mix`` None: the run's model.transpose_mix; 0: the plain model;
    ``memory`` None: the run's model.piece_memory)."""
    from tunelab.data.store import load_datadir
    from tunelab.run.checkpoint import load_run

    run = load_run(run_dir, "best", transpose_mix=mix, piece_memory=memory)
    pieces = load_datadir(data_dir).split(split)
    with torch.inference_mode():
        try:
            from tunelab.kinds.tokens import likelihood
        except ImportError:  # evaluate.py not available: same accounting, inline
            return _likelihood(run.model, pieces, run.meta)
        return likelihood(run.model, pieces, run.meta)


def _likelihood(model, pieces, meta: dict) -> dict:
    sp = meta["specials"]
    tot = music = 0.0
    n_tok = n_steps = 0
    for p in pieces:
        x = torch.as_tensor(np.asarray(p, np.int64))
        nll = torch.nn.functional.cross_entropy(model(x[None, :-1])[0], x[1:], reduction="none")
        tgt = x[1:]
        keep = (tgt != sp["bos"]) & (tgt != sp["eos"])
        tot, music = tot + float(nll.sum()), music + float(nll[keep].sum())
        n_tok, n_steps = n_tok + len(tgt), n_steps + int((x == sp["step"]).sum())
    return {"nll_per_token": tot / n_tok, "nll_per_step": music / n_steps, "steps": n_steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/chorales-spq1-steps"))
    ap.add_argument("--out", type=Path, default=Path("runs/chorales"))
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget per preset")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--presets", nargs="+", default=["midi-gru", "midi-lstm", "midi-transformer"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra override for every preset (repeatable), e.g. --set train.progress=false",
    )
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from tunelab.config import RunConfig, load
    from tunelab.train import train

    data = ensure_data(args.data)
    rows = []
    for preset in args.presets:
        out = args.out / preset
        cfg = load(
            RunConfig,
            preset,
            [
                f"data={data}",
                f"out={out}",
                f"seed={args.seed}",
                f"train.max_minutes={args.minutes}",
                *args.overrides,
            ],
        )
        t0 = time.perf_counter()
        res = train(cfg)
        wall = (time.perf_counter() - t0) / 60
        # The preset's settings, even for a run trained before the preset had them.
        mix, memory = cfg.model.transpose_mix, cfg.model.piece_memory
        valid = test_nll(out, data, "valid", mix, memory)
        test = test_nll(out, data, "test", mix, memory)
        no_mem = test_nll(out, data, "test", mix, False) if memory else test
        plain = test_nll(out, data, "test", 0, False) if mix or memory else test
        rows.append((preset, res.step, wall, valid, test, no_mem, plain, mix, memory))
        print(f"{preset}: {res.message}", flush=True)

    print()
    print(
        f"{data}; budget {args.minutes} min/preset, "
        f"{args.threads} thread(s), torch {torch.__version__}"
    )
    head = ("preset", "steps", "minutes", "mix", "memory", "valid tok", "valid/step")
    head += ("test tok", "test/step", "test/step no memory", "test/step plain")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for preset, steps, wall, valid, test, no_mem, plain, mix, memory in rows:
        print(
            f"| {preset} | {steps} | {wall:.1f} | {mix} | {'on' if memory else 'off'} | "
            f"{valid['nll_per_token']:.3f} | {valid['nll_per_step']:.3f} | "
            f"{test['nll_per_token']:.3f} | {test['nll_per_step']:.3f} | "
            f"{no_mem['nll_per_step']:.3f} | {plain['nll_per_step']:.3f} |"
        )
    print("(NLL in nats; /step: per quantized time step, BOS/EOS targets excluded; mix and")
    print("memory: the model.transpose_mix and model.piece_memory that valid and test are scored")
    print("with, as tunelab evaluate does; no memory: with the mixture only; plain: neither)")
    if args.json:
        runs = [
            {
                "preset": preset,
                "updates": steps,
                "minutes": wall,
                "transpose_mix": mix,
                "piece_memory": memory,
                "valid": valid,
                "test": test,
                "test_no_memory": no_mem,
                "test_plain": plain,
            }
            for preset, steps, wall, valid, test, no_mem, plain, mix, memory in rows
        ]
        head = {"data": str(data), "minutes": args.minutes, "threads": args.threads}
        head |= {"torch": torch.__version__, "overrides": args.overrides}
        write_json(args.json, json_safe({**head, "runs": runs}))


if __name__ == "__main__":
    main()
