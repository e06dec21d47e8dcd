"""Configs: dataclasses, YAML files, dotted ``key=value`` overrides.

Generic machinery first (works for any dataclass tree), then the run config
schema, whose model section is the family's own dataclass (``tunelab.models``;
``model.family`` picks it). An unknown key or a value of the wrong type is a
``ConfigError`` that names the key and what is allowed, so a typo never
silently trains the wrong model.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

if typing.TYPE_CHECKING:
    from tunelab.models import FamilyConfig

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config key or value that does not fit the schema."""


def _hints(cls) -> dict[str, Any]:
    """The annotated types of dataclass ``cls``'s fields. The model section's type lives with
    the models (and torch), imported here when first needed: reading presets stays light (the
    CLI starts without torch)."""
    from tunelab.models import FamilyConfig

    return typing.get_type_hints(cls, localns={"FamilyConfig": FamilyConfig})


def _allowed(cls) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def did_you_mean(word: str, choices, prefix: str = "", suffix: str = "") -> str:
    """ " did you mean 'x'?" for the choice closest to a mistyped ``word`` (named whole, as
    ``prefix`` + choice + ``suffix``: a dotted key), or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" did you mean {prefix + close[0] + suffix!r}?" if close else ""


def _unknown_key(parts: list[str], depth: int, cls) -> ConfigError:
    """One line for key ``parts`` whose part ``depth`` ``cls`` lacks: the closest key, then
    the keys it has."""
    names = [f.name for f in dataclasses.fields(cls)]
    head, tail = ".".join(parts[:depth]), ".".join(parts[depth + 1 :])
    hint = did_you_mean(parts[depth], names, head + "." * bool(head), "." * bool(tail) + tail)
    return ConfigError(f"unknown key {'.'.join(parts)!r}:{hint} allowed: {_allowed(cls)}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp`` (strings from the CLI are parsed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("null", "none") and type(None) in args:
            return None
        if _families(tp):
            return model_config(value, key)
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not fit {tp}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        raise ConfigError(
            f"{key}: {value!r} is not allowed;{did_you_mean(value, choices)} choose one of "
            f"{', '.join(map(str, choices))}"
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
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        if k not in names:
            raise _unknown_key([*prefix.split(".")[:-1], str(k)], prefix.count("."), cls)
        kwargs[k] = _coerce(v, hints[k], f"{prefix}{k}")
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str], cls) -> dict:
    """Apply ``a.b=value`` strings to a nested dict, checking each key against ``cls``.

    The model section is checked against the family it names. ``model.family=...`` applies
    before the other overrides, so they may name the new family's keys in any order."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    last_part = lambda ov: ov.split("=", 1)[0].strip().split(".")[-1]  # noqa: E731
    for ov in sorted(overrides, key=lambda ov: last_part(ov) != "family"):  # stable
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key=value")
        key, raw = ov.split("=", 1)
        parts = key.strip().split(".")
        node_cls, node, families = cls, data, None
        for depth, part in enumerate(parts):
            hint = _hint(node_cls, part, families)
            if hint is None:
                raise _unknown_key(parts, depth, node_cls)
            if depth == len(parts) - 1:
                value = yaml.safe_load(raw) if raw.strip() else ""
                if hint is str and not isinstance(value, str):
                    value = raw  # "out=2024" stays the string "2024"
                node[part] = value
            else:
                families = _families(hint)
                if not dataclasses.is_dataclass(hint) and not families:
                    raise ConfigError(f"{'.'.join(parts[: depth + 1])} has no sub-keys")
                child = node.get(part)
                node[part] = dict(child) if isinstance(child, dict) else {}
                node = node[part]
                where = ".".join(parts[: depth + 1])
                node_cls = _family(families, node, where) if families else hint
    return data


def _hint(node_cls, part: str, families: dict[str, type] | None):
    """The type of key ``part`` of dataclass ``node_cls``; for a family's dataclass also of a key
    that only another family has (``model_config`` drops or refuses it); None: no such key."""
    for c in [node_cls, *(families or {}).values()]:
        if any(f.name == part for f in dataclasses.fields(c)):
            return _hints(c)[part]
    return None


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(name_or_path: str) -> dict:
    """Read a config YAML by path, or by preset name from the package's configs/."""
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = PRESET_DIR / f"{name_or_path}.yaml"
        if not p.exists():
            raise ConfigError(
                f"no config file or preset named {name_or_path!r}:"
                f"{did_you_mean(name_or_path, presets())} presets: {', '.join(presets())}"
            )
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    if p.is_dir():  # `tunelab train DATA_DIR`: the data goes in data=
        raise ConfigError(
            f"{p} is a folder, not a config file; give a preset or a YAML file first "
            "(a data directory goes in data=DATA_DIR)"
        )
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        why = " ".join(str(e).split())  # one line
        raise ConfigError(f"{p}: not a readable YAML config ({why})") from e
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


