"""`tunelab demo` end to end on a handful of chorales: every stage runs and leaves its files."""

import json

from typer.testing import CliRunner

from tunelab.cli import app


def test_demo_runs_every_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TUNELAB_BUILTIN_LIMIT", "12")
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--minutes", "0.05", "--n", "2", "--seconds", "4"]
    args += ["--audio-minutes", "0.05", "--audio-chorales", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "data" / "meta.json").exists()
    assert (out / "run" / "checkpoints" / "last.pt").exists()
    mids = sorted((out / "run" / "samples").glob("*.mid"))
    assert len(mids) == 2
    for m in mids:
        side = json.loads(m.with_name(m.name + ".json").read_text())
        assert "invalid" not in side["flags"]
        assert m.with_suffix(".wav").exists()
    lik = json.loads((out / "run" / "eval" / "likelihood-test.json").read_text())
    assert lik["nll_per_step"] > 0 and lik["steps"] > 0
    assert (out / "run" / "eval" / "samples.json").exists()
    wavs = sorted((out / "audio-run" / "samples").glob("*.wav"))
    assert len(wavs) == 4  # one clip per timbre
    labels = {json.loads(w.with_name(w.name + ".json").read_text())["label"] for w in wavs}
    assert labels == {"choir", "organ", "piano", "strings"}
    (a_lik_path,) = (out / "audio-run" / "eval").glob("likelihood-*.json")
    a_lik = json.loads(a_lik_path.read_text())
    assert a_lik["bits_per_sample"] > 0 and a_lik["baseline_histogram_bits_per_sample"] > 0
    page = out / "run" / "report" / "index.html"
    assert res.output.strip().splitlines()[-1] == str(page.resolve())  # the demo's last line
    assert (out / "audio-run" / "report" / "index.html").exists()
    assert "Checkpoints ranked" in page.read_text(encoding="utf-8")
    # A second run reuses the prepared data and the finished training run.
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "reusing the prepared chorales" in res.output
