"""Crash safety: checkpoints carry a SHA-256 footer, damage is caught and training falls back
to the newest readable checkpoint, SIGKILL at random moments loses at most one checkpoint
interval, and loading never runs pickled code."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.test_train import cfg_for, make_datadir
from tunelab.run.checkpoint import CheckpointError, load_checkpoint, load_run, save_checkpoint
from tunelab.train import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def datadir(tmp_path_factory) -> Path:
    return make_datadir(tmp_path_factory.mktemp("data") / "d")


def tunelab(*args: str, **kw) -> subprocess.Popen:
    """`tunelab ARGS` in a subprocess (this worktree's package, one thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.Popen(
        [sys.executable, "-m", "tunelab", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_footer_catches_truncation_and_flipped_bytes(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.arange(1000.0), "step": 3})
    assert load_checkpoint(path)["step"] == 3
    assert torch.load(path, weights_only=True)["step"] == 3  # still a plain torch file
    good = path.read_bytes()
    for damaged in (good[: len(good) // 2], good[:-1]):
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=f"{path}: damaged"):
            load_checkpoint(path)
    for where in (100, len(good) // 2, len(good) - 70):
        flipped = bytearray(good)
        flipped[where] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match=f"{path}: damaged"):
            load_checkpoint(path)


class _Plant:
    """Unpickling this calls open(marker, "w"): a stand-in for any code an attacker plants."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("with_footer", [False, True])
def test_planted_pickle_is_refused_and_never_runs(tmp_path, datadir, with_footer):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    path = run / "checkpoints" / "best.pt"
    payload = {"model": _Plant(marker), "step": 1, "config": {}, "meta": {}}
    if with_footer:  # a valid checksum proves integrity, not safety
        save_checkpoint(path, payload)
    else:
        torch.save(payload, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused.*Nothing in it was run"):
        load_run(run)
    assert not marker.exists()
    # train refuses it too, and does not start from scratch over it
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        train(cfg_for(datadir, run, "train.max_steps=4"))
    assert not marker.exists() and sorted(os.listdir(run / "checkpoints")) == ["best.pt"]


def test_damaged_last_falls_back_then_never_starts_from_scratch(datadir, tmp_path, capsys):
    run = tmp_path / "run"
    train(cfg_for(datadir, run, "train.max_steps=20", "train.eval_every=10"))
    ckpts = run / "checkpoints"
    best_step = load_checkpoint(ckpts / "best.pt")["step"]
    last = ckpts / "last.pt"
    last.write_bytes(last.read_bytes()[:-200])  # cut short
    capsys.readouterr()
    res = train(cfg_for(datadir, run, "train.max_steps=30", "train.eval_every=10"))
    err = capsys.readouterr().err
    assert f"{last}: damaged" in err and f"resuming from {ckpts / 'best.pt'}" in err
    assert f"(step {best_step})" in err
    assert res.status == "done" and load_checkpoint(last)["step"] == 30  # replaced, readable
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # the curve continues from the fallback's step
    for p in ckpts.glob("*.pt"):  # every checkpoint damaged: a clear error, nothing replaced
        data = bytearray(p.read_bytes())
        data[len(data) // 3] ^= 0xFF
        p.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in ckpts.iterdir()}
    with pytest.raises(CheckpointError, match="no readable checkpoint.*Not starting from scratch"):
        train(cfg_for(datadir, run, "train.max_steps=40"))
    assert {p.name: p.read_bytes() for p in ckpts.iterdir()} == before


def _last_logged_step(run: Path) -> int:
    steps = [0]
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass  # a line torn by the kill
    return max(steps)


def test_sigkill_at_random_moments_then_resume(datadir, tmp_path):
    """Kill `tunelab train` 3 times while it trains (and saves every 5 steps), resume each
    time: every checkpoint stays readable, at most one interval (5 steps) is lost, and the
    finished run equals one that was never killed, weight for weight."""
    rng = random.Random(11)
    run, every, total = tmp_path / "run", 5, 150
    args = [
        "train", "tiny", f"data={datadir}", f"out={run}", f"train.max_steps={total}",
        f"train.eval_every={every}", "train.log_every=1", "train.progress=false",
        "train.tensorboard=false", "train.plots=false",
    ]  # fmt: skip
    kills = 0
    while kills < 3:
        proc = tunelab(*args)
        start = _last_logged_step(run) if (run / "metrics.jsonl").exists() else 0
        while proc.poll() is None and (
            not (run / "metrics.jsonl").exists() or _last_logged_step(run) <= start
        ):
            time.sleep(0.02)  # wait until this session trains, then kill at a random moment
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:
            pytest.fail(f"run ended before it was killed: {proc.communicate()}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        reached = _last_logged_step(run)
        for p in (run / "checkpoints").glob("*.pt"):
            load_checkpoint(p)  # every checkpoint readable (raises otherwise)
        last = run / "checkpoints" / "last.pt"
        saved = load_checkpoint(last)["step"] if last.exists() else 0  # killed before the first
        assert reached - saved <= every
    proc = tunelab(*args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"step {total}" in out
    assert not list((run / "checkpoints").glob(".*tmp*"))  # temporaries of killed writers gone
    ref = tmp_path / "ref"
    train(cfg_for(datadir, ref, f"train.max_steps={total}", f"train.eval_every={every}"))
    a = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(ref / "checkpoints" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
