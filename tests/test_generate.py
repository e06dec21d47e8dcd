"""`generate` end to end on a tiny run: reproducible, valid, sidecars with audits and flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic
import torch
from typer.testing import CliRunner

from tests.helpers_generate import make_datadir, make_run
from tunelab.cli import app
from tunelab.data.midi import codec_from_meta
from tunelab.data.store import load_datadir
from tunelab.generate import generate, safe_name
from tunelab.kinds.constraints import check_tokens
from tunelab.kinds.sampling import Sampling, sample
from tunelab.kinds.tokens import steps_for_seconds
from tunelab.run.checkpoint import load_run
from tunelab.version import stamp


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    meta = make_datadir(root / "data")
    return make_run(root / "run", root / "data", meta)


def test_same_seed_same_output(run, tmp_path):
    kw = dict(
        n=2, steps=24, sampling=Sampling(top_p=0.9, argmax_prob=0.6), wav=False, progress=False
    )
    a = generate(run, seed=5, out=tmp_path / "a", **kw)
    b = generate(run, seed=5, out=tmp_path / "b", **kw)
    c = generate(run, seed=6, out=tmp_path / "c", **kw)
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
        assert json.loads(pa.with_suffix(".mid.json").read_text()) == json.loads(
            pb.with_suffix(".mid.json").read_text()
        )
    assert a[0].read_bytes() != c[0].read_bytes()
    assert a[0].read_bytes() != a[1].read_bytes()  # the pieces of one call differ


def test_piece_does_not_depend_on_batch(run):
    loaded = load_run(run)
    one = sample(loaded.model, loaded.meta, 1, 30, seed=3)
    three = sample(loaded.model, loaded.meta, 3, 30, seed=3)
    assert np.array_equal(one[0], three[0])


def test_outputs_sidecars_and_validity(run, tmp_path):
    paths = generate(run, n=2, seconds=6.0, seed=1, out=tmp_path, progress=False)
    meta = load_run(run).meta
    codec = codec_from_meta(meta)
    want_steps = steps_for_seconds(6.0, meta)
    assert want_steps == 24  # 6 s at 120 qpm and 2 steps per quarter
    for p in paths:
        side = json.loads(p.with_name(p.name + ".json").read_text())
        for key in (
            "checkpoint",
            "seed",
            "settings",
            "label",
            "duration_seconds",
            "audit",
            "flags",
        ):
            assert key in side
        assert side["settings"]["top_p"] == 1.0 and side["seed"] == 1
        assert side["version"] == stamp() and side["version"]["tunelab"]
        assert side["duration_seconds"] == pytest.approx(6.0)
        assert side["audit"]["problems"] == []
        assert "longest_copy_steps_transposed" in side["audit"]
        assert isinstance(side["flags"], list)
        wav = p.with_suffix(".wav")
        assert wav.exists() and wav.stat().st_size > 1000
        wside = json.loads(wav.with_name(wav.name + ".json").read_text())
        assert wside["preview_of"] == p.name and wside["flags"] == side["flags"]
        assert wside["version"] == stamp()
        tokens = codec.encode(symusic.Score(str(p)))
        assert check_tokens(tokens, meta) == []
        assert codec.count_steps(tokens) <= want_steps  # trailing silence is not written
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_default_out_is_run_samples(run):
    paths = generate(run, n=1, steps=8, seed=0, wav=False, progress=False)
    assert paths[0].parent == run / "samples"


def test_training_primer_is_flagged(run, tmp_path):
    meta = load_run(run).meta
    data = load_datadir(run.parent / "data")
    codec = codec_from_meta(meta)
    primer = tmp_path / "from train.mid"
    codec.decode(data.split("train").piece(0)).dump_midi(str(primer))
    paths = generate(run, n=1, steps=10, seed=0, out=tmp_path / "o", primer=primer, progress=False)
    side = json.loads(paths[0].with_name(paths[0].name + ".json").read_text())
    assert "training_primer" in side["flags"]
    assert side["settings"]["primer"]["steps"] == 48
    assert paths[0].name.startswith("from_train-seed0")
    # the output opens with the primer's notes
    out = codec.encode(symusic.Score(str(paths[0])))
    prim = codec.encode(symusic.Score(str(primer)))
    assert np.array_equal(out[: len(prim) - 1], prim[:-1])

    fresh = tmp_path / "mine.mid"
    score = symusic.Score(480)
    track = symusic.Track("p", 0, False)
    for i in range(8):
        track.notes.append(symusic.Note(i * 240, 240, 100 - i, 80))
    score.tracks.append(track)
    score.dump_midi(str(fresh))
    paths = generate(run, n=1, steps=10, seed=0, out=tmp_path / "f", primer=fresh, progress=False)
    side = json.loads(paths[0].with_name(paths[0].name + ".json").read_text())
    assert "training_primer" not in side["flags"]


def test_safe_name():
    for evil in ("../../etc/passwd", "a/b\\c", "..", "", "x" * 300, "piece\x00.mid"):
        s = safe_name(evil)
        assert s and "/" not in s and "\\" not in s and not s.startswith(".") and len(s) <= 60


def test_cli_generate_and_bad_options(run, tmp_path):
    r = CliRunner().invoke(
        app, ["generate", str(run), "--n", "1", "--steps", "8", "--out", str(tmp_path), "--no-wav"]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "seed0-00.mid.json").exists()
    r = CliRunner().invoke(app, ["generate", str(run), "--top-p", "0", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "top-p" in r.output
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "nope")])
    assert r.exit_code == 2
    a_file = tmp_path / "seed0-00.mid"
    r = CliRunner().invoke(app, ["generate", str(run), "--steps", "8", "--out", str(a_file)])
    assert r.exit_code == 2 and "not a folder" in r.output


def test_transformer_run_generates(tmp_path):
    meta = make_datadir(tmp_path / "data", n_pieces=6, n_steps=16)
    run = make_run(tmp_path / "run", tmp_path / "data", meta, family="transformer")
    torch.manual_seed(0)
    paths = generate(run, n=2, steps=40, seed=2, wav=False, progress=False)
    side = json.loads(paths[0].with_name(paths[0].name + ".json").read_text())
    assert side["audit"]["problems"] == [] and side["steps"] == 40


def test_sampling_settings_reduce_to_greedy(run):
    loaded = load_run(run)
    greedy = sample(loaded.model, loaded.meta, 1, 20, seed=1, sampling=Sampling(temperature=0.0))
    for s in (Sampling(argmax_prob=1.0), Sampling(top_k=1), Sampling(top_p=1e-6)):
        other = sample(loaded.model, loaded.meta, 1, 20, seed=9, sampling=s)
        assert np.array_equal(greedy[0], other[0]), s
    free = sample(loaded.model, loaded.meta, 1, 20, seed=1, sampling=Sampling(temperature=2.0))
    assert not np.array_equal(greedy[0], free[0])


def test_primer_breaking_the_rules_is_repaired(run, tmp_path):
    primer = tmp_path / "cluster.mid"
    score = symusic.Score(480)
    track = symusic.Track("p", 0, False)
    for p in range(60, 70):  # a 10-key cluster; the training data never has more than 4 keys
        track.notes.append(symusic.Note(0, 960, p, 80))
    score.tracks.append(track)
    score.dump_midi(str(primer))
    with pytest.warns(UserWarning, match="primer tokens break"):
        paths = generate(run, n=1, steps=6, out=tmp_path / "o", primer=primer, progress=False)
    side = json.loads(paths[0].with_name(paths[0].name + ".json").read_text())
    assert side["audit"]["problems"] == [] and "invalid" not in side["flags"]


def test_foreign_checkpoint_is_a_clear_error(tmp_path):
    """A readable .pt that is not a tunelab checkpoint (a bare state_dict): exit 2, named."""
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"weight": torch.zeros(2)}, ckpt)
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "--no-wav"])
    assert r.exit_code == 2, r.output
    assert str(ckpt) in r.output and "not a tunelab checkpoint" in r.output


def test_precision_applies_to_sample_level_audio_runs_only(run, tmp_path):
    with pytest.raises(ValueError, match="--precision applies to WaveNet and SampleRNN"):
        generate(run, steps=8, out=tmp_path, precision="int8", wav=False, progress=False)
