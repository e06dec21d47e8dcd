"""The set figures against real recordings: the reference cut evenly over the pieces, the
Fréchet distances to the test and training audio, and the per-second quartiles."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.kinds import audio_quality as Q

SR = 16000


def _tune(seed: int, seconds: float, base: float) -> np.ndarray:
    """Decaying harmonic notes of a quarter second from a major triad on ``base`` Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR // 4) / SR
    notes = []
    for _ in range(int(seconds * 4)):
        f = base * 2 ** (rng.choice([0, 4, 7]) / 12)
        notes.append(sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 6)))
    return 0.1 * np.exp(-4 * np.tile(t, int(seconds * 4))) * np.concatenate(notes)


def test_spread_takes_an_equal_share_of_every_piece_in_whole_seconds():
    pieces = [np.full(10 * SR, i, np.float32) for i in range(3)] + [np.zeros(0)]
    got = Q.spread(pieces, 6, SR)
    assert [len(p) for p in got] == [2 * SR] * 3 and [p[0] for p in got] == [0, 1, 2]
    short = [np.ones(SR // 2), np.ones(10 * SR)]  # its unused share goes to the next
    assert [len(p) for p in Q.spread(short, 6, SR)] == [SR // 2, 5 * SR]  # whole seconds
    assert sum(len(p) for p in Q.spread(pieces, 100, SR)) == 30 * SR
    assert Q.spread([], 5, SR) == []


def test_the_set_figures_place_clips_between_the_test_and_training_audio():
    rng = np.random.default_rng(0)
    train = [_tune(s, 6.0, 220.0) for s in range(4)]
    test = [_tune(10 + s, 6.0, 220.0) for s in range(2)]
    alike = [_tune(20 + s, 3.0, 220.0) for s in range(3)]
    noise = [0.1 * rng.standard_normal(3 * SR) for _ in range(3)]
    a = Q.set_figures(alike, SR, train=train, test=test)
    n = Q.set_figures(noise, SR, train=train, test=test)
    assert a["frechet_to_test"] < n["frechet_to_test"] / 10
    assert a["frechet_to_train"] < n["frechet_to_train"] / 10
    assert a["frechet_distance"] == a["frechet_to_train"]
    assert a["frechet_test_to_train"] == n["frechet_test_to_train"] < n["frechet_to_test"] / 10
    assert a["seconds"] == {"samples": 9.0, "test": 12.0, "train": 24.0}
    for k in ("flatness", "loudness_dbfs", "pitch_salience"):
        q = n[f"{k}_quartiles"]
        assert set(q) == {"samples", "test", "train"} and q["samples"] == sorted(q["samples"])
    assert n["flatness_quartiles"]["samples"][0] > 0.5 > 0.05 > n["flatness_quartiles"]["test"][2]
    assert n["pitch_salience_quartiles"]["samples"][2] < 0.05
    assert a["pitch_salience_quartiles"]["samples"][0] > 0.5
    assert n["loudness_dbfs_quartiles"]["samples"][1] == pytest.approx(-20.0, abs=0.5)
    # without references: the clips' own distributions, and no distance
    alone = Q.set_figures(noise, SR)
    assert alone["frechet_to_test"] is None and alone["frechet_test_to_train"] is None
    assert alone["seconds"]["test"] is None and alone["flatness_quartiles"]["test"] is None
    assert alone["flatness_quartiles"]["samples"] == n["flatness_quartiles"]["samples"]


def test_silent_seconds_count_for_loudness_only():
    x = np.concatenate([np.zeros(2 * SR), _tune(0, 2.0, 330.0)])
    per = Q.per_second(x, SR)
    assert len(per["loudness_dbfs"]) == 4 and per["loudness_dbfs"][0] == -200.0
    assert len(per["flatness"]) == 2 and len(per["pitch_salience"]) == 2
    assert Q.quartiles(np.zeros(0)) is None


def test_clean_clips_lie_closer_to_the_recordings_than_to_their_mu_law_round_trip():
    """A mu-law run's references go through the round trip (quantisation is then no
    difference for clips it drew); ``recordings`` places clips against the audio as
    recorded, where clean audio (a revision, a recording) lies closer than to the round
    trip's noise floor."""
    from tunelab.data.audio.encode import mu_law_decode, mu_law_encode

    def trip(xs):
        return [mu_law_decode(mu_law_encode(x, 256), 256) for x in xs]

    train = [0.05 * _tune(s, 6.0, 220.0) for s in range(4)]
    test = [0.05 * _tune(10 + s, 6.0, 220.0) for s in range(2)]
    clean = [0.05 * _tune(20 + s, 3.0, 220.0) for s in range(3)]
    f = Q.set_figures(clean, SR, train=trip(train), test=trip(test), recordings=(test, train))
    assert f["frechet_to_test_recordings"] < f["frechet_to_test"] / 2
    drawn = Q.set_figures(
        trip(clean), SR, train=trip(train), test=trip(test), recordings=(test, train)
    )
    assert drawn["frechet_to_test"] < drawn["frechet_to_test_recordings"]
    assert set(f["seconds"]) == set(Q.SETS)  # recordings: a distance, not a set of its own
    assert "frechet_to_test_recordings" not in Q.set_figures(clean, SR, train=train, test=test)
    # the reading is the distance the recordings' own figures give
    assert f["frechet_to_test_recordings"] == pytest.approx(
        Q.set_figures(clean, SR, train=train, test=test)["frechet_to_test"]
    )
    assert Q.frechet_to(clean, SR, test, train) == f["frechet_to_test_recordings"]
