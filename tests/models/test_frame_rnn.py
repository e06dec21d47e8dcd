"""Frame RNN (GRUV): step by step equals forward (with labels), and forward is causal."""

from __future__ import annotations

import pytest
import torch

from tunelab.models.frame_rnn import FrameRNN

torch.set_num_threads(1)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_by_step_equals_forward(cell):
    torch.manual_seed(0)
    m = FrameRNN(10, cell=cell, dense=12, hidden=8, layers=3, skip=True, n_labels=3).eval()
    x, label = torch.randn(2, 6, 10), torch.tensor([0, 2])
    full = m(x, label)
    state = m.init_state(2, label=label)
    steps = []
    for t in range(6):
        y, state = m.step(x[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(m(x, torch.tensor([1, 1])), full)  # the label matters


def test_forward_is_causal():
    m = FrameRNN(6, dense=8, hidden=8, layers=2).eval()
    x = torch.randn(1, 5, 6, requires_grad=True)
    m(x)[0, 2].sum().backward()
    assert x.grad[0, 3:].abs().sum() == 0 and x.grad[0, :3].abs().sum() > 0
