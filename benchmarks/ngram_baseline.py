"""The n-gram (interpolated Kneser-Ney) baseline on a prepared MIDI data set.

Fits orders 1, 2, ... on the training split (until two in a row do not improve), picks the order with the lowest validation NLL per token,
and prints valid/test NLL per token and per step with the same accounting as `tunelab evaluate`
(per step: BOS/EOS targets excluded, divided by the number of grid steps). Compare the test
figures with `eval/likelihood-test.json` of a trained run on the same data directory.

    .venv/bin/tunelab prepare --builtin bach-chorales --steps-per-quarter 1 --out /tmp/chorales-spq1
    .venv/bin/python benchmarks/ngram_baseline.py /tmp/chorales-spq1 [--max-order 16]
"""

from __future__ import annotations

import argparse
import time

from tunelab.data.midi import codec_from_meta
from tunelab.data.store import load_datadir
from tunelab.metrics.ngram import fit_best, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a prepared MIDI data directory")
    ap.add_argument("--max-order", type=int, default=16)
    ap.add_argument("--json", metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    dd = load_datadir(args.data)
    meta = dd.meta
    t0 = time.perf_counter()
    train, valid = dd.split("train"), dd.split("valid")
    sp, count_steps = meta["specials"], codec_from_meta(meta).count_steps
    best, table = fit_best(
        train,
        valid,
        vocab_size=meta["vocab_size"],
        bos=sp["bos"],
        eos=sp["eos"],
        count_steps=count_steps,
        orders=range(1, args.max_order + 1),
    )
    fit_s = time.perf_counter() - t0
    print(
        f"data {args.data}: encoding {meta['encoding']}, {meta['steps_per_quarter']} steps/quarter, "
        f"train {len(dd.split('train').data):,} tokens\n"
    )
    print("| order | valid nats/token | valid nats/step |")
    print("|---:|---:|---:|")
    for n, r in table.items():
        mark = " (best)" if n == best.order else ""
        print(f"| {n}{mark} | {r['nll_per_token']:.4f} | {r['nll_per_step']:.4f} |")
    test = score(best, dd.split("test"), eos=sp["eos"], count_steps=count_steps)
    print(
        f"\ntest, order {best.order}: {test['nll_per_token']:.4f} nats/token, "
        f"{test['nll_per_step']:.4f} nats/step ({test['tokens']:,} tokens, {test['steps']:,} "
        f"steps, {test['pieces']} pieces); fitting all orders took {fit_s:.1f} s"
    )
    if args.json:
        from tunelab.atomic import json_safe, write_json

        head = {"data": args.data, "encoding": meta["encoding"], "train_tokens": len(train.data)}
        head |= {"steps_per_quarter": meta["steps_per_quarter"], "fit_seconds": fit_s}
        valid_rows = [{"order": n, **r} for n, r in table.items()]
        res = {**head, "valid": valid_rows, "best_order": best.order, "test": test}
        write_json(args.json, json_safe(res))


if __name__ == "__main__":
    main()
