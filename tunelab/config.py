"""Configs: dataclasses, YAML files, dotted ``key=value`` overrides.

Generic machinery first (works for any dataclass tree), then the run config
schema. An unknown key or a value of the wrong type is a ``ConfigError`` that
names the key and what is allowed, so a typo never silently trains the wrong
model.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config key or value that does not fit the schema."""


def _allowed(cls) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp`` (strings from the CLI are parsed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("null", "none") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} does not fit {tp}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        raise ConfigError(
            f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, choices))}"
        )
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping with keys {_allowed(tp)}, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a (nested) dict; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        if k not in names:
            raise ConfigError(f"unknown key {prefix + str(k)!r}; allowed: {_allowed(cls)}")
        kwargs[k] = _coerce(v, hints[k], f"{prefix}{k}")
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str], cls) -> dict:
    """Apply ``a.b=value`` strings to a nested dict, checking each key against ``cls``."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key=value")
        key, raw = ov.split("=", 1)
        parts = key.strip().split(".")
        node_cls, node = cls, data
        for depth, part in enumerate(parts):
            fields = {f.name: f for f in dataclasses.fields(node_cls)}
            if part not in fields:
                where = ".".join(parts[:depth]) or "top level"
                raise ConfigError(
                    f"unknown key {key!r} ({part!r} at {where}); allowed: {_allowed(node_cls)}"
                )
            hint = typing.get_type_hints(node_cls)[part]
            if depth == len(parts) - 1:
                value = yaml.safe_load(raw) if raw.strip() else ""
                if hint is str and not isinstance(value, str):
                    value = raw  # "out=2024" stays the string "2024"
                node[part] = value
            else:
                if not dataclasses.is_dataclass(hint):
                    raise ConfigError(f"{'.'.join(parts[: depth + 1])} has no sub-keys")
                child = node.get(part)
                node[part] = dict(child) if isinstance(child, dict) else {}
                node, node_cls = node[part], hint
    return data


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(name_or_path: str) -> dict:
    """Read a config YAML by path, or by preset name from the package's configs/."""
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = PRESET_DIR / f"{name_or_path}.yaml"
        if not p.exists():
            raise ConfigError(
                f"no config file or preset named {name_or_path!r}; presets: {', '.join(presets())}"
            )
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file must be a mapping of keys to values")
    return data


def load(cls, name_or_path: str | None, overrides: list[str] = ()):
    """Load ``cls`` from a YAML file or preset, then apply overrides."""
    data = read_yaml(name_or_path) if name_or_path else {}
    return from_dict(cls, apply_overrides(data, list(overrides), cls))


def dump(cfg, path: str | Path) -> None:
    from tunelab.atomic import write_text  # a crash mid-write keeps the old config.yaml

    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


