"""The data directory: the writer's round trip and crash safety."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tunelab.data.store import SPLITS, DataDirError, DataDirWriter, load_datadir


def _write(out, pieces, overwrite=False):
    with DataDirWriter(out, "uint16", overwrite=overwrite) as w:
        for i, arr in enumerate(pieces):
            w.add_piece(np.asarray(arr), {"source": f"p{i}", "label": None})
            w.add_manifest({"path": f"p{i}", "status": "accepted", "source": f"p{i}"})
        w.add_manifest({"path": "bad", "status": "rejected", "reason": "empty file"})
        return w.finish({"kind": "midi"}, {"pieces": len(pieces)})


def test_writer_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 500, int(rng.integers(1, 50))) for _ in range(30)]
    counts = _write(tmp_path / "d", pieces)
    dd = load_datadir(tmp_path / "d")
    got = {}
    for s in SPLITS:
        split = dd.split(s)
        assert counts[s]["pieces"] == len(split)
        for i, p in enumerate(split.pieces):
            got[p["source"]] = np.asarray(split.piece(i))
    assert set(got) == {f"p{i}" for i in range(30)}
    for i, arr in enumerate(pieces):
        assert np.array_equal(got[f"p{i}"], arr)
    man = dd.manifest()
    assert {e["path"]: e["split"] for e in man}["bad"] is None
    assert all(e["split"] in SPLITS for e in man if e["status"] == "accepted")


def test_writer_is_atomic_and_refuses_to_clobber(tmp_path):
    out = tmp_path / "d"
    with pytest.raises(RuntimeError):
        with DataDirWriter(out, "uint16") as w:
            w.add_piece(np.arange(5), {"source": "a"})
            raise RuntimeError("crash mid-way")
    assert not out.exists() and not list(tmp_path.glob(".d.*"))

    _write(out, [np.arange(5)] * 3)
    with pytest.raises(DataDirError, match="--overwrite"):
        DataDirWriter(out, "uint16")
    before = (out / "meta.json").read_bytes()
    with pytest.raises(RuntimeError):
        with DataDirWriter(out, "uint16", overwrite=True) as w:
            w.add_piece(np.arange(9), {"source": "b"})
            raise RuntimeError("crash during an overwrite")
    assert (out / "meta.json").read_bytes() == before  # the good one survives
    _write(out, [np.arange(7)] * 4, overwrite=True)
    assert load_datadir(out).stats["pieces"] == 4

    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(DataDirError, match="not a tunelab data directory"):
        DataDirWriter(other, "uint16", overwrite=True)
    assert (other / "mine.txt").exists()


def test_stale_partial_from_a_killed_run_is_cleaned(tmp_path):
    stale = tmp_path / ".d.partial-99999"
    stale.mkdir()
    (stale / "spool.bin").write_bytes(b"x" * 10)
    _write(tmp_path / "d", [np.arange(3)])
    assert not stale.exists() and (tmp_path / "d" / "meta.json").exists()
    with pytest.raises(DataDirError, match="meta.json"):
        load_datadir(tmp_path / "nothing")


def test_partial_of_a_running_prepare_is_left_alone(tmp_path):
    import os

    busy = tmp_path / f".d.partial-{os.getppid()}"  # a live process: a concurrent prepare
    busy.mkdir()
    _write(tmp_path / "d", [np.arange(3)])
    assert busy.exists() and (tmp_path / "d" / "meta.json").exists()


def test_publish_cut_between_renames_is_recovered(tmp_path):
    _write(tmp_path / "d", [np.arange(3)])
    os.replace(tmp_path / "d", tmp_path / ".d.old-99999")  # killed right after the first rename
    with pytest.raises(DataDirError, match="already holds"):
        DataDirWriter(tmp_path / "d", "uint16")  # the old data set is back, and protected
    assert load_datadir(tmp_path / "d").split("train").data.tolist() == [0, 1, 2]
    assert not (tmp_path / ".d.old-99999").exists()


def test_damaged_meta_is_a_clear_error(tmp_path):
    """A truncated or foreign meta.json gives DataDirError naming the folder, not a traceback."""
    from tunelab.data.store import DataDirError

    _write(tmp_path / "d", [np.arange(5)])
    for text in ('{"kind": "mi', "[1, 2]", b"\xff\xfe"):
        meta = tmp_path / "d" / "meta.json"
        meta.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(DataDirError, match=str(tmp_path / "d")):
            load_datadir(tmp_path / "d")
