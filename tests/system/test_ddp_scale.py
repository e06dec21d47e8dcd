"""Scale-out on CPU (gloo): 2 processes follow 1 process with the same global batch, a run
resumes on another number of processes with the same data order, every family trains under
DDP, only rank 0 writes; batches shard by rank without overlap or loss, memory stays bounded.

Tolerance for "follows": 2 processes compute the same mathematics as 1 (the same global
batch rows, the same transpositions, no dropout, the gradient mean of two equal-size
halves == the mean over the whole batch); they differ only in float32 rounding (the order
of sums in the batch mean, gloo's all-reduce). Those differences are ~1e-7 relative per
operation; over 12 AdamW steps they stay far below 1e-4 (measured: at most 1.2e-7 relative on every step, for 2 processes
and for both resumes). Any real
difference in data, shards or averaging moves the loss by >1e-2 at once (each step sees
other windows), so rtol 1e-4 separates the two cleanly.
"""

from __future__ import annotations

import json
import os
import socket
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from tests.test_train import cfg_for, make_datadir
from tunelab.config import ConfigError, RunConfig, load
from tunelab.data.dataset import PieceWindows, WindowSampler
from tunelab.data.store import DataDirWriter
from tunelab.train import train

torch.set_num_threads(1)
RTOL = 1e-4
COMMON = [
    "train.progress=false", "train.tensorboard=false", "train.plots=false",
    "train.log_every=1", "train.decay_steps=12", "train.eval_every=6", "train.warmup=3",
    "train.augment_transpose=2",
]  # fmt: skip
FAMILIES = {
    "transformer": (
        "midi-transformer",
        [
            "model.d_model=16", "model.layers=1", "model.heads=2", "model.window=32",
            "model.dropout=0.0", "train.batch_size=4", "train.seq_len=32", "train.max_steps=4",
            "train.eval_every=4", "train.warmup=1", "train.eval_batches=2",
        ],
    ),
    "wavenet": (
        "wavenet-tiny",
        ["train.batch_size=4", "train.seq_len=128", "train.max_steps=4", "train.eval_every=4"],
    ),
}  # fmt: skip


def make_audio_datadir(out: Path) -> Path:
    """Twelve labelled 0.25 s tones (int16) as a prepared audio data directory."""
    t = np.arange(4000) / 16000
    with DataDirWriter(out, "int16") as w:
        for i in range(12):
            x = (8000 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.int16)
            w.add_piece(x, {"source": f"tone{i:02d}.wav", "label": "ab"[i % 2]})
        meta = {
            "kind": "audio", "sample_rate": 16000, "mu_law": {"channels": 256},
            "label_names": ["a", "b"], "labels": {"a": 6, "b": 6}, "scale": 32768,
        }  # fmt: skip
        w.finish(meta, {})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, jobs: list, result_dir: str) -> None:
    """Run each (port, preset, overrides) job as one torchrun-like process of ``world``."""
    torch.set_num_threads(1)
    out = []
    for port, preset, overrides in jobs:
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
            RANK=str(rank), LOCAL_RANK=str(rank),
        )  # fmt: skip
        res = train(load(RunConfig, preset, overrides))
        out.append({"status": res.status, "step": res.step})
    Path(result_dir, f"rank{rank}.json").write_text(json.dumps(out))


