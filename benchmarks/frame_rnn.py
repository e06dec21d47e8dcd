"""Frame RNNs (GRUV) on the built-in chorale audio: validation loss against the trivial
baselines, the failure diagnostics of generated audio, and training throughput.

For each preset (optionally with ``--set key=value`` overrides): train for ``--minutes`` of
training time (or ``--steps``), score the valid split with ``tunelab.evaluate`` (the run's
loss next to "predict the mean frame" and "repeat the last frame"), generate ``--samples``
clips of ``--seconds`` from silence + noise with each join (ola, concat), at temperature 0
(no frame noise: the deterministic GRUV generator) and from a training clip, and audit them: silent (last second below -50 dBFS) and the mean time it fell silent
for good, mean-frame dominance (median cosine with the mean frame, level against the data),
sameness across seeds (least pairwise distance), copies of training audio. Throughput:
seconds of new training audio per wall second of training (batch x seq_len x hop / rate).

    # the real run (on a quiet machine): about 2 x 30 minutes of training
    python benchmarks/frame_rnn.py --minutes 30 --threads 2
    # a one-minute check of the script
    python benchmarks/frame_rnn.py --presets frame-tiny --minutes 0.2 --seconds 2 --limit 3 \
        --clip-seconds 8

Data: ``TUNELAB_BUILTIN_LIMIT=--limit`` chorales rendered in 4 timbres, ``--clip-seconds`` from
10 s in, prepared into ``--out/data`` once. Runs go to ``--out/<tag>`` and resume by themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch


def ensure_data(out: Path, limit: int, clip_seconds: float) -> Path:
    data = out / "data"
    if not (data / "meta.json").exists():
        cmd = [sys.executable, "-m", "tunelab.cli", "prepare", "--builtin", "bach-chorales-audio"]
        cmd += ["--clip-seconds", str(clip_seconds), "--clip-offset", "10", "--out", str(data)]
        subprocess.run(cmd, check=True, env={**os.environ, "TUNELAB_BUILTIN_LIMIT": str(limit)})
    return data


def train_run(preset: str, data: Path, run: Path, args, overrides: list[str]) -> dict:
    from tunelab.config import RunConfig, load
    from tunelab.run.curves import read_metrics
    from tunelab.train import train

    budget = [f"train.max_minutes={args.minutes}", f"train.max_steps={args.steps or 10**6}"]
    flags = ["train.plots=false", "train.tensorboard=false", "train.progress=false"]
    cfg = load(RunConfig, preset, [f"data={data}", f"out={run}", *budget, *flags, *overrides])
    if args.steps:  # a step budget: decay over it (else over the time budget)
        cfg.train.decay_steps = args.steps
    res = train(cfg)
    recs = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    hop = cfg.model.frame_hop or cfg.model.frame_size // 2
    rate = json.loads((data / "meta.json").read_text())["sample_rate"]
    audio_s = res.step * cfg.train.batch_size * cfg.train.seq_len * hop / rate
    minutes = recs[-1]["minutes"] if recs else float("nan")
    return {"steps": res.step, "audio_per_s": audio_s / max(minutes * 60, 1e-9)}


def diagnostics(run: Path, args, **how) -> dict:
    """Mean figures of --samples generated clips (see the module docstring)."""
    from tunelab.generate import generate

    out = run / "bench-samples" / "-".join(f"{k}{v}" for k, v in how.items())
    paths = generate(
        run, n=args.samples, seconds=args.seconds, seed=1, out=out, progress=False, **how
    )
    sides = [json.loads(p.with_name(p.name + ".json").read_text()) for p in paths]
    a = [s["audit"] for s in sides]
    fell = [x["silent_from_seconds"] for x in a if x["silent_from_seconds"] is not None]
    return {
        "silent": sum("silent" in s["flags"] for s in sides),
        "silent_from": float(np.mean(fell)) if fell else None,
        "mean_frame": sum("mean_frame" in s["flags"] for s in sides),
        "cosine": float(np.median([x["mean_frame_cosine"] for x in a])),
        "level_db": float(np.mean([x["energy_vs_data_db"] for x in a])),
        "distance": float(min(x.get("min_distance", np.nan) for x in a)),
        "identical": sum("identical" in s["flags"] for s in sides),
        "copied": sum("copied" in s["flags"] for s in sides),
        "noise": sum("noise" in s["flags"] for s in sides),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["frame-gru", "frame-gru-stft"])
    ap.add_argument("--set", nargs="*", default=[], help="key=value overrides for every preset")
    ap.add_argument("--tag", default="", help="run folders PRESET-TAG (for --set variants)")
    ap.add_argument("--minutes", type=float, default=30.0, help="training minutes per preset")
    ap.add_argument("--steps", type=int, default=0, help="a step budget instead (0: none)")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--limit", type=int, default=10, help="built-in chorales to render")
    ap.add_argument("--clip-seconds", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/frame_bench"))
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tunelab.evaluate import evaluate_split
    from tunelab.kinds.sampling import Sampling

    data = ensure_data(args.out, args.limit, args.clip_seconds)
    rows = []
    for preset in args.presets:
        name = f"{preset}-{args.tag}" if args.tag else preset
        run = args.out / name
        t = train_run(preset, data, run, args, args.set)
        _, ev = evaluate_split(run, "valid", progress=False)
        diag = {
            "silence, ola": diagnostics(run, args),
            "silence, ola, temperature 0": diagnostics(run, args, sampling=Sampling(0.0)),
            "silence, concat": diagnostics(run, args, join="concat"),
            "training clip, ola": diagnostics(run, args, from_training=True),
        }
        rows.append((name, t, ev, diag))
        print(f"{name}: {t['steps']} steps, learned={ev['learned']}", flush=True)

    print("\n| run | steps | valid loss | mean-frame baseline | repeat-last baseline | learned |")
    print("|---|---:|---:|---:|---:|---|")
    for name, t, ev, _ in rows:
        print(
            f"| {name} ({ev['loss_name']}) | {t['steps']} | {ev['loss']:.4f} | "
            f"{ev['baseline_mean_frame_loss']:.4f} | {ev['baseline_repeat_last_frame_loss']:.4f} "
            f"| {'yes' if ev['learned'] else 'NO'} |"
        )
    n = args.samples
    print(f"\nDiagnostics of {n} clips of {args.seconds:g} s (counts out of {n}):\n")
    print("| run | start, join | silent | fell silent at (s) | mean_frame | cosine | level vs "
          "data (dB) | least distance | identical | noise | copied |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, _, _, diag in rows:
        for how, d in diag.items():
            fell = "—" if d["silent_from"] is None else f"{d['silent_from']:.1f}"
            print(
                f"| {name} | {how} | {d['silent']} | {fell} | {d['mean_frame']} | "
                f"{d['cosine']:.2f} | {d['level_db']:.1f} | {d['distance']:.3f} | "
                f"{d['identical']} | {d['noise']} | {d['copied']} |"
            )
    print("\n| run | training throughput (s of audio per wall second) |")
    print("|---|---:|")
    for name, t, _, _ in rows:
        print(f"| {name} | {t['audio_per_s']:.2f} |")
    if args.json:
        from tunelab.atomic import json_safe, write_json

        runs = [{"run": n, "training": t, "valid": ev, "diagnostics": d} for n, t, ev, d in rows]
        head = {"minutes": args.minutes, "threads": args.threads, "set": args.set}
        head |= {"samples": args.samples, "seconds": args.seconds}
        write_json(args.json, json_safe({**head, "runs": runs}))


if __name__ == "__main__":
    main()
