"""The token sampling loop: constrained, reproducible, one batch of pieces at a time.

Per token the loop does a handful of tensor ops on [B, V]: ``step()``, add the constraint's
bias row (precomputed, looked up by a small integer state), optional temperature / top-k /
top-p, then Gumbel-max sampling with noise drawn in blocks from one ``torch.Generator`` per
piece (so piece i of seed K is the same whatever else runs), and with probability
``argmax_prob`` the argmax instead. Constraint state is a few Python ints per piece.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from tunelab.kinds.constraints import FORBID, FORCE, make_constraint

NOISE_BLOCK = 256  # tokens of sampling noise drawn at once per piece


@dataclass
class Sampling:
    """How to pick each token. temperature 0 means greedy."""

    temperature: float = 1.0
    top_k: int = 0  # keep the k most likely tokens (0: off)
    top_p: float = 1.0  # keep the smallest set with this much probability (1: off)
    argmax_prob: float = 0.0  # take the argmax with this probability, else sample

    def check(self) -> None:
        if self.temperature < 0:
            raise ValueError("--temperature must be >= 0")
        if self.top_k < 0:
            raise ValueError("--top-k must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("--top-p must be in (0, 1]")
        if not 0 <= self.argmax_prob <= 1:
            raise ValueError("--argmax-prob must be in [0, 1]")


def piece_seed(seed: int, index: int) -> int:
    """The seed of piece ``index`` of a call with ``seed`` (independent streams per piece)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


class _Noise:
    """Gumbel noise and uniforms for one piece, drawn NOISE_BLOCK tokens at a time."""

    def __init__(self, seed: int, vocab: int, device="cpu"):
        self.g = torch.Generator(device=device).manual_seed(seed)
        self.vocab, self.i, self.device = vocab, NOISE_BLOCK, device

    def next(self) -> tuple[torch.Tensor, float]:
        if self.i == NOISE_BLOCK:
            shape, g, dev = (NOISE_BLOCK, self.vocab), self.g, self.device
            u = torch.rand(shape, generator=g, device=dev).clamp_(1e-12, 1 - 1e-7)
            self.gumbel = -torch.log(-torch.log(u))
            self.coin = torch.rand(NOISE_BLOCK, generator=g, device=dev).tolist()
            self.i = 0
        i, self.i = self.i, self.i + 1
        return self.gumbel[i], self.coin[i]


@torch.inference_mode()
def sample(
    model: torch.nn.Module,
    meta: dict,
    n: int,
    steps: int,
    seed: int = 0,
    sampling: Sampling | None = None,
    primer: list[int] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    constrain: bool = True,
    timing: dict | None = None,
) -> list[np.ndarray]:
    """Sample ``n`` pieces of ``steps`` grid steps after ``primer`` (tokens after BOS).

    Returns int64 token arrays BOS, primer, continuation, EOS. With constraints on, every
    piece is valid (``check_tokens`` finds nothing) at any length: the piece ends with EOS at
    the first step boundary once it holds ``primer steps + steps`` steps. ``timing``, if given,
    receives ``prefix_s`` (feeding BOS + primer), ``sample_s`` and ``tokens`` (sampled, per piece).
    """
    s = sampling or Sampling()
    s.check()
    V = int(meta["vocab_size"])
    bos = int(meta["specials"]["bos"])
    con = make_constraint(meta).to(device)
    cst = con.new_state(n)
    prefix = [bos, *(primer or [])]
    for tok in prefix[1:]:
        for b in range(n):
            con.advance(cst, b, tok)
    target = con.time_steps(cst, 0) + steps
    out = [list(prefix) for _ in range(n)]
    noise = [_Noise(piece_seed(seed, i), V, device) for i in range(n)]
    t0 = time.perf_counter()
    state = model.init_state(n, device)
    for tok in prefix[:-1]:  # feed the prefix; the last token's logits start sampling
        _, state = model.step(torch.full((n,), tok, device=device), state)
    x = torch.full((n,), prefix[-1], device=device)
    t1 = time.perf_counter()
    done = [False] * n
    bar = None
    if progress:
        from tunelab.progress import progress_bar

        bar = progress_bar(total=n * steps, unit="step", desc="generating", dynamic_ncols=True)
    n_tok = 0
    while not all(done):
        logits, state = model.step(x, state)
        z = logits.float()
        if s.temperature not in (0.0, 1.0):
            z = z / s.temperature
        if constrain:
            modes = [FORCE if con.time_steps(cst, b) >= target else FORBID for b in range(n)]
            z = z + con.bias(cst, modes)
        if s.top_k and s.top_k < V:
            kth = torch.topk(z, s.top_k, dim=-1).values[:, -1:]
            z = z.masked_fill(z < kth, -math.inf)
        if s.top_p < 1.0:
            srt, order = torch.sort(z, dim=-1, descending=True)
            cum = torch.softmax(srt, dim=-1).cumsum(-1)
            drop = (cum - torch.softmax(srt, dim=-1)) >= s.top_p  # mass before it already >= p
            z = z.masked_fill(drop.scatter(-1, order, drop), -math.inf)
        drawn = [nz.next() for nz in noise]
        if s.temperature == 0.0:
            tok = z.argmax(-1)
        else:
            g = drawn[0][0][None] if n == 1 else torch.stack([d[0] for d in drawn])
            tok = (z + g).argmax(-1)
            greedy = [d[1] < s.argmax_prob for d in drawn]
            if any(greedy):
                tok = torch.where(torch.tensor(greedy, device=z.device), z.argmax(-1), tok)
        toks = tok.tolist()
        for b, t in enumerate(toks):
            if not done[b]:
                out[b].append(t)
                con.advance(cst, b, t)
                done[b] = cst.done[b] or (not constrain and len(out[b]) > 50 * (steps + 10))
        x = tok
        n_tok += 1
        if bar is not None and n_tok % 64 == 0:
            bar.n = sum(min(con.time_steps(cst, b), target) - (target - steps) for b in range(n))
            bar.set_postfix(tokens=n_tok * n, refresh=True)
    if bar is not None:
        bar.n = n * steps
        bar.close()
    if timing is not None:
        timing.update(prefix_s=t1 - t0, sample_s=time.perf_counter() - t1, tokens=n_tok)
    return [np.asarray(o, np.int64) for o in out]
