"""The data directory: a streaming, crash-safe writer and a memory-mapped reader.

Layout of a finished DATA_DIR (both MIDI and audio)::

    meta.json              how to decode the arrays (written last: its presence means "complete")
    stats.json             counts, filter rules and their hits
    manifest.jsonl         one object per input file: path, status, reason, ...
    {split}.bin            flat array of every piece of the split, back to back (dtype in meta)
    {split}.index.jsonl    one object per piece: offset, length, source, label, ...

The writer builds everything in a hidden sibling folder ``.NAME.partial-PID`` and
renames it into place only when complete, so an interrupted run never leaves a
directory that looks finished, and a failed rerun never destroys a good one.

Pieces are spooled to disk as they arrive (bounded memory whatever the collection
size) and assigned to splits only at the end, because the split rule
(``tunelab.data.splits``) needs to see every piece: pieces that share a group (e.g.
variants of one chorale) or have identical content must land in the same split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.markup import escape

from tunelab.atomic import write_json
from tunelab.data.splits import (
    SPLITS,
    assign_splits,
    cross_split_duplicates,
    split_warnings,
)

FORMAT_VERSION = 1


class DataDirError(RuntimeError):
    """A data directory that cannot be written or read, with the reason."""


def printable(text: str) -> str:
    """Text that encodes as UTF-8: undecodable file-name bytes (surrogates on POSIX) -> \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _recover(out: Path) -> None:
    """Undo a publish cut short between its two renames: the old data set, set aside
    as ``.NAME.old-PID``, goes back to ``out`` if nothing took its place."""
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        if _alive(old.name.rsplit("-", 1)[-1]):
            continue
        if not out.exists() and (old / "meta.json").exists():
            os.replace(old, out)
        else:
            shutil.rmtree(old, ignore_errors=True)


