"""What a training process holds: the single-process world, the RNG streams a checkpoint saves
and restores, the parameter groups of weight decay, progress restored whole, and Ctrl-C held
until an update is complete; Trainer's step (backward_and_step: clipping, EMA, carried state,
nothing changed when not finite) and validation record. (Its save and resume: test_train.py.)"""

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


def _trainer(*overrides: str):
    from tunelab.config import RunConfig, load
    from tunelab.run.state import Dist, Trainer

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    cfg = load(RunConfig, "tiny", ["train.ema=0.5", "train.clip=0.1", *overrides])
    return Trainer(cfg, Dist(), model, meta={}), model


def _weights(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_backward_and_step_clips_steps_and_moves_ema_carry_and_clock_together():
    tr, model = _trainer()
    before, ema_before = _weights(model), _weights(tr.ema)
    tr.start_clock()
    loss = (model(torch.ones(4, 3)) * 100).pow(2).mean()
    carry = [torch.full((2, 3), 2.0, requires_grad=True)]
    done = tr.backward_and_step(loss, torch.tensor(5), new_carry=carry)
    assert done.problem is None
    assert done.loss == pytest.approx(loss.item()) and done.targets == 5
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float(done.grad_norm) > 0.1 >= grads.norm().item() - 1e-6  # reported before clipping
    assert tr.progress.step == 1 and tr.progress.elapsed > 0
    after = _weights(model)
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    decay = min(0.5, 1 / 10)  # the average's warm-up at step 0
    for e0, m, e in zip(ema_before, after, tr.ema.parameters(), strict=True):
        torch.testing.assert_close(e, decay * e0 + (1 - decay) * m)
    assert tr.next_carry is None and torch.equal(tr.carry[0], carry[0])
    assert not tr.carry[0].requires_grad  # gradients stop at the window edge


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_backward_and_step_leaves_everything_as_it_was_when_not_finite(what):
    tr, model = _trainer("train.clip=0")
    before, ema_before = _weights(model), _weights(tr.ema)
    tr.carry = [torch.zeros(2, 3)]
    loss = model(torch.ones(4, 3)).sum()
    if what == "loss":
        loss = loss * float("nan")
    else:  # a finite loss whose gradient overflows
        model.weight.register_hook(lambda g: g * float("inf"))
    done = tr.backward_and_step(loss, torch.tensor(4), new_carry=[torch.ones(2, 3)])
    assert done.problem == ("loss is nan" if what == "loss" else "gradient is not finite")
    assert tr.progress.step == 0 and tr.progress.elapsed == 0
    for a, b in zip(
        [*before, *ema_before], [*model.parameters(), *tr.ema.parameters()], strict=True
    ):
        assert torch.equal(a, b)
    assert torch.equal(tr.carry[0], torch.zeros(2, 3))  # the state of the last step taken


def test_note_valid_tracks_best_and_evaluations_without_improvement():
    tr, _ = _trainer()
    tr.progress.step = 3
    assert [tr.note_valid(v) for v in (2.0, 2.5, 1.5, 1.5)] == [True, False, True, False]
    p = tr.progress
    assert (p.best_valid, p.last_valid, p.bad_evals, tr.valid_step) == (1.5, 1.5, 1, 3)
