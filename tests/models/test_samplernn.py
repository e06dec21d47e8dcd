"""SampleRNN: causality, step() == forward() == chunks, the fused generator equals the PyTorch
reference, labels condition, and samplernn-tiny trains, resumes exactly, scores a split and
generates audited WAVs through the one loop.

Tiny models only. The first run compiles the numba kernel (cached on disk afterwards).
"""

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
    random_streams,
    records,
)
from tunelab.cli import app
from tunelab.config import RunConfig, load
from tunelab.kinds.scoring import piece_nll
from tunelab.models.samplernn import SampleRNN
from tunelab.models.samplernn_gen import FusedSampleRNN, generate_reference, round_weights


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny ops: a second intra-op thread only adds barrier waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(n_labels: int = 0, frame_size: int = 4, layers: int = 2, seed: int = 0) -> SampleRNN:
    torch.manual_seed(seed)
    return SampleRNN(
        256, frame_size, frame_hidden=12, frame_layers=layers, sample_hidden=10,
        sample_layers=2, warmup_frames=2, n_labels=n_labels, gc_channels=5,
    ).eval()  # fmt: skip


@pytest.mark.parametrize("t", [0, 5, 7, 8, 20])  # inside a frame, its last sample, the next
def test_causal(t):
    m = tiny(frame_size=4)
    x = torch.randint(0, 256, (2, 30))
    with torch.no_grad():
        y = m(x)
        x2 = x.clone()
        x2[:, t] = (x2[:, t] + 77) % 256
        y2 = m(x2)
    assert y.shape == (2, 30, 256)
    torch.testing.assert_close(y2[:, :t], y[:, :t], rtol=0, atol=0)
    assert not torch.allclose(y2[:, t], y[:, t])  # the sample tier sees x[t] at once
    # the frame tier: after frame (t // 4) completes, later frames' predictions change too
    assert not torch.allclose(y2[:, (t // 4 + 1) * 4 + 3 :], y[:, (t // 4 + 1) * 4 + 3 :])


@pytest.mark.parametrize("n_labels,layers", [(0, 1), (3, 2)])
def test_step_and_chunks_equal_forward(n_labels, layers):
    m = tiny(n_labels, layers=layers)
    x = torch.randint(0, 256, (3, 43))
    label = torch.tensor([0, 2, 1]) if n_labels else None
    with torch.no_grad():
        y = m(x, label)
        state = m.init_state(3, label=label)
        steps = []
        for t in range(43):
            out, state = m.step(x[:, t], state)
            steps.append(out)
        torch.testing.assert_close(torch.stack(steps, 1), y, rtol=1e-5, atol=1e-5)
        state, chunks = m.init_state(3, label=label), []
        for a, b in [(0, 3), (3, 4), (4, 17), (17, 18), (18, 43)]:  # every phase of a frame
            out, state = m.forward_chunk(x[:, a:b], state)
            chunks.append(out)
        torch.testing.assert_close(torch.cat(chunks, 1), y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m(x, label, tail=13), y[:, -13:], rtol=1e-5, atol=1e-5)


def test_whole_piece_scoring_in_chunks_equals_one_forward():
    m = tiny(n_labels=2)
    x = torch.randint(0, 256, (101,))
    with torch.no_grad():
        logits = m(x[None, :-1], torch.tensor([1]))[0]
    full = torch.nn.functional.cross_entropy(logits, x[1:], reduction="none")
    torch.testing.assert_close(piece_nll(m, x, label=1, chunk=9), full, rtol=1e-5, atol=1e-6)


def test_conditioning_changes_logits_and_label_is_checked():
    m = tiny(n_labels=3)
    x = torch.randint(0, 256, (1, 20))
    with torch.no_grad():
        y0, y1 = m(x, torch.tensor([0])), m(x, torch.tensor([1]))
    assert (y0 - y1).abs().max() > 1e-4
    with pytest.raises(ValueError, match="label"):
        m(x)
    with pytest.raises(ValueError, match="label"):
        tiny()(x, torch.tensor([0]))


CASES = [  # (n_labels, frame layers, temperature, primer length, weights, threads)
    (0, 1, 1.0, 0, "float32", 1),
    (3, 2, 0.0, 0, "float32", 2),
    (3, 2, 0.8, 9, "float32", 1),
    (0, 2, 1.0, 6, "bfloat16", 2),
    (3, 2, 1.0, 6, "int8", 2),  # int8 with a label: the first GRU's label columns are a bias
]


@pytest.mark.parametrize("n_labels,layers,temperature,primer_len,weights,threads", CASES)
def test_fused_equals_reference(n_labels, layers, temperature, primer_len, weights, threads):
    m = tiny(n_labels, layers=layers)
    B, N = 3, 50
    first, uniforms, label, primer = random_streams(B, N, n_labels, primer_len)
    ref_model = round_weights(m, weights)
    ref = generate_reference(ref_model, first, uniforms, temperature, label, primer)
    fused = FusedSampleRNN(m, B, label, weights=weights, threads=threads)
    if primer is not None:
        fused.prime(primer.numpy())
    a = fused.run(first.numpy(), uniforms[:, :21].numpy(), temperature)  # in two chunks
    b = fused.run(None, uniforms[:, 21:].numpy(), temperature)
    np.testing.assert_array_equal(np.concatenate([a, b], axis=1), ref.numpy())
    if temperature > 0:  # not a degenerate stream that any generator would match
        assert len(np.unique(ref.numpy())) > 10


def test_fused_input_checks():
    fused = FusedSampleRNN(tiny(), 2)
    with pytest.raises(ValueError, match="continue"):
        fused.run(None, np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="range"):
        fused.prime(np.array([[0, 256], [1, 2]]))


# -- through the one loop ----------------------------------------------------------------


@pytest.fixture(scope="module")
def srnn_run(tmp_path_factory):
    """samplernn-tiny trained for 60 steps on two chorales in four (labelled) timbres."""
    root = tmp_path_factory.mktemp("srnn")
    data, src = chorale_audio(root, tmp_path_factory.getbasetemp() / "chorale-renders")
    run = root / "run"
    from tunelab.train import train

    args = [f"data={data}", f"out={run}", "train.progress=false", "train.plots=false"]
    cfg = load(RunConfig, "samplernn-tiny", args)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32-unit GRU's small ops: a second thread only waits
    try:
        assert train(cfg).status == "done"
    finally:
        torch.set_num_threads(before)
    return data, run, src


def test_tiny_samplernn_trains_and_scores_a_split_whole_from_silence(srnn_run):
    data, run, _ = srnn_run
    from tunelab.data.store import load_datadir
    from tunelab.evaluate import evaluate_split
    from tunelab.run.checkpoint import load_run

    losses = [r["loss"] for r in records(run) if "loss" in r]
    assert losses[0] > losses[-1] + 0.2
    _, res = evaluate_split(run, "test", progress=False)
    (piece,) = list(load_datadir(data).split("test"))
    assert res["samples"] == len(piece)
    assert res["bits_per_sample"] < res["baseline_histogram_bits_per_sample"]
    # the same figure from one plain forward over the warm-up's silence + the piece
    model = load_run(run).model
    bits = plain_bits_per_sample(model, piece, model.warmup)
    assert res["bits_per_sample"] == pytest.approx(bits, rel=1e-4)


def test_generate_writes_audited_labelled_wavs(srnn_run, tmp_path):
    _, run, _ = srnn_run
    out = tmp_path / "gen"
    r = CliRunner().invoke(
        app, ["generate", str(run), "--n", "2", "--seconds", "0.5", "--label", "piano",
              "--temperature", "0.9", "--seed", "4", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == 2
    for w in wavs:
        info = sf.info(str(w))
        assert info.samplerate == SR and info.frames == SR // 2
        side = json.loads(w.with_name(w.name + ".json").read_text())
        assert side["label"] == "piano" and side["samples"] == SR // 2 and side["seed"] == 4
        assert side["settings"]["temperature"] == 0.9
        assert isinstance(side["flags"], list) and "spectral_flatness" in side["audit"]
    assert not np.array_equal(sf.read(str(wavs[0]))[0], sf.read(str(wavs[1]))[0])


def test_generation_is_reproducible_and_conditioned(srnn_run, tmp_path):
    _, run, _ = srnn_run
    assert_label_conditions_generation(run, tmp_path)


def test_a_primer_is_fed_whole_and_a_training_primer_is_flagged(srnn_run, tmp_path):
    _, run, src = srnn_run
    from tunelab.generate import generate

    primer = next((src / "train").rglob("*.flac"))
    (w,) = generate(run, seconds=0.25, seed=3, primer=primer, out=tmp_path / "p")
    (plain,) = generate(run, seconds=0.25, seed=3, out=tmp_path / "q", audit=False)
    side = json.loads(w.with_name(w.name + ".json").read_text())
    assert "training_primer" in side["flags"]
    assert side["settings"]["primer"]["file"] == primer.name
    assert not np.array_equal(sf.read(str(w))[0], sf.read(str(plain))[0])


def test_samplernn_runs_resume_exactly(srnn_run, tmp_path):
    """2N steps straight == N, stop, resume to 2N: weights, EMA and the logged curve."""
    data, _, _ = srnn_run
    assert_resumes_exactly("samplernn-tiny", data, tmp_path, 8, decay_steps=8, eval_every=2)
