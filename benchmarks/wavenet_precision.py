"""Does storing WaveNet's (or SampleRNN's) weights in bfloat16 or int8 cost likelihood? Bits
per sample of a trained run on a whole split, with float32 weights and with the weights each
of the fused generator's modes multiplies by (``model.rounded(weights)``: the conv, 1x1 and
post matrices and their inputs rounded to bfloat16, products summed in float32; or the
matrices quantised to int8 per output channel, math in float32). ``generate --precision auto`` makes the same comparison on up to 65,536
validation samples; this scores the whole split.

    python benchmarks/wavenet_precision.py RUN_DIR [--split valid]

The target: within 0.01 bits per sample of float32.

A last row scores a mode no generator has yet: int8 weights with the matmuls' inputs
quantised to int8 too, one scale per row (max |x| / 127), what dot products over int8
(AVX-512 VNNI) would multiply by.
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


def int8_rows(x: torch.Tensor) -> torch.Tensor:
    """x with each row quantised to int8 (scale max |x| / 127) and back."""
    s = x.abs().amax(dim=-1, keepdim=True) / 127.0
    s = torch.where(s > 0, s, torch.ones_like(s))
    return torch.round(x / s).clamp_(-127, 127) * s


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
    both = run.model.rounded("int8")
    both.round_input = int8_rows  # not a generator mode: what VNNI dot products would need
    r = kind.likelihood(both, split)
    rows.append(("int8 weights and activations (per row)", r["bits_per_sample"], r["samples"]))
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
