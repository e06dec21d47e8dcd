"""Audio through the one loop: wavenet-tiny trains on rendered chorales, is scored in bits
per sample, generates conditioned WAVs (labels, primer, partial saves) and is audited."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tests.helpers_audio import (
    SR,
    assert_label_conditions_generation,
    assert_resumes_exactly,
    chorale_audio,
    plain_bits_per_sample,
    records,
)
from tunelab.cli import app
from tunelab.config import RunConfig, load
from tunelab.data.audio.encode import from_int16
from tunelab.data.audio.synth import write_wav
from tunelab.data.store import load_datadir


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    """Two chorales rendered in four timbres, split by folder, labelled by timbre folder;
    wavenet-tiny trained on it for 60 steps."""
    root = tmp_path_factory.mktemp("audio")
    data, src = chorale_audio(root, tmp_path_factory.getbasetemp() / "chorale-renders")
    run = root / "run"
    from tunelab.train import train

    cfg = load(RunConfig, "wavenet-tiny", [f"data={data}", f"out={run}", "train.progress=false"])
    result = train(cfg)
    assert result.status == "done"
    return data, run, src


def test_tiny_wavenet_trains_on_chorale_audio_and_its_loss_falls(audio_run):
    data, run, _ = audio_run
    meta = json.loads((data / "meta.json").read_text())
    assert meta["label_names"] == ["choir", "organ", "piano", "strings"]
    recs = records(run)
    losses = [r["loss"] for r in recs if "loss" in r]
    assert losses[0] > losses[-1] + 0.2  # from ~ln(256) = 5.55 nats down
    valid = [r for r in recs if "valid_bits_per_sample" in r]
    assert valid and valid[-1]["valid_bits_per_sample"] < 8.0
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["meta"]["label_names"] == meta["label_names"]  # the label order travels


def test_bits_per_sample_scores_each_test_piece_whole_from_silence(audio_run):
    data, run, _ = audio_run
    from tunelab.evaluate import evaluate_split
    from tunelab.run.checkpoint import load_run

    _, res = evaluate_split(run, "test", progress=False)
    test = load_datadir(data).split("test")
    assert res["samples"] == len(test.data) == res["tokens"]
    assert "baseline_histogram_bits_per_sample" in res
    assert res["bits_per_sample"] < res["baseline_histogram_bits_per_sample"]
    # the same figure from one plain forward over silence + the piece (no chunking)
    loaded = load_run(run)
    (piece,) = list(test)
    bits = plain_bits_per_sample(loaded.model, piece, loaded.model.receptive_field)
    assert res["bits_per_sample"] == pytest.approx(bits, rel=1e-4)


def test_generate_writes_labelled_wavs_and_rejects_unknown_labels(audio_run, tmp_path):
    _, run, _ = audio_run
    out = tmp_path / "gen"
    r = CliRunner().invoke(
        app, ["generate", str(run), "--n", "2", "--seconds", "0.5", "--label", "piano",
              "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == 2
    for w in wavs:
        info = sf.info(str(w))
        assert info.samplerate == SR and info.frames == SR // 2
        side = json.loads(w.with_name(w.name + ".json").read_text())
        assert side["label"] == "piano" and side["samples"] == SR // 2
        assert isinstance(side["flags"], list) and "spectral_flatness" in side["audit"]
    bad = CliRunner().invoke(app, ["generate", str(run), "--label", "kazoo", "--out", str(out)])
    assert bad.exit_code != 0
    assert "kazoo" in bad.output and "choir, organ, piano, strings" in bad.output


def test_conditioning_changes_the_output(audio_run, tmp_path):
    _, run, _ = audio_run
    assert_label_conditions_generation(run, tmp_path)


def test_save_every_writes_valid_partial_wavs(audio_run, tmp_path):
    _, run, _ = audio_run
    from tunelab.kinds import kind_for
    from tunelab.kinds.mulaw import CHUNK
    from tunelab.kinds.sampling import Sampling
    from tunelab.run.checkpoint import load_run

    loaded = load_run(run)
    kind = kind_for(loaded.config["model"], loaded.meta)
    plan = kind.plan(1.0, None, None, None, Sampling())
    partial = [tmp_path / "p0.wav", tmp_path / "p1.wav"]
    clips = kind.sample(
        loaded.model, plan, 2, 0, Sampling(), "cpu", False, None, save_every=0.25,
        partial=partial.__getitem__,
    )  # fmt: skip
    for p, clip in zip(partial, clips, strict=True):
        audio, sr = sf.read(str(p))
        assert sr == SR and len(audio) == 3 * CHUNK  # the last save before the end
        # the same samples as the finished stream, to 16-bit precision
        assert np.allclose(audio, _decode(clip.classes)[: 3 * CHUNK], atol=1e-4)


def _decode(classes):
    from tunelab.data.audio.encode import mu_law_decode

    return mu_law_decode(classes)


def test_audits_of_a_folder_flag_a_planted_copy_noise_and_broken_files(audio_run, tmp_path):
    data, run, _ = audio_run
    train = load_datadir(data).split("train")
    folder = tmp_path / "samples"
    folder.mkdir()
    piece = from_int16(np.asarray(train.piece(1)))
    write_wav(folder / "copy.wav", piece[2 * SR : 5 * SR], SR)
    rng = np.random.default_rng(0)
    write_wav(folder / "noise.wav", rng.uniform(-0.3, 0.3, 3 * SR), SR)
    t = np.arange(3 * SR) / SR
    melody = 0.3 * np.sin(2 * np.pi * np.where(t < 1.5, 523.25, 659.25) * t)
    write_wav(folder / "sine.wav", melody, SR)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    r = CliRunner().invoke(app, ["evaluate", str(run), "--samples", str(folder)])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "eval" / "samples.json").read_text())
    flags = {e["file"]: e["flags"] for e in res["files"]}
    assert "copied" in flags["copy.wav"]
    assert "noise" in flags["noise.wav"] and "copied" not in flags["noise.wav"]
    assert flags["sine.wav"] == []
    assert flags["broken.wav"] == ["invalid"]
    assert res["thresholds"]["COPY_NCC"] > 0


def test_a_training_file_as_primer_is_flagged(audio_run, tmp_path):
    _, run, src = audio_run
    from tunelab.generate import generate

    primer = next((src / "train").rglob("*.flac"))
    (w,) = generate(run, seconds=0.25, primer=primer, out=tmp_path)
    side = json.loads(w.with_name(w.name + ".json").read_text())
    assert "training_primer" in side["flags"]
    assert side["settings"]["primer"]["file"] == primer.name


def test_audio_runs_resume_exactly(audio_run, tmp_path):
    """2N steps straight == N, stop, resume to 2N: audio windows and labels are a function of
    the step, so the weights and the logged curve match bit for bit."""
    data, _, _ = audio_run
    assert_resumes_exactly("wavenet-tiny", data, tmp_path, 12, decay_steps=12, eval_every=3)


def test_an_exported_bundle_generates_what_the_run_does(audio_run, tmp_path):
    """The bundle carries the label vocabulary and statistics the audio model needs."""
    data, run, _ = audio_run
    bundle = tmp_path / "wn.tlb"
    r = CliRunner().invoke(app, ["export", str(run), "--out", str(bundle)])
    assert r.exit_code == 0, r.output
    outs = {}
    for name, src in (("run", run), ("bundle", bundle)):
        args = ["generate", str(src), "--seconds", "0.1", "--label", "organ", "--seed", "4",
                "--no-audit", "--out", str(tmp_path / name)]  # fmt: skip
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        outs[name] = sorted((tmp_path / name).glob("*.wav"))
    assert [p.read_bytes() for p in outs["run"]] == [p.read_bytes() for p in outs["bundle"]]
    meta = json.loads((data / "meta.json").read_text())
    from tunelab.run.bundle import read_bundle

    header, _ = read_bundle(bundle)
    assert header["meta"]["label_names"] == meta["label_names"]
    assert header["meta"]["frame_stats"] == meta["frame_stats"]
    assert header["data_fingerprint"] == meta["data_fingerprint"]
    # and the copy audit's training audio, as mu-law classes (one byte a sample)
    from tunelab.run.audit_index import from_bundle
    from tunelab.run.checkpoint import load_run

    assert header["audit_index"]["info"]["form"] == "codes"
    kind = load_run(bundle).kind
    index, where = from_bundle(kind, bundle, header)
    ref, _ = kind.reference(data)
    assert "copy-audit index in the bundle wn.tlb" in where
    assert all(np.array_equal(a, b) for a, b in zip(index.pieces, ref.pieces, strict=True))


def _settings(folder) -> dict:
    return json.loads(next(folder.glob("*.wav.json")).read_text())["settings"]


def test_precision_auto_checks_the_run_once_and_records_its_choice(
    audio_run, tmp_path, monkeypatch
):
    """auto scores the validation split under every weights the generator takes, keeps the
    check beside the checkpoint, and takes the fastest precision within 0.01 bits/sample."""
    from tunelab.run import precision

    _, run, _ = audio_run
    (run / precision.CACHE).unlink(missing_ok=True)
    args = ["generate", str(run), "--seconds", "0.1", "--no-audit", "--out"]
    r = CliRunner().invoke(app, [*args, str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    s = _settings(tmp_path / "a")
    check = s["precision_check"]
    bits = check["bits_per_sample"]
    assert s["precision"] == "auto" and set(bits) == {"float32", "bfloat16", "int8"}
    assert check["passed"] == [w for w, b in bits.items() if b - bits["float32"] <= 0.01]
    assert 0 < check["samples"] <= precision.CHECK_SAMPLES
    assert s["weights"] == next(w for w in precision.FASTEST if w in check["passed"])
    assert f"{s['weights']} weights (auto)" in r.output
    assert (run / precision.CACHE).exists()

    def boom(*a, **k):
        raise AssertionError("checked twice")

    monkeypatch.setattr(precision, "quality_check", boom)
    r = CliRunner().invoke(app, [*args, str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert _settings(tmp_path / "b")["precision_check"] == check


def test_precision_auto_never_takes_weights_that_fail_the_check(audio_run, tmp_path):
    from tunelab.run import precision
    from tunelab.run.checkpoint import load_run

    _, run, _ = audio_run
    loaded = load_run(run)
    fake = {"bits_per_sample": {"float32": 5.0, "bfloat16": 5.02, "int8": 5.009}}
    for passed, expected in ((["float32", "int8"], "int8"), (["float32"], "float32")):
        check = {**fake, "passed": passed, "samples": 1, "tolerance": 0.01, "split": "valid"}
        (run / precision.CACHE).write_text(json.dumps({precision._key(loaded): check}))
        got = precision.resolve(loaded, run, "auto", None)
        assert got == {"precision": "auto", "weights": expected, "precision_check": check}
    (run / precision.CACHE).unlink()
    # no cache and no validation data to check on: float32, said so
    assert precision.resolve(loaded, run, "auto", None)["weights"] == "float32"


@pytest.mark.parametrize("weights", ["int8", "bfloat16", "float32"])
def test_precision_named_is_used_and_a_seeded_run_repeats(audio_run, tmp_path, weights):
    _, run, _ = audio_run
    outs = []
    for name in ("a", "b"):
        args = ["generate", str(run), "--seconds", "0.2", "--seed", "3", "--no-audit",
                "--precision", weights, "--out", str(tmp_path / name)]  # fmt: skip
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        outs.append(next((tmp_path / name).glob("*.wav")).read_bytes())
        s = _settings(tmp_path / name)
        assert (s["precision"], s["weights"]) == (weights, weights)
        assert "precision_check" not in s
    assert outs[0] == outs[1]
    r = CliRunner().invoke(app, ["generate", str(run), "--precision", "fp8"])
    assert r.exit_code != 0 and "fp8" in r.output


def test_an_exported_bundle_carries_the_precision_check(audio_run, tmp_path):
    from tunelab.run import precision
    from tunelab.run.bundle import read_bundle

    _, run, _ = audio_run
    bundle = tmp_path / "wn.tlb"
    r = CliRunner().invoke(app, ["export", str(run), "--out", str(bundle)])
    assert r.exit_code == 0, r.output
    check = read_bundle(bundle)[0]["precision_check"]
    assert set(check["bits_per_sample"]) == {"float32", "bfloat16", "int8"}
    from tunelab.run.checkpoint import load_run

    got = precision.resolve(load_run(bundle), bundle, "auto", None)  # no data needed
    assert got["precision_check"] == check and got["weights"] in check["passed"]


def test_a_check_made_for_another_arithmetic_is_not_trusted(audio_run, tmp_path, monkeypatch):
    """bfloat16 and int8 round the generator's matmul inputs since check versions 2 and 3: a
    check made before (no version: in a run folder's cache under the old key, or in a
    bundle's header) vouches for other arithmetic, so with no data to check again auto keeps
    float32."""
    from tunelab.run import bundle, precision
    from tunelab.run.checkpoint import load_run

    _, run, _ = audio_run
    loaded = load_run(run)
    old = {"bits_per_sample": {"float32": 5.0, "bfloat16": 5.0, "int8": 5.0}, "samples": 1,
           "passed": ["float32", "bfloat16", "int8"], "tolerance": 0.01, "split": "valid"}  # fmt: skip
    old_key = precision._key(loaded).rsplit(":", 1)[0]
    (run / precision.CACHE).write_text(json.dumps({old_key: old}))
    assert precision.resolve(loaded, run, "auto", None)["weights"] == "float32"
    (run / precision.CACHE).unlink()
    path = tmp_path / "wn.tlb"
    r = CliRunner().invoke(app, ["export", str(run), "--out", str(path)])
    assert r.exit_code == 0, r.output
    header, blob = bundle.read_bundle(path)
    assert header["precision_check"]["version"] == precision.CHECK_VERSION
    monkeypatch.setattr(bundle, "read_bundle", lambda p: ({**header, "precision_check": old}, blob))
    assert precision.resolve(load_run(path), path, "auto", None)["weights"] == "float32"


def test_precision_auto_keeps_stream_i_the_same_whatever_n(audio_run, tmp_path):
    """One stream runs split across the cores, two run as blocks: auto's choice and the split
    change nothing in stream 0."""
    _, run, _ = audio_run
    outs = []
    for n in (1, 2):
        args = ["generate", str(run), "--seconds", "0.2", "--seed", "7", "--no-audit",
                "--n", str(n), "--out", str(tmp_path / f"n{n}")]  # fmt: skip
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        outs.append((tmp_path / f"n{n}" / "seed7-00.wav").read_bytes())
    assert outs[0] == outs[1]
