"""Generation speed, batch 1: the full `tunelab generate` sampling loop vs naive reference loops.

Untrained weights (speed does not depend on training). The tunelab loop is
``tunelab.kinds.sampling.sample``: model ``step()``, decoding constraints (steps encoding, max
polyphony 8), Gumbel-max sampling with a seeded generator. References, measured in the same run:

- RNN presets (not ``midi-roll``, whose inputs it lacks): a plain eager loop that calls
  ``nn.GRU``/``nn.LSTM`` on one token at a time and
  samples with ``torch.multinomial`` (no constraints);
- a bare ``step()`` + argmax loop (no sampling, no constraints) shows the sampling overhead;
- presets with ``model.transpose_mix``: ``sample()`` of the mixture that ``generate`` runs;
- Transformer: recomputing ``forward()`` over the whole context for every token (no KV cache).

Transformer rows give tokens/s (and ms per token) after 100 and after 10,000 tokens of context
(a primer fed through ``step()``): flat with the cache.

    .venv/bin/python benchmarks/generation_speed.py [--threads 1] [--tokens 3000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from tunelab.atomic import json_safe, write_json
from tunelab.config import RunConfig, load, to_dict
from tunelab.data.dataset import transpose_tables
from tunelab.data.midi import make_codec
from tunelab.kinds.sampling import sample
from tunelab.kinds.tokens import grammar_bias
from tunelab.models import build_model
from tunelab.models.transpose_mix import TransposeMixture

CODEC = make_codec("steps", 4)
META = {**CODEC.meta(), "kind": "midi", "max_polyphony": 8, "tempo_qpm": 120.0}
V = META["vocab_size"]


def primer(n_tokens: int, seed: int = 0) -> list[int]:
    """A valid steps-encoding body of about ``n_tokens`` tokens (random 3-key chords)."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n_tokens:
        out += sorted(rng.choice(88, 3, replace=False).tolist(), reverse=True) + [88]
    return out


def ours(model, tokens: int, context: int = 0) -> float:
    """Tokens/s of tunelab's sampling loop after ``context`` tokens of primer."""
    timing: dict = {}
    steps = max(1, tokens // 5)  # untrained models emit ~5 tokens per step here
    sample(
        model, META, 1, steps, seed=0, primer=primer(context) if context else None, timing=timing
    )
    return timing["tokens"] / timing["sample_s"]


@torch.inference_mode()
def step_only(model, tokens: int) -> float:
    """Tokens/s of bare ``step()`` + argmax: the floor that shows the sampling loop's overhead."""
    state = model.init_state(1)
    x = torch.full((1,), 89)
    t0 = time.perf_counter()
    for _ in range(tokens):
        logits, state = model.step(x, state)
        x = logits.argmax(-1)
    return tokens / (time.perf_counter() - t0)


@torch.inference_mode()
def plain_rnn(model, tokens: int) -> float:
    gen = torch.Generator().manual_seed(0)
    states = [None] * len(model.rnns)
    x = torch.zeros(1, 1, dtype=torch.long)
    t0 = time.perf_counter()
    for _ in range(tokens):
        h = model.embed(x)
        outs = []
        for i, rnn in enumerate(model.rnns):
            h, states[i] = rnn(h, states[i])
            outs.append(h)
        logits = model.head(torch.cat(outs, -1) if model.skip else h)[:, -1]
        x = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
    return tokens / (time.perf_counter() - t0)


@torch.inference_mode()
def no_cache(model, tokens: int, context: int) -> float:
    """Tokens/s when every token recomputes forward() over the whole context."""
    gen = torch.Generator().manual_seed(0)
    x = torch.tensor([89, *primer(context)][: max(context, 1)])[None]
    t0 = time.perf_counter()
    for _ in range(tokens):
        logits = model(x)[:, -1]
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
        x = torch.cat([x, nxt], 1)
    return tokens / (time.perf_counter() - t0)


def row(name: str, rate: float, note: str = "") -> dict:
    shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2f}"
    print(f"| {name} | {shown} | {1000 / rate:,.3f} | {note} |")
    return {"loop": name, "tokens_per_s": rate, "ms_per_token": 1000 / rate, "notes": note}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=3000)
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 1, vocab {V}\n")
    print("| loop | tokens/s | ms/token | notes |")
    print("|---|---:|---:|---|")
    rows = []
    for preset in ("midi-gru", "midi-lstm", "midi-roll"):
        model_cfg = to_dict(load(RunConfig, preset).model)
        model = build_model(model_cfg, V).eval()
        rows.append(row(f"{preset}: tunelab sample()", ours(model, args.tokens), "constraints on"))
        rate = step_only(model, args.tokens)
        rows.append(row(f"{preset}: bare step() + argmax", rate, "loop floor"))
        n = model_cfg["transpose_mix"]
        if n:  # what generate runs for this preset: 2n + 1 rows per piece
            mix = TransposeMixture(model, transpose_tables(CODEC, n), grammar_bias(META)).eval()
            name = f"{preset}: sample() of its transpose_mix={n}"
            rows.append(row(name, ours(mix, args.tokens), "generate"))
        if model.roll_step_id is not None:  # the plain reference has no roll inputs
            continue
        name = f"{preset}: plain nn.{model.cell.upper()} loop"
        rows.append(row(name, plain_rnn(model, args.tokens), "reference"))
    cfg = to_dict(load(RunConfig, "midi-transformer").model)
    for window in (cfg["window"], None):
        model = build_model({**cfg, "window": window}, V).eval()
        name = f"midi-transformer (window={window})"
        for ctx in (100, 10_000):
            rate = ours(model, args.tokens, ctx)
            rows.append(row(f"{name}: tunelab sample() @ {ctx:,} ctx", rate, "KV cache"))
        for ctx, n in ((100, 100), (10_000, 2)):
            rows.append(
                row(f"{name}: no cache @ {ctx:,} ctx", no_cache(model, n, ctx), "reference")
            )
    if args.json:
        head = {"torch": torch.__version__, "threads": args.threads, "tokens": args.tokens}
        write_json(args.json, json_safe({**head, "batch": 1, "rows": rows}))


if __name__ == "__main__":
    main()
