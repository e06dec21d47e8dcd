"""The revision pass through the one loop: drafts made from real audio (deterministic, the
same on any number of processes, measurably like generated audio), exact resume, and what a
short training gives: real audio comes back nearly unchanged, a planted noisy draft comes out
closer to the real audio, and the validation loss beats the drafts' own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers_audio import PENTATONIC, assert_resumes_exactly, records, scale_tune
from tunelab.config import RunConfig, load
from tunelab.data.audio.synth import write_wav
from tunelab.data.store import load_datadir
from tunelab.kinds import kind_for
from tunelab.kinds.revision import DRAFTS, make_draft
from tunelab.metrics.audio import spectral_flatness
from tunelab.metrics.audio_features import spectral_centroid
from tunelab.models.revision import stft_distance

SR = 16000
torch.set_num_threads(1)
TINY = (
    "model.n_fft=256", "model.hop=64", "model.conv_channels=32", "model.conv_layers=3",
    "model.disc_channels=8", "train.seq_len=4096", "train.batch_size=4",
    "train.tensorboard=false", "train.plots=false", "train.progress=false",
)  # fmt: skip


def _tune(rng, seconds: float, base: float) -> np.ndarray:
    """Notes of 0.25 s from a pentatonic scale on ``base`` Hz, three harmonics, decaying."""
    return scale_tune(rng, seconds, base, SR, harmonics=3, scale=PENTATONIC)


@pytest.fixture(scope="module")
def rev_data(tmp_path_factory):
    from tunelab.data.audio.prepare import prepare_audio

    root = tmp_path_factory.mktemp("revision")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("valid", 1), ("test", 2)):
        for i in range(n):
            write_wav(root / "src" / split / f"{i}.wav", _tune(rng, 4, 220.0 * (1 + i % 2)), SR)
    assert prepare_audio([root / "src"], root / "data", workers=1) == 0
    return root / "data"


def _cfg(data, out, *extra):
    return load(RunConfig, "revision", [f"data={data}", f"out={out}", *TINY, *extra])


@pytest.fixture(scope="module")
def base_run(rev_data, tmp_path_factory):
    """A frame RNN trained a few steps on the same data: the base whose drafts a reviser
    learns from (any audio family will do; this one generates fastest)."""
    from tunelab.train import train

    out = tmp_path_factory.mktemp("base") / "run"
    keys = [f"data={rev_data}", f"out={out}", "train.max_steps=4", "train.progress=false"]
    train(load(RunConfig, "frame-tiny", keys + ["train.tensorboard=false", "train.plots=false"]))
    return out


OWN = ("model.own_seconds=16",)  # two clips of the base's drafts (one held out)


@pytest.fixture(scope="module")
def rev_run(rev_data, tmp_path_factory):
    """A reviser of corruptions only (no base run)."""
    from tunelab.train import train

    out = tmp_path_factory.mktemp("rev") / "run"
    more = ("train.max_steps=80", "train.eval_every=40", "train.lr=2e-3", "train.warmup=10")
    train(_cfg(rev_data, out, *more))
    return out


@pytest.fixture(scope="module")
def own_run(rev_data, base_run, tmp_path_factory):
    """A reviser that also learns from ``base_run``'s own drafts. (That base, 4 steps of a
    tiny frame RNN, drafts a hum far from the music: it tests the plumbing, not the gain.)"""
    from tunelab.train import train

    out = tmp_path_factory.mktemp("own") / "run"
    more = ("train.max_steps=20", "train.eval_every=10", "train.lr=2e-3", "train.warmup=5")
    train(_cfg(rev_data, out, *more, *OWN, f"revision.base={base_run}"))
    return out


def _kind(data):
    cfg = _cfg(data, "unused")
    return kind_for(cfg.model, load_datadir(data).meta), cfg


def test_the_kind_states_the_whole_contract_with_compatible_signatures(rev_data):
    import inspect

    from tests.kinds.test_base import _compatible, _contract
    from tunelab.kinds import Kind

    kind, _ = _kind(rev_data)
    assert isinstance(kind, Kind) and kind.name == "revision"
    callables, fields = _contract()
    assert all(hasattr(kind, f) for f in fields)
    for m in callables:
        want = vars(Kind)[m]
        if isinstance(want, property):
            continue
        want = inspect.signature(getattr(want, "__func__", want))
        want = want.replace(parameters=list(want.parameters.values())[1:])
        assert _compatible(want, inspect.signature(getattr(kind, m))) is None, m


# -- drafts ---------------------------------------------------------------------------------
def test_batches_are_a_function_of_the_step_and_the_same_on_two_processes(rev_data):
    kind, cfg = _kind(rev_data)
    split = load_datadir(rev_data).split("train")
    one = kind.train_batches(split, cfg.train, 3, 0, 1, None)
    x, y, label = one(5)
    assert x.shape == (4, 4096, 3) and y.shape == (4, 4096) and label is None
    assert torch.equal(x[..., 1], y) and not torch.equal(x[..., 0], y)
    assert bool((x[..., 2] == 1).all())  # no base run: every row is paired with its source
    assert torch.equal(one(5)[0], x) and not torch.equal(one(6)[0], x)
    second = kind.train_batches(split, cfg.train, 3, 1, 2, None)(5)[0]
    assert torch.equal(second, x[2:])


def _clip(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(_tune(np.random.default_rng(seed), 1, 330.0)).float()


def test_clean_rows_keep_the_real_audio_and_each_corruption_changes_it():
    x = _clip()
    assert torch.equal(make_draft(x, np.random.default_rng(0), list(DRAFTS), 1.0, SR), x)
    for name in DRAFTS:
        d = make_draft(x, np.random.default_rng(1), [name], 0.0, SR)
        assert d.shape == x.shape and torch.isfinite(d).all() and d.abs().max() <= 1
        assert float(stft_distance(d[None], x[None], [256, 512])) > 0.05, name


def test_drafts_look_like_generated_audio():
    """What the corruptions are for, measured: noise and mu-law sampling noise flatten the
    spectrum (as a young WaveNet's hiss does); blur darkens it (as an MSE frame model does)."""
    x = _clip(1)
    real = x.numpy()

    def draft(name, seed=2):
        return make_draft(x, np.random.default_rng(seed), [name], 0.0, SR).numpy()

    for name in ("noise", "mulaw"):
        assert spectral_flatness(draft(name), SR) > 3 * spectral_flatness(real, SR), name
    assert spectral_centroid(draft("blur"), SR) < spectral_centroid(real, SR)


# -- the loop -------------------------------------------------------------------------------
def test_revision_runs_resume_exactly(rev_data, tmp_path):
    assert_resumes_exactly("revision", rev_data, tmp_path, 4, 4, 2, TINY)


def test_revision_runs_with_a_base_resume_exactly(rev_data, base_run, tmp_path):
    """The base's drafts are generated again on resume: the same, so the same batches."""
    extra = (*TINY, *OWN, f"revision.base={base_run}")
    assert_resumes_exactly("revision", rev_data, tmp_path, 4, 4, 2, extra)


def test_the_valid_loss_beats_the_drafts(rev_run):
    valid = [r for r in records(rev_run) if "valid_loss" in r]
    assert valid[-1]["valid_loss"] < 0.8 * valid[-1]["draft_loss"]


def test_a_run_with_a_base_records_it_and_validates_on_its_held_out_drafts(own_run, base_run):
    import yaml

    from tunelab.run.checkpoint import load_run

    cfg = yaml.safe_load((own_run / "config.yaml").read_text())
    assert cfg["revision"]["base"] == str(base_run) and cfg["model"]["family"] == "revision"
    run = load_run(own_run)
    assert run.meta["revision"]["base"] == str(base_run.resolve())
    valid = [r for r in records(own_run) if "valid_loss" in r]
    assert len(valid) == 2 and all(np.isfinite(r["valid_loss"]) for r in valid)
    assert valid[-1]["valid_loss"] < valid[-1]["draft_loss"]


def test_real_audio_comes_back_nearly_unchanged(rev_run, rev_data):
    from tunelab.data.audio.encode import from_int16
    from tunelab.revise import load_reviser

    r = load_reviser(rev_run)
    a, b = (from_int16(np.asarray(p)) for p in load_datadir(rev_data).split("test"))
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]

    def dist(u, v) -> float:
        return float(stft_distance(torch.from_numpy(u)[None], torch.from_numpy(v)[None], [512]))

    assert dist(r.revise(a, SR), a) < 0.25 * dist(a, b)


