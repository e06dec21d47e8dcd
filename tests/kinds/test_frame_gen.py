"""Frame generation: the plan of a call (lengths, noise, the options it refuses), the training
clip a stream starts from, and streams that depend only on (seed, stream index)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tunelab.kinds import frame_gen as G
from tunelab.kinds import frame_ops as ops
from tunelab.kinds.frames import Kind, with_settings
from tunelab.kinds.sampling import Sampling

SR, SIZE, HOP = 8000, 64, 32


def _kind(labels=()):
    """The frames kind of time frames of SIZE every HOP samples, statistics of unit scale."""
    meta = {"kind": "audio", "sample_rate": SR, "label_names": list(labels)}
    cfg = {"frame_size": SIZE, "frame_hop": HOP, "frame_labels": bool(labels)}
    meta = with_settings(meta, cfg)
    meta["frames"]["stats"] = {"mean": [0.0] * SIZE, "std": [1.0] * SIZE, "frames": 1}
    return Kind(meta)


class Echo(torch.nn.Module):
    """Predicts 0.9 times the last frame it read: deterministic, batch-independent."""

    def init_state(self, n, device, label=None):
        return None

    def step(self, x, state):
        return 0.9 * x, state


def test_the_plan_counts_frames_and_sets_the_noise():
    p = G.plan(_kind(), seconds=0.5, steps=None, primer=None, label=None, sampling=None)
    assert p.samples == 4000 and ops.n_samples(p.frames, SIZE, HOP) >= 4000
    assert ops.n_samples(p.frames - 1, SIZE, HOP) < 4000
    assert p.noise == pytest.approx(G.FRAME_NOISE)  # temperature 1 by default
    assert p.primer_info["source"] == "silence" and p.labels == []
    cold = G.plan(_kind(), 0.001, None, None, None, Sampling(temperature=0.0), join="concat")
    assert cold.noise == 0.0 and cold.frames == 1 and cold.settings["join"] == "concat"
    labelled = G.plan(_kind(["organ", "piano"]), 0.1, None, None, "piano", Sampling(2.0))
    assert labelled.labels == [1] and labelled.noise == pytest.approx(2 * G.FRAME_NOISE)


@pytest.mark.parametrize(
    "kw,why",
    [
        ({"steps": 8}, "--steps counts MIDI grid steps"),
        ({"sampling": Sampling(top_k=5)}, "--top-k, --top-p and --argmax-prob do not apply"),
        ({"sampling": Sampling(top_p=0.9)}, "do not apply"),
        ({"join": "crossfade"}, "--join must be one of ola, concat"),
        ({"primer": "a.wav", "training_clip": "data"}, "either --primer or --from-training"),
        ({"label": "organ"}, "not conditioned on labels"),
    ],
)
def test_the_plan_refuses_options_that_do_not_apply(kw, why):
    args = {"seconds": 1.0, "steps": None, "primer": None, "label": None, "sampling": None}
    with pytest.raises(ValueError, match=why):
        G.plan(_kind(), **(args | kw))


def test_an_unknown_label_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known labels: organ, piano"):
        G.plan(_kind(["organ", "piano"]), 1.0, None, None, "harp", None)


def test_a_training_clip_is_drawn_by_the_seed_from_starts_that_fit():
    n = int(G.TRAINING_CLIP_S * SR)
    pieces = [np.full(n // 2, 100, np.int16), np.arange(3 * n, dtype=np.int16) % 3000]
    split = SimpleNamespace(
        pieces=[{"length": len(p), "source": f"p{i}.wav"} for i, p in enumerate(pieces)],
        piece=lambda i: pieces[i],
    )
    clips = [G.training_clip(_kind(), split, seed) for seed in range(8)]
    for clip, where in clips:
        assert where["piece"] == 1 and where["from"] == "p1.wav"  # the short one never fits
        at = round(where["offset_seconds"] * SR)
        assert len(clip) == n and 0 <= at <= 2 * n
        assert np.allclose(clip * 32768, pieces[1][at : at + n], atol=1e-3)
    again, _ = G.training_clip(_kind(), split, 3)
    assert np.array_equal(again, clips[3][0])
    assert len({w["offset_seconds"] for _, w in clips}) > 1


def test_a_stream_depends_only_on_the_seed_and_its_index():
    kind = _kind()
    plan = G.plan(kind, 0.05, None, None, None, None)
    three = G.sample(kind, Echo(), plan, 3, seed=4, device="cpu", progress=False, timing=None)
    one = G.sample(kind, Echo(), plan, 1, seed=4, device="cpu", progress=False, timing=None)
    assert len(three) == 3 and all(len(c.audio) == plan.samples for c in three)
    assert np.array_equal(three[0].audio, one[0].audio)
    assert three[0].frames.shape == (plan.frames, SIZE) and three[0].label is None
    assert not np.array_equal(three[0].audio, three[1].audio)
    other = G.sample(kind, Echo(), plan, 1, seed=5, device="cpu", progress=False, timing=None)
    assert not np.array_equal(other[0].audio, one[0].audio)
    cold = G.plan(kind, 0.05, None, None, None, Sampling(temperature=0.0))
    quiet = G.sample(kind, Echo(), cold, 1, seed=4, device="cpu", progress=False, timing=None)
    # no frame noise: the echo of the -60 dBFS start noise only fades
    assert np.abs(quiet[0].audio).max() < 10 * G.NOISE_RMS
    assert np.abs(one[0].audio).max() > np.abs(quiet[0].audio).max()


def test_time_frame_noise_takes_the_spectrum_of_the_training_frames():
    """Time-form statistics with ``fft_std``: each stream's frame noise is an FFT-form run's
    noise turned into time (the music's spectrum, here all in the lowest quarter of the bins),
    not white noise; without ``fft_std`` (runs trained before it) it is white, as before."""
    kind = _kind()
    white = G.frame_noise(kind, [np.random.default_rng(i) for i in range(200)])
    k = SIZE // 2 + 1
    low = np.where(np.arange(k) < k // 4, 2.0, 0.0)  # the data's energy: the low bins only
    kind.stats["fft_std"] = list(np.concatenate([low, low]))
    shaped = G.frame_noise(kind, [np.random.default_rng(i) for i in range(200)])
    assert white.shape == shaped.shape == (200, SIZE)
    power = [(np.abs(np.fft.rfft(z, axis=-1)) ** 2).mean(0) for z in (white, shaped)]
    assert power[0][k // 4 :].sum() > 0.5 * power[0].sum()  # white: most power up high
    assert power[1][k // 4 :].sum() < 1e-9 * power[1].sum()  # shaped: none up high
    # an FFT-form run's noise per feature, turned into time: the same numbers
    z = np.random.default_rng(0).standard_normal(2 * k) * np.asarray(kind.stats["fft_std"])
    t = ops.to_time(torch.from_numpy(z)[None], SIZE, "fft")[0].numpy()
    np.testing.assert_allclose(shaped[0], t, atol=1e-9)
