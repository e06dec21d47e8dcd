"""Which split each piece of a collection goes to, and what the splits' sizes mean.

Splits go by piece, never by window: pieces that share a group (variants of one chorale)
or have identical content form one component, and a whole component lands in one split.
Pieces from the user's train/valid/test folders keep their folder's split
(``cross_split_duplicates`` names those equal to a piece of an earlier split); the other
components are ordered by a hash of their smallest key (``_unit_hash``: the same on every
run and machine) and cut by the ratios. ``split_warnings`` says in plain words when valid
or test is too small to measure.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "valid", "test")


def _unit_hash(key: str) -> float:
    """Deterministic hash of ``key`` to [0, 1): the same on every run and machine."""
    h = hashlib.sha1(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign_splits(
    keys: list[str],
    groups: list[str | None],
    hashes: list[str],
    fixed: list[str | None],
    ratios: tuple[float, float, float] = (0.9, 0.05, 0.05),
    dedup_fixed: bool = False,
) -> list[str]:
    """Assign each piece to a split, by piece, deterministically.

    Pieces are joined into components when they share a group or a content
    hash; a whole component goes to one split. A component holding a piece with
    a ``fixed`` split (from train/valid/test subfolders) takes that split, except
    that a fixed piece keeps its own split unless ``dedup_fixed``: a user's split is
    a benchmark's split and must not change silently (see ``cross_split_duplicates``
    for the report). The others are ordered by a hash of their smallest key and cut
    by ``ratios`` (at least one component in valid and in test when there are three
    or more).
    """
    n = len(keys)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, (g, h) in enumerate(zip(groups, hashes, strict=True)):
        for tag in (f"g:{g}" if g else None, f"h:{h}"):
            if tag is None:
                continue
            if tag in first:
                parent[find(i)] = find(first[tag])
            else:
                first[tag] = i
    comps: dict[int, list[int]] = {}
    for i in range(n):
        comps.setdefault(find(i), []).append(i)

    out: list[str] = [""] * n
    free: list[tuple[float, list[int]]] = []
    for members in comps.values():
        fixed_here = sorted({fixed[i] for i in members if fixed[i]})
        if fixed_here:
            # Conflicting explicit splits (same tune in train/ and test/) resolve to
            # the first in SPLITS order so the test split never leaks training data.
            split = min(fixed_here, key=SPLITS.index)
            for i in members:
                out[i] = fixed[i] if fixed[i] and not dedup_fixed else split
        else:
            free.append((_unit_hash(min(keys[i] for i in members)), members))
    free.sort(key=lambda t: t[0])
    m = len(free)
    n_test = max(1, round(ratios[2] * m)) if m >= 3 and ratios[2] > 0 else 0
    n_valid = max(1, round(ratios[1] * m)) if m >= 3 and ratios[1] > 0 else 0
    for rank, (_, members) in enumerate(free):
        if rank >= m - n_test:
            split = "test"
        elif rank >= m - n_test - n_valid:
            split = "valid"
        else:
            split = "train"
        for i in members:
            out[i] = split
    return out


SMALL_SPLIT_PIECES = 10  # fewer pieces than this in valid or test: its figures are one sample


def split_warnings(counts: dict, by_folder: bool) -> list[str]:
    """Plain-word warnings about splits too small to measure (``counts``: split ->
    ``{"pieces", "items"}``), and, for a collection of fewer than SMALL_SPLIT_PIECES pieces,
    how the split was made and what its figures mean."""
    total = sum(c["pieces"] for c in counts.values())
    out = []
    for name in ("valid", "test"):
        c = counts.get(name, {"pieces": 0, "items": 0})
        if c["pieces"] == 0:
            out.append(
                f"{name} is empty: figures on {name} cannot be measured "
                f"({total} pieces in all; give more files or a {name}/ folder)"
            )
        elif c["pieces"] < SMALL_SPLIT_PIECES:
            s = "" if c["pieces"] == 1 else "s"
            out.append(
                f"{name} holds only {c['pieces']} piece{s} ({c['items']:,} items): its figures "
                f"describe {'that piece' if c['pieces'] == 1 else 'those pieces'}, not the "
                "collection, and move a lot from one split to another"
            )
    if total < SMALL_SPLIT_PIECES:
        how = (
            "by your train/valid/test folders"
            if by_folder
            else "by piece, from a hash of each file's name (stable across runs)"
        )
        parts = ", ".join(f"{k} {v['pieces']}" for k, v in counts.items())
        out.append(
            f"only {total} pieces: the split was made {how} ({parts}); treat every figure as "
            "a rough check of this run, not a measure of the model"
        )
    return out


def cross_split_duplicates(
    keys: list[str], hashes: list[str], fixed: list[str | None]
) -> dict[str, list[str]]:
    """Pieces whose content equals a piece's in an earlier fixed split (train < valid < test):
    ``{key: [keys of its twins in earlier splits]}``, sorted. These are what
    ``dedup_fixed`` moves; without it they stay where the user put them."""
    by_hash: dict[str, list[int]] = {}
    for i, (h, f) in enumerate(zip(hashes, fixed, strict=True)):
        if f:
            by_hash.setdefault(h, []).append(i)
    out: dict[str, list[str]] = {}
    for members in by_hash.values():
        for i in members:
            earlier = [keys[j] for j in members if SPLITS.index(fixed[j]) < SPLITS.index(fixed[i])]
            if earlier:
                out[keys[i]] = sorted(earlier)
    return dict(sorted(out.items()))
