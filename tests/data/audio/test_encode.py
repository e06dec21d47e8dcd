"""Sample encodings: int16, mu-law (numpy and torch) and audio frames (time and FFT forms)."""

import numpy as np
import pytest

from tunelab.data.audio import encode as E


def test_int16_round_trip():
    x = np.linspace(-1, 1, 1001, dtype=np.float32)
    assert np.abs(E.from_int16(E.to_int16(x)) - x).max() < 1e-4


def test_mu_law_round_trip_numpy_and_torch():
    import torch

    x = np.linspace(-1, 1, 20001)
    q = E.mu_law_encode(x)
    assert q.dtype == np.int64 and q.min() == 0 and q.max() == 255
    assert np.all(np.diff(q) >= 0)  # monotone
    y = E.mu_law_decode(q)
    # companded quantisation: small error near zero, larger for loud samples
    err = np.abs(y - x)
    assert err[np.abs(x) < 0.01].max() < 0.0005 and err.max() < 0.035
    assert np.array_equal(E.mu_law_decode(np.arange(256))[[0, 255]], [-1.0, 1.0])
    qt = E.mu_law_encode(torch.from_numpy(x.astype(np.float32)))
    assert qt.dtype == torch.int64 and np.array_equal(qt.numpy(), E.mu_law_encode(x))
    assert np.allclose(E.mu_law_decode(qt).numpy(), E.mu_law_decode(q), atol=1e-6)


@pytest.mark.parametrize("form", ["time", "fft"])
@pytest.mark.parametrize("hop", [None, 256])
def test_frames_inverse_is_exact(form, hop):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, 5000).astype(np.float32)
    fr = E.frames(x, 1024, hop, form)
    assert fr.shape[1] == E.frame_dim(1024, form)
    assert fr.shape[0] == E.n_frames(len(x), 1024, hop or 1024)
    y = E.frames_inverse(fr, 1024, hop, form, length=len(x))
    assert np.abs(y - x).max() < 1e-5
    if form == "time" and hop is None:
        assert np.array_equal(fr[1], x[1024:2048])
