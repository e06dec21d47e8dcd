"""The revision GAN's parts: the reviser keeps an untrained draft, bounds its gains, sees both
ways in time; one backward gives each player only its own gradients; the discriminators train."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.models.revision import Reviser, RevisionConfig, RevisionGAN, stft_distance

torch.set_num_threads(1)


def _tones(b: int, n: int, seed: int = 0) -> torch.Tensor:
    """b rows of two random partials each, FloatTensor[b, n]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    f = 200 + 800 * torch.rand(b, 2, 1, generator=g)
    return 0.1 * torch.sin(2 * math.pi * f * t).sum(1)


def test_an_untrained_reviser_returns_its_draft():
    x = _tones(2, 4000)
    torch.testing.assert_close(Reviser(256, 64, 16, 2)(x), x, atol=1e-5, rtol=0)


def test_gains_stay_within_their_bounds():
    g = Reviser(256, 64, 16, 2, max_boost_db=6.0, max_cut_db=12.0)
    with torch.no_grad():
        g.out.bias.fill_(50.0)  # as loud as it can make it
    x = _tones(1, 8000)
    with torch.no_grad():
        ratio = float((g(x).square().mean() / x.square().mean()).sqrt())
    assert 20 * math.log10(ratio) == pytest.approx(6.0, abs=0.1)
    with torch.no_grad():
        g.out.bias.fill_(-50.0)
    with torch.no_grad():
        ratio = float((g(x).square().mean() / x.square().mean()).sqrt())
    assert 20 * math.log10(ratio) == pytest.approx(-12.0, abs=0.1)


def test_the_reviser_sees_the_future_too():
    """Non-causal: a change late in the draft changes the revision early on."""
    g = Reviser(256, 64, 16, 3)
    torch.nn.init.normal_(g.out.weight, std=0.1)
    x = _tones(1, 8000)
    y = x.clone()
    y[:, 2000:] *= 0.1
    early = slice(1000, 1500)  # (more than a window before the change)
    assert not torch.allclose(g(x)[:, early], g(y)[:, early], atol=1e-6)


def test_one_backward_gives_each_player_its_own_gradients():
    cfg = RevisionConfig(n_fft=256, hop=64, conv_channels=16, conv_layers=2, disc_channels=4)
    m = RevisionGAN(cfg)
    torch.nn.init.normal_(m.g.out.weight, std=0.05)
    real = _tones(2, 4096)
    draft = real + 0.01 * torch.randn(2, 4096, generator=torch.Generator().manual_seed(1))
    paired = torch.tensor([True, False])  # row 1: an own draft, matched as a set
    losses = m.losses(draft, real, paired)
    rec, stat = losses.rec.detach(), losses.stat.detach()
    assert float(rec[1]) == 0 and float(stat[1]) > 0 and float(stat[0]) == 0
    g_params, d_params = list(m.g.parameters()), list(m.d.parameters())
    total = torch.autograd.grad(losses.total.sum(), g_params + d_params, retain_graph=True)
    wa, wf, wr, ws = m.weights
    g_only = (wa * losses.adv + wf * losses.fm + wr * losses.rec + ws * losses.stat).sum()
    want_g = torch.autograd.grad(g_only, g_params, retain_graph=True)
    want_d = torch.autograd.grad(losses.d.sum(), d_params)
    for got, want in zip(total, [*want_g, *want_d], strict=True):
        torch.testing.assert_close(got, want)


def test_the_discriminators_learn_to_tell_real_audio_from_drafts():
    """Through the module's own one-backward loss: with the reviser's gains pinned at 0 dB (it
    returns the draft and cannot hide it), the discriminators' loss falls and their scores
    part real audio from drafts."""
    cfg = RevisionConfig(n_fft=256, hop=64, conv_channels=16, conv_layers=2, disc_channels=8)
    cfg.max_boost_db = cfg.max_cut_db = 0.0
    torch.manual_seed(0)
    m = RevisionGAN(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3, betas=(0.5, 0.9))
    real = _tones(4, 4096)
    draft = real + 0.03 * torch.randn(4, 4096, generator=torch.Generator().manual_seed(2))
    x = torch.stack([draft, real], -1)

    def margin() -> float:  # the full-rate discriminator: mean score of real minus draft
        with torch.no_grad():
            return float(m.d(real)[0][1].mean() - m.d(m.revise(draft))[0][1].mean())

    before, first = margin(), float(m(x).d.detach().mean())
    for _ in range(40):
        opt.zero_grad()
        m(x).total.mean().backward()
        opt.step()
    assert margin() > before + 0.3
    assert float(m(x).d.detach().mean()) < 0.5 * first


