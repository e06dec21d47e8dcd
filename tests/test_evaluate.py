"""`evaluate`: likelihood accounting, exact chunked scoring, the n-gram baseline, samples audits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from tests.helpers_audio import labelled_tunes, scale_tune
from tests.helpers_generate import make_datadir, make_run, random_piece, steps_meta
from tunelab.cli import app
from tunelab.data.midi import codec_from_meta
from tunelab.data.store import load_datadir
from tunelab.generate import generate
from tunelab.kinds.scoring import piece_nll
from tunelab.kinds.tokens import likelihood
from tunelab.metrics.ngram import KneserNey, score
from tunelab.models.transformer import Transformer
from tunelab.run.checkpoint import load_run
from tunelab.version import stamp


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    meta = make_datadir(root / "data")
    return make_run(root / "run", root / "data", meta)


def test_likelihood_file_and_accounting(run):
    r = CliRunner().invoke(app, ["evaluate", str(run), "--split", "test"])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "eval" / "likelihood-test.json").read_text())
    assert res["version"] == stamp()
    for k in ("nll_per_token", "tokens", "nll_per_step", "steps"):
        assert k in res
    loaded = load_run(run)
    test = load_datadir(run.parent / "data").split("test")
    tot = music = 0.0
    n_tok = n_steps = 0
    # The format-constrained model, written from the token contract (steps: keys 0..87 high to
    # low in a step, 88 STEP, 89 BOS, 90 EOS): -inf on what cannot follow the previous token.
    bias = torch.full((91, 91), -math.inf)
    for k in range(88):
        bias[k, :k] = 0.0
        bias[k, 88] = 0.0
    bias[88, :89] = bias[89, :89] = 0.0
    bias[88, 90] = bias[89, 90] = 0.0
    bias[90, :] = 0.0
    with torch.no_grad():
        for p in test:
            x = torch.from_numpy(np.asarray(p, np.int64))
            logits = loaded.model(x[None, :-1])[0] + bias[x[:-1]]
            nll = F.cross_entropy(logits, x[1:], reduction="none")
            tot += nll.sum().item()
            music += nll[:-1].sum().item()  # the last target is EOS
            n_tok += len(x) - 1
            n_steps += int((x == 88).sum())
    assert res["tokens"] == n_tok and res["steps"] == n_steps
    assert res["nll_per_token"] == pytest.approx(tot / n_tok, rel=1e-5)
    assert res["nll_per_step"] == pytest.approx(music / n_steps, rel=1e-5)
    assert res["baseline_ngram_nll_per_step"] > 0


def test_windowed_transformer_scoring_is_exact():
    torch.manual_seed(0)
    model = Transformer(91, d_model=32, layers=2, heads=2, window=8).eval()
    tokens = random_piece(np.random.default_rng(0), 12)
    assert len(tokens) > 3 * 8
    chunked = piece_nll(model, tokens)
    state = model.init_state(1)
    ref = []
    with torch.no_grad():
        for t in range(len(tokens) - 1):
            logits, state = model.step(torch.tensor([tokens[t]]), state)
            ref.append(-torch.log_softmax(logits[0], -1)[tokens[t + 1]].item())
    assert np.allclose(chunked.numpy(), ref, atol=1e-4)


def test_ngram_is_normalised_and_learns():
    meta = steps_meta()
    fmt = {"eos": meta["specials"]["eos"], "count_steps": codec_from_meta(meta).count_steps}
    rng = np.random.default_rng(0)
    motif = random_piece(rng, 8)
    train = [np.concatenate([motif[:-1], motif[1:]]) for _ in range(5)]
    m = KneserNey(4, 91, 89).fit(train)
    for h in [(89, 89, 89), (88, 40, 30), (1, 2, 3)]:
        assert sum(m.prob(h, w) for w in range(91)) == pytest.approx(1.0)
    seen = score(m, train[:1], **fmt)["nll_per_step"]
    unseen = score(m, [random_piece(rng, 16)], **fmt)["nll_per_step"]
    assert seen < 1.0 < unseen
    uniform = score(KneserNey(1, 91, 89), [random_piece(rng, 16)], **fmt)
    assert uniform["nll_per_token"] < np.log(91) + 1e-6  # never worse than 1/V smoothing allows


def test_samples_audit_flags(run, tmp_path):
    samples = tmp_path / "s"
    paths = generate(run, n=2, steps=24, seed=0, out=samples, wav=False, progress=False)
    meta = load_run(run).meta
    codec = codec_from_meta(meta)
    train = load_datadir(run.parent / "data").split("train")
    codec.decode(train.piece(1)).dump_midi(str(samples / "planted copy.mid"))
    sub = samples / "user"
    sub.mkdir()
    (sub / "broken.mid").write_bytes(b"MThd not really a midi file")
    paths[0].with_name("dup.mid").write_bytes(paths[0].read_bytes())
    r = CliRunner().invoke(app, ["evaluate", str(run), "--samples", str(samples)])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "eval" / "samples.json").read_text())
    assert res["version"] == stamp()
    by = {e["file"]: e for e in res["files"]}
    assert set(by) == {
        "seed0-00.mid",
        "seed0-01.mid",
        "planted copy.mid",
        "user/broken.mid",
        "dup.mid",
    }
    assert "copied" in by["planted copy.mid"]["flags"]
    assert by["user/broken.mid"]["flags"] == ["invalid"] and "error" in by["user/broken.mid"]
    assert "identical" in by["dup.mid"]["flags"] and "identical" in by["seed0-00.mid"]["flags"]
    assert by["seed0-00.mid"]["metrics"]["most_similar"] == "dup.mid"
    assert "copied" not in by["seed0-01.mid"]["flags"]
    assert res["flag_counts"]["invalid"] == 1


def test_evaluate_errors_exit_2(tmp_path):
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--samples", str(tmp_path / "none")])
    assert r.exit_code == 2


def test_likelihood_counts_steps_not_specials():
    meta = steps_meta()

    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, 91)

    p = np.array([89, 40, 88, 88, 41, 30, 88, 90])
    res = likelihood(Uniform(), [p], meta)
    assert res["tokens"] == 7 and res["steps"] == 3
    # Uniform over what the format allows after each token: after BOS or STEP 88 keys, STEP
    # and EOS (90); after key k the k keys below it and STEP.
    allowed = [90, 41, 90, 90, 42, 31, 90]
    assert res["nll_per_token"] == pytest.approx(np.log(allowed).sum() / 7)
    assert res["nll_per_step"] == pytest.approx(np.log(allowed[:6]).sum() / 3)  # not EOS


def test_samples_audit_survives_odd_sidecars(run, tmp_path):
    """Sidecars in a samples folder are user files: a malformed one adds nothing, stops nothing."""
    samples = tmp_path / "s"
    paths = generate(run, n=3, steps=8, seed=1, out=samples, wav=False, progress=False)
    for p, text in zip(paths, ('{"flags": null}', '{"flags": 5}', "[1, 2]"), strict=True):
        p.with_name(p.name + ".json").write_text(text)
    r = CliRunner().invoke(app, ["evaluate", str(run), "--samples", str(samples)])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "eval" / "samples.json").read_text())
    assert len(res["files"]) == 3 and res["flag_counts"]["invalid"] == 0


def test_evaluate_an_empty_split_is_a_clear_error(tmp_path):
    """Two pieces make no test split: exit 2 naming the data and the split, not a traceback."""
    meta = make_datadir(tmp_path / "data", n_pieces=2)
    run = make_run(tmp_path / "run", tmp_path / "data", meta)
    r = CliRunner().invoke(app, ["evaluate", str(run), "--split", "test"])
    assert r.exit_code == 2, r.output
    assert "test split has no pieces" in r.output and str(tmp_path / "data") in r.output
    assert not (run / "eval" / "likelihood-test.json").exists()


def test_samples_audit_of_undecodable_file_names(run, tmp_path):
    """A sample whose name is not valid UTF-8 is audited and listed with \\xNN escapes."""
    import os

    samples = tmp_path / "s"
    (p,) = generate(run, n=1, steps=8, seed=2, out=samples, wav=False, progress=False)
    os.rename(p, os.path.join(os.fsencode(samples), b"caf\xe9.mid"))
    with open(os.path.join(os.fsencode(samples), b"bad-\xe9.mid"), "wb") as f:
        f.write(b"MThd broken")
    r = CliRunner().invoke(app, ["evaluate", str(run), "--samples", str(samples)])
    assert r.exit_code == 0, r.output
    by = {e["file"]: e for e in json.loads((run / "eval" / "samples.json").read_text())["files"]}
    assert set(by) == {"caf\\xe9.mid", "bad-\\xe9.mid"}
    assert by["bad-\\xe9.mid"]["flags"] == ["invalid"] and "metrics" in by["caf\\xe9.mid"]


def test_evaluate_names_the_fixed_model_before_the_piece_memory(run):
    """The piece memory adapts to each piece as it scores it (online adaptation): the terminal
    line gives the fixed model's figures first, then the memory's, named; the file keeps the
    fixed model's under fixed_model_*, equal to scoring with --no-piece-memory."""
    cmd = ["evaluate", str(run), "--split", "valid", "--no-baseline"]
    r = CliRunner().invoke(app, [*cmd, "--piece-memory"])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "eval" / "likelihood-valid.json").read_text())
    assert res["piece_memory"] is True
    line = next(ln for ln in r.output.splitlines() if ln.startswith("valid:"))
    fixed = (
        f"fixed model {res['fixed_model_nll_per_token']:.4f} nats/token, "
        f"{res['fixed_model_nll_per_step']:.4f} nats/step"
    )
    memory = (
        f"with piece memory (online adaptation) {res['nll_per_token']:.4f} nats/token, "
        f"{res['nll_per_step']:.4f} nats/step"
    )
    assert fixed in line and memory in line and line.index(fixed) < line.index(memory)
    plain = CliRunner().invoke(app, [*cmd, "--no-piece-memory"])
    assert plain.exit_code == 0, plain.output
    alone = json.loads((run / "eval" / "likelihood-valid.json").read_text())
    assert "fixed_model_nll_per_token" not in alone and "fixed model" not in plain.output
    assert res["fixed_model_nll_per_token"] == pytest.approx(alone["nll_per_token"], rel=1e-9)
    assert res["fixed_model_nll_per_step"] == pytest.approx(alone["nll_per_step"], rel=1e-9)
    assert res["nll_per_step"] != pytest.approx(alone["nll_per_step"], rel=1e-9)


