"""A run's learning curves: records appended as they happen, a resume that drops what the
interrupted process logged past its checkpoint, a torn last line skipped, TensorBoard tags,
and the two PNG plots."""

from __future__ import annotations

import json

from tunelab.run.curves import RunLog, plot_run, read_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def test_resume_drops_the_records_past_the_checkpoint(tmp_path):
    log = RunLog(tmp_path, resume_step=None, tensorboard=False)
    for step in range(1, 7):
        log.log({"step": step, "loss": 1.0 / step})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 7, "lo')  # the process died mid-line
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(1, 7))
    log = RunLog(tmp_path, resume_step=4, tensorboard=False)  # the last checkpoint: step 4
    log.log({"step": 5, "loss": 0.3})
    log.close()
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in recs] == [(1, 1.0), (2, 0.5), (3, 1 / 3), (4, 0.25)] + [
        (5, 0.3)
    ]
    assert read_metrics(tmp_path / "absent.jsonl") == []


def test_numbers_become_tensorboard_scalars_under_train_and_valid(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = RunLog(tmp_path, resume_step=None)
    log.log({"step": 1, "loss": 2.0, "lr": 0.1, "valid_loss": 1.5, "nan_skipped": True})
    log.log({"step": 2, "loss": 1.0, "note": "text is not a scalar"})
    log.close()
    ea = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    tags = set(ea.Tags()["scalars"])
    assert tags == {"train/loss", "train/lr", "valid/loss"}
    assert [(e.step, e.value) for e in ea.Scalars("train/loss")] == [(1, 2.0), (2, 1.0)]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["note"] == "text is not a scalar"


def test_plots_are_written_with_or_without_records(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert [p.name for p in plot_run(empty)] == ["loss.png", "speed.png"]
    run = tmp_path / "run"
    run.mkdir()
    log = RunLog(run, resume_step=None, tensorboard=False)
    for step in range(1, 11):
        rec = {"step": step, "loss": 3.0 / step, "sec_per_step": 0.1}
        log.log(rec | ({"valid_loss": 2.0 / step} if step % 5 == 0 else {}))
    log.close()
    written = plot_run(run)
    assert written == [run / "plots" / "loss.png", run / "plots" / "speed.png"]
    for p in written:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 5000
    assert sorted(x.name for x in (run / "plots").iterdir()) == ["loss.png", "speed.png"]
