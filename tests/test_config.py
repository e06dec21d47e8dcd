"""Config machinery: YAML + dotted overrides into dataclasses; errors name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from tunelab import config as C


@dataclasses.dataclass
class Inner:
    width: int = 8
    act: Literal["relu", "gelu"] = "relu"
    rate: float = 0.5
    window: int | None = None


@dataclasses.dataclass
class Outer:
    name: str = "x"
    flag: bool = False
    sizes: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_unknown_key_names_it_and_the_allowed_keys():
    with pytest.raises(C.ConfigError) as e:
        C.from_dict(Outer, {"nmae": "y"})
    assert "nmae" in str(e.value) and "name" in str(e.value) and "inner" in str(e.value)
    with pytest.raises(C.ConfigError) as e:
        C.from_dict(Outer, {"inner": {"widht": 3}})
    assert "inner.widht" in str(e.value) and "width" in str(e.value)
    with pytest.raises(C.ConfigError) as e:
        C.apply_overrides({}, ["inner.depth=3"], Outer)
    assert "inner.depth" in str(e.value) and "width" in str(e.value)


def test_wrong_type_names_the_key_and_what_fits():
    for data, key in [
        ({"inner": {"width": "wide"}}, "inner.width"),
        ({"flag": "maybe"}, "flag"),
        ({"inner": {"rate": True}}, "inner.rate"),
        ({"sizes": "notalist"}, "sizes"),
        ({"inner": 5}, "inner"),
    ]:
        with pytest.raises(C.ConfigError) as e:
            C.from_dict(Outer, data)
        assert key in str(e.value)
    with pytest.raises(C.ConfigError) as e:
        C.from_dict(Outer, {"inner": {"act": "tanh"}})
    assert "inner.act" in str(e.value) and "relu" in str(e.value) and "gelu" in str(e.value)


def test_overrides_parse_values_and_keep_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: base\ninner:\n  width: 16\n  act: gelu\n")
    cfg = C.load(
        Outer,
        str(path),
        ["inner.width=32", "flag=true", "sizes=[3, 4]", "name=2024", "inner.window=none"],
    )
    assert cfg.inner.width == 32 and cfg.inner.act == "gelu"  # untouched keys survive
    assert cfg.flag is True and cfg.sizes == [3, 4]
    assert cfg.name == "2024" and isinstance(cfg.name, str)
    assert cfg.inner.window is None
    cfg = C.load(Outer, str(path), ["inner.window=64", "inner.rate=1"])
    assert cfg.inner.window == 64 and cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)
    with pytest.raises(C.ConfigError, match="key=value"):
        C.load(Outer, str(path), ["inner.width"])
    with pytest.raises(C.ConfigError, match="no sub-keys"):
        C.load(Outer, str(path), ["name.first=a"])


def test_dump_and_load_round_trip(tmp_path):
    cfg = C.from_dict(Outer, {"name": "n", "inner": {"width": 3, "window": 7}})
    C.dump(cfg, tmp_path / "out.yaml")
    assert C.load(Outer, str(tmp_path / "out.yaml")) == cfg


def test_a_mistyped_preset_key_or_family_gets_did_you_mean(tmp_path):
    """The closest name, whole (a dotted key with its section), before the list of what
    exists; nothing suggested when nothing is close."""
    with pytest.raises(C.ConfigError, match="preset named 'midi-gur': did you mean 'midi-gru'?"):
        C.read_yaml("midi-gur")
    cases = {
        "train.max_minuts=3": "'train.max_minuts': did you mean 'train.max_minutes'?",
        "model.hiden=8": "'model.hiden': did you mean 'model.hidden'?",
        "modle.hidden=8": "'modle.hidden': did you mean 'model.hidden'?",
        "seeed=1": "'seeed': did you mean 'seed'?",
    }
    for override, said in cases.items():
        with pytest.raises(C.ConfigError) as e:
            C.load(C.RunConfig, "tiny", [override])
        assert said in str(e.value) and "allowed: " in str(e.value), str(e.value)
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_step: 3\n")  # a YAML file's keys too
    with pytest.raises(C.ConfigError, match="did you mean 'train.max_steps'"):
        C.load(C.RunConfig, str(path))
    with pytest.raises(C.ConfigError) as e:
        C.load(C.RunConfig, "tiny", ["zzzzzz=1"])
    assert "did you mean" not in str(e.value) and "allowed: data, out" in str(e.value)
    with pytest.raises(C.ConfigError, match="'wide' is not allowed; did you mean 'wider'?"):
        C._coerce("wide", Literal["narrow", "wider"], "model.shape")


def test_missing_file_and_preset_are_clear_errors(tmp_path):
    with pytest.raises(C.ConfigError, match="no config file or preset"):
        C.read_yaml("surely-not-a-preset")
    with pytest.raises(C.ConfigError, match="does not exist"):
        C.read_yaml(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(C.ConfigError, match="mapping"):
        C.read_yaml(str(bad))
    with pytest.raises(C.ConfigError, match="is a folder, not a config file"):
        C.read_yaml(str(tmp_path))  # `tunelab train DATA_DIR`: an error, not a traceback
    bad.write_text("a: [\n")
    with pytest.raises(C.ConfigError, match="list.yaml: not a readable YAML config"):
        C.read_yaml(str(bad))


# -- the run config's model section: the family's own dataclass ------------------------------
def test_presets_read_as_their_family_config():
    from tunelab.models import MODELS

    for name in C.presets():
        data = C.read_yaml(name)["model"]
        model = C.load(C.RunConfig, name).model
        assert isinstance(model, MODELS[data["family"]].config)
        assert {k: getattr(model, k) for k in data} == data  # nothing moved or renamed


def test_model_family_override_switches_the_section():
    """``model.family=`` picks the dataclass whatever the order of the overrides; the preset's
    keys that the new family shares (layers, dropout) keep their values, the others go, and
    the result dumps and loads back with the family's keys only."""
    from tunelab.models.transformer import TransformerConfig
    from tunelab.models.wavenet import WaveNetConfig

    for over in (
        ["model.family=wavenet", "model.residual_channels=8"],
        ["model.residual_channels=8", "model.family=wavenet"],
    ):
        cfg = C.load(C.RunConfig, "tiny", over)
        assert cfg.model == WaveNetConfig(residual_channels=8)
    cfg = C.load(C.RunConfig, "tiny", ["model.family=transformer", "model.d_model=16"])
    assert cfg.model == TransformerConfig(d_model=16, layers=1, dropout=0.0)
    # Keys of other families are dropped: they never reached this model (the old flat layout).
    cfg = C.load(C.RunConfig, "tiny", ["model.d_model=16", "model.window=8", "model.roll=true"])
    assert cfg.model.family == "token_rnn" and cfg.model.roll and not hasattr(cfg.model, "window")


