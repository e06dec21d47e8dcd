"""All model families: causality, step() == forward(), build_model and the MODELS table.
Family-specific tests live in test_<family>.py; _run_steps is shared with them."""

from __future__ import annotations

import pytest
import torch

from tunelab.models import MODELS, build_model
from tunelab.models.token_rnn import TokenRNNConfig

torch.set_num_threads(1)
V = 23

RNNS = [
    {"family": "token_rnn", "cell": "gru", "embed_dim": 8, "hidden": 16, "layers": 2},
    {"family": "token_rnn", "cell": "gru", "embed_dim": 8, "hidden": 16, "layers": 3, "skip": True},
    {"family": "token_rnn", "cell": "lstm", "embed_dim": 8, "hidden": 16, "layers": 2},
    {
        "family": "token_rnn",
        "cell": "lstm",
        "embed_dim": 8,
        "hidden": 16,
        "layers": 2,
        "skip": True,
    },
]
TRANSFORMERS = [
    {"family": "transformer", "d_model": 16, "layers": 2, "heads": 2, "window": None},
    {"family": "transformer", "d_model": 16, "layers": 2, "heads": 2, "window": 5},
]


def _model(cfg: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model({**cfg, "dropout": 0.2}, V).eval()


def _run_steps(model, x: torch.Tensor) -> torch.Tensor:
    state = model.init_state(x.shape[0], x.device)
    out = []
    for t in range(x.shape[1]):
        logits, state = model.step(x[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("cfg", RNNS + TRANSFORMERS, ids=lambda c: str(sorted(c.items())))
def test_causal(cfg):
    """Changing the token at t changes no output before t, and does change outputs from t on."""
    model = _model(cfg)
    x = torch.randint(0, V, (2, 12))
    t = 7
    x2 = x.clone()
    x2[:, t] = (x2[:, t] + 1) % V
    with torch.no_grad():
        a, b = model(x), model(x2)
    assert a.shape == (2, 12, V)
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=0)
    assert not torch.allclose(a[:, t], b[:, t])


@pytest.mark.parametrize("cfg", RNNS + TRANSFORMERS, ids=lambda c: str(sorted(c.items())))
def test_step_equals_forward(cfg):
    model = _model(cfg, seed=1)
    x = torch.randint(0, V, (3, 17))
    with torch.no_grad():
        full = model(x)
        steps = _run_steps(model, x)
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-5)


def test_build_model_errors():
    assert set(MODELS) >= {"token_rnn", "transformer"}
    with pytest.raises(ValueError, match="unknown model family"):
        build_model({"family": "nope"}, V)
    with pytest.raises(ValueError, match="heads"):
        build_model({"family": "transformer", "d_model": 10, "heads": 3}, V)
    with pytest.raises(ValueError, match="cell"):
        build_model({"family": "token_rnn", "cell": "rnn"}, V)


def test_build_model_from_dataclass():
    model = build_model(TokenRNNConfig(hidden=12, embed_dim=4, layers=1), V)
    assert model(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, V)


def test_each_row_names_its_config_and_the_options_its_model_has():
    """The row's config is its family's; carry_state agrees with the model's init_carry (the
    loop's contract), burn_in and transpose_mix are token RNN options, piece_memory is the
    MIDI token families'."""
    import dataclasses

    from tunelab.run.carry import supports_carry

    for name, row in MODELS.items():
        cfg = row.config()
        assert cfg.family == name and dataclasses.is_dataclass(cfg)
        vocab = {"tokens": V, "mulaw": 256, "frames": 8, "revision": 1}[row.kind]
        model = build_model(cfg, vocab)
        assert isinstance(model, row.cls) and row.carry_state == supports_carry(model)
    assert [n for n, r in MODELS.items() if r.burn_in] == ["token_rnn"]
    assert [n for n, r in MODELS.items() if r.has("transpose_mix")] == ["token_rnn"]
    piece_memory = [n for n, r in MODELS.items() if r.has("piece_memory")]
    assert piece_memory == [n for n, r in MODELS.items() if r.kind == "tokens"]


def test_defaults_are_stated_once_in_the_family_config():
    """A model built with its constructor's defaults equals the one its config's defaults
    build, key by key: the constructor reads its defaults from the config dataclass."""
    import inspect

    renamed = {  # constructor argument -> config key, where the names differ
        "FrameRNN": {"dense": "embed_dim"},
        "SampleRNN": {
            "frame_size": "srnn_frame_size",
            "frame_hidden": "hidden",
            "frame_layers": "layers",
            "sample_hidden": "srnn_sample_hidden",
            "sample_layers": "srnn_sample_layers",
            "warmup_frames": "srnn_warmup_frames",
        },
    }
    checked = 0
    for row in MODELS.values():
        cfg, names = row.config(), renamed.get(row.cls.__name__, {})
        for name, p in inspect.signature(row.cls.__init__).parameters.items():
            key = names.get(name, name)
            if hasattr(cfg, key) and p.default is not inspect.Parameter.empty:
                assert p.default == getattr(cfg, key), (row.cls.__name__, name)
                checked += 1
    assert checked == 9 + 6 + 8 + 7 + 7  # every hyperparameter the constructors take


def test_build_model_reads_the_flat_layout_of_old_runs():
    """A mapping with every family's keys (runs saved before per-family configs) builds its
    family's model from that family's keys alone."""
    flat = {"family": "token_rnn", "cell": "lstm", "hidden": 12, "embed_dim": 4, "layers": 1}
    flat |= {"d_model": 999, "residual_channels": 7, "frame_size": 3, "srnn_frame_size": 5}
    torch.manual_seed(0)
    a = build_model(flat, V)
    torch.manual_seed(0)
    b = build_model(TokenRNNConfig(cell="lstm", hidden=12, embed_dim=4, layers=1), V)
    assert a.cell == "lstm" and a.state_dict().keys() == b.state_dict().keys()
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=0)
