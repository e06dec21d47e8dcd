"""Audio audit metrics: planted copies (gain, noise, mu-law) are found with their source,
fresh melodies are not; silence, white noise and duplicated streams get their flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunelab.metrics import audio as A

SR = 16000
# disjoint MIDI pitch pools: one per training piece, and one for fresh audio
POOLS = [[60, 62, 64, 65, 67], [69, 71, 72, 74, 76], [48, 50, 52, 53, 55], [57, 59, 61, 63, 66]]
FRESH = [78, 80, 82, 83, 85, 44, 46]


def mu_law(x: np.ndarray) -> np.ndarray:
    """8-bit mu-law round trip: y = sign(x) ln(1 + 255|x|) / ln 256, 256 levels, and back."""
    x = np.clip(x, -1, 1)
    y = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log(256)
    y = np.round((y + 1) * 127.5) / 127.5 - 1
    return (np.sign(y) * (256 ** np.abs(y) - 1) / 255).astype(np.float32)


def melody(rng, pitches, seconds: float) -> np.ndarray:
    """Notes of 0.15-0.6 s from ``pitches``: 5 harmonics (1/k), random phases, fast attack
    and exponential decay."""
    out = np.zeros(int(seconds * SR))
    t0 = 0
    while t0 < len(out):
        d = int(rng.uniform(0.15, 0.6) * SR)
        f = 440 * 2 ** ((rng.choice(pitches) - 69) / 12)
        t = np.arange(d) / SR
        env = np.exp(-t * rng.uniform(2, 6)) * np.minimum(1, t / 0.005)
        tone = sum(
            np.sin(2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6)
        )
        seg = out[t0 : t0 + d]
        seg += (0.3 * env * tone)[: len(seg)]
        t0 += d
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def train():
    rng = np.random.default_rng(0)
    pieces = [mu_law(melody(rng, pool, 20) + rng.normal(0, 0.003, 20 * SR)) for pool in POOLS]
    return pieces, A.TrainingAudio(pieces, SR)


@pytest.fixture(scope="module")
def fresh():
    rng = np.random.default_rng(1)
    return [melody(rng, FRESH, 10) for _ in range(2)]


def flags(audits) -> list[list[str]]:
    return [a["flags"] for a in audits]


def test_rms_envelope_formula():
    x = np.concatenate([np.full(800, 0.5), np.zeros(800), np.full(100, 0.1)])
    env = A.rms_envelope(x, SR)
    assert env.shape == (2,)  # trailing partial frame dropped
    np.testing.assert_allclose(env, [20 * np.log10(0.5), -200.0])
    assert A.rms_envelope(np.full(10, 0.1), SR) == pytest.approx([-20.0])


def test_fresh_melody_passes(train, fresh):
    _, index = train
    (a,) = A.audit_audio([fresh[0]], SR, index)
    assert a["flags"] == []
    assert a["max_xcorr"] < A.COPY_NCC and a["copied_seconds"] == 0.0
    assert a["copy_windows"] == 19
    assert "max_similarity" not in a
    json.dumps(a)  # plain Python values


@pytest.mark.parametrize("gain,noise_db,quantise", [(1.0, None, False), (0.7, -30, True)])
def test_planted_copy_is_found(train, fresh, gain, noise_db, quantise):
    pieces, index = train
    rng = np.random.default_rng(2)
    src, off, at = 2, 7.3, 4.2
    x = fresh[0].astype(np.float64)
    x[int(at * SR) : int((at + 3) * SR)] = gain * pieces[src][int(off * SR) : int((off + 3) * SR)]
    if noise_db is not None:
        x += rng.normal(0, 10 ** (noise_db / 20) * x.std(), len(x))
    if quantise:
        x = mu_law(x)
    (a,) = A.audit_audio([x], SR, index)
    assert a["flags"] == ["copied"]
    assert a["max_xcorr"] > 0.98
    assert 2.0 <= a["copied_seconds"] <= 3.0
    s = a["copy_source"]
    assert s["piece"] == src
    # the best window starts at at_seconds in x and offset_seconds in the piece
    assert s["offset_seconds"] - (s["at_seconds"] - at) == pytest.approx(off, abs=0.05)
    assert at <= s["at_seconds"] <= at + 2


def test_silence(train):
    _, index = train
    rng = np.random.default_rng(3)
    zeros = np.zeros(10 * SR, np.float32)
    fade = melody(rng, FRESH, 10)
    fade[int(0.9 * SR) : SR] *= np.linspace(1, 0, SR // 10)
    fade[SR:] = 0
    a, b = A.audit_audio([zeros, fade], SR, index)
    assert a["silence_fraction"] == 1.0 and a["silent_from_seconds"] == 0.0
    assert a["copy_windows"] == 0 and a["max_xcorr"] == 0.0  # silent windows are skipped
    assert b["silent_from_seconds"] == pytest.approx(1.0, abs=0.1)
    assert b["silence_fraction"] == pytest.approx(0.9, abs=0.02)
    assert "silent" in a["flags"] and "silent" in b["flags"]
    assert "copied" not in a["flags"] + b["flags"]
    # silent for good only from 7 s of 10: flagged, as its last second is silent; a pause
    # that ends before the last second is not
    late = melody(rng, FRESH, 10)
    late[7 * SR :] = 0
    assert A.silence(late, SR)["silent_from_seconds"] == pytest.approx(7.0, abs=0.1)
    assert "silent" in A.audit_audio([late], SR)[0]["flags"]
    pause = melody(rng, FRESH, 10)
    pause[2 * SR : int(8.5 * SR)] = 0
    assert "silent" not in A.audit_audio([pause], SR)[0]["flags"]
    # a pause that does not last to the end
    assert A.silence(np.concatenate([zeros, fade[:SR]]), SR)["silent_from_seconds"] is None


def test_white_noise_is_noise_not_copy(train):
    _, index = train
    noise = np.clip(np.random.default_rng(4).normal(0, 0.2, 10 * SR), -1, 1)
    (a,) = A.audit_audio([mu_law(noise)], SR, index)
    assert a["flags"] == ["noise", "unpitched"]  # the training melodies are pitched
    assert a["spectral_flatness"] > 0.5 and a["max_xcorr"] < 0.2


def test_tonal_audio_is_not_noise(train, fresh):
    t = np.arange(4 * SR) / SR
    chord = sum(
        np.sin(2 * np.pi * k * 440 * 2 ** (s / 12) * t) / k**1.5
        for k in range(1, 8)
        for s in (0, 4, 7)
    )
    piano = sum(np.sin(2 * np.pi * k * 220 * t) * np.exp(-t * k) / k for k in range(1, 10))
    for x in (0.05 * chord, 0.5 * piano, fresh[0], train[0][0]):
        assert A.spectral_flatness(x, SR) < 0.05
    assert A.spectral_flatness(np.zeros(SR), SR) == 0.0


def test_identical_streams(fresh):
    a, b = fresh
    noisy = a + np.random.default_rng(5).normal(0, 10 ** (-30 / 20) * a.std(), len(a))
    audits = A.audit_audio([a, b, a.copy(), noisy], SR, None, primer_from_training=True)
    assert flags(audits) == [
        ["identical", "training_primer"],
        ["training_primer"],
        ["identical", "training_primer"],
        ["identical", "training_primer"],
    ]
    assert audits[0]["most_similar"] == 2 and audits[0]["max_similarity"] == pytest.approx(1.0)
    assert audits[1]["max_similarity"] < 0.5
    assert "max_xcorr" not in audits[0]
    sim = A.sameness([a, b, np.zeros(SR), np.zeros(2 * SR)], SR)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert sim[0, 1] < 0.5 and sim[0, 2] == 0.0 and sim[2, 3] == 1.0
    assert flags(A.audit_audio([a, b], SR)) == [[], []]


def test_short_inputs(train):
    _, index = train
    short = A.TrainingAudio([np.zeros(100, np.float32), train[0][1][: 3 * SR]], SR)
    a = short.copy_audit(train[0][1][SR : int(1.5 * SR)])  # shorter than one window
    assert a["copy_windows"] == 1 and a["max_xcorr"] > 0.99
    assert a["copy_source"]["piece"] == 1
    assert a["copy_source"]["offset_seconds"] == pytest.approx(1.0, abs=1e-3)
    assert index.copy_audit(np.zeros(0))["max_xcorr"] == 0.0
    assert A.audit_audio([np.zeros(0)], SR, index)[0]["flags"] == ["silent"]


def test_thresholds():
    th = A.thresholds()
    assert th["COPY_NCC"] == A.COPY_NCC and th["SILENCE_DB"] == -50.0
    assert {"NOISE_FLATNESS", "TAIL_S", "COPY_MIN_SECONDS", "IDENTICAL_SIMILARITY"} <= set(th)
    json.dumps(th)
