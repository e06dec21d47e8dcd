"""``tunelab prepare --kind midi``: a collection of MIDI files -> a data directory.

Each file is read, parsed (symusic), filtered, quantized and encoded in a worker
process; the main process streams the results into a ``DataDirWriter`` (spooled to
disk, published atomically) and records one manifest line per file. A file that
fails in any way is rejected with a reason and never stops the run.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic
from rich.markup import escape

from tunelab.data.midi import codec as midi_codec
from tunelab.data.midi import context as midi_context
from tunelab.data.midi import grid as midi
from tunelab.data.midi.summary import dropped_notes, print_summary
from tunelab.data.pool import run_isolated
from tunelab.data.scan import MIDI_EXTS, Found, ignored, require_sources, scan
from tunelab.data.store import DataDirError, DataDirWriter, printable

BUILTINS = ("bach-chorales",)
MAX_FILE_BYTES = 64 * 2**20  # larger "MIDI" files are not music collections' files


@dataclass(frozen=True)
class Options:
    encoding: str = "steps"
    steps_per_quarter: int = 24
    off_piano: str = "auto"
    keep_drums: bool = False


def _check_header(data: bytes) -> None:
    """Reject what symusic would misread: empty, not SMF, type 2 (independent sequences)."""
    if not data:
        raise midi.Rejected("empty file", "empty")
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":  # RIFF-wrapped MIDI: unwrap below
        return
    if data[:4] != b"MThd":
        raise midi.Rejected("not a MIDI file (no MThd header)", "not_midi")
    if len(data) < 14:
        raise midi.Rejected("truncated MIDI header", "truncated")
    fmt, _ntracks, division = struct.unpack(">HHH", data[8:14])
    if fmt == 2:
        raise midi.Rejected("MIDI type 2 (independent sequences) is not supported", "type_2")
    if fmt > 2:
        raise midi.Rejected(f"unknown MIDI format {fmt}", "not_midi")
    if division & 0x8000:
        raise midi.Rejected("SMPTE time division (no musical grid) is not supported", "smpte")
    if division == 0:
        raise midi.Rejected("invalid ticks per quarter note (0)", "bad_ticks")


def _unwrap_rmid(data: bytes) -> bytes:
    i = data.find(b"MThd")
    if i < 0:
        raise midi.Rejected("RIFF file without MIDI data", "not_midi")
    return data[i:]


def _read_score(path: Path) -> symusic.Score:
    """The parsed file; raises ``Rejected`` naming what is wrong with it."""
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise midi.Rejected(f"file too large ({size} bytes)", "too_large")
    data = Path(path).read_bytes()
    _check_header(data)
    if data[:4] == b"RIFF":
        data = _unwrap_rmid(data)
        _check_header(data)
    try:
        return symusic.Score.from_midi(data)
    except Exception as e:
        if "chunk length" in str(e) or "remaining bytes" in str(e):
            raise midi.Rejected(f"truncated MIDI file ({e})", "truncated") from e
        raise midi.Rejected(f"unreadable MIDI ({e})", "unreadable") from e


def survey_file(path: Path) -> dict | None:
    """The timing figures of one file (``context.timing``) on the finest candidate grid, for
    choosing the grid and encoding before encoding; None when the file cannot be read (the
    encoding pass rejects it with the reason)."""
    try:
        score = _read_score(path)
        spq = midi_context.CANDIDATE_SPQ[-1]
        grid = midi.quantize(score, spq, "drop", by_program=True, pitch_range=(0, 127))
        return midi_context.timing(score, grid, spq)
    except Exception:  # rejected or unreadable: reported by process_file
        return None


def process_file(path: Path, opts: Options) -> dict:
    """One file -> ``{"status": "accepted", "tokens", "info", ...}`` or a rejection.

    Never raises: every failure becomes ``{"status": "rejected", "reason", "key"}``.
    """
    try:
        score = _read_score(path)
        codec = midi_codec.make_codec(opts.encoding, opts.steps_per_quarter)
        grid = midi.quantize(
            score,
            opts.steps_per_quarter,
            opts.off_piano,
            opts.keep_drums,
            by_program=opts.encoding == "remi-programs",  # instruments keep their own notes
            pitch_range=codec.pitch_range,
        )
        tokens = codec.encode_grid(grid)
        # The same notes (velocity aside: a louder copy of a tune is the same tune) go to one
        # split, so a collection holding a piece twice never scores a copy of a training piece.
        notes = np.stack([grid.onset, grid.offset, grid.pitch])
        if grid.program is not None:
            notes = np.concatenate([notes, grid.program[None]])
        content = hashlib.sha1(np.ascontiguousarray(notes, np.int64).tobytes()).hexdigest()
        poly = grid.polyphony()
        tempos = grid.tempos
        qpm = _mean_tempo(tempos, grid.n_steps)
        return {
            "status": "accepted",
            "tokens": tokens.astype(np.uint16),
            "content": content,
            "info": {
                "steps": grid.n_steps,
                "notes": len(grid.pitch),
                "tempos": tempos,
                "qpm": qpm,
                "max_polyphony": int(poly.max()),
            },
            "counts": grid.counts,
            "pitch_hist": np.bincount(grid.pitch, minlength=128),
            "poly_hist": np.bincount(poly),
            "timing": midi_context.timing(score, grid, opts.steps_per_quarter),
        }
    except midi.Rejected as e:
        return {"status": "rejected", "reason": str(e), "key": e.key}
    except Exception as e:  # anything else: report it, keep going
        return {"status": "rejected", "reason": f"{type(e).__name__}: {e}", "key": "error"}


def _mean_tempo(tempos: list[list[float]], n_steps: int) -> float:
    """Tempo averaged over the piece's steps (each tempo weighted by how long it lasts)."""
    total, acc = 0, 0.0
    for i, (step, qpm) in enumerate(tempos):
        end = tempos[i + 1][0] if i + 1 < len(tempos) else max(n_steps, step + 1)
        span = max(0, min(end, n_steps or end) - step)
        total += span
        acc += span * qpm
    return round(acc / total, 3) if total else float(tempos[0][1])


