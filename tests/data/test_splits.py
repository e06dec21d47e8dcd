"""Split assignment: ratios, determinism, groups and identical content, fixed splits."""

from __future__ import annotations

from collections import Counter

from tunelab.data.splits import assign_splits, cross_split_duplicates
from tunelab.data.store import SPLITS


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
