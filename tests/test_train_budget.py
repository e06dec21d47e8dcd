"""train.max_minutes is wall clock for the whole train call: set-up, steps, validation and
saving count, summed over sessions; the bar's ETA follows the time budget from its first line."""

from __future__ import annotations

import re
import time

import pytest
import torch

import tunelab.run.state as state
import tunelab.train as train_module
from tests.test_train import cfg_for, make_datadir, metrics
from tunelab.run.state import Progress
from tunelab.train import train

BUDGET_MIN = 0.05  # 3 s
SETUP_S = 1.2  # a slow data load: set-up counts
VALID_S = 0.6  # a slow validation pass (one batch): it counts, and the last one must fit
# What the call may run past the budget here: the export after the last save, and a loaded
# machine. The code before this budget counted neither set-up nor the final validation and
# ran over by SETUP_S + VALID_S at least.
OVER_S = 1.0


@pytest.fixture()
def slow(monkeypatch):
    """Set-up and validation made slow: the data load sleeps SETUP_S, each validation batch
    VALID_S (validation runs the model through state.forward; training steps do not)."""
    load, forward = train_module.load_datadir, state.forward

    def slow_load(path):
        time.sleep(SETUP_S)
        return load(path)

    def slow_forward(*args, **kwargs):
        time.sleep(VALID_S)
        return forward(*args, **kwargs)

    monkeypatch.setattr(train_module, "load_datadir", slow_load)
    monkeypatch.setattr(state, "forward", slow_forward)


def _timed(cfg):
    t0 = time.perf_counter()
    res = train(cfg)
    return res, time.perf_counter() - t0


def _seconds(clock: str) -> int:
    s = 0
    for part in clock.split(":"):
        s = 60 * s + int(part)
    return s


def test_budget_holds_for_the_whole_call_and_the_eta_follows_it(
    slow, tmp_path, monkeypatch, capsys
):
    data = make_datadir(tmp_path / "d", n_pieces=12)
    # Tunelab's lazy imports (a second or two on a first call, counted too) happen here, not
    # in the measured calls.
    train(cfg_for(data, tmp_path / "warm", "train.max_steps=1"))
    run = tmp_path / "run"
    monkeypatch.setenv("TUNELAB_PROGRESS_SECONDS", "0.05")
    args = ["train.max_steps=100000", "train.eval_every=3", "train.warmup=0"]
    cfg = cfg_for(data, run, f"train.max_minutes={BUDGET_MIN}", *args)
    cfg.train.progress = True  # plain lines: pytest's stderr is not a terminal
    res, wall = _timed(cfg)
    budget = 60 * BUDGET_MIN
    assert res.status == "time_budget" and res.step > 0
    assert wall <= budget + OVER_S, f"{wall:.2f} s for a {budget:.0f} s budget"
    assert wall >= budget / 2  # and the budget was used, not given up early

    err = capsys.readouterr().err
    # The first line with an ETA is bounded by the time budget (the bar's total was
    # train.max_steps before the first log window: an ETA of hours).
    first_eta = re.search(r"ETA ([\d:]+)", err)
    assert first_eta and _seconds(first_eta.group(1)) <= budget, err
    # Lines keep coming while the model validates (the heartbeat), saying so.
    assert re.search(r"^validating: \d+/\d+ step", err, re.M), err
    # The bar ends at the step trained, and every figure says the same step.
    lines = [ln for ln in err.splitlines() if re.match(r"\d+/\d+ step", ln)]
    assert lines[-1].startswith(f"{res.step}/{res.step} step (100%)"), lines[-1]
    assert res.message.endswith(f"trained to step {res.step}")
    ck = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert ck["step"] == res.step and ck["elapsed"] <= budget + OVER_S
    logged = [r for r in metrics(run) if "loss" in r]
    assert logged[-1]["step"] == res.step  # what the report reads as "steps trained"
    assert logged[-1]["lr"] < 0.5 * cfg.train.lr  # the cosine over the time budget ran

    # Resumed with a larger budget: the total over both sessions stays within it.
    more = 2 * BUDGET_MIN
    res2, wall2 = _timed(cfg_for(data, run, f"train.max_minutes={more}", *args))
    assert res2.step >= res.step
    assert wall + wall2 <= 60 * more + OVER_S, f"{wall:.2f} + {wall2:.2f} s"
    ck = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert wall <= ck["elapsed"] <= 60 * more + OVER_S


def test_a_checkpoint_before_final_seconds_still_resumes():
    p = Progress(step=3, elapsed=2.0, final_seconds=1.5)
    ck = {**p.__dict__, "model": {}}
    assert Progress.restore(ck) == p
    del ck["final_seconds"]  # written before it was measured: measured again
    assert Progress.restore(ck) == Progress(step=3, elapsed=2.0)
