"""Progress off a terminal: plain lines with the figures, no carriage-return redraws."""

import re
import sys
import time

from tests.test_train import cfg_for, make_datadir
from tunelab.progress import PlainProgress
from tunelab.train import train


def test_plain_progress_line_has_count_rate_postfix_and_eta(capsys):
    bar = PlainProgress(total=10, desc="training", unit="step", every=0.0)
    bar.update(4)
    bar.set_postfix(loss="1.234", tok_s="5,000")
    bar.update(1)
    bar.close()  # nothing new since the last line: no repeat
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("training: 5/10 step (50%)")
    assert "loss=1.234 tok_s=5,000" in lines[1] and "ETA" in lines[1]


def test_train_log_to_a_file_has_plain_lines(tmp_path, monkeypatch):
    """``tunelab train ... > train.log 2>&1``: the streams are files, not terminals."""
    data = make_datadir(tmp_path / "d", n_pieces=12)
    monkeypatch.setenv("TUNELAB_PROGRESS_SECONDS", "0")  # a line at every step
    log = tmp_path / "train.log"
    cfg = cfg_for(data, tmp_path / "run", "train.max_steps=6", "train.eval_every=3")
    cfg.train.progress = True
    with open(log, "w", encoding="utf-8") as f:
        monkeypatch.setattr(sys, "stdout", f)
        monkeypatch.setattr(sys, "stderr", f)
        train(cfg)
        monkeypatch.undo()
    text = log.read_bytes().decode()
    assert "\r" not in text
    steps = [ln for ln in text.splitlines() if re.match(r"\d+/6 step \(\d+%\)", ln)]
    assert len(steps) == 6 and "loss=" in steps[-1] and "ETA" in steps[-1]
    assert re.search(r"step 3: valid loss \d", text)  # each validation gets its line


def test_plain_progress_prints_at_its_cadence_while_update_is_not_called(capsys):
    """A long step, validation or save: the heartbeat keeps the lines coming, with the phase."""
    bar = PlainProgress(total=10, unit="step", every=0.05)
    bar.update(3)
    bar.set_description("validating")
    time.sleep(0.5)  # ~10 lines due; a loaded machine may print fewer
    bar.set_description("")
    bar.close()
    time.sleep(0.2)
    lines = capsys.readouterr().err.splitlines()
    beats = [ln for ln in lines if ln.startswith("validating: 3/10 step (30%)")]
    assert len(beats) >= 3, lines
    assert not capsys.readouterr().err  # nothing after close


def test_plain_progress_left_early_stops_its_heartbeat(capsys):
    for i in PlainProgress(range(10), every=0.05):
        if i == 2:
            break
    capsys.readouterr()
    time.sleep(0.2)
    assert not capsys.readouterr().err