def defaults(cls=None, prefix: str = "") -> dict[str, Any]:
    """Every key of the run config (or of dataclass ``cls``) with its default, for ``tunelab
    train --help``: the model keys of every family, each once (families that share a key
    agree on its default)."""
    cls = cls or RunConfig
    hints, out, obj = _hints(cls), {}, cls()
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        sections = [hint] if dataclasses.is_dataclass(hint) else (_families(hint) or {}).values()
        for section in sections:
            for k, v in defaults(section, f"{prefix}{f.name}.").items():
                out.setdefault(k, v)
        if not sections:
            out[prefix + f.name] = getattr(obj, f.name)
    return out


# ---------------------------------------------------------------------------
# Run config schema (train / generate). Extended by the model and training code.
# ---------------------------------------------------------------------------


# Options that some families lack, refused with these messages when one is switched on for a
# family without it (other families' keys are dropped: see model_config).
REFUSED = {
    "transpose_mix": "model.transpose_mix must be >= 0, and 0 unless the family is token_rnn",
    "piece_memory": "model.piece_memory needs a MIDI token family (token_rnn, transformer)",
}


def _families(tp) -> dict[str, type] | None:
    """{family: dataclass} when ``tp`` is a union of dataclasses told apart by their ``family``
    key (the model section, ``FamilyConfig``), else None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    members = typing.get_args(tp)
    if not all(isinstance(getattr(m, "family", None), str) for m in members):
        return None
    return {m.family: m for m in members if dataclasses.is_dataclass(m)}


def _family(families: dict[str, type], data: dict, key: str) -> type:
    """The dataclass of the family that section ``data`` names (the first family by default)."""
    family = data.get("family", next(iter(families)))
    if not isinstance(family, str) or family not in families:
        raise ConfigError(
            f"unknown {key} family {family!r};{did_you_mean(family, families)} choose one of "
            f"{', '.join(families)}"
        )
    return families[family]


def model_config(data: Any, key: str = "model") -> FamilyConfig:
    """The model section as its family's dataclass (``family`` picks it; token_rnn by default).

    The family's own keys are read and checked like any section's, and a key that no family
    has is an error naming the family's keys. A key that only other families have is dropped,
    whatever its value: runs written before per-family configs list every family's keys in
    one flat section, a preset switched with ``model.family=`` keeps its first family's keys,
    and overrides may name several families' keys at once. None of these ever reached the
    model: each family read its own keys only. An option that is on for a family without it
    (``REFUSED``) is refused: it would not do what it says."""
    families = _families(_hints(RunConfig)["model"])
    if not isinstance(data, dict):
        first = next(iter(families.values()))
        raise ConfigError(f"{key}: expected a mapping with keys {_allowed(first)}, got {data!r}")
    cls = _family(families, data, key)
    kept = {}
    for k, v in data.items():
        owner = next((c for c in [cls, *families.values()] if _hint(c, k, None) is not None), None)
        if owner is None or owner is cls:  # its own key, or one from_dict names as unknown
            kept[k] = v
        elif k in REFUSED and _coerce(v, _hint(owner, k, None), f"{key}.{k}") != getattr(owner, k):
            raise ConfigError(REFUSED[k])
    return from_dict(cls, kept, prefix=f"{key}.")


def _default_model() -> FamilyConfig:
    """The model section of a config that names no family: a token RNN's defaults."""
    from tunelab.models import TokenRNNConfig

    return TokenRNNConfig()


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
class RevisionSection:
    """The revision pass (``model.family: revision``, ``tunelab.models.revision``)."""

    # The run whose drafts the reviser learns to revise. Without it the reviser learns from
    # corruptions of real audio that resemble every audio family's drafts; with it, a share
    # of its rows (model.own_share) are that run's own generated drafts.
    base: str | None = None


@dataclasses.dataclass
class RunConfig:
    """A training run: ``tunelab train CONFIG data=DATA_DIR out=RUN_DIR [key=value ...]``."""

    data: str = ""
    out: str = ""
    seed: int = 0
    device: str = "auto"  # auto: cuda:LOCAL_RANK when available, else cpu
    model: FamilyConfig = dataclasses.field(default_factory=_default_model)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    revision: RevisionSection = dataclasses.field(default_factory=RevisionSection)
