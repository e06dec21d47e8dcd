"""Audio features: chroma of chords, the centroid over loud frames only, a sine's centroid,
chroma and loudness, silence, per-second rows that follow the audio, and the Fréchet
distance's closed forms and known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunelab.metrics import audio_features as A

SR = 16000


def tone(*freqs, seconds=1.0, amp=0.3):
    t = np.arange(int(seconds * SR)) / SR
    return sum(amp * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def test_chroma_of_a_c_major_chord_is_c_e_g():
    c = A.chroma(tone(261.63, 329.63, 392.0), SR)
    assert sum(c) == pytest.approx(1.0, abs=1e-4)
    assert sorted(np.argsort(c)[-3:].tolist()) == [0, 4, 7]


def test_centroid_counts_loud_frames_only_and_follows_brightness():
    low, high = tone(300.0), tone(2400.0)
    assert A.spectral_centroid(low, SR) < A.spectral_centroid(high, SR)
    padded = np.concatenate([np.zeros(2 * SR, np.float32), low, np.zeros(2 * SR, np.float32)])
    assert A.spectral_centroid(padded, SR) == pytest.approx(A.spectral_centroid(low, SR), rel=0.05)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 2 * SR).astype(np.float32)
    assert A.spectral_centroid(noise, SR) == pytest.approx(SR / 4, rel=0.1)  # flat spectrum


def test_each_row_of_second_features_describes_its_own_second():
    clip = np.concatenate([tone(440.0), tone(261.63), tone(440.0)])  # A, C, A
    rows = A.second_features(clip, SR)
    chroma = rows[:, 2 * A.N_MFCC :]  # the 12 chroma means end each row
    assert np.argmax(chroma, axis=1).tolist() == [9, 0, 9]
    assert np.allclose(rows[0], rows[2], atol=0.05 * np.abs(rows[0]).max())
    assert A.set_frechet([clip[: SR // 2]], [clip], SR) is None  # no whole second


def test_frechet_in_one_dimension_is_the_closed_form():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((20000, 1))
    b = 3.0 + 0.5 * rng.standard_normal((20000, 1))
    ma, mb, sa, sb = a.mean(), b.mean(), a.std(ddof=1), b.std(ddof=1)
    want = (ma - mb) ** 2 + (sa - sb) ** 2  # d^2 of two 1-D Gaussians
    assert A.frechet_distance(a, b) == pytest.approx(want, rel=1e-6)
    assert A.frechet_distance(b, a) == pytest.approx(A.frechet_distance(a, b), rel=1e-9)


# -- whole-clip features, Fréchet distance, per-second rows (moved from test_music.py) --
LOW_SR = 8000  # the rate these tests were written at


def sine(freq, seconds=2.0, amp=0.5):
    t = np.arange(int(seconds * LOW_SR)) / LOW_SR
    return amp * np.sin(2 * np.pi * freq * t)


def test_sine_centroid_chroma_and_silence():
    a = sine(440.0)
    f = A.audio_features(a, LOW_SR)
    assert f["spectral_centroid_hz"] == pytest.approx(440, rel=0.05)
    assert int(np.argmax(f["chroma"])) == 9  # A
    assert f["silence_fraction"] == 0.0 and f["spectral_flatness"] < 0.05
    assert f["rms_mean_db"] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.1)
    quiet = A.audio_features(np.zeros(LOW_SR), LOW_SR)
    assert quiet["silence_fraction"] == 1.0 and quiet["spectral_centroid_hz"] == 0.0
    assert quiet["chroma"] == [0.0] * 12


def test_frechet_distance_known_values():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    assert A.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([1.0, 2.0, 0.0])
    # same covariance, means apart by d: d^2 = ||d||^2 = 5
    assert A.frechet_distance(a, a + shift) == pytest.approx(5.0, abs=1e-6)
    # N(0, I) vs N(0, 4I) in 3 dims: tr(I + 4I - 2 * 2I) = 3
    b = rng.standard_normal((4000, 3)) * 2
    assert A.frechet_distance(a, b) == pytest.approx(3.0, rel=0.1)
    assert A.frechet_distance(a[:1], b) is None


def test_second_features_and_set_frechet():
    clip = sine(440.0, 3.0)
    assert A.second_features(clip, LOW_SR).shape == (3, A.FEATURES_PER_SECOND)
    assert A.second_features(clip[: LOW_SR // 2], LOW_SR).shape == (0, A.FEATURES_PER_SECOND)
    rng = np.random.default_rng(1)
    ref = [sine(f, 3.0) for f in (262, 330, 392, 440)]
    like = [sine(f, 3.0) for f in (294, 349)]
    noise = [0.3 * rng.standard_normal(3 * LOW_SR) for _ in range(2)]
    assert A.set_frechet(like, ref, LOW_SR) < A.set_frechet(noise, ref, LOW_SR)


def test_standardised_distance_weighs_every_feature_by_its_spread():
    """In raw units a feature spread over hundreds (MFCC 0) outweighs one in 0..1 (chroma):
    a set one spread off in the first and alike in the second, against a set far off in the
    second only, ranks the wrong way raw and the right way standardised."""
    rng = np.random.default_rng(0)
    units = np.array([100.0] * 13 + [10.0] * 13 + [0.1] * 12)  # MFCC means, deviations, chroma
    ref = rng.standard_normal((4000, A.FEATURES_PER_SECOND)) * units
    near, far = ref[:2000].copy(), ref[2000:].copy()
    near[:, 0] += 100.0  # one spread off in MFCC 0
    far[:, 30] += 1.0  # ten spreads off in one chroma bin
    assert A.frechet_distance(near, ref) > A.frechet_distance(far, ref)
    z = lambda r: A.standardised(r, ref)  # noqa: E731
    assert A.frechet_distance(z(near), z(ref)) == pytest.approx(1.0, abs=0.3)
    assert A.frechet_distance(z(far), z(ref)) == pytest.approx(100.0, rel=0.1)
    assert np.array_equal(A.standardised(ref, ref[:1]), ref)  # one row: no spread to use