def _work(job: tuple[int, str, Options]) -> tuple[int, dict]:
    i, path, opts = job
    return i, process_file(Path(path), opts)


def _survey_work(job: tuple[int, str, None]) -> tuple[int, dict | None]:
    i, path, _ = job
    return i, survey_file(Path(path))


def _inputs(srcs: list[Path], builtin: str | None) -> tuple[list[Found], list[str | None]]:
    if builtin is None:
        found = scan([Path(s) for s in srcs], MIDI_EXTS)
        found = [Found(f.path, printable(f.display), f.split) for f in found]
        return found, [None] * len(found)
    if builtin != "bach-chorales":
        raise DataDirError(f"unknown builtin {builtin!r}; choose one of {', '.join(BUILTINS)}")
    from tunelab.data.midi.chorales import builtin_chorale_midis, chorale_group

    limit = os.environ.get("TUNELAB_BUILTIN_LIMIT")  # for tests and quick demos
    paths = builtin_chorale_midis(int(limit) if limit else None)
    found = [Found(p, f"bach-chorales/{p.name}", None) for p in paths]
    return found, [chorale_group(p) for p in paths]


def prepare_midi(
    srcs: list[Path],
    out: Path,
    *,
    builtin: str | None = None,
    overwrite: bool = False,
    workers: int = 0,
    ratios: tuple[float, float, float] = (0.9, 0.05, 0.05),
    dedup_splits: bool = False,
    encoding: str = "auto",
    steps_per_quarter: int | str = "auto",
    off_piano: str = "auto",
    keep_drums: bool | None = None,
) -> int:
    """Build a MIDI data directory at ``out``; returns 0, or 1 when no file was usable.

    ``steps_per_quarter`` and ``encoding`` "auto": what the collection calls for
    (``context.choose``, from a first pass over the files), printed with the reason and kept
    in stats.json ``choices``. ``keep_drums`` None: kept by ``remi-programs`` (the one
    encoding with a drum kit), dropped by the piano encodings."""
    from rich.console import Console

    from tunelab.progress import progress_bar as tqdm  # plain lines off a terminal

    console = Console(stderr=True, soft_wrap=True)
    if steps_per_quarter != "auto" and int(steps_per_quarter) < 1:
        raise DataDirError(f"--steps-per-quarter must be at least 1, not {steps_per_quarter}")
    if encoding != "auto":
        midi_codec.make_codec(encoding, 1)  # fail fast on a bad encoding
    if builtin is None:
        require_sources(srcs)  # before creating anything
    writer = DataDirWriter(out, "uint16", overwrite=overwrite)  # refuses a finished dir early
    with writer:
        found, groups = _inputs(list(srcs), builtin)
        for path, why in ignored(list(srcs), MIDI_EXTS) if builtin is None else []:
            writer.ignore(path, why)
        if not found:
            console.print(f"[red]no MIDI files ({', '.join(MIDI_EXTS)}) found in the sources")
            writer.abort()
            return 1
        choices = _choose(found, workers, steps_per_quarter, encoding, console)
        steps_per_quarter, encoding = choices["steps_per_quarter"], choices["encoding"]
        if keep_drums is None:
            keep_drums = encoding == "remi-programs"
            choices["keep_drums"] = keep_drums
            choices["why_drums"] = (
                "remi-programs carries a drum kit"
                if keep_drums
                else f"{encoding} is a piano encoding (--keep-drums puts drums on piano keys)"
            )
        opts = Options(encoding, int(steps_per_quarter), off_piano, keep_drums)
        codec = midi_codec.make_codec(encoding, steps_per_quarter)
        filters: Counter = Counter()
        rejections, examples = writer.rejections, writer.examples
        pitch_hist = np.zeros(128, np.int64)
        poly_hist = np.zeros(1, np.int64)
        totals = Counter()
        qpms: list[float] = []
        timing = midi_context.Timing()
        n = max(1, min(workers or os.cpu_count() or 1, len(found)))
        jobs = [(i, str(f.path), opts) for i, f in enumerate(found)]
        results = run_isolated(jobs, n, _work, chunk=8)  # a parser crash costs only its file
        try:
            for i, r in tqdm(results, total=len(jobs), desc="preparing MIDI", unit="file"):
                f = found[i]
                if r["status"] != "accepted":
                    writer.reject(f.display, r["key"], r["reason"])
                    continue
                info = {"source": f.display, "label": None, **r["info"]}
                writer.add_piece(
                    r["tokens"], info, group=groups[i], split=f.split, content=r.get("content")
                )
                writer.add_manifest(
                    {
                        "path": f.display,
                        "status": "accepted",
                        "source": f.display,
                        "steps": info["steps"],
                        "notes": info["notes"],
                    }
                )
                qpms.append(r["info"]["qpm"])
                timing.add(r["timing"])
                filters.update(r["counts"])
                pitch_hist += r["pitch_hist"]
                if len(r["poly_hist"]) > len(poly_hist):
                    poly_hist = np.pad(poly_hist, (0, len(r["poly_hist"]) - len(poly_hist)))
                poly_hist[: len(r["poly_hist"])] += r["poly_hist"]
                totals.update(
                    pieces=1, tokens=len(r["tokens"]), steps=info["steps"], notes=info["notes"]
                )
        finally:
            results.close()  # shuts the pool down when the loop stops early
        if not totals["pieces"]:
            console.print(f"[red]nothing usable: all {len(found)} files were rejected")
            for line in examples:
                console.print(f"  {line}")
            writer.abort()
            return 1
        meta = {
            "kind": "midi",
            **codec.meta(),
            "max_polyphony": int(np.flatnonzero(poly_hist).max()),
            # All pieces' median; _training_tempo refines it once the splits exist.
            "tempo_qpm": float(statistics.median(qpms)),
            "filters": {"off_piano": off_piano, "keep_drums": keep_drums},
            "pitch_range": list(codec.pitch_range),
        }
        context = timing.summary(steps_per_quarter, encoding, totals["tokens"])
        meta["tokens_per_bar"] = context["measured_tokens_per_bar"]  # for train.seq_bars
        stats = {
            "kind": "midi",
            "files": len(found),
            "accepted": totals["pieces"],
            "rejected": sum(rejections.values()),
            "rejections": dict(sorted(rejections.items())),
            "rules": {
                "drum_tracks": "kept" if keep_drums else "dropped",
                f"off_range_notes (outside MIDI {codec.pitch_range[0]}-{codec.pitch_range[1]})": {
                    "reject": "reject the file",
                    "drop": "drop the notes",
                    "fold": "move by octaves into range",
                    "auto": f"drop them when at most {midi.OFF_RANGE_SHARE:.0%} of a piece's "
                    "notes, else reject the piece",
                }[off_piano],
                "short_notes": "notes shorter than one step are dropped",
                "same_key_overlaps": "merged (same onset) or cut where the key is struck again",
                "tempo_events": f"outside {midi.TEMPO_RANGE[0]:g}-{midi.TEMPO_RANGE[1]:g} qpm ignored",
                "too_long": f"files longer than {midi.MAX_STEPS} steps are rejected",
            },
            "filters": dict(sorted(filters.items())),
            "pieces": totals["pieces"],
            "tokens": totals["tokens"],
            "steps": totals["steps"],
            "notes": totals["notes"],
            "pitch_histogram": {
                str(p): int(pitch_hist[p])
                for p in range(codec.pitch_range[0], codec.pitch_range[1] + 1)
            },
            "polyphony_histogram": [int(c) for c in poly_hist],
            "context": context,
            "choices": choices,
            "dropped": dropped_notes(filters, totals["notes"]),
        }
        counts = writer.finish(
            meta, stats, ratios, refine=_training_tempo, dedup_splits=dedup_splits
        )
    report = writer.rejection_report() + writer.duplicate_report() + writer.warning_report()
    print_summary(console, out, stats, counts, report)
    return 0


