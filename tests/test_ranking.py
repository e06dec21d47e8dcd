"""Checkpoint ranking: what a checkpoint generates outranks its validation loss; the index
beside the checkpoints holds each one's own figures."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.helpers_generate import make_datadir, make_run
from tests.test_train import cfg_for
from tests.test_train import make_datadir as make_train_data
from tunelab.cli import app
from tunelab.evaluate import audit_samples
from tunelab.run.checkpoint import load_checkpoint, read_index, record_checkpoint, save_checkpoint
from tunelab.train import train


def _planted(ck: dict, step: int, keys: tuple[int, int] | None) -> dict:
    """A copy of ``ck`` whose output bias picks its tokens: keys[0]..keys[1]-1 and STEP for a
    working model; None: STEP only (empty steps forever, a silent model)."""
    out = {**ck, "step": step, "model": {k: v.clone() for k, v in ck["model"].items()}}
    b = out["model"]["head.bias"]
    b[:] = -30.0
    if keys is None:
        b[88] = 30.0
    else:
        b[:88] = -20.0
        b[keys[0] : keys[1]] = 0.0
        b[88:] = 1.0
    return out


def test_ranking_prefers_music_over_a_lower_loss_silent_checkpoint(tmp_path):
    meta = make_datadir(tmp_path / "d")
    run = make_run(tmp_path / "run", tmp_path / "d", meta)
    ckdir = run / "checkpoints"
    ck = load_checkpoint(ckdir / "best.pt")
    # best.pt: silent weights with the lowest loss; a milestone with music and a higher one
    save_checkpoint(ckdir / "best.pt", _planted(ck, 200, None))
    record_checkpoint(ckdir / "best.pt", 200, 0.5)
    good = ckdir / "milestone-00000100.pt"
    save_checkpoint(good, _planted(ck, 100, (20, 70)))
    record_checkpoint(good, 100, 2.0)
    save_checkpoint(ckdir / "last.pt", _planted(ck, 300, (20, 70)))
    record_checkpoint(ckdir / "last.pt", 250, 0.1)  # a stale figure: other weights' loss

    res = CliRunner().invoke(app, ["evaluate", str(run), "--checkpoints", "--n", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads((run / "eval" / "checkpoints.json").read_text())
    rows = {r["name"]: r for r in out["checkpoints"]}
    assert rows["best"]["flag_counts"]["silent"] == 3 and rows["best"]["rank"] == 3
    assert rows["milestone-00000100"]["flagged"] == 0
    assert rows["last"]["valid_loss"] is None and rows["last"]["valid_loss_source"].startswith(
        "stale"
    )
    # equal flags and distance: the milestone's recorded loss beats last's missing one
    assert out["best_ranked"] == "milestone-00000100"
    assert out["best_loss"] == "best" and not out["best_loss_is_best_ranked"]
    assert "not the best-ranked" in res.output
    assert len(list((run / "eval" / "checkpoints" / "best").glob("*.mid"))) == 3
    side = json.loads(next((run / "eval" / "checkpoints" / "last").glob("*.mid.json")).read_text())
    assert 0 < side["metrics"]["scale_consistency"] <= 1  # the music statistics ride along
    assert side["metrics"]["pitch_class_hist_distance"] is not None
    _, audit = audit_samples(run, run / "eval" / "checkpoints" / "last")  # evaluate --samples
    assert all("groove_consistency" in f["metrics"] for f in audit["files"])
    assert 0 <= audit["set_metrics"]["mean_interval_hist_distance"] <= 1


def test_training_records_each_checkpoints_step_and_loss(tmp_path):
    data = make_train_data(tmp_path / "d", n_pieces=12)
    run = tmp_path / "run"
    train(cfg_for(data, run, "train.max_steps=4", "train.eval_every=2"))
    index = read_index(run / "checkpoints")
    valid = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    valid = {r["step"]: r["valid_loss"] for r in valid if "valid_loss" in r}
    assert index["last"]["step"] == 4 and index["last"]["valid_loss"] == valid[4]
    best = index["best"]
    assert best["step"] == load_checkpoint(run / "checkpoints" / "best.pt")["step"]
    assert best["valid_loss"] == min(valid.values())
