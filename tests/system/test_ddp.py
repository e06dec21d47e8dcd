"""Two-process DDP on CPU (gloo): trains, ranks agree on when to stop, only rank 0 writes files."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from tests.test_train import make_datadir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, out: str, result_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from tunelab.config import RunConfig, load
    from tunelab.train import train

    cfg = load(
        RunConfig,
        "tiny",
        [
            f"data={data}",
            f"out={out}",
            "train.max_steps=12",
            "train.eval_every=6",
            "train.log_every=3",
            "train.progress=false",
            "train.plots=false",
            "train.augment_transpose=2",
        ],
    )
    res = train(cfg)
    # every rank returns only after rank 0 saved the final checkpoint
    loaded = torch.load(Path(out) / "checkpoints/last.pt", weights_only=True)
    assert loaded["step"] == res.step == 12
    Path(result_dir, f"rank{rank}.json").write_text(json.dumps({"status": res.status}))


def test_ddp_two_processes_gloo(tmp_path):
    data = make_datadir(tmp_path / "data")
    out = tmp_path / "run"
    mp.spawn(
        _worker, args=(2, _free_port(), str(data), str(out), str(tmp_path)), nprocs=2, join=True
    )
    for r in range(2):
        assert json.loads((tmp_path / f"rank{r}.json").read_text())["status"] == "done"
    ck = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert len(ck["rng"]) == 2  # every rank's RNG state, for exact resume
    assert not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])  # own dropout streams
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in recs if "loss" in r]
    assert train_steps == [3, 6, 9, 12]  # written once, by rank 0 only
    assert len([r for r in recs if "valid_loss" in r]) == 2
    assert len(list((out / "tensorboard").iterdir())) == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "best.pt",
        "index.json",
        "last.pt",
    ]
