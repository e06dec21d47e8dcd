"""Piano-roll inputs of the token RNN (``model.roll``): the features match a plain loop over
the token contract, windows chain exactly, and step() equals forward() and carried windows, with
and without the pitch-relative head, which is equivariant under transposition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers_generate import random_score
from tunelab.data.midi import make_codec
from tunelab.models.roll import PitchHead, roll_features, roll_init, roll_step
from tunelab.models.token_rnn import TokenRNN


def reference(tokens: np.ndarray, step_id: int) -> torch.Tensor:
    """[T, 176]: keys of the last complete step, then of the current step so far."""
    prev, cur, out = np.zeros(88), np.zeros(88), []
    for t in tokens.tolist():
        if t < step_id:
            cur[t % 88] = 1
        elif t == step_id:
            prev, cur = cur, np.zeros(88)
        else:  # BOS / EOS: a new piece
            prev, cur = np.zeros(88), np.zeros(88)
        out.append(np.concatenate([prev, cur]))
    return torch.tensor(np.array(out), dtype=torch.float32)


def stream(encoding: str) -> tuple[torch.Tensor, int, int]:
    codec = make_codec(encoding, 4)
    tokens = np.concatenate([codec.encode(random_score(s)) for s in range(3)])  # 3 pieces
    return torch.as_tensor(tokens)[None], codec.step, codec.vocab_size


@pytest.mark.parametrize("encoding", ["steps", "onsets"])
def test_roll_features_match_a_plain_loop_in_any_chunks(encoding):
    x, step_id, _ = stream(encoding)
    ref = reference(x[0].numpy(), step_id)
    assert ref[:, :88].sum() > 0  # the pieces do have chords
    assert torch.equal(roll_features(x, step_id)[0][0], ref)
    for size in (1, 5, 37):  # windows carrying (prev, cur) chain into one pass
        st, parts = roll_init(1), []
        for a in range(0, x.shape[1], size):
            f, st = roll_features(x[:, a : a + size], step_id, st)
            parts.append(f)
        assert torch.equal(torch.cat(parts, 1)[0], ref)
    st, parts = roll_init(1), []
    for t in range(x.shape[1]):
        f, st = roll_step(x[:, t], st, step_id)
        parts.append(f)
    assert torch.equal(torch.stack(parts, 1)[0], ref)


@pytest.mark.parametrize("encoding", ["steps", "onsets"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("pitch_head", [0, 8])
def test_roll_model_step_and_carried_windows_equal_forward(encoding, cell, pitch_head):
    x, _, vocab = stream(encoding)
    torch.manual_seed(0)
    model = TokenRNN(vocab, cell, 16, 32, 2, 0.0, skip=True, roll=True, pitch_head=pitch_head)
    model.eval()
    if pitch_head:  # it starts at zero; give it weights so it changes the logits
        torch.nn.init.normal_(model.pitch_head.out.weight)
    with torch.no_grad():
        full = model(x)
        state, steps = model.init_state(1), []
        for t in range(x.shape[1]):
            logits, state = model.step(x[:, t], state)
            steps.append(logits)
        state, windows = model.init_carry(1), []
        for a in range(0, x.shape[1], 50):
            logits, state = model(x[:, a : a + 50], state=state)
            windows.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(windows, 1), full, atol=1e-5, rtol=1e-5)
    if pitch_head:  # the head does change the key logits, and only those
        with torch.no_grad():
            torch.nn.init.zeros_(model.pitch_head.out.weight)
            off = model(x)
        keys = model.roll_step_id
        assert (full[..., :keys] - off[..., :keys]).abs().max() > 1e-2
        torch.testing.assert_close(full[..., keys:], off[..., keys:])
    # The roll inputs matter: the same tokens without them give other logits.
    plain = TokenRNN(vocab, cell, 16, 32, 2, 0.0, skip=True, roll=False).eval()
    assert plain.rnns[0].input_size + 176 == model.rnns[0].input_size


def test_roll_needs_a_grid_vocabulary():
    with pytest.raises(ValueError, match="steps/onsets"):
        TokenRNN(300, "gru", 16, 32, 1, roll=True)


def test_pitch_head_is_equivariant_under_transposition():
    """Shifting every key of the roll by k semitones shifts the head's key logits by k (away from
    the keyboard's ends, where the convolution sees its zero padding)."""
    torch.manual_seed(0)
    head = PitchHead(feat_dim=12, channels=6, blocks=2, width=25).eval()
    torch.nn.init.normal_(head.out.weight)
    roll = torch.zeros(4, 176)
    roll[:, 40:46] = (torch.rand(4, 6) > 0.5).float()  # prev: keys 40..45
    roll[:, 88 + 38 : 88 + 44] = (torch.rand(4, 6) > 0.5).float()  # cur: keys 38..43
    feat = torch.randn(4, 12)
    with torch.no_grad():
        base = head(roll, feat).view(4, 2, 88)
        for k in (-5, 3, 7):
            moved = head(torch.roll(roll.view(4, 2, 88), k, dims=2).view(4, 176), feat)
            moved = moved.view(4, 2, 88)
            inner = slice(30, 58)
            torch.testing.assert_close(
                moved[..., inner.start + k : inner.stop + k], base[..., inner], atol=1e-5, rtol=0
            )


def test_pitch_head_needs_roll_inputs():
    with pytest.raises(ValueError, match="roll"):
        TokenRNN(make_codec("steps", 4).vocab_size, "lstm", 16, 32, 1, pitch_head=8)
