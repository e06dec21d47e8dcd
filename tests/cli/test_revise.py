"""The revision pass on the command line: ``tunelab revise`` over files, ``tunelab generate
--revise`` (revised clip as x.wav, draft as x.draft.wav, both audited), and the report page
playing both side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tunelab.cli import app
from tunelab.config import RunConfig, load
from tunelab.data.audio.synth import write_wav

SR = 16000
torch.set_num_threads(1)
QUIET = ("train.tensorboard=false", "train.plots=false", "train.progress=false")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(data, a tiny revision run, {family: a tiny run of each audio family}) on tones."""
    from tunelab.data.audio.prepare import prepare_audio
    from tunelab.train import train

    root = tmp_path_factory.mktemp("revise")
    t = np.arange(3 * SR) / SR
    for split, n in (("train", 3), ("valid", 1), ("test", 1)):
        for i in range(n):
            x = 0.2 * np.sin(2 * np.pi * (220 + 110 * i) * t) * (1 + np.sin(2 * np.pi * t)) / 2
            write_wav(root / "src" / split / f"{i}.wav", x, SR)
    data = root / "data"
    assert prepare_audio([root / "src"], data, workers=1) == 0
    rev = root / "rev"
    audio = {"wavenet": "wavenet-tiny", "samplernn": "samplernn-tiny", "frame_rnn": "frame-tiny"}
    tiny = ["model.n_fft=256", "model.hop=64", "model.conv_channels=16", "model.conv_layers=2"]
    tiny += ["model.disc_channels=4", "train.seq_len=4096", "train.batch_size=2"]
    steps = ["train.max_steps=2", "train.eval_every=2", "train.eval_batches=1", *QUIET]
    todo = [("revision", rev, tiny)] + [(p, root / f, []) for f, p in audio.items()]
    for preset, out, extra in todo:
        train(load(RunConfig, preset, [f"data={data}", f"out={out}", *extra, *steps]))
    # untrained, a reviser returns its draft: weights that change it, so tests can tell
    ck = torch.load(rev / "checkpoints/best.pt", weights_only=True)
    assert ck["model"]["g.out.weight"].abs().max() > 0
    return data, rev, {f: root / f for f in audio}


def test_revise_writes_safe_names_with_sidecars(runs, tmp_path):
    _, rev, _ = runs
    rng = np.random.default_rng(0)
    a, b = tmp_path / "one", tmp_path / "two"
    for folder in (a, b):
        write_wav(folder / "my <tune>!.wav", 0.1 * rng.standard_normal(SR // 2), 22050)
    out = tmp_path / "out"
    files = [str(a / "my <tune>!.wav"), str(b / "my <tune>!.wav")]
    r = CliRunner().invoke(app, ["revise", str(rev), *files, "--out", str(out)])
    assert r.exit_code == 0, r.output
    made = sorted(p.name for p in out.glob("*.wav"))
    assert made == ["my_tune-2.revised.wav", "my_tune.revised.wav"]
    audio, sr = sf.read(str(out / "my_tune.revised.wav"))
    assert sr == SR and abs(len(audio) - SR // 2 * SR / 22050) <= 1  # at the reviser's rate
    side = json.loads((out / "my_tune.revised.wav.json").read_text())
    assert side["audited"] is True and isinstance(side["flags"], list)
    assert {"rms_dbfs", "spectral_flatness"} <= set(side["audit"])
    assert side["draft"]["file"].endswith("my <tune>!.wav") and "rms_dbfs" in side["draft"]["audit"]
    # without --out: beside the file
    r = CliRunner().invoke(app, ["revise", str(rev), str(a / "my <tune>!.wav")])
    assert r.exit_code == 0, r.output
    assert (a / "my_tune.revised.wav").is_file()


def test_revise_refuses_a_run_of_another_family(runs, tmp_path):
    wn = runs[2]["wavenet"]
    write_wav(tmp_path / "x.wav", np.zeros(SR), SR)
    r = CliRunner().invoke(app, ["revise", str(wn), str(tmp_path / "x.wav")])
    assert r.exit_code == 2 and "not a revision run" in r.output


@pytest.mark.parametrize("family", ["wavenet", "samplernn", "frame_rnn"])
def test_generate_revise_keeps_the_draft_beside_the_revision(runs, tmp_path, family):
    _, rev, audio = runs
    run = audio[family]
    args = ["generate", str(run), "--n", "2", "--seconds", "0.5", "--seed", "3"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "rev"), "--revise", str(rev)])
    assert r.exit_code == 0, r.output
    assert "draft seed3-00.draft.wav" in r.output
    plain = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    for i in range(2):
        x = tmp_path / "rev" / f"seed3-{i:02d}.wav"
        draft = sf.read(str(x.with_name(f"seed3-{i:02d}.draft.wav")))[0]
        # the draft is what generate writes without --revise; the revision differs from it
        assert np.array_equal(draft, sf.read(str(tmp_path / "plain" / x.name))[0])
        revised = sf.read(str(x))[0]
        assert len(revised) == len(draft) and not np.array_equal(revised, draft)
        side = json.loads(x.with_name(x.name + ".json").read_text())
        assert side["draft"]["file"] == f"seed3-{i:02d}.draft.wav"
        assert isinstance(side["draft"]["flags"], list) and "rms_dbfs" in side["draft"]["audit"]
        assert side["audit"]["rms_dbfs"] == pytest.approx(
            20 * np.log10(np.sqrt(np.mean(revised**2))), abs=0.05
        )
        assert side["revision"]["checkpoint"].endswith("best.pt")
    assert not list((tmp_path / "rev").glob("*.draft.wav.json"))
    if family == "wavenet":  # the drafts are not samples of their own: counted, not scored
        r = CliRunner().invoke(app, ["evaluate", str(run), "--samples", str(tmp_path / "rev")])
        assert r.exit_code == 0, r.output
        audit = json.loads((run / "eval" / "samples.json").read_text())
        assert sorted(f["file"] for f in audit["files"]) == ["seed3-00.wav", "seed3-01.wav"]
        assert audit["drafts_left_out"] == 2 and "left out 2 drafts" in r.output


def test_generate_revise_fails_early_on_a_missing_reviser(runs, tmp_path):
    wn = runs[2]["wavenet"]
    r = CliRunner().invoke(app, ["generate", str(wn), "--revise", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "nothing" in r.output


def test_the_report_plays_draft_and_revision_side_by_side(runs):
    from tunelab.generate import generate
    from tunelab.report.page import build_report

    _, rev, audio = runs
    wn = audio["wavenet"]
    generate(wn, n=1, seconds=0.5, seed=1, revise=rev, progress=False)
    page = build_report(wn).read_text()
    assert page.count("<div class='pair'>") == 1
    assert "sample-000-draft.wav" in page and "sample-000-draft.png" in page
    assert ".draft.wav</h3>" not in page  # the draft is not a sample of its own
