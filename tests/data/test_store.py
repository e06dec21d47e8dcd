"""The data directory: split assignment rules and the writer's crash safety."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from tunelab.data.splits import assign_splits, cross_split_duplicates
from tunelab.data.store import SPLITS, DataDirError, DataDirWriter, load_datadir


def keys(n):
    return [f"piece{i:04d}.mid" for i in range(n)]


def test_ratios_and_determinism():
    k = keys(400)
    a = assign_splits(k, [None] * 400, k, [None] * 400, (0.8, 0.1, 0.1))
    assert a == assign_splits(k, [None] * 400, k, [None] * 400, (0.8, 0.1, 0.1))
    c = Counter(a)
    assert (c["train"], c["valid"], c["test"]) == (320, 40, 40)
    # Order of the inputs does not matter: each piece's split depends on its key only.
    rev = assign_splits(k[::-1], [None] * 400, k[::-1], [None] * 400, (0.8, 0.1, 0.1))
    assert rev[::-1] == a


def test_small_collections_still_get_valid_and_test():
    for n in (3, 4, 7):
        c = Counter(assign_splits(keys(n), [None] * n, keys(n), [None] * n))
        assert c["valid"] >= 1 and c["test"] >= 1 and c["train"] >= 1
    assert set(assign_splits(keys(2), [None] * 2, keys(2), [None] * 2)) == {"train"}


def test_groups_and_identical_content_share_a_split():
    n = 300
    k = keys(n)
    groups = [f"g{i // 7}" for i in range(n)]  # runs of 7 variants
    hashes = [f"h{i}" for i in range(n)]
    hashes[5] = hashes[250] = hashes[120] = "same"  # identical content, different groups
    out = assign_splits(k, groups, hashes, [None] * n)
    for g in set(groups):
        assert len({s for s, gg in zip(out, groups, strict=True) if gg == g}) == 1
    linked = {i for i in range(n) if groups[i] in {groups[5], groups[250], groups[120]}}
    assert len({out[i] for i in linked}) == 1
    assert set(out) == set(SPLITS)


def test_fixed_splits_are_kept_and_dedup_moves_conflicts_to_train():
    k = keys(6)
    fixed = ["train", "valid", "test", "test", None, None]
    hashes = ["a", "b", "c", "a", "b", "z"]  # piece 3 duplicates a train piece
    out = assign_splits(k, [None] * 6, hashes, fixed)
    assert out[:4] == ["train", "valid", "test", "test"]  # the user's split, exactly
    assert out[4] == "valid"  # an unfixed piece follows its identical twin's fixed split
    assert cross_split_duplicates(k, hashes, fixed) == {k[3]: [k[0]]}
    moved = assign_splits(k, [None] * 6, hashes, fixed, dedup_fixed=True)
    assert moved[:3] == ["train", "valid", "test"]
    assert moved[3] == "train"  # opted in: never let a training piece leak into test


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