def losses(run: Path) -> dict[int, float]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 2-process session (one spawn) running every job, and the 1-process runs."""
    root = tmp_path_factory.mktemp("ddp")
    data = make_datadir(root / "data")
    audio = make_audio_datadir(root / "audio")

    def tiny(out, steps):
        return cfg_for(data, out, f"train.max_steps={steps}", *COMMON)

    train(tiny(root / "one", 12))  # 1 process, 12 steps
    train(tiny(root / "one_then_two", 6))  # 1 process to step 6; 2 processes go on below
    jobs = [
        ("tiny", [f"data={data}", f"out={root / 'two'}", "train.max_steps=12", *COMMON]),
        ("tiny", [f"data={data}", f"out={root / 'two_then_one'}", "train.max_steps=6", *COMMON]),
        ("tiny", [f"data={data}", f"out={root / 'one_then_two'}", "train.max_steps=12", *COMMON]),
    ]
    for fam, (preset, over) in FAMILIES.items():
        d = audio if fam == "wavenet" else data
        base = ["train.progress=false", "train.tensorboard=false", "train.plots=false"]
        jobs.append((preset, [f"data={d}", f"out={root / fam}", *base, *over]))
    jobs = [(_free_port(), p, o) for p, o in jobs]
    mp.spawn(_worker, args=(2, jobs, str(root)), nprocs=2, join=True)
    train(tiny(root / "two_then_one", 12))  # saved by 2 processes, resumed on 1
    results = [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]
    return root, results


def test_two_processes_follow_one(runs):
    root, results = runs
    assert results[0][0] == results[1][0] == {"status": "done", "step": 12}
    one, two = losses(root / "one"), losses(root / "two")
    assert sorted(one) == sorted(two) == list(range(1, 13))
    np.testing.assert_allclose([two[s] for s in one], [one[s] for s in one], rtol=RTOL)
    # only rank 0 writes: the same files as a 1-process run, each record written once
    files = {str(p.relative_to(root / "one")) for p in (root / "one").rglob("*")}
    assert {str(p.relative_to(root / "two")) for p in (root / "two").rglob("*")} == files


@pytest.mark.parametrize("name", ["two_then_one", "one_then_two"])
def test_resume_on_another_number_of_processes(runs, name):
    root, _ = runs
    ref, got = losses(root / "one"), losses(root / name)
    assert sorted(got) == list(range(1, 13))
    np.testing.assert_allclose([got[s] for s in ref], [ref[s] for s in ref], rtol=RTOL)
    a = torch.load(root / name / "checkpoints/last.pt", weights_only=True)
    b = torch.load(root / "one" / "checkpoints/last.pt", weights_only=True)
    assert a["step"] == 12 and len(a["rng"]) == (1 if name == "two_then_one" else 2)
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-6)


def test_every_family_trains_under_ddp(runs):
    root, results = runs
    for i, fam in enumerate(FAMILIES, start=3):
        assert results[0][i] == results[1][i] == {"status": "done", "step": 4}, fam
        ck = torch.load(root / fam / "checkpoints/last.pt", weights_only=True)
        assert ck["config"]["model"]["family"] == fam and len(ck["rng"]) == 2


@pytest.mark.parametrize("world", [2, 3, 4])
def test_token_shards_cover_the_global_batch(world):
    data = np.arange(5000, dtype=np.uint16)
    B = 12
    whole = WindowSampler(data, 16, B, seed=7)
    ranks = [WindowSampler(data, 16, B, seed=7, rank=r, world=world) for r in range(world)]
    for step in (0, 5, 31):
        parts = [s.starts(step) for s in ranks]
        assert np.array_equal(np.concatenate(parts), whole.starts(step))  # no overlap, no loss
    steps = whole.windows_per_epoch // B  # one epoch: every window exactly once
    seen = np.concatenate([s.starts(t) for t in range(steps) for s in ranks])
    assert len(set(seen.tolist())) == len(seen) == steps * B


def test_transposition_is_per_global_row(tmp_path):
    from tunelab.data.dataset import transpose_tables
    from tunelab.data.midi import codec_from_meta
    from tunelab.data.store import load_datadir

    dd = load_datadir(make_datadir(tmp_path / "d"))
    tables = transpose_tables(codec_from_meta(dd.meta), 3)
    data = dd.split("train").data
    whole = WindowSampler(data, 16, 8, seed=1, transpose_tables=tables)
    halves = [WindowSampler(data, 16, 8, seed=1, rank=r, world=2, transpose_tables=tables)
              for r in range(2)]  # fmt: skip
    plain = WindowSampler(data, 16, 8, seed=1)
    for step in range(4):
        x = torch.cat([h.batch(step)[0] for h in halves])
        assert torch.equal(x, whole.batch(step)[0])
        assert not torch.equal(x, plain.batch(step)[0])  # transposition did happen


def test_audio_shards_cover_the_global_batch():
    data = np.zeros(10000, np.int16)
    pieces = [{"offset": 0, "length": 4000}, {"offset": 4000, "length": 6000}]
    whole = PieceWindows(data, pieces, 500, 8, seed=2)
    halves = [PieceWindows(data, pieces, 500, 8, seed=2, rank=r, world=2) for r in range(2)]
    for step in range(5):
        got = [np.concatenate(x) for x in zip(*(h.starts(step) for h in halves), strict=True)]
        for a, b in zip(got, whole.starts(step), strict=True):
            assert np.array_equal(a, b)


def test_batch_must_divide_by_the_world(tmp_path):
    with pytest.raises(ValueError, match="global batch.*divisible by the number of processes"):
        WindowSampler(np.zeros(1000, np.uint16), 16, 6, rank=0, world=4)
    from tunelab.run.state import Dist as _Dist
    from tunelab.train import _train

    data = make_datadir(tmp_path / "d")
    with pytest.raises(ConfigError, match="train.batch_size=6 is the global batch.*4"):
        _train(cfg_for(data, tmp_path / "r", "train.batch_size=6"), _Dist(rank=0, world=4), 0.0)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_memory_per_process_is_bounded_by_the_window(tmp_path):
    """40 MB of tokens on disk; drawing batches reads windows, never the whole array."""
    path = tmp_path / "big.bin"
    n = 20_000_000
    np.memmap(path, np.uint16, "w+", shape=(n,)).flush()
    data = np.memmap(path, np.uint16, "r")
    tracemalloc.start()
    s = WindowSampler(data, 256, 16, seed=0, rank=1, world=2)
    for step in range(20):
        s.batch(step)
    pieces = [{"offset": i * 100_000, "length": 100_000} for i in range(n // 100_000)]
    p = PieceWindows(data, pieces, 2048, 16, rank=1, world=2)
    for step in range(20):
        p.batch(step)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the epoch permutation (8 bytes a window: 0.6 MB here) and a few batches, not 40 MB
    assert peak < 4 * 2**20, peak


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (autocast, GradScaler)")
def test_cuda_amp_trains(tmp_path):
    data = make_datadir(tmp_path / "d")
    for amp in ("true", "false"):
        res = train(
            cfg_for(
                data, tmp_path / f"r{amp}", "device=cuda", f"train.amp={amp}", "train.max_steps=20"
            )  # fmt: skip
        )
        assert res.status == "done" and np.isfinite(res.last_valid)


def _nccl_worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
        RANK=str(rank), LOCAL_RANK=str(rank),
    )  # fmt: skip
    res = train(load(RunConfig, "tiny", [f"data={data}", f"out={out}", "device=auto",
                                          "train.max_steps=10", "train.progress=false"]))  # fmt: skip
    assert res.status == "done"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL)")
def test_nccl_two_gpus(tmp_path):
    data = make_datadir(tmp_path / "d")
    args = (2, _free_port(), str(data), str(tmp_path / "run"))
    mp.spawn(_nccl_worker, args=args, nprocs=2, join=True)
    assert torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["step"] == 10


def test_torchrun_trains_and_a_failed_write_ends_every_rank(tmp_path):
    """The README's command, for real: `torchrun --standalone --nproc_per_node 2 -m tunelab
    train ...` trains; then, with writes capped below a checkpoint's size, rank 0's failed
    save ends the run with the path named (no rank left waiting in a collective), and the
    last checkpoint stays intact."""
    import resource
    import subprocess
    import sys

    data = make_datadir(tmp_path / "d")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "tunelab", "train", "tiny", f"data={data}", f"out={run}", "train.eval_every=10",
        "train.progress=false", "train.tensorboard=false", "train.plots=false",
    ]  # fmt: skip
    ok = subprocess.run([*cmd, "train.max_steps=10"], env=env, capture_output=True, text=True,
                        timeout=180)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-3000:]
    last = run / "checkpoints" / "last.pt"
    ck = torch.load(last, weights_only=True)
    assert ck["step"] == 10 and len(ck["rng"]) == 2
    cap = last.stat().st_size // 2

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))

    bad = subprocess.run([*cmd, "train.max_steps=20"], env=env, capture_output=True, text=True,
                         timeout=180, preexec_fn=limit)  # fmt: skip
    assert bad.returncode != 0
    assert f"cannot write checkpoint {run / 'checkpoints'}" in bad.stderr
    assert torch.load(last, weights_only=True)["step"] == 10