# -- audio runs: the samples against the real recordings of the data --------------------------


@pytest.fixture(scope="module")
def audio_data(tmp_path_factory):
    pieces = {"train": 3, "valid": 1, "test": 2}
    root = tmp_path_factory.mktemp("audio-ev")
    return labelled_tunes(root, pieces, 3, harmonics=3, amp=0.15)


@pytest.mark.parametrize("preset", ["wavenet-tiny", "frame-tiny"])
def test_audio_samples_are_placed_against_the_test_and_training_audio(
    audio_data, tmp_path, monkeypatch, preset
):
    import soundfile as sf

    from tunelab.config import RunConfig, load
    from tunelab.data.audio.synth import write_wav
    from tunelab.train import train

    run = tmp_path / "run"
    args = [f"data={audio_data}", f"out={run}", "train.max_steps=3", "train.progress=false"]
    train(load(RunConfig, preset, args + ["train.tensorboard=false", "train.plots=false"]))
    folder = tmp_path / "clips"
    rng = np.random.default_rng(1)
    write_wav(folder / "tune.wav", scale_tune(rng, 3, 330.0, harmonics=3, amp=0.15), 16000)
    write_wav(folder / "noise.wav", 0.1 * rng.standard_normal(3 * 16000), 16000)
    # a long recording at another rate and format: only its first READ_SECONDS are read
    t = np.arange(70 * 44100) / 44100
    long = 0.1 * np.sin(2 * np.pi * 262 * t) + 0.05 * np.sin(2 * np.pi * 524 * t)
    sf.write(str(folder / "long.flac"), np.stack([long, long], 1), 44100)
    monkeypatch.chdir(tmp_path / "clips")  # relative paths from another working directory
    r = CliRunner().invoke(app, ["evaluate", "../run", "--samples", "."])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "eval" / "samples.json").read_text())
    sets = res["set_metrics"]
    for k in ("frechet_to_test", "frechet_to_train", "frechet_test_to_train"):
        assert isinstance(sets[k], float) and sets[k] >= 0, k
    if preset.startswith("wavenet"):  # mu-law: also against the recordings as they are
        assert 0 <= sets["frechet_to_test_recordings"] != sets["frechet_to_test"]
        assert "as recorded" in r.output
    else:  # the frame kind keeps the recordings' samples: one reading
        assert "frechet_to_test_recordings" not in sets and "as recorded" not in r.output
    assert sets["test_reference"] == f"test split of {audio_data}"
    assert sets["seconds"] == {"samples": 66.0, "test": 12.0, "train": 18.0}
    for k in ("flatness", "loudness_dbfs", "pitch_salience"):
        assert all(len(sets[f"{k}_quartiles"][s]) == 3 for s in ("samples", "test", "train"))
    by = {e["file"]: e for e in res["files"]}
    assert "unpitched" in by["noise.wav"]["flags"] and "unpitched" not in by["tune.wav"]["flags"]
    assert by["noise.wav"]["metrics"]["data_pitch_salience"] > 0.5
    assert res["flag_counts"]["unpitched"] == 1 and sets["flagged_share"] == pytest.approx(1 / 3)
    assert by["long.flac"]["metrics"]["seconds"] == 60.0 and by["long.flac"]["read_first_seconds"]
    assert res["samples"] == str(folder) and res["read_seconds_per_file"] == 60.0
    assert "training audio" in r.output and "where real music of this collection" in r.output
