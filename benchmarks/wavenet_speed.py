"""WaveNet speed on the `wavenet-bench` layout: generation samples/s and training throughput.

Random weights (speed does not depend on training), no label conditioning. Generation rows,
all sampling at temperature 1 with the same rule:

- naive: ``generate_naive``, forward() over the last receptive field for every sample;
- PyTorch: ``generate_incremental``, the model.step() loop with per-layer ring buffers;
- fused: ``FusedWaveNet``, the numba kernel, float32 and bfloat16 weights, for 1, 8 and 64
  streams (aggregate samples/s; streams split over ``--threads`` threads);
- peer: wavenet-vocoder 0.1.1 (PyPI) ``incremental_forward``, batch 1, run with
  ``--peer-python`` (a separate venv: ``pip install torch==2.13.0 numpy`` then
  ``pip install --no-deps wavenet-vocoder==0.1.1``). Built as the same network: its
  gate_channels is the conv's total output (split in halves), so 2 x ours; weight norm
  removed (its ``make_generation_fast_()``), no dropout.

Training: forward + backward + AdamW step on batch 4 windows of receptive_field + 16,000
samples, throughput in scored samples/s (the 16,000 positions that see a full receptive
field), ours and the peer's in float32 (the peer's one-hot input built outside the timed
step); ``--train-bf16`` adds ours under bfloat16 autocast (without native bf16 in the CPU
it is several times slower).

Threads: ``--threads`` for torch (naive, training) and for the fused kernel's streams. The
two step() loops (ours and the peer's) run with one torch thread: their ops are too small
to split, and on a busy machine each intra-op barrier can wait a whole scheduler slice.

    .venv/bin/python benchmarks/wavenet_speed.py --threads 2 [--peer-python /tmp/peer-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from tunelab.atomic import json_safe, write_json
from tunelab.models.wavenet import WaveNet
from tunelab.models.wavenet_gen import FusedWaveNet, generate_incremental, generate_naive

BENCH = {  # tunelab/configs/wavenet-bench.yaml's model section (read from there when present)
    "residual_channels": 64,
    "gate_channels": 128,
    "skip_channels": 256,
    "stacks": 2,
    "layers_per_stack": 10,
    "kernel_size": 2,
    "bias": True,
}

PEER = r"""
import json, sys, time
import numpy as np, torch
from torch.nn import functional as F
from wavenet_vocoder import WaveNet

a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
torch.manual_seed(0)
np.random.seed(0)


def build():
    return WaveNet(
        out_channels=256, layers=a["layers"], stacks=a["stacks"], residual_channels=a["R"],
        gate_channels=2 * a["G"], skip_out_channels=a["S"], kernel_size=a["K"], dropout=0.0,
        weight_normalization=False, scalar_input=False,
    )


res = {}
torch.set_num_threads(1)  # per-sample loop of tiny ops (see the benchmark's docstring)
m = build().eval()
m.make_generation_fast_()  # its first 1x1 conv always has weight norm
with torch.no_grad():
    m.incremental_forward(T=20)
    t0 = time.perf_counter()
    m.incremental_forward(T=a["gen_samples"])
    res["gen"] = a["gen_samples"] / (time.perf_counter() - t0)
