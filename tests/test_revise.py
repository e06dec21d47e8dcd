"""Revising audio of any length and rate: chunked == whole, lengths and rates kept, silence
passes through."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunelab.models.revision import RevisionConfig, RevisionGAN
from tunelab.revise import LoadedReviser

torch.set_num_threads(1)
SR = 16000


@pytest.fixture(scope="module")
def reviser() -> LoadedReviser:
    torch.manual_seed(0)
    m = RevisionGAN(
        RevisionConfig(n_fft=256, hop=64, conv_channels=16, conv_layers=3, disc_channels=4)
    )
    torch.nn.init.normal_(m.g.out.weight, std=0.2)  # a reviser that changes its input
    m.eval().requires_grad_(False)
    return LoadedReviser(m, SR, -20.0, None, 0, torch.device("cpu"), None)


def _audio(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    return (0.1 * np.sin(2 * np.pi * 330 * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def test_chunked_revision_equals_revising_the_whole_file(reviser):
    x = _audio(3 * SR + 123)
    whole = reviser.revise(x, SR, chunk_seconds=100)
    chunked = reviser.revise(x, SR, chunk_seconds=0.3)  # ten chunks, odd tail
    assert whole.shape == x.shape and not np.allclose(whole, x, atol=1e-3)
    np.testing.assert_allclose(chunked, whole, atol=1e-5, rtol=0)


def test_any_rate_and_length_come_back_as_they_were(reviser):
    for n in (1, 100, 22050):
        y = reviser.revise(_audio(n), 22050)
        assert y.shape == (n,) and y.dtype == np.float32 and np.isfinite(y).all()
    assert reviser.revise(np.zeros(0, np.float32), SR).shape == (0,)


def test_silence_stays_silent_and_level_is_kept(reviser):
    assert not reviser.revise(np.zeros(SR, np.float32), SR).any()
    x = _audio(SR)
    quiet, loud = reviser.revise(0.1 * x, SR), reviser.revise(x, SR)
    np.testing.assert_allclose(quiet * 10, loud, atol=1e-5)  # revised at the data's level
