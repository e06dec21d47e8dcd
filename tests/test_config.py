"""Config machinery: YAML + dotted overrides into dataclasses; errors name the key."""

from __future__ import annotations

import dataclasses
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


def test_missing_file_and_preset_are_clear_errors(tmp_path):
    with pytest.raises(C.ConfigError, match="no config file or preset"):
        C.read_yaml("surely-not-a-preset")
    with pytest.raises(C.ConfigError, match="does not exist"):
        C.read_yaml(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(C.ConfigError, match="mapping"):
        C.read_yaml(str(bad))
