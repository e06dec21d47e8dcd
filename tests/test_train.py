"""The training loop: learning, files, exact resume, NaN stop, config errors, data windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tunelab.config import ConfigError, RunConfig, load
from tunelab.data.dataset import WindowSampler, eval_windows
from tunelab.data.store import DataDirWriter, load_datadir
from tunelab.run.checkpoint import load_run
from tunelab.train import train

torch.set_num_threads(1)
STEP, BOS, EOS = 88, 89, 90


def make_datadir(out: Path, n_pieces: int = 24, seed: int = 0) -> Path:
    """A small `steps`-encoded MIDI data set with a learnable pattern (arpeggiated triads)."""
    rng = np.random.default_rng(seed)
    with DataDirWriter(out, "uint16") as w:
        for i in range(n_pieces):
            root = int(rng.integers(10, 60))  # token id = pitch - 21
            toks = [BOS]
            for s in range(int(rng.integers(15, 30))):
                toks += sorted({root + 7 + (s % 4) * 2, root + 4, root}, reverse=True) + [STEP]
            toks.append(EOS)
            w.add_piece(np.array(toks), {"source": f"p{i:03d}.mid"})
        meta = {
            "kind": "midi",
            "encoding": "steps",
            "vocab_size": 91,
            "steps_per_quarter": 1,
            "specials": {"bos": BOS, "eos": EOS, "step": STEP},
            "tempo_qpm": 100.0,
        }
        w.finish(meta, {})
    return out


@pytest.fixture(scope="module")
def datadir(tmp_path_factory) -> Path:
    return make_datadir(tmp_path_factory.mktemp("data") / "d")


def cfg_for(data: Path, out: Path, *overrides: str) -> RunConfig:
    base = [
        f"data={data}",
        f"out={out}",
        "train.progress=false",
        "train.tensorboard=false",
        "train.plots=false",
    ]
    return load(RunConfig, "tiny", base + list(overrides))


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_learns_and_writes_files(datadir, tmp_path):
    run = tmp_path / "run"
    cfg = cfg_for(
        datadir,
        run,
        "train.max_steps=40",
        "train.tensorboard=true",
        "train.plots=true",
        "train.milestone_minutes=0.0005",  # 30 ms: several milestones in this short run
    )
    res = train(cfg)
    assert res.status == "done" and res.step == 40
    losses = [r["loss"] for r in metrics(run) if "loss" in r]
    assert np.mean(losses[-2:]) < 0.7 * losses[0]
    for name in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "model.safetensors"):
        assert (run / name).exists(), name
    assert list((run / "checkpoints").glob("milestone-*.pt"))
    assert (run / "plots/loss.png").stat().st_size > 0 and (run / "plots/speed.png").exists()
    assert any((run / "tensorboard").iterdir())
    # plain-data checkpoint: loads with weights_only, carries config and meta
    ck = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert ck["step"] == 40 and ck["meta"]["vocab_size"] == 91
    loaded = load_run(run)
    assert not loaded.model.training and loaded.meta["encoding"] == "steps"
    with torch.no_grad():
        logits, _ = loaded.model.step(torch.tensor([BOS]), loaded.model.init_state(1))
    assert logits.shape == (1, 91)
    # the safetensors export holds the best weights
    from safetensors.torch import load_file

    exported = load_file(run / "model.safetensors")
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)["model"]
    torch.testing.assert_close(exported["head.weight"], best["head.weight"])


@pytest.mark.parametrize("family", ["token_rnn", "transformer"])
def test_exact_resume(datadir, tmp_path, family):
    """2N steps straight == N steps, stop, resume to 2N: same weights, same logged losses."""
    extra = [
        "train.decay_steps=16",
        "train.eval_every=4",
        "train.log_every=1",
        "train.ema=0.9",
        "train.augment_transpose=3",
        "model.dropout=0.2",
        f"model.family={family}",
        "model.d_model=16",
        "model.heads=2",
    ]
    straight, resumed = tmp_path / "a", tmp_path / "b"
    train(cfg_for(datadir, straight, "train.max_steps=16", *extra))
    first = train(cfg_for(datadir, resumed, "train.max_steps=8", *extra))
    assert first.step == 8
    second = train(cfg_for(datadir, resumed, "train.max_steps=16", *extra))
    assert second.step == 16
    a = torch.load(straight / "checkpoints/last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints/last.pt", weights_only=True)
    for part in ("model", "ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0, msg=f"{part}.{k}")
    curve = lambda run: [(r["step"], r.get("loss"), r.get("valid_loss")) for r in metrics(run)]  # noqa: E731
    assert curve(straight) == curve(resumed)


def test_nan_stops_and_keeps_last_good_checkpoint(datadir, tmp_path):
    run = tmp_path / "run"
    train(cfg_for(datadir, run, "train.max_steps=10", "train.eval_every=5"))
    good = torch.load(run / "checkpoints/last.pt", weights_only=True)
    # An absurd learning rate overflows the weights on the next update -> non-finite loss.
    res = train(
        cfg_for(
            datadir, run, "train.max_steps=30", "train.lr=1e38", "train.warmup=0", "train.clip=0"
        )
    )
    assert res.status == "nan" and "Last good checkpoint" in res.message
    assert res.step < 30
    kept = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert kept["step"] == 10
    for k, v in kept["model"].items():
        assert torch.isfinite(v).all()
        torch.testing.assert_close(v, good["model"][k], rtol=0, atol=0)


def test_prefetch_threads_give_the_same_batches(datadir, tmp_path):
    runs = [tmp_path / "w0", tmp_path / "w2"]
    for run, workers in zip(runs, (0, 2), strict=True):
        train(cfg_for(datadir, run, "train.max_steps=6", f"train.num_workers={workers}"))
    a, b = (torch.load(r / "checkpoints/last.pt", weights_only=True)["model"] for r in runs)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_time_budget_stops_and_saves(datadir, tmp_path):
    run = tmp_path / "run"
    res = train(cfg_for(datadir, run, "train.max_steps=100000", "train.max_minutes=0.002"))
    assert res.status == "time_budget" and 0 < res.step < 100000
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == res.step
    again = train(cfg_for(datadir, run, "train.max_steps=100000", "train.max_minutes=0.002"))
    assert again.status == "already_done" and again.step == res.step


def test_early_stop_after_patience_evaluations(datadir, tmp_path):
    # lr=1e-30 is below float32 resolution: the weights, and so the validation loss, never change
    run = tmp_path / "run"
    res = train(
        cfg_for(
            datadir,
            run,
            "train.lr=1e-30",
            "train.eval_every=2",
            "train.patience=2",
            "train.max_steps=100",
        )
    )
    assert res.status == "early_stop" and res.step == 6
    valid = [r for r in metrics(run) if "valid_loss" in r]
    assert [r["step"] for r in valid] == [2, 4, 6]
    assert (run / "checkpoints" / "best.pt").exists()


def test_config_errors(datadir, tmp_path):
    with pytest.raises(ConfigError, match="bogus"):
        cfg_for(datadir, tmp_path / "r", "train.bogus=1")
    with pytest.raises(ConfigError, match="lstm"):
        cfg_for(datadir, tmp_path / "r", "model.cell=rnn")
    with pytest.raises(ConfigError, match="family"):
        train(cfg_for(datadir, tmp_path / "r", "model.family=wavenut"))
    with pytest.raises(ConfigError, match="data="):
        train(load(RunConfig, "tiny", [f"out={tmp_path}"]))
    with pytest.raises(ConfigError, match="seq_len"):
        train(cfg_for(datadir, tmp_path / "r2", "train.seq_len=100000"))
    with pytest.raises(ConfigError, match="max_minutes"):
        train(cfg_for(datadir, tmp_path / "r3", "train.max_minutes=0"))


@pytest.mark.parametrize("family", ["wavenet", "samplernn", "frame_rnn"])
def test_carry_state_refused_for_a_family_without_state(datadir, tmp_path, family):
    """train.carry_state on a family whose model has no init_carry stops before any data is
    read or model built, with the family named (one check, in train_checks.check_config)."""
    cfg = cfg_for(datadir, tmp_path / "r", f"model.family={family}", "train.carry_state=true")
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert str(err.value) == f"train.carry_state: model family {family!r} carries no state"
    assert not (tmp_path / "r").exists()


def test_resume_refuses_another_model(datadir, tmp_path):
    run = tmp_path / "run"
    train(cfg_for(datadir, run, "train.max_steps=2"))
    with pytest.raises(ConfigError, match="another model"):
        train(cfg_for(datadir, run, "train.max_steps=4", "model.hidden=8"))
    # Settings that only change scoring and sampling may change on resume.
    res = train(cfg_for(datadir, run, "train.max_steps=3", "model.piece_memory=true"))
    assert res.step == 3 and load_run(run).piece_memory
    other = tmp_path / "other"  # same model, data with another vocabulary
    with DataDirWriter(other, "uint16") as w:
        w.add_piece(np.array([BOS] + [3, STEP] * 40 + [EOS]), {"source": "a.mid"})
        w.finish({"kind": "midi", "encoding": "onsets", "vocab_size": 179}, {})
    with pytest.raises(ConfigError, match="vocabulary"):
        train(cfg_for(other, run, "train.max_steps=4"))


def test_cli_train_and_errors(datadir, tmp_path):
    from typer.testing import CliRunner

    from tunelab.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    args = ["train", "tiny", f"data={datadir}", f"out={run}", "train.max_steps=4"]
    res = runner.invoke(app, [*args, "train.progress=false", "train.tensorboard=false"])
    assert res.exit_code == 0, res.output
    assert "step 4" in res.output
    res = runner.invoke(app, ["train", "tiny", f"data={datadir}", f"out={run}", "train.nope=1"])
    assert res.exit_code == 2 and "nope" in res.output
    res = runner.invoke(app, ["train", "tiny", f"data={tmp_path / 'missing'}", f"out={run}"])
    assert res.exit_code == 2 and "meta.json" in res.output
    res = runner.invoke(app, ["plot", str(run)])
    assert res.exit_code == 0 and (run / "plots/loss.png").exists()


def test_sampler_deterministic_disjoint_and_transposed(datadir):
    from tunelab.data.dataset import transpose_tables
    from tunelab.data.midi import codec_from_meta

    dd = load_datadir(datadir)
    data = dd.split("train").data
    s0 = WindowSampler(data, 16, 4, seed=3, rank=0, world=2)
    s1 = WindowSampler(data, 16, 4, seed=3, rank=1, world=2)
    assert np.array_equal(s0.starts(5), WindowSampler(data, 16, 4, seed=3, world=2).starts(5))
    # within an epoch the two ranks never share a window
    per_epoch = s0.windows_per_epoch // 8
    seen0 = np.concatenate([s0.starts(s) for s in range(per_epoch)])
    seen1 = np.concatenate([s1.starts(s) for s in range(per_epoch)])
    assert not set(seen0) & set(seen1) and len(set(seen0)) == len(seen0)
    # transposition: one shift per window, pitches stay in range, non-pitch tokens unchanged
    tables = transpose_tables(codec_from_meta(dd.meta), 5)
    plain = WindowSampler(data, 16, 8, seed=3)
    moved = WindowSampler(data, 16, 8, seed=3, transpose_tables=tables)
    for step in range(5):
        (x0, _), (x1, _) = plain.batch(step), moved.batch(step)
        pitch = x0 < STEP
        assert torch.equal(x0[~pitch], x1[~pitch])
        for row in range(x0.shape[0]):
            shifts = (x1[row] - x0[row])[pitch[row]].unique()
            assert len(shifts) <= 1 and (len(shifts) == 0 or abs(int(shifts[0])) <= 5)
        assert (x1[pitch] >= 0).all() and (x1[pitch] < STEP).all()


def test_eval_windows_cover_split():
    data = np.arange(100)
    w = eval_windows(data, 9)
    assert w.shape == (11, 10)
    assert np.array_equal(np.unique(w[:, 1:]), np.arange(1, 100))
    assert eval_windows(np.arange(5), 9).shape == (1, 5)


def test_ctrl_c_during_the_update_waits_for_the_step_counter():
    import os
    import signal
    import time

    from tunelab.run.state import defer_interrupt as _defer_interrupt

    order = []
    with pytest.raises(KeyboardInterrupt):
        with _defer_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            order.append("update finished")
    assert order == ["update finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
