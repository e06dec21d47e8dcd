"""Does storing WaveNet's (or SampleRNN's) weights in bfloat16 or int8 cost likelihood? Bits
per sample of a trained run on a whole split, with float32 weights and with the weights each
of the fused generator's modes multiplies by (``model.rounded(weights)``: the conv, 1x1 and
post matrices and their inputs rounded to bfloat16, or quantised to int8: the matrices per
output channel, their inputs per row). ``generate --precision auto`` makes the same
comparison on up to 65,536 validation samples; this scores the whole split.

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
from tunelab.models.fused import WEIGHTS
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
    for name in WEIGHTS:
        r = kind.likelihood(run.model.rounded(name), split)
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
