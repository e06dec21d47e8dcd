"""Pitch content: harmonic peak salience separates tones, chords and melodies from noise,
clicks and bursts; the unpitched flag is raised against pitched data only, and says when it
could not be judged."""

from __future__ import annotations

import numpy as np
import pytest

from tests.metrics.test_audio import FRESH, POOLS, SR, melody, mu_law
from tunelab.metrics import audio as A
from tunelab.metrics import pitch as P


@pytest.fixture(scope="module")
def train():
    rng = np.random.default_rng(0)
    pieces = [mu_law(melody(rng, pool, 20) + rng.normal(0, 0.003, 20 * SR)) for pool in POOLS]
    return pieces, A.TrainingAudio(pieces, SR)


def _texture(kind: str, seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """Unpitched audio at -20 dBFS: white or pink noise, sparse clicks, or noise bursts with
    a decaying envelope (four a second)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        X = np.fft.rfft(rng.standard_normal(n))
        X[1:] /= np.sqrt(np.arange(1, len(X)))
        x = np.fft.irfft(X, n)
    elif kind == "clicks":
        x = np.zeros(n)
        x[rng.integers(0, n, int(10 * seconds))] = rng.uniform(-1, 1, int(10 * seconds))
    else:  # bursts
        x = rng.standard_normal(n) * np.exp(-((np.arange(n) / SR * 4) % 1) * 12)
    return 0.1 * x / np.sqrt(np.mean(x**2))


def _tones(seconds: float = 4.0) -> dict[str, np.ndarray]:
    t = np.arange(int(seconds * SR)) / SR

    def tone(f0):
        return sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 9))

    return {
        "harmonic tone": 0.1 * tone(220.0),
        "chord": 0.05 * (tone(261.6) + tone(329.6) + tone(392.0)),
        "vibrato": 0.1 * np.sin(2 * np.pi * 440 * t + 3 * np.sin(2 * np.pi * 5 * t)),
        "melody": melody(np.random.default_rng(5), FRESH, seconds),
    }


def test_pitch_salience_separates_tones_and_chords_from_noise_and_clicks():
    for name, x in _tones().items():
        assert P.pitch_salience(x, SR) > 0.6, name
    for kind in ("white", "pink", "clicks", "bursts"):
        assert P.pitch_salience(_texture(kind), SR) < 0.02, kind
    # a tone under noise 20 dB down is still mostly pitch; silence has no pitch to judge
    mixed = _tones()["chord"] + 0.1 * _texture("white")
    assert P.pitch_salience(mixed, SR) > 0.5
    assert P.pitch_salience(np.zeros(SR), SR) is None
    assert P.pitch_salience(np.zeros(100), SR) is None


def test_unpitched_is_flagged_against_pitched_data_only(train):
    _, pitched = train
    drums = A.TrainingAudio([_texture("bursts", 20.0, seed=s) for s in range(3)], SR)
    assert pitched.pitch_salience >= 2 * P.PITCHED_DATA
    assert drums.pitch_salience < P.PITCHED_DATA
    clips = [_texture("pink"), _texture("clicks", seed=1), _tones()["melody"]]
    noise, clicks, tune = A.audit_audio(clips, SR, pitched)
    assert "unpitched" in noise["flags"] and "unpitched" in clicks["flags"]
    assert "unpitched" not in tune["flags"]
    assert noise["data_pitch_salience"] == pitched.pitch_salience and noise["pitch_audited"]
    assert noise["pitch_salience"] < P.UNPITCHED_RATIO * noise["data_pitch_salience"]
    # drum-like data: noise is what the data sounds like, not a failure
    for a in A.audit_audio(clips, SR, drums):
        assert "unpitched" not in a["flags"] and a["data_pitch_salience"] < P.PITCHED_DATA
    # no reference: recorded as not audited, never as a clean pass
    (a,) = A.audit_audio([_texture("pink")], SR, None)
    assert a["pitch_audited"] is False and a["data_pitch_salience"] is None
    assert "unpitched" not in a["flags"] and a["pitch_salience"] < 0.02
    # a silent clip is silent, not unpitched
    assert A.audit_audio([np.zeros(2 * SR)], SR, pitched)[0]["flags"] == ["silent"]
    assert {"PITCHED_DATA", "UNPITCHED_RATIO"} <= set(A.thresholds())


def test_the_datas_pitch_salience_is_the_median_of_spread_excerpts():
    tone = _tones(8.0)["harmonic tone"]
    noise = _texture("white", 8.0)
    # two of three pieces pitched: the median excerpt is pitched; silence is left out
    assert P.data_pitch_salience([tone, noise, tone, np.zeros(8 * SR)], SR) > 0.9
    assert P.data_pitch_salience([noise, noise, tone], SR) < 0.02
    assert P.data_pitch_salience([np.zeros(SR)], SR) is None
    assert P.data_pitch_salience([], SR) is None


def test_pitch_judges_the_frames_the_audits_call_loud():
    from tunelab.metrics.audio import SILENCE_DB

    assert P.SILENCE_DB == SILENCE_DB
