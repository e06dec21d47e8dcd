"""Tempo estimation on synthetic drum loops, octave folding, and stretching to a target tempo."""

import numpy as np
import pytest

from tests.helpers_audio import drum_loop
from tunelab.data.audio.tempo import estimate_tempo, fold_to, stretch_to_tempo

SR = 16000

TEMPI = [70, 86, 103, 121, 139, 157, 180]


def _close(est: float, true: float) -> str | None:
    """'same', 'double' or 'half' when within 2% of that multiple, else None."""
    for name, k in (("same", 1), ("double", 2), ("half", 0.5)):
        if abs(est / (true * k) - 1) <= 0.02:
            return name
    return None


@pytest.mark.parametrize("bpm", TEMPI)
def test_tempo_estimate_and_stretch(bpm):
    x = drum_loop(bpm, seconds=8, seed=bpm)
    est = estimate_tempo(x, SR)
    assert est is not None and _close(est.bpm, bpm), (bpm, est)
    target = 120.0
    y, rate = stretch_to_tempo(x, SR, est.bpm, target)
    assert abs(len(y) - len(x) / rate) < 0.01 * len(x)
    est2 = estimate_tempo(y, SR)
    assert est2 is not None and _close(est2.bpm, target), (bpm, est2)


def test_tempo_fold_and_silence():
    assert fold_to(70, 140) == 140 and fold_to(250, 120) == 125 and fold_to(100, 120) == 100
    assert estimate_tempo(np.zeros(SR * 4, np.float32), SR) is None
    assert estimate_tempo(np.zeros(100, np.float32), SR) is None
