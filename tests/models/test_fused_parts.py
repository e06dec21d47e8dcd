"""One stream on several cores: matrices cut into parts with zero padding, and the barrier the
parts meet at, which lets no thread spin forever when its partner is gone."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
import torch

from tunelab.models import fused_parts
from tunelab.models.wavenet import WaveNet
from tunelab.models.wavenet_gen import FusedWaveNet


@numba.njit(nogil=True)
def _meet(sync, part, times, shared):
    """Meet ``times`` times; before each meeting add to this part's cell of shared, after it
    check that every part's cell holds the count (returns the meetings passed, -1 if
    abandoned, -2 if a partner's write was not visible after the barrier)."""
    e = 0
    for i in range(times):
        shared[part * 16] = i + 1
        e = fused_parts.barrier(sync, part, e)
        if e < 0:
            return -1
        for q in range(shared.shape[0] // 16):
            if shared[q * 16] < i + 1:
                return -2
        e = fused_parts.barrier(sync, part, e)  # nobody writes the next count before all read
        if e < 0:
            return -1
    return e // 2


def test_split_pads_with_zeros_and_stacks_the_parts_first():
    t = torch.arange(10.0).reshape(2, 5)
    s = fused_parts.split(t, 1, 2)
    assert s.shape == (2, 2, 3)
    assert torch.equal(s[0], t[:, :3]) and torch.equal(s[1, :, :2], t[:, 3:])
    assert torch.all(s[1, :, 2] == 0)
    assert fused_parts.split(t, 0, 3).shape == (3, 1, 5)


@pytest.mark.parametrize("parts", [2, 3])
def test_parts_meet_and_see_each_others_writes(parts):
    sync = fused_parts.new_sync(parts)
    shared = np.zeros(parts * 16, np.int64)
    with ThreadPoolExecutor(parts) as pool:
        got = list(pool.map(lambda p: _meet(sync, p, 500, shared), range(parts)))
    assert got == [500] * parts and not fused_parts.abandoned(sync)


def test_a_part_left_alone_abandons_the_call_after_its_patience():
    sync = fused_parts.new_sync(2, patience_s=0.2)
    t0 = time.perf_counter()
    assert _meet(sync, 0, 3, np.zeros(32, np.int64)) == -1  # part 1 never comes
    assert 0.15 < time.perf_counter() - t0 < 5
    assert fused_parts.abandoned(sync)


def test_the_generator_reports_an_abandoned_call_instead_of_hanging(monkeypatch):
    torch.manual_seed(0)
    m = WaveNet(7, 7, 5, 9, stacks=1, layers_per_stack=2).eval()
    gen = FusedWaveNet(m, 1, parts=2)
    short = fused_parts.new_sync
    monkeypatch.setattr("tunelab.models.wavenet_gen.new_sync", lambda p: short(p, patience_s=0.2))
    state = gen._state()
    u = np.random.default_rng(0).random((1, 5))
    out = np.zeros((1, 5), np.int64)
    # part 0 alone, as if part 1's thread had failed: it returns, it does not spin forever
    gen._kernel(0, 1, 0, np.array([[3]]), False, u, 1.0, out, 0, gen._packed, *state)
    with pytest.raises(RuntimeError, match="waited 60 s"):
        gen._check(state)
    # a whole call still works afterwards
    assert gen.run(np.array([3]), u, 1.0).shape == (1, 5)
