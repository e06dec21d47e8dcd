"""Checks before the loop: check_config refuses settings out of range and options the family
lacks; size_from_data turns bars and tokens into seq_len and batch_size. (size_from_data on
prepared MIDI data is tested in tests/data/midi/test_context.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tunelab.config import ConfigError, RunConfig, TrainConfig, model_config
from tunelab.train_checks import check_config, size_from_data


def _cfg(family: str = "token_rnn", **train) -> RunConfig:
    return RunConfig(model=model_config({"family": family}), train=TrainConfig(**train))


def test_check_config_passes_the_defaults_and_refuses_out_of_range_settings():
    check_config(_cfg())
    with pytest.raises(ConfigError, match=r"train.seq_len must be >= 1, got 0"):
        check_config(_cfg(seq_len=0))
    with pytest.raises(ConfigError, match="0 <= ema < 1"):
        check_config(_cfg(ema=1.0))
    with pytest.raises(ConfigError, match="max_minutes"):
        check_config(_cfg(max_minutes=0))
    check_config(_cfg(burn_in=8))  # a token RNN without carried state may burn in
    with pytest.raises(ConfigError, match="burn_in"):
        check_config(_cfg(burn_in=8, carry_state=True))
    with pytest.raises(ConfigError, match="burn_in"):
        check_config(_cfg("transformer", burn_in=8))
    with pytest.raises(ConfigError, match="'wavenet' carries no state"):
        check_config(_cfg("wavenet", carry_state=True))


def test_size_from_data_resolves_bars_and_tokens_and_leaves_others_alone():
    data = SimpleNamespace(meta={"tokens_per_bar": 50.0}, path="d")
    t = TrainConfig(seq_bars=3, seq_len=1000, batch_tokens=1200)
    size_from_data(t, data)
    assert (t.seq_len, t.batch_size) == (150, 8)
    short = TrainConfig(seq_bars=0.1, seq_len=1000)
    size_from_data(short, data)
    assert short.seq_len == 16  # never under 16 tokens
    plain = TrainConfig(seq_len=77, batch_size=5)
    size_from_data(plain, data)
    assert (plain.seq_len, plain.batch_size) == (77, 5)
    blind = SimpleNamespace(meta={}, path="d", split=lambda name: SimpleNamespace(pieces=[]))
    with pytest.raises(ConfigError, match="does not say how many tokens a bar holds"):
        size_from_data(TrainConfig(seq_bars=2), blind)