def test_own_drafts_learn_the_music_s_spectrum_without_a_target():
    """Unpaired rows (a base run's own drafts) have no real audio to be rewritten into: the
    spectral statistics of the revised set move to the real rows', from a quiet, dull draft."""
    cfg = RevisionConfig(n_fft=256, hop=64, conv_channels=16, conv_layers=2, disc_channels=4)
    cfg.adv_weight = cfg.fm_weight = 0.0  # the statistics term alone: it must pull
    torch.manual_seed(0)
    m = RevisionGAN(cfg)
    opt = torch.optim.Adam(m.g.parameters(), lr=3e-3)
    real = _tones(4, 4096)
    noise = torch.randn(4, 4096, generator=torch.Generator().manual_seed(4))
    draft = 0.3 * real + 0.005 * noise  # 10 dB quiet, with hiss
    paired = torch.tensor([True, True, False, False])
    x = torch.stack([draft, real, paired[:, None].float().expand(4, 4096)], -1)
    before = float(m(x).stat.detach()[2])
    for _ in range(60):
        opt.zero_grad()
        m(x).total.mean().backward()
        opt.step()
    assert float(m(x).stat.detach()[2]) < 0.5 * before


def test_stft_distance_is_zero_for_equal_audio_and_grows_with_noise():
    x = _tones(2, 4096)
    noise = torch.randn(2, 4096, generator=torch.Generator().manual_seed(3))
    d0 = stft_distance(x, x, [256, 512])
    d1, d2 = (stft_distance(x + s * noise, x, [256, 512]) for s in (0.001, 0.01))
    assert torch.all(d0 < 1e-6) and torch.all(d1 < d2)


def test_the_chroma_profile_tells_pitched_sound_from_noise_whatever_its_key():
    """A few partials gather on a few pitch classes, broadband noise does not; the profile
    is sorted, so moving every partial by a semitone leaves it as it was; with a chroma
    weight the gap between the two sets grows by that weight times their profiles' gap."""
    from tunelab.models.revision import chroma_profile, spectral_stats_gap

    t = torch.arange(16384) / 16000

    def chord(f0: float) -> torch.Tensor:  # a major triad, three harmonics per note
        notes = [f0 * 2 ** (s / 12) for s in (0, 4, 7)]
        return sum(0.1 / h * torch.sin(2 * math.pi * h * f * t) for f in notes for h in (1, 2, 3))

    noise = 0.1 * torch.randn(1, 16384, generator=torch.Generator().manual_seed(6))
    c, up, n = (
        chroma_profile(chord(330.0)[None]),
        chroma_profile(chord(349.2)[None]),
        chroma_profile(noise),
    )
    assert c.shape == (12,) and float(c[0]) == pytest.approx(1.0)
    assert float(c[3:].mean()) < 0.25 < 0.6 < float(n[3:].mean())
    torch.testing.assert_close(c, up, atol=0.05, rtol=0)
    a, b = chord(330.0)[None], noise
    extra = spectral_stats_gap(a, b, 256, 64, 4.0) - spectral_stats_gap(a, b, 256, 64)
    assert float(extra) == pytest.approx(4.0 * float((c - n).abs().mean()), rel=1e-4)
    short = spectral_stats_gap(a[:, :1500], b[:, :1500], 256, 64, 4.0)  # under CHROMA_FFT
    assert torch.isfinite(short) and float(short) > float(
        spectral_stats_gap(a[:, :1500], b[:, :1500], 256, 64)
    )
