"""What a training process holds: the single-process world, the RNG streams a checkpoint saves
and restores, the parameter groups of weight decay, progress restored whole, and Ctrl-C held
until an update is complete. (Trainer's save, resume and update: test_train.py.)"""

from __future__ import annotations

import json
import os
import random
import signal
import threading

import numpy as np
import pytest
import torch
from torch import nn

from tunelab.run.state import (
    Progress,
    defer_interrupt,
    param_groups,
    rng_state,
    set_rng_state,
    setup_dist,
)


def _seed(n: int) -> None:
    torch.manual_seed(n)
    np.random.seed(n)
    random.seed(n)


def _draws():
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])


def test_restored_rng_streams_replay_the_same_draws():
    _seed(1)
    _draws()
    saved = rng_state()
    first = _draws()
    _seed(99)
    assert _draws() != first
    set_rng_state(saved)
    assert _draws() == first
    json.dumps({k: v for k, v in saved.items() if k not in ("torch", "cuda")})  # plain lists


def test_one_process_world_on_the_cpu(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    d = setup_dist("cpu")
    assert (d.rank, d.world, d.local_rank, d.device.type, d.main) == (0, 1, 0, "cpu", True)


def test_only_matrices_decay():
    model = nn.ModuleDict(
        {"embed": nn.Embedding(10, 4), "lin": nn.Linear(4, 4), "norm": nn.LayerNorm(4)}
    )
    model["norm"].bias.requires_grad_(False)  # frozen parameters are left out
    decay, free = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and free["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [model["lin"].weight.shape]
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in free["params"]) == [
        "embed.weight",
        "lin.bias",
        "norm.weight",
    ]


def test_progress_restores_every_field_and_ignores_the_rest():
    p = Progress(step=7, elapsed=12.5, best_valid=1.5, last_valid=1.75, bad_evals=2)
    ck = {**p.__dict__, "model": {}, "rng": []}
    assert Progress.restore(ck) == p
    del ck["bad_evals"]
    with pytest.raises(KeyError):
        Progress.restore(ck)  # an incomplete checkpoint is an error, not a silent default


def test_ctrl_c_is_held_until_the_block_ends():
    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with defer_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the rest of the update ran")
    assert done == ["the rest of the update ran"]
    assert signal.getsignal(signal.SIGINT) is before
    with defer_interrupt():  # no Ctrl-C: nothing raised
        pass
    out = []
    t = threading.Thread(target=lambda: out.append(_in_thread()))
    t.start()
    t.join()
    assert out == ["ok"]


def _in_thread():
    with defer_interrupt():  # off the main thread signals cannot be caught: a no-op
        return "ok"
