"""SampleRNN against WaveNet: bits per sample at an equal time budget, and generation speed.

(a) Quality: ``samplernn`` and ``wavenet-bench`` each trained for ``--minutes`` of wall
time with the same torch threads on the same built-in chorale audio (prepared into
OUT/data unless ``--data`` is given: ``--chorales`` chorales in four timbres, clips of
``--clip-seconds`` from 10 s in, split by chorale; the defaults are the data of the README's
WaveNet quality figure), then scored
whole on the test split (``tunelab evaluate``): bits per sample beside the training
split's class histogram. Runs go to OUT/<preset>; running again resumes or reuses them.
``--precision`` adds samplernn's validation bits per sample with the matrices rounded to
bfloat16 and quantised to int8 per row, the copies ``generate --precision auto`` checks.

(b) Generation speed, random weights of the two presets' layouts (speed does not depend
on training), label-conditioned, temperature 1, aggregate samples/s over the streams:
WaveNet's eager PyTorch step() loop (``generate_incremental``, 1 torch thread), our fused
WaveNet and the fused SampleRNN (float32, bfloat16 and int8 weights; WaveNet's one stream
split across the cores), and SampleRNN's own PyTorch
step() loop, for each of ``--streams``. The target: fused SampleRNN at least 5x WaveNet's
eager loop for one stream.

    python benchmarks/samplernn.py --minutes 30 --threads 2 --out /tmp/srnn_bench
    python benchmarks/samplernn.py --minutes 0.3 --chorales 5 --clip-seconds 3 --samples 2000 \
        --step-samples 100 --out /tmp/srnn_smoke  # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from tunelab.atomic import json_safe, write_json
from tunelab.config import RunConfig, load, read_yaml
from tunelab.models import build_model
from tunelab.models.fused import WEIGHTS
from tunelab.models.samplernn_gen import generate_reference
from tunelab.models.wavenet_gen import generate_incremental

PRESETS = ("samplernn", "wavenet-bench")
N_LABELS = 4  # the built-in chorale audio's timbres


def prepare_data(out: Path, chorales: int, clip_seconds: float) -> Path:
    data = out / "data"
    if (data / "meta.json").exists():
        return data
    from tunelab.data.audio.prepare import prepare_audio

    os.environ["TUNELAB_BUILTIN_LIMIT"] = str(chorales)  # else all 410 chorales are rendered
    code = prepare_audio(
        [], data, builtin="bach-chorales-audio", clip_seconds=clip_seconds, clip_offset=10.0
    )
    if code:
        raise SystemExit(f"preparing the built-in chorale audio failed ({code})")
    return data


def quality(args) -> dict:
    from tunelab.evaluate import evaluate_split
    from tunelab.train import train

    out = Path(args.out)
    data = Path(args.data) if args.data else prepare_data(out, args.chorales, args.clip_seconds)
    from tunelab.data.store import load_datadir

    if not len(load_datadir(data).split("test")):
        raise SystemExit(f"{data}: no test split; give more --chorales (they split by chorale)")
    rows, base = [], None
    for preset in PRESETS:
        run = out / preset
        over = [f"data={data}", f"out={run}", f"train.max_minutes={args.minutes}"]
        res = train(load(RunConfig, preset, over + [f"train.progress={args.progress}"]))
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        speed = [r["tokens_per_s"] for r in recs if "tokens_per_s" in r]
        valid = [r["valid_bits_per_sample"] for r in recs if "valid_bits_per_sample" in r]
        t0 = time.perf_counter()
        _, ev = evaluate_split(run, "test", progress=args.progress)
        score_s = time.perf_counter() - t0
        base = ev["baseline_histogram_bits_per_sample"]
        best = min(valid) if valid else float("nan")
        sps = float(np.median(speed)) if speed else float("nan")  # logged every log_every steps
        rows.append((preset, res.step, sps, best, ev, score_s))
    print(f"\ndata: {data}; {args.minutes} min of training each, {args.threads} torch thread(s)\n")
    print("| model | updates | scored samples/s (train) | best valid bits/sample "
          "| **test bits/sample** | below baseline | scoring the test split (s) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| mu-law class histogram of the training split (baseline) | — | — | — | {base:.3f} | — | — |"
    )
    for preset, steps, sps, v, ev, s in rows:
        b = ev["bits_per_sample"]
        print(
            f"| `{preset}` | {steps:,} | {sps:,.0f} | {v:.3f} | **{b:.3f}** | {base - b:.2f} | {s:.0f} |"
        )
    print(f"({rows[0][4]['samples']:,} test samples)")
    res = {"data": str(data), "baseline_histogram_bits_per_sample": base, "models": []}
    for preset, steps, sps, v, ev, s in rows:
        res["models"].append({"preset": preset, "updates": steps, "scored_samples_per_s": sps})
        res["models"][-1] |= {"best_valid_bits_per_sample": v, "test": ev, "scoring_s": s}
    if args.precision:
        from tunelab.data.store import load_datadir
        from tunelab.kinds import kind_for
        from tunelab.run.checkpoint import load_run

        r = load_run(out / "samplernn")
        kind = kind_for(r.config["model"], r.meta)
        split = load_datadir(data).split("valid")
        bits = {w: kind.likelihood(r.model.rounded(w), split)["bits_per_sample"] for w in WEIGHTS}
        print("\n| samplernn weights | bits/sample (valid) | difference |\n|---|---:|---:|")
        for w, b in bits.items():
            print(f"| {w} | {b:.4f} | {b - bits['float32']:+.4f} |")
        res["precision_valid_bits_per_sample"] = bits
    return res


def rate(fn, samples: int) -> float:
    t0 = time.perf_counter()
    fn()
    return samples / (time.perf_counter() - t0)


def fused_rate(model, streams: int, samples: int, weights: str, threads: int) -> float:
    """Aggregate samples/s of model.generator(...).run (after a short warm-up run)."""
    labels = torch.arange(streams) % N_LABELS
    gen = model.generator(streams, labels, weights=weights)
    gen.threads = max(1, min(streams, threads))
    u = np.random.default_rng(0).random((streams, samples + 32))
    gen.prime(np.full((streams, 1), 128))
    gen.run(np.full(streams, 128), u[:, :32], 1.0)  # compiles or loads the kernel
    return rate(lambda: gen.run(None, u[:, 32:], 1.0), streams * samples)


def speed(args) -> list[dict]:
    torch.manual_seed(0)
    models = {p: build_model(read_yaml(p)["model"], 256, N_LABELS).eval() for p in PRESETS}
    for p, m in models.items():
        n = sum(x.numel() for x in m.parameters())
        print(f"{p}: {n:,} parameters")
    rows = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # per-sample loops of tiny ops: a second thread only waits
    for p, fn in (("wavenet-bench", generate_incremental), ("samplernn", generate_reference)):
        k = args.step_samples
        u = torch.rand(1, k, dtype=torch.float64)
        lab = torch.tensor([0])
        step = lambda: fn(models[p], torch.tensor([128]), u, 1.0, lab)  # noqa: E731,B023
        rows.append((f"`{p}` PyTorch step() loop, 1 torch thread", 1, rate(step, k)))
    torch.set_num_threads(before)
    eager = rows[0][2]
    for p in ("wavenet-bench", "samplernn"):
        for w in WEIGHTS:
            for streams in args.streams:
                n = args.samples if streams == 1 else max(200, args.samples * 2 // streams)
                r = fused_rate(models[p], streams, n, w, args.threads)
                rows.append((f"`{p}` fused numba, {w} weights", streams, r))
    print("\n| generation | streams | samples/s (all streams) | µs/sample (per stream) "
          "| vs WaveNet's eager loop |\n|---|---:|---:|---:|---:|")  # fmt: skip
    for name, streams, r in rows:
        print(f"| {name} | {streams} | {r:,.0f} | {1e6 * streams / r:,.1f} | {r / eager:,.1f}x |")
    return [
        {"generation": name, "streams": streams, "samples_per_s": r, "vs_wavenet_eager": r / eager}
        for name, streams, r in rows
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--minutes", type=float, default=30.0, help="training budget per model (0: skip (a))"
    )
    ap.add_argument(
        "--data", help="an audio data directory (default: built-in chorales in OUT/data)"
    )
    ap.add_argument("--chorales", type=int, default=10, help="built-in chorales to prepare")
    ap.add_argument("--clip-seconds", type=float, default=30.0, help="built-in clips' length")
    ap.add_argument("--out", default="/tmp/srnn_bench", help="where data and runs go")
    ap.add_argument("--precision", action="store_true", help="(a): also bfloat16 and int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--samples", type=int, default=16000, help="fused generation, 1 stream (0: skip (b))"
    )
    ap.add_argument("--step-samples", type=int, default=1000, help="PyTorch step() loops")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--progress", action="store_true", help="progress bars")
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    res = {"torch": torch.__version__, "threads": args.threads, "minutes": args.minutes}
    if args.minutes > 0:
        res["quality"] = quality(args)
    if args.samples > 0:
        res["speed"] = speed(args)
    if args.json:
        write_json(args.json, json_safe(res))


if __name__ == "__main__":
    main()
