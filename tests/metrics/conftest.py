"""The metrics tests' shared training corpus (the copy and the pitch-range tests read it)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers_generate import random_piece
from tests.helpers_midi import SPQ, roll
from tunelab.metrics import copying as C


@pytest.fixture(scope="module")
def corpus():
    """20 random pieces of 64 steps, and their training index."""
    rng = np.random.default_rng(0)
    pieces = [random_piece(rng, 64) for _ in range(20)]
    index = C.TrainingIndex(roll(np.concatenate(pieces)), SPQ)
    return pieces, index
