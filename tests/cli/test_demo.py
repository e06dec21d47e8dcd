"""`tunelab demo` is `tunelab run` on the built-in data, twice (MIDI, audio): each half leaves a
run folder (data/, run/, choices.json), the budget is accounted for, the last two lines are
the two report pages, and a second demo resumes both."""

import json

import torch
from typer.testing import CliRunner

from tunelab.cli import app


def test_demo_is_tunelab_run_on_the_builtin_data(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TUNELAB_BUILTIN_LIMIT", "12")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # what a 2-core machine has; sampling alone wants 1
    monkeypatch.setattr("tunelab.cli.budget.MIN_TRAIN", 0.01)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--minutes", "0.05", "--n", "2", "--seconds", "4"]
    args += ["--audio-minutes", "0.05", "--audio-chorales", "1"]
    try:
        res = CliRunner().invoke(app, args)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    assert after == 2  # sampling's one thread is given back (the audio half trained on 2)
    midi, audio = out / "midi", out / "audio"
    pages = [str((d / "run" / "report" / "index.html").resolve()) for d in (midi, audio)]
    assert res.output.strip().splitlines()[-2:] == pages  # the demo's last two lines
    assert all((d / "run" / "report" / "index.html").exists() for d in (midi, audio))
    # each half went through `tunelab run`: its choices, with reasons, and the time it spent
    m, a = (json.loads((d / "choices.json").read_text()) for d in (midi, audio))
    assert m["sources"] == ["--builtin bach-chorales"] and m["kind"]["value"] == "midi"
    assert m["steps_per_quarter"]["value"] == 2 and m["encoding"]["value"] == "steps"
    assert m["preset"]["why"].startswith("prepare's advice")
    assert a["kind"]["value"] == "audio" and a["chorales"]["value"] == 1
    assert a["preset"]["value"] == "wavenet-tiny" and a["train.eval_every"]["value"] == 200
    for c in (m, a):
        assert c["minutes"] == 0.05 and "kept for" in c["train minutes"]["why"]
        assert set(c["spent"]) >= {"start_and_prepare", "train", "generate", "report", "total"}
    assert "tunelab run --builtin bach-chorales --out" in res.output
    assert "over the budget by" in res.output  # 3 seconds cannot hold it: said, with the cause
    assert "did it learn?" in res.output and "are the samples clean?" in res.output
    mids = sorted((midi / "run" / "samples").glob("*.mid"))
    assert len(mids) == 2
    for p in mids:
        side = json.loads(p.with_name(p.name + ".json").read_text())
        assert "invalid" not in side["flags"]
        assert p.with_suffix(".wav").exists()
    lik = json.loads((midi / "run" / "eval" / "likelihood-test.json").read_text())
    assert lik["nll_per_step"] > 0 and lik["steps"] > 0
    assert (midi / "run" / "eval" / "checkpoints.json").exists()  # ranked
    wavs = sorted((audio / "run" / "samples").glob("*.wav"))
    assert len(wavs) == 4  # one clip per timbre
    labels = {json.loads(w.with_name(w.name + ".json").read_text())["label"] for w in wavs}
    assert labels == {"choir", "organ", "piano", "strings"}
    (a_lik_path,) = (audio / "run" / "eval").glob("likelihood-*.json")
    a_lik = json.loads(a_lik_path.read_text())
    assert a_lik["bits_per_sample"] > 0 and a_lik["baseline_histogram_bits_per_sample"] > 0
    # A second demo reuses the prepared data and resumes both runs.
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("reusing the prepared data") == 2
    assert res.output.count("resuming the run") == 2
    assert res.output.strip().splitlines()[-2:] == pages


def test_demo_help_names_the_run_command():
    res = CliRunner().invoke(app, ["demo", "--help"])
    assert res.exit_code == 0
    assert "tunelab run" in res.output and "--audio-minutes" in res.output
