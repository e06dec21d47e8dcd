"""Incremental generation speed of the models' step(), batch 1, in a sampling loop.

Compares, in the same run:
- token_rnn step() (precomputed input table, hand-written cell) vs a plain eager
  loop calling nn.GRU/nn.LSTM on one token at a time (the reference);
- transformer step() with its KV cache: tokens/s measured at 100, 1,000 and
  10,000 tokens of context (flat cost = same speed at every length).

    .venv/bin/python benchmarks/step_speed.py [--preset midi-gru] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from tunelab.config import RunConfig, load, to_dict
from tunelab.models import build_model

V = 91  # steps encoding


def sample(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]


@torch.inference_mode()
def rate_step(model, n: int, warm: int = 0) -> float:
    """Tokens/s of step()+sampling over n tokens, after ``warm`` tokens of context."""
    gen = torch.Generator().manual_seed(0)
    state = model.init_state(1)
    x = torch.zeros(1, dtype=torch.long)
    for _ in range(warm):
        _, state = model.step(x, state)
    t0 = time.perf_counter()
    for _ in range(n):
        logits, state = model.step(x, state)
        x = sample(logits, gen)
    return n / (time.perf_counter() - t0)


@torch.inference_mode()
def rate_plain_rnn(model, n: int) -> float:
    """Reference: nn.GRU/nn.LSTM modules called on one token per step."""
    gen = torch.Generator().manual_seed(0)
    states = [None] * len(model.rnns)
    x = torch.zeros(1, 1, dtype=torch.long)
    t0 = time.perf_counter()
    for _ in range(n):
        h = model.embed(x)
        outs = []
        for i, rnn in enumerate(model.rnns):
            h, states[i] = rnn(h, states[i])
            outs.append(h)
        logits = model.head(torch.cat(outs, -1) if model.skip else h)[:, -1]
        x = sample(logits, gen)[:, None]
    return n / (time.perf_counter() - t0)


def best_of(fn, repeats: int) -> float:
    """Highest rate over ``repeats`` runs: the machine may be shared, noise only slows down."""
    return max(fn() for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 1, vocab {V}")
    print(f"{'model':<34} {'tokens/s':>10}")
    for preset in ("midi-gru", "midi-lstm"):
        model = build_model(to_dict(load(RunConfig, preset).model), V).eval()
        fast = best_of(lambda m=model: rate_step(m, args.tokens), args.repeats)
        plain = best_of(lambda m=model: rate_plain_rnn(m, args.tokens), args.repeats)
        print(f"{preset + ' step()':<34} {fast:>10,.0f}")
        print(f"{preset + ' plain nn module loop':<34} {plain:>10,.0f}")
    cfg = to_dict(load(RunConfig, "midi-transformer").model)
    for window in (cfg["window"], None):
        model = build_model({**cfg, "window": window}, V).eval()
        for ctx in (100, 1000, 10000):
            name = f"midi-transformer window={window} @{ctx}"
            rate = best_of(lambda m=model, c=ctx: rate_step(m, 300, warm=c), args.repeats)
            print(f"{name:<34} {rate:>10,.0f}")


if __name__ == "__main__":
    main()
