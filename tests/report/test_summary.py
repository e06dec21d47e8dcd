"""The report's first screen (tunelab/report/summary.py): did it learn (against the baseline),
are the samples clean (flags, "not audited" when the audit could not run), do they resemble
the data, for a MIDI run and for audio runs (WaveNet, frame RNN); missing figures name the
command that makes them; the steps trained are the checkpoints'; the page names the tunelab
version and commit that made it."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers_audio import labelled_tunes
from tests.helpers_generate import make_datadir as steps_datadir
from tests.helpers_generate import make_run
from tests.test_train import cfg_for, make_datadir
from tunelab.config import RunConfig, load
from tunelab.evaluate import evaluate_split
from tunelab.generate import generate
from tunelab.report.page import build_report
from tunelab.train import train

torch.set_num_threads(1)  # tiny models: one thread is fastest on shared cores
QUESTIONS = ("Did it learn?", "Are the samples clean?", "Do they resemble the data?")


def verdict(page: str) -> dict[str, str]:
    """{question: answer as plain text} of the page's verdict block, which must come first."""
    block = re.search(r"<div class='verdict'>(.*?)</div>", page, re.S)
    assert block, "no verdict block"
    assert block.start() < page.index("<h2>")  # above everything else
    lines = re.findall(r"<li class='(\w+)'><b>(.*?)</b> (.*?)</li>", block.group(1), re.S)
    got = {q: html.unescape(re.sub(r"<[^>]+>", "", a)) for _, q, a in lines}
    assert tuple(got) == QUESTIONS
    return got


def sides(run: Path, suffix: str) -> list[dict]:
    files = sorted((run / "samples").glob(f"*{suffix}"))
    return [json.loads(f.with_name(f.name + ".json").read_text()) for f in files]


def clean_answer(ss: list[dict]) -> str:
    """What the clean line must begin with, from the sidecars (all audited here)."""
    flagged = [s for s in ss if s["flags"]]
    if flagged:
        return f"No: {len(flagged)} of {len(ss)} flagged"
    return f"Yes: {len(ss)} of {len(ss)} carry no flag"


@pytest.fixture(scope="module")
def midi_run(tmp_path_factory) -> Path:
    """A token RNN trained 13 steps, logged every 5, three pieces generated, test scored."""
    tmp = tmp_path_factory.mktemp("midi")
    data = make_datadir(tmp / "d", n_pieces=12)
    run = tmp / "run"
    train(cfg_for(data, run, "train.max_steps=13", "train.log_every=5", "train.eval_every=4"))
    generate(run, n=3, seconds=4, progress=False)
    evaluate_split(run, "test", progress=False)
    return run


def test_midi_run_answers_the_three_questions_with_figures(midi_run):
    got = verdict(build_report(midi_run).read_text(encoding="utf-8"))
    lik = json.loads((midi_run / "eval" / "likelihood-test.json").read_text())
    model, base = lik["nll_per_step"], lik["baseline_ngram_nll_per_step"]
    learned = got["Did it learn?"]
    assert learned.startswith("Yes" if model < base else "No")
    assert f"{model:.2f} nats/step on test" in learned
    assert f"n-gram baseline's {base:.2f}" in learned and f"{abs(base - model):.2f}" in learned
    ss = sides(midi_run, ".mid")
    assert len(ss) == 3 and got["Are the samples clean?"].startswith(clean_answer(ss))
    for f in {f for s in ss for f in s["flags"]}:
        assert f in got["Are the samples clean?"]
    # The ratios the sidecars recorded at generation are those the page shows (means).
    alike = got["Do they resemble the data?"]
    density = np.mean([s["audit"]["density_ratio"] for s in ss])
    poly = np.mean([s["audit"]["polyphony_ratio"] for s in ss])
    assert f"note density {density:.1f}x" in alike and f"polyphony {poly:.1f}x" in alike
    assert re.search(r"on-beat \d+\.\dx the training data's", alike)