# ---------------------------------------------------------------------------
# Run config schema (train / generate). Extended by the model and training code.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class ModelConfig:
    """Model family and its hyperparameters (each family reads the keys it knows).

    token_rnn: cell, embed_dim, hidden, layers, dropout, skip, roll (piano-roll inputs),
    pitch_head (pitch-relative key logits), weight_drop (DropConnect on recurrent weights),
    transpose_mix (score and sample as a mixture over transpositions; not used in training).
    token_rnn and transformer: piece_memory (score, and sample when asked, mixed with a memory of
    the piece so far; not used in training).
    transformer: d_model, layers, heads, ff_mult, dropout, window (None: full causal
    attention; W: each token sees the last W tokens, so generation cost stays flat).
    wavenet: residual_channels, gate_channels, skip_channels, stacks, layers_per_stack
    (dilations 1, 2, ..., 2^(layers_per_stack-1) per stack), kernel_size, bias, gc_channels
    (label embedding added to every layer's filter and gate; 0: no conditioning).
    """

    family: str = "token_rnn"
    cell: typing.Literal["gru", "lstm"] = "gru"
    embed_dim: int = 128
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    skip: bool = False
    roll: bool = False  # token_rnn: piano-roll inputs (tunelab.models.roll); steps/onsets only
    pitch_head: int = 0  # token_rnn: channels of the pitch-relative key head (needs roll); 0 = off
    weight_drop: float = 0.0  # token_rnn: DropConnect on hidden-to-hidden weights while training
    # token_rnn: evaluate and generate with the mixture over transpositions -n..n semitones of
    # the input (tunelab.models.transpose_mix; 2n + 1 model rows per piece); 0 = off
    transpose_mix: int = 0
    # MIDI token models: evaluate (and generate --piece-memory) mixed with the memory of the
    # piece so far: what followed the longest recent context that occurred before
    # (tunelab.models.piece_memory)
    piece_memory: bool = False
    d_model: int = 256
    heads: int = 4
    ff_mult: int = 4
    window: int | None = None
    residual_channels: int = 32
    gate_channels: int = 32
    skip_channels: int = 512
    stacks: int = 5
    layers_per_stack: int = 10
    kernel_size: int = 2
    bias: bool = True
    gc_channels: int = 32
    # samplernn: the frame-tier GRU takes hidden and layers, the label embedding gc_channels.
    srnn_frame_size: int = 16  # samples per frame-tier step (and taps of the sample tier)
    srnn_sample_hidden: int = 512  # width of the sample-level MLP
    srnn_sample_layers: int = 2  # hidden layers of that MLP between its input and output
    srnn_warmup_frames: int = 16  # unscored frames at the head of each training window
    # frame_rnn (GRUV): dense (embed_dim) -> `layers` GRU/LSTM layers (cell, hidden, dropout,
    # skip: every layer feeds the output dense) -> dense, over frames of normalised audio
    frame_size: int = 1024  # samples per frame
    frame_hop: int = 0  # samples between frame starts (0: frame_size // 2, 50% overlap)
    frame_form: typing.Literal["time", "fft"] = "time"  # raw samples or rfft real/imag
    frame_loss: typing.Literal["mse", "stft"] = "mse"  # stft: multi-resolution STFT + L1 wave
    stft_sizes: list[int] = dataclasses.field(default_factory=lambda: [256, 512, 1024])
    wave_l1: float = 1.0  # weight of the L1 waveform term of the stft loss
    frame_labels: bool = False  # condition on the data's labels (an embedding added to input)


@dataclasses.dataclass
class TrainConfig:
    """The training loop. Budgets: stop at max_steps, after max_minutes, or early stop."""

    batch_size: int = 32  # the GLOBAL batch: split evenly over torchrun's processes
    seq_len: int = 256  # tokens per training window (the most, with seq_bars)
    # MIDI: a window of this many bars of the data (meta.json tokens_per_bar), at most seq_len
    # tokens and at least 16; None: seq_len as given.
    seq_bars: float | None = None
    # The batch as tokens: batch_size = batch_tokens / seq_len, a multiple of the number of
    # processes (None: batch_size as given). Keeps the tokens per update steady when seq_bars
    # changes the window.
    batch_tokens: int | None = None
    lr: float = 2e-3
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    warmup: int = 200  # steps of linear warmup
    weight_decay: float = 0.01  # AdamW, on matrices only (not biases, norms)
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.99])
    clip: float = 1.0  # gradient norm clip (0: off)
    ema: float = 0.0  # EMA decay of weights used for validation/export (0: off), e.g. 0.999
    max_steps: int = 5000
    decay_steps: int | None = None  # cosine horizon (None: max_steps); fix it to extend a run
    max_minutes: float | None = None  # wall-clock budget; the schedule decays by time too
    eval_every: int = 250
    eval_batches: int = 20  # validation windows = eval_batches * batch_size (0: whole split)
    patience: int = 0  # stop after this many evaluations without improvement (0: off)
    milestone_minutes: float = 60.0  # keep checkpoints/milestone-STEP.pt this often (0: off)
    log_every: int = 10
    amp: bool = True  # mixed precision on CUDA (bf16 when supported, else fp16)
    augment_transpose: int = 0  # random transposition in [-n, n] semitones (MIDI)
    num_workers: int = 0  # batch-preparing threads (0: in the training loop)
    # Carry the model's state (RNN hidden state, Transformer memory) across consecutive windows
    # of a piece (truncated BPTT): each batch row walks through pieces window by window.
    carry_state: bool = False
    # token_rnn: unscored context before every training and validation window, run without
    # gradients, so each window starts from the state its context leaves (as in scoring and
    # generation) instead of zeros, while windows stay drawn at random (0: off)
    burn_in: int = 0
    tensorboard: bool = True
    plots: bool = True
    progress: bool = True


@dataclasses.dataclass
class RunConfig:
    """A training run: ``tunelab train CONFIG data=DATA_DIR out=RUN_DIR [key=value ...]``."""

    data: str = ""
    out: str = ""
    seed: int = 0
    device: str = "auto"  # auto: cuda:LOCAL_RANK when available, else cpu
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