def test_a_planted_noisy_draft_comes_out_closer_to_the_real_audio(rev_run, rev_data):
    from tunelab.data.audio.encode import from_int16
    from tunelab.revise import load_reviser

    r = load_reviser(rev_run)
    real = from_int16(np.asarray(load_datadir(rev_data).split("test").piece(0)))
    noisy = real + 0.02 * np.random.default_rng(5).standard_normal(len(real)).astype(np.float32)

    def dist(u) -> float:
        return float(stft_distance(torch.from_numpy(u)[None], torch.from_numpy(real)[None], [512]))

    assert dist(r.revise(noisy, SR)) < 0.8 * dist(noisy)


def test_a_base_run_s_own_drafts_fill_their_share_of_the_rows(rev_data, base_run, tmp_path):
    """With revision.base every other row is a window of the base's own generated clips (not
    the last, held out for validation), at the data's loudness, marked unpaired, drawn with
    another seed than generate's default; the rest are corruptions of their real windows.
    The same rows on two processes."""
    cfg = _cfg(rev_data, "unused", *OWN)
    kind = kind_for(cfg.model, load_datadir(rev_data).meta)
    kind.use_base(str(base_run))
    assert kind.meta["revision"]["base"] == str(base_run.resolve())
    pool = kind.own_drafts(progress=False)
    assert len(pool) == 2 and all(len(c) == 8 * SR for c in pool)
    target = 10 ** (kind.meta["loudness_target_db"] / 20)
    assert all(np.sqrt(np.mean(c.astype(np.float64) ** 2)) == pytest.approx(target, rel=0.05)
               for c in pool)  # fmt: skip
    # Not the clips `tunelab generate` makes with its default seed: those it revises unseen.
    import soundfile as sf

    from tunelab.generate import generate

    [f] = generate(base_run, n=1, seconds=1, seed=0, out=tmp_path, audit=False, progress=False)
    first = sf.read(str(f), dtype="float32")[0]
    assert abs(np.corrcoef(first, pool[0][: len(first)])[0, 1]) < 0.5
    split, t = load_datadir(rev_data).split("train"), cfg.train
    x, y, _ = kind.train_batches(split, t, 0, 0, 1, None)(3)
    assert x.shape == (4, 4096, 3) and x[:, 0, 2].tolist() == [1.0, 0.0, 1.0, 0.0]
    train_clip = pool[0]
    for row in (1, 3):
        w = x[row, :, 0].numpy()
        hits = [a for a in range(len(train_clip) - 4095) if train_clip[a] == w[0]]
        assert any(np.array_equal(train_clip[a : a + 4096], w) for a in hits)
        assert torch.equal(x[row, :, 1], y[row])  # an unrelated real window beside it
    halves = [kind.train_batches(split, t, 0, r, 2, None)(3)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), x)
    valid = kind.valid_batches(load_datadir(rev_data).split("valid"), t, None)
    assert (valid[0][0][:, 0, 2] == 0).any() and kind.draft_loss > 0
    # The loss scores the paired rows only; the held-out own drafts' gap is a figure beside it.
    x, y, _ = valid[0]
    total, count = kind.loss(x[..., 0], y, x)
    assert int(count) == int((x[:, 0, 2] > 0.5).sum()) < len(x)
    figures = kind.valid_figures(float(total / count))
    assert figures["own_gap"] > 0 and "own_gap" not in kind.valid_figures(0.0)


def test_a_missing_base_run_is_named(rev_data, tmp_path):
    from tunelab.train import train

    with pytest.raises(Exception, match="no/such/run"):
        train(_cfg(rev_data, tmp_path / "r", "train.max_steps=1", "revision.base=no/such/run"))


def test_revision_base_is_refused_for_other_families(rev_data, tmp_path):
    from tunelab.config import ConfigError
    from tunelab.train import train

    cfg = load(
        RunConfig, "wavenet-tiny", [f"data={rev_data}", f"out={tmp_path}", "revision.base=x"]
    )
    with pytest.raises(ConfigError, match="model.family=revision"):
        train(cfg)


def test_a_revision_run_refuses_to_generate_or_score(rev_run, tmp_path):
    from tunelab.generate import generate

    with pytest.raises(ValueError, match="revise"):
        generate(rev_run, out=tmp_path, progress=False)
