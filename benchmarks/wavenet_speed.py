"""WaveNet speed on the `wavenet-bench` layout: generation samples/s and training throughput.

Random weights (speed does not depend on training), no label conditioning. Generation rows,
all sampling at temperature 1 with the same rule:

- naive: ``generate_naive``, forward() over the last receptive field for every sample;
- PyTorch: ``generate_incremental``, the model.step() loop with per-layer ring buffers;
- fused: ``FusedWaveNet``, the numba kernel, with float32, bfloat16 and int8 weights, for 1,
  8 and 64 streams (aggregate samples/s, the median of ``--repeats`` runs). One stream is
  split across the ``--threads`` cores (each matrix cut in parts, a barrier per layer), as
  ``tunelab generate`` does on a quiet machine; the "one core" rows run it unsplit. More
  streams run in blocks, one per thread;
- peer: wavenet-vocoder 0.1.1 (PyPI) ``incremental_forward``, batch 1, run with
  ``--peer-python`` (a separate venv: ``pip install torch==2.13.0 numpy`` then
  ``pip install --no-deps wavenet-vocoder==0.1.1``). Built as the same network, the layout
  printed on top: its gate_channels is the conv's total output (split in halves), so it is
  given 2 x ours; weight norm removed (its ``make_generation_fast_()``), no dropout.

Each fused row also gives its bound: the larger of (a) the bytes of weights each thread
reads per step over the read bandwidth measured here for a working set of that size, all
threads reading at once, and (b) each thread's multiply-adds per step at the GEMM rate of
this machine (2048 x 2048, the same threads: float32; bfloat16 for the bfloat16 rows and
int8 (torch._int_mm) for the int8 rows where the CPU has AVX-512 BF16 and VNNI, whose
matmuls are dot products in those types); and the share of that bound reached. A table of
microseconds per sample by part of the network (the kernel's cycle counters,
``FusedWaveNet.profile``) shows where one stream's time goes.

Training: forward + backward + AdamW step on batch 4 windows of receptive_field + 16,000
samples, throughput in scored samples/s (the 16,000 positions that see a full receptive
field), ours and the peer's in float32 (the peer's one-hot input built outside the timed
step); ``--train-bf16`` adds ours under bfloat16 autocast (without native bf16 in the CPU
it is several times slower).

Threads: ``--threads`` for torch (naive, training) and for the fused kernel. The two step()
loops (ours and the peer's) run with one torch thread: their ops are too small to split, and
on a busy machine each intra-op barrier can wait a whole scheduler slice.

``--run RUN`` adds `tunelab generate` itself on a trained wavenet-bench run, for 1 and 8
streams and each precision: the samples/s the command prints (its sampling loop, as the
README's figure counts it: start-up, the precision check and the audits excluded).

    .venv/bin/python benchmarks/wavenet_speed.py --threads 2 [--peer-python /tmp/peer-venv/bin/python] [--run RUN]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import torch
from torch.nn import functional as F

from tunelab.atomic import json_safe, write_json
from tunelab.models.fused import WEIGHTS
from tunelab.models.fused_bf16 import HAS_DPBF16
from tunelab.models.fused_parts import cycles
from tunelab.models.fused_vnni import HAS_VNNI
from tunelab.models.wavenet import WaveNet
from tunelab.models.wavenet_gen import (
    PROFILE,
    FusedWaveNet,
    generate_incremental,
    generate_naive,
)

SAMPLE_RATE = 16000  # the presets' rate: real time for one stream

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


def generate_rate(run: str, weights: str, streams: int, seconds: float) -> float:
    """samples/s that `tunelab generate` prints (its sampling loop: loading, the precision
    check and the audits excluded, as its own figure excludes them)."""
    out = Path(run) / "speed-samples"
    cmd = [sys.executable, "-m", "tunelab", "generate", run, "--seconds", str(seconds), "--n",
           str(streams), "--precision", weights, "--no-audit", "--out", str(out)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True)
    found = re.search(r"sampled [\d,]+ samples in [\d.]+ s \(([\d,]+) samples/s", p.stdout)
    if p.returncode or not found:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return float(found.group(1).replace(",", ""))


def fused_gen(model: WaveNet, streams: int, weights: str, threads: int, parts=None):
    """A warmed-up FusedWaveNet (kernels compiled or loaded, ring buffers past silence)."""
    gen = FusedWaveNet(model, streams, weights=weights, threads=threads, parts=parts)
    gen.run(np.full(streams, 128), np.random.default_rng(1).random((streams, 10)), 1.0)
    return gen


def fused_rate(gen: FusedWaveNet, samples: int, repeats: int) -> float:
    """Median aggregate samples/s of gen.run over ``repeats`` runs of ``samples`` per stream."""
    u = np.random.default_rng(0).random((gen.n, samples))
    return float(np.median([rate(lambda: gen.run(None, u, 1.0), gen.n * samples)
                            for _ in range(repeats)]))  # fmt: skip


MATRICES = (1, 3, 6, 8)  # the packed weights' matrices: conv, residual/skip 1x1, post1, post2


def matrix_bytes(gen: FusedWaveNet) -> int:
    """Bytes of the matrices every step reads (int8 scales included), all parts together."""
    packed = [gen._packed[i] for i in MATRICES]
    return sum(a.nbytes for w in packed for a in (w if isinstance(w, tuple) else (w,)))


@numba.njit(nogil=True, fastmath={"reassoc"})
def _read(a, reps):
    s = np.float32(0)
    for _ in range(reps):
        for i in range(a.shape[0]):
            s += a[i]
    return s


def at_once(fn, threads: int) -> float:
    """Seconds for ``threads`` threads each running fn() at the same time."""
    with ThreadPoolExecutor(threads) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda _: fn(), range(threads)))
        return time.perf_counter() - t0


def read_bandwidth(nbytes: int, threads: int) -> float:
    """Bytes/s one thread reads from a working set of nbytes while all threads read theirs."""
    arrays = [np.random.rand(max(1024, nbytes // 4)).astype(np.float32) for _ in range(threads)]
    reps = max(1, int(4e9 / threads / arrays[0].nbytes))  # about a second
    for a in arrays:
        _read(a, 1)
    dts = []
    for _ in range(3):  # the best of three: a bound, not a typical figure
        it = iter(arrays)
        dts.append(at_once(lambda: _read(next(it), reps), threads))  # noqa: B023
    return arrays[0].nbytes * reps / min(dts)


def gemm_rate(threads: int, dtype: torch.dtype = torch.float32) -> float:
    """Multiply-adds/s per thread of GEMM in dtype (2048 x 2048, on ``threads`` threads, the
    best of five): the most arithmetic of that kind this machine does. float32 (torch.mm)
    for the kernels' float32 math; bfloat16 (torch.mm) for the bfloat16 dot products
    (``fused_bf16``) and int8 (torch._int_mm) for the int8 ones (``fused_vnni``), where the
    CPU has them."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    if dtype == torch.int8:
        a = torch.randint(-127, 128, (2048, 2048), dtype=dtype)
        b = torch.randint(-127, 128, (2048, 2048), dtype=dtype)
        mm = torch._int_mm
    else:
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        mm = torch.mm
    mm(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        mm(a, b)
        best = min(best, time.perf_counter() - t0)
    torch.set_num_threads(before)
    return 2048**3 / best / threads


def bound(gen: FusedWaveNet, macs_per_sample: int, threads: int) -> tuple[float, str]:
    """The samples/s gen cannot exceed here (module doc), and what limits it: reading each
    thread's weights (memory) or doing its multiply-adds at the GEMM rate (arithmetic)."""
    P = gen.parts
    blocks = 1 if P > 1 else min(threads, gen.n)
    per_thread = -(-gen.n // blocks)  # streams each thread runs
    nbytes = matrix_bytes(gen) // P
    memory = nbytes / read_bandwidth(nbytes, max(P, blocks))
    dtype = {"bfloat16": torch.bfloat16 if HAS_DPBF16 else torch.float32,
             "int8": torch.int8 if HAS_VNNI else torch.float32}.get(gen.weights, torch.float32)  # fmt: skip
    arith = macs_per_sample * per_thread / P / gemm_rate(max(P, blocks), dtype)
    return gen.n / max(memory, arith), "memory" if memory > arith else "arithmetic"


@numba.njit
def _cycles():
    return cycles()


def cycle_rate() -> float:
    """Cycle counter ticks per second (the TSC's fixed rate on x86)."""
    c0, t0 = _cycles(), time.perf_counter()
    time.sleep(0.2)
    return (_cycles() - c0) / (time.perf_counter() - t0)


def profile(gen: FusedWaveNet, samples: int) -> dict:
    """µs per sample by part of the network (mean over the parts), and the rest of the wall."""
    gen.cycles_by_part[:] = 0
    gen.profile = True
    u = np.random.default_rng(2).random((gen.n, samples))
    t0 = time.perf_counter()
    gen.run(None, u, 1.0)
    wall = time.perf_counter() - t0
    gen.profile = False
    cyc = gen.cycles_by_part.mean(axis=0)
    hz = cycle_rate()
    us = {k: 1e6 * c / hz / samples for k, c in zip(PROFILE, cyc, strict=True)}
    us["other (loop, scratch, waking the threads)"] = 1e6 * wall / samples - sum(us.values())
    return us


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
    ap.add_argument("--repeats", type=int, default=5, help="rounds of fused runs (the median)")
    ap.add_argument("--naive-samples", type=int, default=40)
    ap.add_argument("--step-samples", type=int, default=1000)
    ap.add_argument("--peer-python", help="python of a venv with wavenet-vocoder==0.1.1")
    ap.add_argument("--peer-samples", type=int, default=500)
    ap.add_argument("--train-steps", type=int, default=1, help="0: skip training")
    ap.add_argument("--train-bf16", action="store_true", help="also ours under bf16 autocast")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--scored", type=int, default=16000)
    ap.add_argument("--run", help="also time `tunelab generate` on this wavenet-bench run")
    ap.add_argument("--seconds", type=float, default=10.0, help="--run: seconds per stream")
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = bench_cfg()
    model = WaveNet.from_config(cfg, 256).eval()
    rf = model.receptive_field
    print(
        f"wavenet-bench: {cfg['stacks']}x{cfg['layers_per_stack']} layers, residual "
        f"{cfg['residual_channels']}, gate {cfg['gate_channels']}, skip {cfg['skip_channels']}, "
        f"kernel {cfg['kernel_size']}, receptive field {rf}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; torch {torch.__version__}, "
        f"{args.threads} thread(s)"
    )
    G = cfg["gate_channels"]
    print(f"layouts: ours gate_channels={G} (tanh {G} + sigmoid {G} conv outputs); the peer's "
          f"gate_channels={2 * G} (the conv's total output, split in halves): the same network\n")  # fmt: skip
    peer = run_peer(args.peer_python, cfg, args) if args.peer_python else {}

    t0 = time.perf_counter()  # compiles the kernels, or loads them from numba's disk cache
    for w in WEIGHTS:
        for parts in (1, 2):
            tiny = WaveNet(8, 4, 4, 4, stacks=1, layers_per_stack=2)
            FusedWaveNet(tiny, 1, weights=w, parts=parts).run(np.array([0]), np.zeros((1, 1)), 1.0)
    first_call = time.perf_counter() - t0

    u1 = torch.rand(1, max(args.naive_samples, args.step_samples), dtype=torch.float64)
    first = torch.tensor([128])
    primer = torch.randint(0, 256, (1, rf - 1))  # so every naive forward() sees a full window
    naive = lambda: generate_naive(model, first, u1[:, : args.naive_samples], 1.0, primer=primer)  # noqa: E731
    steps = lambda: generate_incremental(model, first, u1[:, : args.step_samples], 1.0)  # noqa: E731
    gen_rows = [
        ("naive: forward() over the receptive field", 1, rate(naive, args.naive_samples), None, ""),
        ("PyTorch step() loop (generate_incremental), 1 torch thread", 1, rate(steps, args.step_samples, 1), None, ""),
    ]  # fmt: skip
    macs = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight")) - (
        model.embed.weight.numel()
    )  # multiply-adds per sample: every matrix once (the embedding is a lookup)
    # Every configuration is built first, then timed in turns (``--repeats`` rounds, the
    # median): on a shared machine the speed drifts by a fifth within minutes, and turns
    # spread the slow spells over every row alike.
    configs = []  # (name, streams, generator, samples per stream)
    for streams in (1, 8, 64):
        for w in WEIGHTS:
            n = args.samples if streams == 1 else max(200, args.samples * 2 // streams)
            for one_core in (False, True) if streams == 1 else (False,):
                gen = fused_gen(model, streams, w, 1 if one_core else args.threads,
                                parts=1 if one_core else None)  # fmt: skip
                name = f"fused numba, {w} weights" + (", one core" if one_core else "")
                if gen.parts > 1:
                    name += f", split in {gen.parts} parts"
                configs.append((name, streams, gen, n))
    rates = [[fused_rate(gen, n, 1) for _, _, gen, n in configs] for _ in range(args.repeats)]
    for i, (name, streams, gen, _) in enumerate(configs):
        r = float(np.median([round_[i] for round_ in rates]))
        gen_rows.append((name, streams, r, *bound(gen, macs, args.threads)))
    split_gens = {g.weights: g for _, s, g, _ in configs if s == 1 and g.parts > 1}
    if args.run:  # the whole command, as a user runs it (start-up excluded: its own figure)
        for streams in (1, 8):
            for w in WEIGHTS:
                r = generate_rate(args.run, w, streams, args.seconds)
                gen_rows.append((f"`tunelab generate --precision {w}`", streams, r, None, ""))
    if peer:
        gen_rows.append(
            ("peer: wavenet-vocoder 0.1.1 incremental_forward, 1 thread", 1, peer["gen"], None, "")
        )

    print("| generation | streams | samples/s (all streams) | x real time (per stream) "
          "| vs peer | bound (samples/s) | limited by | share of the bound |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for name, streams, r, b, limit in gen_rows:
        vs = f"{r / peer['gen']:,.{1 if r > peer['gen'] else 2}f}x" if peer else "-"
        rt = r / streams / SAMPLE_RATE
        share = f"{r / b:.0%}" if b else "-"
        print(f"| {name} | {streams} | {r:,.0f} | {rt:.{2 if rt < 10 else 1}f}x | {vs} "
              f"| {f'{b:,.0f}' if b else '-'} | {limit or '-'} | {share} |")  # fmt: skip
    print(f"\n(real time: {SAMPLE_RATE:,} samples/s per stream; the bound: module doc)")
    print(
        f"fused kernels' first call (numba compile, or load from its disk cache): {first_call:.1f} s"
    )
    kib = {w: matrix_bytes(g) / 2**10 for w, g in split_gens.items()}
    print("weights read per sample, all parts: " + ", ".join(
        f"{w} {v:,.0f} KiB" for w, v in kib.items()) + f"; {macs:,} multiply-adds")  # fmt: skip

    parts_us = {w: profile(g, args.samples) for w, g in split_gens.items()}
    print(f"\n| µs per sample, 1 stream split in {args.threads} parts | "
          + " | ".join(parts_us) + " |")  # fmt: skip
    print("|---|" + "---:|" * len(parts_us))
    for k in next(iter(parts_us.values())):
        print(f"| {k} | " + " | ".join(f"{v[k]:.1f}" for v in parts_us.values()) + " |")
    print("| **total** | " + " | ".join(f"{sum(v.values()):.1f}" for v in parts_us.values())
          + " |")  # fmt: skip

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
        gen = [{"generation": n, "streams": s, "samples_per_s": r, "bound": b, "limited_by": lim}
               for n, s, r, b, lim in gen_rows]  # fmt: skip
        for g in gen:
            g["us_per_sample_per_stream"] = 1e6 * g["streams"] / g["samples_per_s"]
            g["vs_peer"] = g["samples_per_s"] / peer["gen"] if peer else None
        train = [{"training": n, "scored_samples_per_s": r} for n, r in rows]
        for t in train:
            t["s_per_step"] = args.batch * args.scored / t["scored_samples_per_s"]
            t["vs_peer"] = t["scored_samples_per_s"] / peer["train"] if peer else None
        head = {"config": cfg, "receptive_field": rf, "threads": args.threads}
        head |= {"batch": args.batch, "scored": args.scored, "first_call_s": first_call}
        head |= {"us_per_sample_by_part": parts_us, "macs_per_sample": macs}
        write_json(args.json, json_safe({**head, "generation": gen, "training": train}))


if __name__ == "__main__":
    main()