def test_model_section_dumps_its_family_keys_only(tmp_path):
    cfg = C.load(C.RunConfig, "wavenet-tiny", ["model.gc_channels=0"])
    C.dump(cfg, tmp_path / "c.yaml")
    text = (tmp_path / "c.yaml").read_text()
    assert "gc_channels: 0" in text and "hidden" not in text and "frame_size" not in text
    assert C.load(C.RunConfig, str(tmp_path / "c.yaml")) == cfg


def test_model_section_errors_name_the_key_and_the_family_keys():
    with pytest.raises(C.ConfigError) as e:
        C.load(C.RunConfig, "wavenet-tiny", ["model.residual_chanels=8"])
    msg = str(e.value)
    assert "model.residual_chanels" in msg and "residual_channels" in msg and "cell" not in msg
    with pytest.raises(C.ConfigError) as e:
        C.model_config({"family": "samplernn", "hiden": 3})
    assert "model.hiden" in str(e.value) and "srnn_frame_size" in str(e.value)
    with pytest.raises(
        C.ConfigError, match="unknown model family 'wavenut'; did you mean 'wavenet'. choose one of"
    ):
        C.load(C.RunConfig, "tiny", ["model.family=wavenut", "model.hidden=3"])
    with pytest.raises(C.ConfigError, match="model.window: .wide. does not fit"):
        C.load(C.RunConfig, "midi-transformer", ["model.window=wide"])
    with pytest.raises(C.ConfigError, match="model: expected a mapping"):
        C.from_dict(C.RunConfig, {"model": 3})


def test_an_option_on_for_a_family_without_it_is_refused():
    with pytest.raises(C.ConfigError, match="piece_memory needs a MIDI token family"):
        C.load(C.RunConfig, "wavenet-tiny", ["model.piece_memory=true"])
    with pytest.raises(C.ConfigError, match="transpose_mix must be >= 0, and 0 unless"):
        C.load(C.RunConfig, "midi-transformer", ["model.transpose_mix=2"])
    with pytest.raises(C.ConfigError, match="transpose_mix must be >= 0, and 0 unless"):
        C.model_config({"family": "frame_rnn", "transpose_mix": -1})
    # Off, as every run before per-family configs saved it: dropped.
    cfg = C.load(C.RunConfig, "wavenet-tiny", ["model.piece_memory=false", "model.transpose_mix=0"])
    assert not hasattr(cfg.model, "piece_memory")


def test_the_flat_layout_of_old_runs_reads_as_the_family_config():
    """Runs written before per-family configs hold every family's keys in one section (the 35
    keys of the fixture runs): exactly the keys of all families together. Each keeps its own."""
    import yaml

    from tunelab.models import MODELS

    path = Path(__file__).parent / "fixtures" / "old_runs" / "frames" / "config.yaml"
    flat = yaml.safe_load(path.read_text())["model"]
    old = {k: row for k, row in MODELS.items() if k != "revision"}  # (added after that layout)
    later = {"linear_skip", "stft_floor_db", "wave_mse"}  # frame_rnn keys added since: defaults
    every = {f.name for row in old.values() for f in dataclasses.fields(row.config)} - later
    assert set(flat) == every and len(every) == 35
    for family, row in old.items():
        model = C.model_config({**flat, "family": family})
        own = {f.name for f in dataclasses.fields(row.config)}
        assert isinstance(model, row.config) and C.to_dict(model) == {
            **{k: flat[k] for k in own - later},
            **{k: getattr(row.config(), k) for k in own & later},
            "family": family,
        }
    with pytest.raises(C.ConfigError, match="unknown key 'model.bogus'"):
        C.model_config({**flat, "bogus": 1})


def test_families_agree_on_shared_defaults_and_help_lists_each_key_once():
    from tunelab.models import MODELS

    seen: dict[str, object] = {}
    for row in MODELS.values():
        for k, v in C.to_dict(row.config()).items():
            if k != "family":
                assert seen.setdefault(k, v) == v, k
    keys = C.defaults()
    assert keys["model.family"] == "token_rnn" and keys["train.betas"] == [0.9, 0.99]
    assert {k[len("model.") :] for k in keys if k.startswith("model.")} == {*seen, "family"}