if a["train_steps"]:
    torch.set_num_threads(a["threads"])
    m = build().train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    rf = m.receptive_field

    def step(n):
        x = torch.randint(0, 256, (a["batch"], rf + n))
        onehot = F.one_hot(x, 256).transpose(1, 2).float()
        t0 = time.perf_counter()
        logits = m(onehot)[:, :, rf - 1 : -1]
        loss = F.cross_entropy(logits, x[:, rf:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    step(1000)  # warm-up
    dt = sum(step(a["scored"]) for _ in range(a["train_steps"])) / a["train_steps"]
    res["train"] = a["batch"] * a["scored"] / dt
    res["train_step_s"] = dt
print("RESULT " + json.dumps(res))
"""


def bench_cfg() -> dict:
    try:
        from tunelab.config import read_yaml

        return {**BENCH, **read_yaml("wavenet-bench")["model"]}
    except Exception:  # the preset is optional here: the layout above is the same
        return BENCH


def rate(fn, samples: int, threads: int | None = None) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    torch.set_num_threads(before)
    return samples / dt


def fused_rate(model: WaveNet, streams: int, samples: int, weights: str, threads: int) -> float:
    """Aggregate samples/s of FusedWaveNet.run (after a short warm-up run)."""
    gen = FusedWaveNet(model, streams, weights=weights, threads=threads)
    u = np.random.default_rng(0).random((streams, samples + 10))
    gen.run(np.full(streams, 128), u[:, :10], 1.0)
    return rate(lambda: gen.run(None, u[:, 10:], 1.0), streams * samples)


def train_rate(model: WaveNet, batch: int, scored: int, steps: int, bf16: bool) -> float:
    """Scored samples/s of forward + backward + AdamW on windows of receptive_field + scored."""
    rf = model.receptive_field
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step(n: int) -> float:
        x = torch.randint(0, 256, (batch, rf + n))
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x[:, :-1], tail=n)  # as the training loop asks: scored positions only
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, rf:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    step(1000)  # warm-up
    return batch * scored * steps / sum(step(scored) for _ in range(steps))


def run_peer(python: str, cfg: dict, args) -> dict:
    a = {
        "threads": args.threads,
        "layers": cfg["stacks"] * cfg["layers_per_stack"],
        "stacks": cfg["stacks"],
        "R": cfg["residual_channels"],
        "G": cfg["gate_channels"],
        "S": cfg["skip_channels"],
        "K": cfg["kernel_size"],
        "gen_samples": args.peer_samples,
        "train_steps": args.train_steps,
        "batch": args.batch,
        "scored": args.scored,
    }
    p = subprocess.run([python, "-c", PEER, json.dumps(a)], capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"peer run failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=16000, help="fused, 1 stream")
    ap.add_argument("--naive-samples", type=int, default=40)
    ap.add_argument("--step-samples", type=int, default=1000)
    ap.add_argument("--peer-python", help="python of a venv with wavenet-vocoder==0.1.1")
    ap.add_argument("--peer-samples", type=int, default=500)
    ap.add_argument("--train-steps", type=int, default=1, help="0: skip training")
    ap.add_argument("--train-bf16", action="store_true", help="also ours under bf16 autocast")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--scored", type=int, default=16000)
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = bench_cfg()
    model = WaveNet.from_config(cfg, 256).eval()
    L, rf = len(model.dilations), model.receptive_field
    print(
        f"wavenet-bench: {cfg['stacks']}x{cfg['layers_per_stack']} layers, residual "
        f"{cfg['residual_channels']}, gate {cfg['gate_channels']}, skip {cfg['skip_channels']}, "
        f"kernel {cfg['kernel_size']}, receptive field {rf}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; torch {torch.__version__}, "
        f"{args.threads} thread(s)\n"
    )
    peer = run_peer(args.peer_python, cfg, args) if args.peer_python else {}

    t0 = time.perf_counter()  # compiles the kernels, or loads them from numba's disk cache
    for w in ("float32", "bfloat16"):
        FusedWaveNet(WaveNet(8, 4, 4, 4, stacks=1, layers_per_stack=2), 1, weights=w).run(
            np.array([0]), np.zeros((1, 1)), 1.0
        )
    first_call = time.perf_counter() - t0

    u1 = torch.rand(1, max(args.naive_samples, args.step_samples), dtype=torch.float64)
    first = torch.tensor([128])
    primer = torch.randint(0, 256, (1, rf - 1))  # so every naive forward() sees a full window
    naive = lambda: generate_naive(model, first, u1[:, : args.naive_samples], 1.0, primer=primer)  # noqa: E731
    steps = lambda: generate_incremental(model, first, u1[:, : args.step_samples], 1.0)  # noqa: E731
    gen_rows = [
        ("naive: forward() over the receptive field", 1, rate(naive, args.naive_samples)),
        ("PyTorch step() loop (generate_incremental), 1 torch thread", 1, rate(steps, args.step_samples, 1)),
    ]  # fmt: skip
    for w in ("float32", "bfloat16"):
        for streams in (1, 8, 64):
            n = args.samples if streams == 1 else max(200, args.samples * 2 // streams)
            gen_rows.append(
                (
                    f"fused numba, {w} weights",
                    streams,
                    fused_rate(model, streams, n, w, args.threads),
                )
            )
    if peer:
        gen_rows.append(
            ("peer: wavenet-vocoder 0.1.1 incremental_forward, 1 thread", 1, peer["gen"])
        )

    print("| generation | streams | samples/s (all streams) | µs/sample (per stream) | vs peer |")
    print("|---|---:|---:|---:|---:|")
    for name, streams, r in gen_rows:
        vs = f"{r / peer['gen']:,.{1 if r > peer['gen'] else 2}f}x" if peer else "-"
        print(f"| {name} | {streams} | {r:,.0f} | {1e6 * streams / r:,.1f} | {vs} |")
    print(
        f"\nfused kernels' first call (numba compile, or load from its disk cache): {first_call:.1f} s"
    )
    print(
        f"(weights of the {L} layers + post: {sum(p.numel() for n, p in model.named_parameters() if 'embed' not in n) * 4 / 2**20:.1f} MiB in float32)"
    )

    rows = []
    if args.train_steps:
        for bf16 in (False, True) if args.train_bf16 else (False,):
            m = WaveNet.from_config(cfg, 256)
            r = train_rate(m, args.batch, args.scored, args.train_steps, bf16)
            rows.append((f"ours, {'bfloat16 autocast' if bf16 else 'float32'}", r))
        if peer:
            rows.append(("peer: wavenet-vocoder 0.1.1 forward, float32", peer["train"]))
        print(
            f"\n| training, batch {args.batch} x ({rf} + {args.scored:,}) | scored samples/s "
            "| s/step | vs peer |"
        )
        print("|---|---:|---:|---:|")
        for name, r in rows:
            vs = f"{r / peer['train']:,.2f}x" if peer else "-"
            print(f"| {name} | {r:,.0f} | {args.batch * args.scored / r:,.1f} | {vs} |")
    if args.json:
        gen = [{"generation": n, "streams": s, "samples_per_s": r} for n, s, r in gen_rows]
        for g in gen:
            g["us_per_sample_per_stream"] = 1e6 * g["streams"] / g["samples_per_s"]
            g["vs_peer"] = g["samples_per_s"] / peer["gen"] if peer else None
        train = [{"training": n, "scored_samples_per_s": r} for n, r in rows]
        for t in train:
            t["s_per_step"] = args.batch * args.scored / t["scored_samples_per_s"]
            t["vs_peer"] = t["scored_samples_per_s"] / peer["train"] if peer else None
        head = {"config": cfg, "receptive_field": rf, "threads": args.threads}
        head |= {"batch": args.batch, "scored": args.scored, "first_call_s": first_call}
        write_json(args.json, json_safe({**head, "generation": gen, "training": train}))


if __name__ == "__main__":
    main()
