"""Frame RNN (GRUV): step by step equals forward (with labels), and forward is causal."""

from __future__ import annotations

import pytest
import torch

from tunelab.models.frame_rnn import FrameRNN

torch.set_num_threads(1)


@pytest.mark.parametrize(("cell", "linear_skip"), [("gru", False), ("lstm", False), ("gru", True)])
def test_step_by_step_equals_forward(cell, linear_skip):
    torch.manual_seed(0)
    m = FrameRNN(10, cell=cell, dense=12, hidden=8, layers=3, skip=True, n_labels=3,
                 linear_skip=linear_skip).eval()  # fmt: skip
    if linear_skip:  # zero at the start; give it weights so that the test sees it
        torch.nn.init.normal_(m.lin.weight, std=0.3)
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


def test_the_linear_skip_starts_at_zero_and_can_copy_a_frame_exactly():
    """The linear map from the last frame to the next adds nothing at the start (the model
    starts where the plain one does) and can express any linear prediction, e.g. a shift."""
    torch.manual_seed(0)
    plain = FrameRNN(8, dense=8, hidden=8, layers=2, skip=True).eval()
    lin = FrameRNN(8, dense=8, hidden=8, layers=2, skip=True, linear_skip=True).eval()
    lin.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(lin(x), plain(x))
    with torch.no_grad():  # the RNN's output dense silenced, the skip shifts by 4 samples
        lin.out.weight.zero_()
        lin.out.bias.zero_()
        lin.lin.weight[torch.arange(4), torch.arange(4) + 4] = 1.0
    y = lin(x)
    torch.testing.assert_close(y[..., :4], x[..., 4:])
    assert y[..., 4:].abs().max() == 0
