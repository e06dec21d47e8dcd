"""`tunelab run`: a folder to a report page in one command, every choice printed and kept,
the last line the page, a second run resuming; from another working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.data.midi.test_prepare_auto import eighths, write_piece
from tunelab.cli import app
from tunelab.cli.budget import MIN_TRAIN, plan_training, reserve
from tunelab.cli.folder import verdict

REPO = Path(__file__).resolve().parents[2]


def tunelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tunelab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_goes_from_a_folder_to_a_report_and_resumes(tmp_path):
    src = tmp_path / "my music"
    for i in range(6):
        write_piece(src / f"piece {i}.mid", eighths(48 + 2 * i, 48))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["run", str(src), "--out", "out", "--minutes", "1", "--n", "2", "--seconds", "4"]
    r = tunelab(*args, "tiny", "train.max_steps=30", cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-3000:]
    page = Path(r.stdout.strip().splitlines()[-1])
    assert page.is_absolute() and page.name == "index.html" and page.exists()
    assert page == (elsewhere / "out" / "run" / "report" / "index.html").resolve()
    err = r.stderr
    for line in (
        "kind: midi (the only kind of file found)",
        "steps_per_quarter: 2 (90%",
        "preset: tiny (given)",
        "did it learn?",
        "are the samples clean?",
    ):
        assert line in err, line
    choices = json.loads((elsewhere / "out" / "choices.json").read_text())
    assert choices["steps_per_quarter"]["value"] == 2 and choices["encoding"]["value"] == "steps"
    assert (
        choices["train minutes"]["value"] <= 1.0 and "kept for" in choices["train minutes"]["why"]
    )
    assert "spent starting and preparing" in choices["train minutes"]["why"]
    spent = choices["spent"]  # every stage's seconds, kept beside the budget
    stages = ("start_and_prepare", "train", "generate", "evaluate", "rank", "report")
    assert all(spent[k] >= 0 for k in stages)
    assert spent["total"] >= sum(spent[k] for k in stages) - 1
    assert f"done in {spent['total'] / 60:.1f} minutes (budget 1)" in err
    assert len(list((elsewhere / "out" / "run" / "samples").glob("*.mid"))) == 2
    lik = json.loads((elsewhere / "out" / "run" / "eval" / "likelihood-test.json").read_text())
    assert lik["tokens"] > 0
    r = tunelab("evaluate", "out/run", cwd=elsewhere)  # the verdict in words, not only JSON
    assert r.returncode == 0 and "verdict: model " in r.stdout and "the baseline's" in r.stdout
    # again: the prepared data is reused and training resumes where it stopped
    r = tunelab(*args, "tiny", "train.max_steps=40", cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "reusing the prepared data" in r.stderr and "resuming the run" in r.stderr


def test_run_refuses_a_mixed_folder_with_both_counts(tmp_path):
    src = tmp_path / "mixed"
    write_piece(src / "a.mid", eighths(50))
    (src / "b.wav").write_bytes(b"RIFF")
    r = tunelab("run", str(src), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2
    assert "found 1 MIDI and 1 audio files" in r.stderr and not (tmp_path / "o" / "data").exists()


def test_the_reserve_is_a_share_with_a_floor_or_what_the_last_run_took():
    assert reserve(2.0)[0] == 0.75 and reserve(20.0)[0] == pytest.approx(2.0)
    kept, why = reserve(2.0, {"generate": 40.0, "evaluate": 20.0, "rank": 12.0, "train": 900.0})
    assert kept == pytest.approx(1.2 * 1.25) and "the last run's 1.2 min" in why
    assert reserve(20.0, {"generate": 6.0})[0] == pytest.approx(2.0)  # the share is more


def test_training_gets_what_is_left_and_an_overrun_is_announced():
    minutes, why = plan_training(8.0, 0.5, 0.8, "x")
    assert minutes == pytest.approx(6.7) and "0.5 spent starting and preparing" in why
    minutes, why = plan_training(1.0, 0.5, 0.75, "x")  # preparing ate the budget
    assert minutes == MIN_TRAIN and "will run over its budget by about 0.5 min" in why


def test_the_budget_counts_from_the_process_start(tmp_path):
    code = (
        "import time; time.sleep(1.5); from tunelab.cli.budget import command_start; "
        "print(time.time() - command_start())"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) >= 1.4  # start-up and imports before the command are counted


@pytest.mark.parametrize(
    "args, message",
    [
        (["--builtin", "bach"], "--builtin 'bach': choose bach-chorales or bach-chorales-audio"),
        (["some/folder", "--builtin", "bach-chorales"], "either folders or --builtin"),
        (["--builtin", "bach-chorales", "--kind", "audio"], "bach-chorales is midi"),
        (["some/folder", "--limit", "3"], "--limit 3: give a positive number"),
        ([], "or --builtin bach-chorales"),
        (
            ["midi-gur", "."],
            "midi-gur: no such file or folder, nor a preset; did you mean 'midi-gru'",
        ),
    ],
)
def test_run_checks_its_sources(tmp_path, args, message):
    res = CliRunner().invoke(app, ["run", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_a_builtin_limit_reaches_the_midi_prepare_and_is_put_back(monkeypatch):
    from tunelab.cli.folder import _builtin_limit

    monkeypatch.setenv("TUNELAB_BUILTIN_LIMIT", "12")
    with _builtin_limit(3):
        assert os.environ["TUNELAB_BUILTIN_LIMIT"] == "3"  # what prepare_midi reads
    assert os.environ["TUNELAB_BUILTIN_LIMIT"] == "12"
    with _builtin_limit(None):
        assert os.environ["TUNELAB_BUILTIN_LIMIT"] == "12"


def test_verdict_names_the_fixed_model_and_the_baseline():
    lik = {
        "nll_per_step": 3.4,
        "fixed_model_nll_per_step": 4.28,
        "piece_memory": True,
        "baseline_ngram_nll_per_step": 8.45,
    }
    text = verdict(lik)
    assert text.startswith("model 4.280 nats/step against the baseline's 8.450: better by")
    assert "with piece memory (online adaptation) 3.400" in text
    assert "WORSE" in verdict({"nll_per_step": 9.0, "baseline_ngram_nll_per_step": 8.0})
    audio = {"bits_per_sample": 6.0, "baseline_histogram_bits_per_sample": 7.3}
    assert verdict(audio).startswith("model 6.000 bits/sample against the baseline's 7.300")


def test_version_names_the_release_and_commit(tmp_path):
    r = tunelab("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("tunelab 0.1.0")


def test_a_small_training_split_is_validated_often_enough_to_keep_its_best_checkpoint():
    """Nine pieces are memorised in a few hundred updates: a preset's interval of 500 missed
    PianoBooster's best checkpoint (valid 1.17 at update 150, 1.56 at its first look, 500)."""
    from tunelab import config as C
    from tunelab.cli.folder import MIN_EVAL_EVERY, SMALL_DATA_PASSES, _small_data_eval

    t = C.load(C.RunConfig, "midi-gru-carry").train
    per_update = t.batch_tokens or t.batch_size * t.seq_len
    small = {"splits": {"train": {"pieces": 6, "items": 5825}}}
    every, why = _small_data_eval("midi-gru-carry", small)["train.eval_every"]
    assert every == round(SMALL_DATA_PASSES * 5825 / per_update) < t.eval_every
    assert "5,825 training tokens" in why and f"preset's {t.eval_every}" in why
    tiny = {"splits": {"train": {"items": 100}}}
    assert _small_data_eval("midi-gru-carry", tiny)["train.eval_every"][0] == MIN_EVAL_EVERY
    large = {"splits": {"train": {"items": 10_000_000}}}  # hours of music: the preset's own
    assert _small_data_eval("midi-gru-carry", large) == {}
    assert _small_data_eval("midi-gru-carry", {}) == {}
