"""Frame operations: cutting shapes and forms, the joins' layout, exact overlap-add of the true
frames, the FFT round trip, the multi-resolution STFT loss, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunelab.kinds import frame_ops as ops


def test_cut_gives_the_whole_frames_in_either_form():
    x = torch.randn(2, 3, 1000)
    for size, hop in ((128, 64), (100, 100), (256, 37)):
        k = 1 + (1000 - size) // hop
        t = ops.cut(x, size, hop)
        assert t.shape == (2, 3, k, size)
        assert torch.equal(t[1, 2, 3], x[1, 2, 3 * hop : 3 * hop + size])
        f = ops.cut(x, size, hop, "fft")
        assert f.shape == (2, 3, k, 2 * (size // 2 + 1)) and f.dtype == x.dtype
        assert ops.n_samples(k, size, hop) <= 1000 < ops.n_samples(k + 1, size, hop)
    assert ops.n_samples(0, 128, 64) == 0
    with pytest.raises(ValueError, match="'time' or 'fft'"):
        ops.cut(x, 128, 64, "mel")


def test_concat_takes_each_frames_head_then_the_last_frame_whole():
    frames = torch.arange(3 * 8, dtype=torch.float32).reshape(1, 3, 8)  # frames 0..7, 8..15, ..
    y = ops.join(frames, 3, "concat")[0]
    assert y.tolist() == [0, 1, 2, 8, 9, 10] + list(range(16, 24))
    assert len(y) == ops.n_samples(3, 8, 3)
    with pytest.raises(ValueError, match="ola, concat"):
        ops.join(frames, 3, "sum")


def test_ola_of_frames_that_all_say_one_value_is_that_value():
    frames = torch.full((2, 5, 16), 0.25)
    for hop in (4, 8, 16):  # any overlap; at hop = S the Hann window's zero is the plain mean
        y = ops.join(frames, hop, "ola")
        assert y.shape == (2, ops.n_samples(5, 16, hop))
        torch.testing.assert_close(y, torch.full_like(y, 0.25))


def test_stft_loss_is_zero_for_the_same_audio_and_grows_with_the_difference():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4096, generator=g)
    noise = torch.randn(3, 4096, generator=g)
    sizes = [256, 1024, 8192]  # 8192 does not fit the window and is left out
    loss = ops.stft_loss(a, a, sizes)
    assert loss.shape == (3,) and torch.allclose(loss, torch.zeros(3), atol=1e-5)
    near = ops.stft_loss(a + 0.01 * noise, a, sizes)
    far = ops.stft_loss(a + 0.5 * noise, a, sizes)
    assert (near > 0).all() and (far > near).all()
    assert torch.allclose(ops.stft_loss(a + 0.5 * noise, a, [256, 1024, 8192]),
                          ops.stft_loss(a + 0.5 * noise, a, [256, 1024]))  # fmt: skip
    p = (a + 0.1 * noise).requires_grad_()
    ops.stft_loss(p, a, sizes).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no STFT size"):
        ops.stft_loss(a[:, :100], a[:, :100], [256])


@pytest.mark.parametrize("form", ["time", "fft"])
def test_overlap_add_of_the_true_frames_gives_the_signal_back(form):
    x = torch.randn(2, 7 * 64 + 128, dtype=torch.float64)
    f = ops.cut(x, 128, 64, form)
    assert f.shape == (2, 8, 128 if form == "time" else 130)
    torch.testing.assert_close(ops.join(ops.to_time(f, 128, form), 64, "ola"), x)
    # frames end to end at hop = size: the original join
    g = ops.to_time(ops.cut(x[:, :512], 128, 128, form), 128, form)
    torch.testing.assert_close(ops.join(g, 128, "concat"), x[:, :512])


def test_fft_frame_round_trip_is_exact_and_matches_numpy():
    from tunelab.data.audio.encode import frames

    x = np.random.default_rng(0).normal(size=4096)
    f = ops.cut(torch.from_numpy(x), 256, 128, "fft")
    np.testing.assert_allclose(f.numpy(), frames(x, 256, 128, "fft"), atol=1e-4)
    torch.testing.assert_close(ops.to_time(f, 256, "fft"), ops.cut(torch.from_numpy(x), 256, 128))


def test_ola_cross_fades_frames_that_disagree():
    frames = torch.stack([torch.ones(8), -torch.ones(8)])[None]  # two frames, hop 4
    y = ops.join(frames, 4, "ola")[0]
    assert y[0] == 1 and y[-1] == -1 and torch.all(y[4:8].diff() < 0)  # a smooth fade