def test_transformer_with_piece_memory_is_judged_by_its_fixed_model(tmp_path):
    """The memory adapts to each piece as it is scored: the verdict is the fixed model's."""
    data = make_datadir(tmp_path / "d", n_pieces=12)
    run = tmp_path / "run"
    small = ["model.d_model=32", "model.layers=1", "model.heads=2", "model.window=32"]
    args = [f"data={data}", f"out={run}", "train.max_steps=6", "train.seq_len=32"]
    args += ["train.progress=false", "train.tensorboard=false", "train.plots=false"]
    train(load(RunConfig, "midi-transformer", args + small))
    generate(run, n=2, seconds=4, progress=False)
    evaluate_split(run, "test", progress=False)
    got = verdict(build_report(run).read_text(encoding="utf-8"))
    lik = json.loads((run / "eval" / "likelihood-test.json").read_text())
    assert lik["piece_memory"] is True
    fixed, base = lik["fixed_model_nll_per_step"], lik["baseline_ngram_nll_per_step"]
    learned = got["Did it learn?"]
    assert learned.startswith(("Yes: " if fixed < base else "No: ") + f"{fixed:.2f} nats/step")
    assert f"{lik['nll_per_step']:.2f} with the piece memory" in learned
    ss = sides(run, ".mid")
    assert got["Are the samples clean?"].startswith(clean_answer(ss))
    assert "note density" in got["Do they resemble the data?"]


