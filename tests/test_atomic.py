"""Atomic writes: a reader sees the old file or the new one, never a part, whatever happens."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest

from tunelab.atomic import atomic_path, json_safe, write_json, write_text


def test_success_replaces_and_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "deep" / "er" / "plot.png"  # missing folders are made
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.suffix == ".png" and tmp.name.startswith(".")
        assert not path.exists()  # nothing is visible under the name until the end
        tmp.write_bytes(b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half of the sec")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["plot.png"]  # no temp left


def test_json_is_utf8_and_nan_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "meta.json"
    assert write_json(path, {"label": "café ♪", "n": 3}) == path
    assert "café ♪" in path.read_text(encoding="utf-8")
    with pytest.raises(ValueError):
        write_json(path, {"loss": math.nan})
    assert json.loads(path.read_text(encoding="utf-8")) == {"label": "café ♪", "n": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_json_safe_turns_numpy_and_non_finite_numbers_into_json():
    got = json_safe(
        {"a": np.float32(0.5), "b": (np.int64(3), math.inf), "c": [np.float64("nan"), "x"]}
    )
    assert got == {"a": 0.5, "b": [3, None], "c": [None, "x"]}
    assert type(got["a"]) is float and type(got["b"][0]) is int
    json.dumps(got, allow_nan=False)  # would raise if anything were left


def test_writers_in_parallel_threads_never_mix_their_files(tmp_path):
    path = tmp_path / "sidecar.json"
    texts = [json.dumps({"writer": i, "pad": "x" * 20_000 * (i + 1)}) for i in range(6)]
    errors = []

    def writer(text):
        try:
            for _ in range(10):
                write_text(path, text)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert path.read_text(encoding="utf-8") in texts  # one writer's whole text
    assert [p.name for p in tmp_path.iterdir()] == ["sidecar.json"]
