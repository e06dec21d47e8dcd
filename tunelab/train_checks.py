"""What ``train`` checks and resolves in a run config before its loop starts.

``check_config`` refuses train settings out of range and options the model family does not
have (its ``MODELS`` row), before any data is read; ``size_from_data`` turns windows and
batches given in bars and tokens into ``seq_len`` and ``batch_size`` for the data at hand;
``check_resume`` refuses to resume from a checkpoint of another model or of data of another
kind. They live apart from ``tunelab.train`` so that it reads as the loop. ``size_from_data``
resolves and refuses config keys (``ConfigError``), so it sits here, above the data layer;
the data's own figure it reads, ``tokens_per_bar``, is in ``tunelab.data.windows``.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.config import REFUSED, ConfigError, RunConfig, model_config, to_dict
from tunelab.data.windows import tokens_per_bar
from tunelab.models import family_of


def check_config(cfg: RunConfig) -> None:
    """Refuse train settings out of range and options the model family does not have."""
    t = cfg.train
    for name in ("batch_size", "seq_len", "max_steps", "eval_every", "log_every"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
    if t.lr <= 0 or t.warmup < 0 or t.augment_transpose < 0 or not 0 <= t.ema < 1:
        raise ConfigError(
            "need train.lr > 0, train.warmup >= 0, augment_transpose >= 0, 0 <= ema < 1"
        )
    family = family_of(cfg.model)  # its MODELS row: the options the family supports
    if t.burn_in < 0 or (t.burn_in and (t.carry_state or not family.burn_in)):
        raise ConfigError(
            "train.burn_in must be >= 0, and 0 unless the family is token_rnn without "
            "train.carry_state (carried state already gives each window its context)"
        )
    if cfg.revision.base and cfg.model.family != "revision":
        raise ConfigError(
            "revision.base names the run a revision pass learns from; it needs "
            "model.family=revision (the preset `revision`)"
        )
    if t.carry_state and not family.carry_state:
        raise ConfigError(f"train.carry_state: model family {cfg.model.family!r} carries no state")
    # A family without transpose_mix or piece_memory refused them when the config was read.
    if getattr(cfg.model, "transpose_mix", 0) < 0:
        raise ConfigError(REFUSED["transpose_mix"])
    if t.max_minutes is not None and t.max_minutes <= 0:
        raise ConfigError(
            f"train.max_minutes must be > 0 (or null for no time budget), got {t.max_minutes}"
        )


def check_resume(ck: dict, cfg: RunConfig, kind, run_dir: Path) -> None:
    """Refuse checkpoint ``ck`` of ``run_dir`` when its model config (the weights' part) or
    its data's signature differs from ``cfg``'s and ``kind``'s."""

    # The saved model section is read as load_run reads it: a key that a later version added
    # is absent from older checkpoints (it had its default), and runs saved before per-family
    # configs hold every family's keys (model_config keeps the family's). transpose_mix and
    # piece_memory only change scoring and sampling, never the weights: they may change.
    def weights_part(model: dict) -> dict:
        return {k: v for k, v in model.items() if k not in ("transpose_mix", "piece_memory")}

    try:
        saved = weights_part(to_dict(model_config(ck["config"]["model"])))
    except (ConfigError, KeyError, TypeError):
        saved = None  # not a model config this version reads
    if saved != weights_part(to_dict(cfg.model)):
        raise ConfigError(
            f"{run_dir} holds a run with another model config ({ck['config']['model']}); "
            "choose another out= or remove that run"
        )
    try:
        before = type(kind)(ck["meta"]).signature()
    except (KeyError, TypeError, ValueError):
        before = None
    if before != kind.signature():
        raise ConfigError(
            f"{run_dir} was trained on data with {before}, but {cfg.data} has "
            f"{kind.signature()}; choose another out= or data="
        )


def size_from_data(t, data) -> None:
    """Resolve ``train.seq_bars`` and ``train.batch_tokens`` against the data (in place):
    seq_len = clamp(round(seq_bars * tokens per bar), 16, seq_len); batch_size =
    round(batch_tokens / seq_len), the same on any number of processes (the global batch), so a
    run resumes on another number of processes with the same data order."""
    if t.seq_bars is not None:
        per_bar = tokens_per_bar(data)
        if not per_bar:
            raise ConfigError(
                f"train.seq_bars: {data.path} does not say how many tokens a bar holds "
                "(MIDI data with steps per piece is needed); set train.seq_len instead"
            )
        t.seq_len = int(min(t.seq_len, max(16, round(t.seq_bars * per_bar))))
    if t.batch_tokens is not None:
        t.batch_size = max(1, round(t.batch_tokens / t.seq_len))