def test_without_the_training_data_the_ratios_come_from_the_sidecars(midi_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(midi_run, run)
    cfg = (run / "config.yaml").read_text()
    data = re.search(r"^data: (.*)$", cfg, re.M).group(1)
    (run / "config.yaml").write_text(cfg.replace(data, str(tmp_path / "gone")))
    alike = verdict(build_report(run).read_text(encoding="utf-8"))["Do they resemble the data?"]
    density = np.mean([s["audit"]["density_ratio"] for s in sides(run, ".mid")])
    assert f"note density {density:.1f}x" in alike
    assert "on-beat not measured (the training data was not found)" in alike


def test_a_relative_data_path_is_found_from_another_working_directory(
    midi_run, tmp_path, monkeypatch
):
    """As a run stores the data path typed in its project folder: the report run from
    elsewhere finds the data beside the run and compares with it."""
    run = tmp_path / "project" / "run"
    shutil.copytree(midi_run, run)
    cfg = (run / "config.yaml").read_text()
    data = re.search(r"^data: (.*)$", cfg, re.M).group(1)
    shutil.copytree(data, tmp_path / "project" / "d")
    (run / "config.yaml").write_text(cfg.replace(f"data: {data}", "data: d"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    page = build_report(run).read_text(encoding="utf-8")
    assert "(not found)" not in page
    assert re.search(r"on-beat \d+\.\dx", verdict(page)["Do they resemble the data?"])


def test_steps_trained_agree_with_the_checkpoint_not_the_last_log_line(midi_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(midi_run, run)
    # As a run stopped by its time budget between two log lines leaves it: the last logged
    # training step is 10, the checkpoints hold step 13.
    lines = (run / "metrics.jsonl").read_text().splitlines()
    kept = [x for x in lines if json.loads(x)["step"] <= 10]
    (run / "metrics.jsonl").write_text("\n".join(kept) + "\n")
    step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert step == 13
    page = build_report(run).read_text(encoding="utf-8")
    row = re.search(r"<b>steps trained</b></td><td>([^<]*)</td>", page)
    assert row and row.group(1).split()[0] == "13", row


def test_page_names_the_tunelab_version_and_commit_that_made_it(midi_run):
    from tunelab.version import stamp

    page = build_report(midi_run).read_text(encoding="utf-8")
    st = stamp()
    assert f"tunelab {st['tunelab']}" in page
    if st["commit"]:
        assert f"commit {st['commit']}" in page
    assert re.search(r'<meta name="generator" content="tunelab [^"]+">', page)


# -- audio runs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio_data(tmp_path_factory) -> Path:
    pieces = {"train": 3, "valid": 1, "test": 1}
    return labelled_tunes(tmp_path_factory.mktemp("audio"), pieces, 2)


@pytest.mark.parametrize("preset", ["wavenet-tiny", "frame-tiny"])
def test_audio_run_answers_the_three_questions_with_figures(audio_data, tmp_path, preset):
    run = tmp_path / "run"
    args = [f"data={audio_data}", f"out={run}", "train.max_steps=3", "train.progress=false"]
    train(load(RunConfig, preset, args + ["train.tensorboard=false", "train.plots=false"]))
    generate(run, n=2, seconds=0.25, progress=False)
    evaluate_split(run, "test", progress=False)
    got = verdict(build_report(run).read_text(encoding="utf-8"))
    lik = json.loads((run / "eval" / "likelihood-test.json").read_text())
    learned = got["Did it learn?"]
    if preset == "frame-tiny":  # the loss beside the two trivial baselines
        assert learned.startswith("Yes" if lik["learned"] else "No")
        assert f"loss {lik['loss']:.3f} on test" in learned
        assert f"mean frame {lik['baseline_mean_frame_loss']:.3f}" in learned
    else:
        bits, base = lik["bits_per_sample"], lik["baseline_histogram_bits_per_sample"]
        assert learned.startswith("Yes" if bits < base else "No")
        assert f"{bits:.2f} bits/sample on test" in learned and f"baseline's {base:.2f}" in learned
    ss = sides(run, ".wav")
    assert len(ss) == 2 and got["Are the samples clean?"].startswith(clean_answer(ss))
    alike = got["Do they resemble the data?"]
    flat = np.mean([s["audit"]["spectral_flatness"] for s in ss])
    loud = np.mean([s["audit"]["rms_dbfs"] for s in ss])
    assert f"spectral flatness {flat:.2g} against the training audio's" in alike
    assert f"loudness {loud:.1f} dBFS against" in alike
    if preset == "wavenet-tiny":  # no audit of the samples yet: the command that measures it
        assert f"tunelab evaluate {run} --samples {run / 'samples'}" in alike


# -- what cannot be answered says so ----------------------------------------------------------


def test_a_sample_that_was_not_audited_is_shown_as_such_never_as_clean(tmp_path):
    meta = steps_datadir(tmp_path / "data")
    run = make_run(tmp_path / "run", tmp_path / "data", meta)
    shutil.rmtree(tmp_path / "data")  # the copy audit has nothing to compare with
    (f,) = generate(run, n=1, steps=16, seed=1, out=run / "samples", wav=False, progress=False)
    side_path = f.with_name(f.name + ".json")
    side = json.loads(side_path.read_text())
    assert side["audited"] is False
    side["not_audited_reason"] += " <script>x</script>"  # users' text, escaped on the page
    side_path.write_text(json.dumps(side))
    page = build_report(run).read_text(encoding="utf-8")
    assert "<script>x</script>" not in page
    got = verdict(page)
    answer = got["Are the samples clean?"]
    assert answer.startswith(("Not audited:", "No:")) and "carry no flag" not in answer
    assert f"1 of 1 not audited: {side['not_audited_reason']}" in answer
    assert got["Did it learn?"] == f"Not measured yet: run tunelab evaluate {run}."
    assert got["Do they resemble the data?"].startswith("Not measured")


def test_a_run_without_samples_or_scores_says_which_command_makes_them(tmp_path):
    meta = steps_datadir(tmp_path / "data")
    run = make_run(tmp_path / "run", tmp_path / "data", meta)
    (run / "samples").mkdir()
    got = verdict(build_report(run).read_text(encoding="utf-8"))
    assert got["Did it learn?"] == f"Not measured yet: run tunelab evaluate {run}."
    assert got["Are the samples clean?"] == f"No samples yet: run tunelab generate {run}."
    assert got["Do they resemble the data?"].startswith(
        "No samples to compare: run tunelab generate"
    )


def test_the_audio_answer_uses_the_distance_to_the_held_out_audio_when_measured(tmp_path):
    from tunelab.report.summary import _audio_figures

    audits = [{"spectral_flatness": 0.01, "rms_dbfs": -20.0}]
    (tmp_path / "eval").mkdir()
    sets = {"frechet_to_test": 123.0, "frechet_test_to_train": 45.0, "frechet_distance": 99.0}
    (tmp_path / "eval" / "samples.json").write_text(json.dumps({"set_metrics": sets}))
    _, text = _audio_figures(tmp_path, audits, None)
    assert "Fréchet distance 123 to the held-out test audio" in text
    assert "the test audio's own to the training audio: 45" in text and "99" not in text
    sets = {"frechet_to_test": None, "frechet_distance": 99.0}  # no test split: the training
    (tmp_path / "eval" / "samples.json").write_text(json.dumps({"set_metrics": sets}))
    assert "Fréchet distance 99 to the training audio" in _audio_figures(tmp_path, audits, None)[1]
