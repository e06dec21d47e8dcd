"""Piano-roll context of a grid token stream, as extra inputs for a token model.

In the ``steps``/``onsets`` layout (ids ``0 .. n_keys*blocks - 1`` are keys, pitch index
``id % 88``; then STEP, BOS, EOS) a step's keys arrive one token at a time, high to low. A
recurrent model has to keep the previous chord in its state to relate a voice to where it was;
these features hand it over directly (what RNN-NADE-style models condition on):

- ``prev``: FloatTensor[..., 88], the keys of the last complete step (1 = sounding);
- ``cur``: FloatTensor[..., 88], the keys of the current step so far, the input token included.

At position t both describe the stream up to and including x_t. BOS and EOS clear both (a new
piece). ``roll_features`` computes them for a whole window at once (cumulative sums, no Python
loop over time) from a starting state; ``roll_step`` advances the state by one token; the two
agree exactly, so windows chain like one long forward pass and generation sees what training saw.

``PitchHead`` turns the same features into pitch-relative key logits (a convolution along the
key axis), the transposition-equivariant part of the output that TP-LSTM-NADE-style models use.
"""

from __future__ import annotations

import torch
from torch import nn

N_KEYS = 88


def roll_layout(vocab_size: int) -> int:
    """The STEP id (the first id after the key blocks) of a grid vocabulary, or ValueError."""
    step = vocab_size - 3
    if step <= 0 or step % N_KEYS:
        raise ValueError(
            f"roll features need a steps/onsets vocabulary (88 keys per block, STEP, BOS, EOS);"
            f" got {vocab_size} ids"
        )
    return step


def roll_init(batch: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(prev, cur) before any token: both empty, [B, 88] each."""
    z = torch.zeros(batch, N_KEYS, device=device, dtype=dtype)
    return z, z.clone()


def roll_features(
    x: torch.Tensor, step_id: int, start: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """x: LongTensor[B, T] -> (features FloatTensor[B, T, 176] = [prev, cur], state at the end).

    ``start``: (prev, cur) [B, 88] each before x[:, 0] (default: empty)."""
    B, T = x.shape
    prev0, cur0 = start if start is not None else roll_init(B, x.device)
    is_key = x < step_id
    onehot = torch.zeros(B, T, N_KEYS, device=x.device, dtype=prev0.dtype)
    onehot.scatter_(2, (x % N_KEYS).clamp(max=N_KEYS - 1).unsqueeze(-1), 1.0)
    onehot *= is_key.unsqueeze(-1)
    # Running key counts with a zero row in front: S[:, p + 1] sums the keys of x[:, :p + 1].
    S = torch.cat([torch.zeros_like(onehot[:, :1]), onehot.cumsum(1)], dim=1)  # [B, T+1, 88]
    boundary = x >= step_id  # STEP, BOS or EOS ends the current step
    pos = torch.arange(T, device=x.device).expand(B, T)
    last = torch.where(boundary, pos, -1).cummax(1).values  # last boundary <= t (-1: none)
    # The boundary before that one: the last boundary strictly before position ``last``.
    before = torch.cat([torch.full_like(last[:, :1], -1), last[:, :-1]], dim=1)
    prev_b = torch.gather(before, 1, last.clamp(min=0))
    prev_b = torch.where(last >= 0, prev_b, -1)

    def at(idx):  # S after position idx (idx = -1: the window's start)
        return torch.gather(S, 1, (idx + 1).unsqueeze(-1).expand(B, T, N_KEYS))

    in_window = (last >= 0).unsqueeze(-1)
    cur = torch.where(in_window, S[:, 1:] - at(last), cur0.unsqueeze(1) + S[:, 1:]).clamp(max=1)
    # prev: the step closed at ``last`` (if that boundary is a STEP; BOS/EOS clear it).
    closed = at(last) - at(prev_b)
    closed = torch.where((prev_b >= 0).unsqueeze(-1), closed, cur0.unsqueeze(1) + at(last))
    closed = closed.clamp(max=1)
    last_tok = torch.gather(x, 1, last.clamp(min=0))
    closed = closed * (last_tok == step_id).unsqueeze(-1)
    prev = torch.where(in_window, closed, prev0.unsqueeze(1).expand(B, T, N_KEYS))
    return torch.cat([prev, cur], dim=-1), (prev[:, -1], cur[:, -1])


def roll_step(
    x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], step_id: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One token per row: x LongTensor[B] -> (features [B, 176], new (prev, cur))."""
    prev, cur = state
    key = (x < step_id).unsqueeze(-1)
    hit = torch.zeros_like(cur).scatter_(1, (x % N_KEYS).clamp(max=N_KEYS - 1)[:, None], 1.0)
    is_step = (x == step_id).unsqueeze(-1)
    other = (x > step_id).unsqueeze(-1)  # BOS/EOS: a new piece
    new_prev = torch.where(is_step, cur, torch.where(other, torch.zeros_like(prev), prev))
    new_cur = torch.where(key, torch.maximum(cur, hit), torch.zeros_like(cur))
    return torch.cat([new_prev, new_cur], dim=-1), (new_prev, new_cur)


class PitchHead(nn.Module):
    """Pitch-relative key logits: what a key's neighbourhood in the roll says about playing it.

    A voice holds its note, moves by a step, or sits a third or sixth below the voice above: the
    same rule at every pitch. A linear head over the RNN state must learn it once per key (and
    transposition only spreads the examples over more keys). Here one convolution along the key
    axis reads the previous step's and the current step's keys ``width // 2`` either way of each
    candidate key, a projection of the RNN features shifts its channels (the context decides
    which rules apply), and a per-key linear map scores every key of every block. The result is
    added to the key ids' logits; the model's own head still carries absolute pitch.

    The convolution is an unfold and one matmul: on a CPU that is about 1.5x faster than
    ``nn.Conv1d`` with so few input channels.

    Args:
        feat_dim: size F of the RNN features the main head reads.
        channels: hidden channels C of the key-axis convolution.
        blocks: key blocks of the vocabulary (ids ``b*88 + k``): 1 for steps, more for onsets.
        width: kernel width along the keys (odd; 25 = an octave either way).
    """

    def __init__(self, feat_dim: int, channels: int, blocks: int, width: int = 25):
        super().__init__()
        if width % 2 != 1:
            raise ValueError("width must be odd")
        self.width = width
        self.conv = nn.Linear(2 * width, channels)  # (prev, cur) x width keys -> C, per key
        self.shift = nn.Linear(feat_dim, channels, bias=False)
        self.out = nn.Linear(channels, blocks)
        nn.init.zeros_(self.out.weight)  # starts as the plain head: nothing to unlearn
        nn.init.zeros_(self.out.bias)

    def forward(self, roll: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """roll [..., 176] (``roll_features``), feat [..., F] -> logits [..., blocks*88]."""
        lead = roll.shape[:-1]
        r = roll.reshape(-1, 2, N_KEYS).to(feat.dtype)
        n, half = len(r), self.width // 2
        # [n, 2, 88 + 2*half] -> windows [n, 2, 88, width] -> [n, 88, 2*width]
        win = nn.functional.pad(r, (half, half)).unfold(2, self.width, 1)
        win = win.permute(0, 2, 1, 3).reshape(n, N_KEYS, 2 * self.width)
        z = torch.relu(self.conv(win) + self.shift(feat.reshape(n, -1)).unsqueeze(1))
        return self.out(z).transpose(1, 2).reshape(*lead, -1)  # [n, blocks, 88] -> ids b*88+k