def _choose(found: list[Found], workers: int, spq, encoding: str, console) -> dict:
    """The grid and encoding to prepare with: given ones kept, "auto" ones chosen from a first
    pass that reads every file (``survey_file``) and printed with the reason."""
    if spq != "auto" and encoding != "auto":
        return {"steps_per_quarter": int(spq), "encoding": encoding}
    from tunelab.progress import progress_bar as tqdm

    t = midi_context.Timing()
    jobs = [(i, str(f.path), None) for i, f in enumerate(found)]
    n = max(1, min(workers or os.cpu_count() or 1, len(found)))
    results = run_isolated(jobs, n, _survey_work, chunk=8)
    try:
        for _, r in tqdm(results, total=len(jobs), desc="surveying MIDI", unit="file"):
            if r is not None:
                t.add(r)
    finally:
        results.close()
    choices = midi_context.choose(
        t, None if spq == "auto" else int(spq), None if encoding == "auto" else encoding
    )
    if spq == "auto":
        console.print(
            f"chose --steps-per-quarter {choices['steps_per_quarter']}: "
            f"{escape(choices['why_grid'])}"
        )
    if encoding == "auto":
        console.print(f"chose --encoding {choices['encoding']}: {escape(choices['why_encoding'])}")
    return choices


def _training_tempo(dd) -> dict:
    """meta.tempo_qpm: median tempo of the training pieces (all pieces if none train), and
    meta.unseen_tokens: the ids the training pieces never use (an instrument, a position, a
    pitch), which sampling never emits (``kinds.constraints``)."""
    splits = dd.reference_splits()
    pieces = [p for split in splits for p in split.pieces]
    seen = np.zeros(int(dd.meta["vocab_size"]), bool)
    for split in splits:
        seen[np.unique(np.asarray(split.data))] = True
    return {
        "tempo_qpm": float(statistics.median(p["qpm"] for p in pieces)),
        "unseen_tokens": np.flatnonzero(~seen).tolist(),
    }
