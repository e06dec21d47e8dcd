"""Does bfloat16 storage of WaveNet's weights cost likelihood? Bits per sample of a trained run
on a split, with float32 weights and with the weights the fused generator's bfloat16 mode uses
(``round_weights_bf16``: conv, 1x1 and post matrices rounded to bfloat16, math in float32).

    python benchmarks/wavenet_precision.py RUN_DIR [--split valid]

The target: within 0.01 bits per sample of float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tunelab.atomic import json_safe, write_json
from tunelab.data.store import load_datadir
from tunelab.kinds import kind_for
from tunelab.models.wavenet_gen import round_weights_bf16
from tunelab.run.checkpoint import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = load_run(args.run)
    kind = kind_for(run.config["model"], run.meta)
    split = load_datadir(run.config["data"]).split(args.split)
    rows = []
    for name, model in (
        ("float32", run.model),
        ("bfloat16 weights", round_weights_bf16(run.model)),
    ):
        r = kind.likelihood(model, split)
        rows.append((name, r["bits_per_sample"], r["samples"]))
    print(f"| weights | bits/sample ({args.split}, {rows[0][2]:,} samples) | difference |")
    print("|---|---:|---:|")
    for name, bits, _ in rows:
        print(f"| {name} | {bits:.4f} | {bits - rows[0][1]:+.4f} |")
    if args.json:
        out = [
            {"weights": n, "bits_per_sample": b, "difference": b - rows[0][1]} for n, b, _ in rows
        ]
        head = {"run": args.run, "split": args.split, "samples": rows[0][2]}
        write_json(args.json, json_safe({**head, "rows": out}))


if __name__ == "__main__":
    main()