def _alive(pid: str) -> bool:
    """Whether process ``pid`` still runs (a concurrent prepare's folder is left alone)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _Spooled:
    offset: int
    length: int
    info: dict
    digest: str  # of the array: the data fingerprint
    group: str | None
    fixed: str | None
    same: str  # what makes two pieces the same (default: the digest): one split for them


class DataDirWriter:
    """Write a data directory piece by piece; publish it atomically with ``finish``.

    Use as a context manager: an exception inside the block removes the partial
    folder and leaves any existing ``out`` untouched.
    """

    def __init__(self, out: str | Path, dtype: str, overwrite: bool = False):
        self.out = Path(out)
        self.dtype = np.dtype(dtype)
        _recover(self.out)
        if (self.out / "meta.json").exists() and not overwrite:
            raise DataDirError(
                f"{self.out} already holds a prepared data set; pass --overwrite to replace it "
                "or choose another --out"
            )
        if self.out.exists() and not (self.out / "meta.json").exists():
            if self.out.is_file() or any(self.out.iterdir()):
                raise DataDirError(
                    f"{self.out} exists and is not a tunelab data directory; refusing to write there"
                )
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.out.parent.glob(f".{self.out.name}.partial-*"):
            if not _alive(stale.name.rsplit("-", 1)[-1]):  # left by an interrupted run
                shutil.rmtree(stale, ignore_errors=True)
        self.stage = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        self.stage.mkdir()
        self._spool = open(self.stage / "spool.bin", "wb")
        self._pieces: list[_Spooled] = []
        self._manifest: list[dict] = []
        self._items = 0
        self.rejections: Counter = Counter()  # reason key -> files
        # The first few "file: reason" lines, for the summary. Rich markup, escaped: file
        # names are untrusted and a "[/x]" in one would crash (or restyle) the console print.
        self.examples: list[str] = []
        self.duplicates: dict[str, list[str]] = {}  # set by finish: cross_split_duplicates
        self.warnings: list[str] = []  # set by finish: split_warnings
        self.ignored = 0  # input files of another kind (manifest status "ignored")
        self.dedup_splits = False

    def __enter__(self) -> DataDirWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def add_piece(
        self,
        array: np.ndarray,
        info: dict,
        group: str | None = None,
        split: str | None = None,
        content: str | None = None,
    ) -> None:
        """Spool one piece. ``info`` must hold ``source``; ``group`` ties pieces to one split.
        ``content``: a digest of what makes two pieces the same (default: the array's bytes);
        pieces with equal digests go to one split."""
        a = np.ascontiguousarray(array, dtype=self.dtype)
        digest = hashlib.sha1(a.tobytes()).hexdigest()
        self._spool.write(a.tobytes())
        spooled = _Spooled(self._items, len(a), dict(info), digest, group, split, content or digest)
        self._pieces.append(spooled)
        self._items += len(a)

    def add_manifest(self, entry: dict) -> None:
        """Record one input file: at least ``path`` and ``status`` (and ``reason`` if rejected)."""
        self._manifest.append(entry)

    def reject(self, path: str, key: str, reason: str) -> None:
        """Record a rejected input file: manifest line, count by ``key``, example line."""
        path, reason = printable(path), printable(reason)  # reasons may quote the file name
        self.rejections[key] += 1
        if len(self.examples) < 10:
            self.examples.append(escape(f"{path}: {reason}"))
        self.add_manifest({"path": path, "status": "rejected", "reason": reason})

    def ignore(self, path: str, reason: str) -> None:
        """Record an input file that this kind of data set does not read (manifest status
        ``ignored``), so that every file found appears in the manifest."""
        self.ignored += 1
        self.add_manifest({"path": printable(path), "status": "ignored", "reason": reason})

    def rejection_report(self) -> list[str]:
        """Lines for the end-of-run summary: rejections by reason, a few examples."""
        n = sum(self.rejections.values())
        if not n:
            return []
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.rejections.items()))
        return [
            f"[yellow]rejected {n}[/] ({why}); e.g.",
            *(f"  {line}" for line in self.examples[:5]),
            escape(f"every file's status: {self.out / 'manifest.jsonl'}"),
        ]

    def warning_report(self) -> list[str]:
        """Lines for the summary: ignored files and the splits' warnings, in plain words."""
        lines = [f"[yellow]warning:[/] {escape(w)}" for w in self.warnings]
        if self.ignored:
            lines.insert(
                0,
                f"[yellow]ignored {self.ignored}[/] files of another kind or name; "
                + escape(f"each is listed with its reason in {self.out / 'manifest.jsonl'}"),
            )
        return lines

    def duplicate_report(self) -> list[str]:
        """Lines for the summary: pieces of the user's valid/test folders equal to an earlier
        split's piece (kept there unless --dedup-splits, which moved them)."""
        if not self.duplicates:
            return []
        n = len(self.duplicates)
        done = (
            "moved to the earlier split (--dedup-splits)"
            if self.dedup_splits
            else ("kept in their folders' splits; --dedup-splits moves them")
        )
        lines = [
            f"[yellow]cross-split duplicates {n}[/]: equal to an earlier split's piece, {done}"
        ]
        for name, twins in list(self.duplicates.items())[:10]:
            lines.append(escape(f"  {name} = {', '.join(twins)}"))
        return lines

    @property
    def n_pieces(self) -> int:
        return len(self._pieces)

    def finish(
        self,
        meta: dict,
        stats: dict,
        ratios=(0.9, 0.05, 0.05),
        refine: Callable[[DataDir], dict] | None = None,
        dedup_splits: bool = False,
    ) -> dict:
        """Assign splits, write arrays, indexes, stats, manifest, then meta; publish.

        ``refine``, when given, sees the staged directory once the splits are
        written and returns keys to add to meta (figures that need the training
        split, like its median tempo or feature statistics), so meta.json is
        still written once, last.

        Pieces from the user's train/valid/test folders keep their folder's split; those
        equal to an earlier split's piece are reported (``self.duplicates``, stats.json
        ``cross_split_duplicates``, manifest ``duplicate_of``) and moved only with
        ``dedup_splits``.

        Returns the per-split counts also stored in ``meta["splits"]``.
        """
        self._spool.close()
        order = sorted(range(len(self._pieces)), key=lambda i: self._pieces[i].info["source"])
        pieces = [self._pieces[i] for i in order]
        splits = assign_splits(
            [p.info["source"] for p in pieces],
            [p.group for p in pieces],
            [p.same for p in pieces],
            [p.fixed for p in pieces],
            ratios,
            dedup_fixed=dedup_splits,
        )
        self.dedup_splits = dedup_splits
        self.duplicates = cross_split_duplicates(
            [p.info["source"] for p in pieces],
            [p.same for p in pieces],
            [p.fixed for p in pieces],
        )
        spool = (
            np.memmap(self.stage / "spool.bin", dtype=self.dtype, mode="r") if self._items else None
        )
        counts = {}
        for split in SPLITS:
            offset = 0
            n = 0
            with (
                open(self.stage / f"{split}.bin", "wb") as fa,
                open(self.stage / f"{split}.index.jsonl", "w", encoding="utf-8") as fi,
            ):
                for p, s in zip(pieces, splits, strict=True):
                    if s != split:
                        continue
                    fa.write(spool[p.offset : p.offset + p.length].tobytes())
                    rec = {**p.info, "offset": offset, "length": p.length, "group": p.group}
                    fi.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    offset += p.length
                    n += 1
            counts[split] = {"pieces": n, "items": offset}
        self.warnings = split_warnings(counts, by_folder=any(p.fixed for p in pieces))
        del spool
        (self.stage / "spool.bin").unlink()
        for e in self._manifest:  # tell the user where each accepted file went
            e.setdefault("split", None)
        by_source = {p.info["source"]: s for p, s in zip(pieces, splits, strict=True)}
        with open(self.stage / "manifest.jsonl", "w", encoding="utf-8") as f:
            for e in sorted(self._manifest, key=lambda e: str(e["path"])):
                if e.get("status") == "accepted" and e["split"] is None:
                    e["split"] = by_source.get(e.get("source", e["path"]))
                twins = self.duplicates.get(e.get("source", e["path"]))
                if e.get("status") == "accepted" and twins:
                    e["duplicate_of"] = twins
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
        dups = {
            "count": len(self.duplicates),
            "pieces": self.duplicates,
            "action": "moved" if dedup_splits else "kept",
        }
        write_json(
            self.stage / "stats.json",
            {
                **stats,
                "splits": counts,
                "split_warnings": self.warnings,
                "ignored": self.ignored,
                "cross_split_duplicates": dups,
            },
        )
        # What a shared model was trained on, without the data: one SHA-256 over every
        # piece's content digest and split (equal data sets give equal fingerprints).
        fp = hashlib.sha256()
        for p, s in zip(pieces, splits, strict=True):
            fp.update(f"{s}\t{p.digest}\n".encode())
        meta = {
            **meta,
            "format_version": FORMAT_VERSION,
            "dtype": self.dtype.str,
            "splits": counts,
            "data_fingerprint": f"sha256:{fp.hexdigest()}",
        }
        if refine is not None:
            meta.update(refine(DataDir(self.stage, meta, stats)))
        write_json(self.stage / "meta.json", meta)  # last: its presence marks completion
        self._publish()
        return counts

    def _publish(self) -> None:
        for f in self.stage.iterdir():  # on disk before the folder's name says "complete"
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        old = None
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
            os.replace(self.out, old)
        os.replace(self.stage, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Drop everything written so far; ``out`` is left as it was."""
        if not self._spool.closed:
            self._spool.close()
        shutil.rmtree(self.stage, ignore_errors=True)


@dataclass
class Split:
    """One split: ``data`` is the flat memory-mapped array, ``pieces`` its index."""

    name: str
    data: np.ndarray
    pieces: list[dict] = field(default_factory=list)

    def piece(self, i: int) -> np.ndarray:
        p = self.pieces[i]
        return self.data[p["offset"] : p["offset"] + p["length"]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.piece(i) for i in range(len(self.pieces)))

    def __len__(self) -> int:
        return len(self.pieces)


@dataclass
class DataDir:
    path: Path
    meta: dict
    stats: dict

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise DataDirError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        dtype = np.dtype(self.meta["dtype"])
        bin_path = self.path / f"{name}.bin"
        if bin_path.stat().st_size == 0:
            data = np.zeros(0, dtype=dtype)
        else:
            data = np.memmap(bin_path, dtype=dtype, mode="r")
        with open(self.path / f"{name}.index.jsonl", encoding="utf-8") as f:
            pieces = [json.loads(line) for line in f if line.strip()]
        return Split(name, data, pieces)

    def reference_splits(self) -> list[Split]:
        """The splits that stand for "the training data" in statistics: train, or valid and
        test when train is empty (a collection too small to split)."""
        train = self.split("train")
        return [train] if len(train) else [self.split("valid"), self.split("test")]

    def manifest(self) -> list[dict]:
        with open(self.path / "manifest.jsonl", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def load_datadir(path: str | Path) -> DataDir:
    """Open a finished data directory (raises DataDirError naming what is missing)."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.exists():
        raise DataDirError(
            f"{path} is not a prepared data directory (no meta.json); run `tunelab prepare` first"
        )
    stats_path = path / "stats.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.exists() else {}
    except (OSError, ValueError) as e:  # a damaged or foreign file: name it, no traceback
        raise DataDirError(f"{path}: cannot read meta.json/stats.json ({e})") from e
    if not isinstance(meta, dict) or not isinstance(stats, dict):
        raise DataDirError(f"{path}: meta.json and stats.json must hold JSON objects")
    return DataDir(path, meta, stats)
