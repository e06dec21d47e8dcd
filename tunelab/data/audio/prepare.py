"""An audio collection (or the built-in rendered chorales) -> a prepared data directory.

Per file, in worker processes: decode only the clip (mono, resampled with soxr),
remove DC, trim leading/trailing silence, normalise loudness, optionally
estimate the tempo and time-stretch to ``--tempo``, store as int16. Every
failure becomes a manifest rejection naming the reason; a worker that dies
(a decoder crash on a hostile file) costs only that file, which is retried
alone and then rejected.

Labels are decided before decoding, from tags/folders/a sidecar read in the
main process (cheap: headers only), so ``--min-label-count`` merging is known
when pieces are written.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.markup import escape

from tunelab.data.audio import decode as A
from tunelab.data.audio import encode as E
from tunelab.data.audio.tags import folder_label, load_sidecar, read_tags, sidecar_label
from tunelab.data.pool import run_isolated
from tunelab.data.scan import AUDIO_EXTS, Found, ignored, require_sources, scan
from tunelab.data.store import DataDirError, DataDirWriter, printable

BUILTINS = ("bach-chorales-audio",)
TAG_LABELS = ("genre", "year", "artist", "title")
LOUDNESS_DB = -20.0
MIN_SECONDS = 0.1
STATS_FRAME = 1024
TRIMMED_SHARE = 0.10  # trimming that removes more of the decoded audio is said in plain words


@dataclass(frozen=True)
class Options:
    sample_rate: int
    clip_seconds: float | None
    clip_offset: float
    trim_db: float | None
    tempo: float | None
    tempo_strict: bool = False  # reject clips without a beat instead of keeping them unstretched


def process_file(path: Path, opts: Options) -> dict:
    """Decode and condition one file. Returns {"status": "accepted", "samples": int16[N],
    "info": {...}} or {"status": "rejected", "key": ..., "reason": ...}; never raises."""
    try:
        return _process(path, opts)
    except A.AudioError as e:
        return {"status": "rejected", "key": e.key, "reason": str(e)}
    except MemoryError:
        return {"status": "rejected", "key": "too_large", "reason": f"{path.name}: out of memory"}
    except Exception as e:  # anything else is still one file's problem
        msg = f"{path.name}: {type(e).__name__}: {A._short(e)}"
        return {"status": "rejected", "key": "error", "reason": msg}


def _process(path: Path, opts: Options) -> dict:
    sr = opts.sample_rate
    dec = A.decode(path, sr, opts.clip_offset, opts.clip_seconds)
    x = A.remove_dc(dec.audio)
    clip_s = len(x) / sr
    cut_a = cut_b = 0.0
    if opts.trim_db is not None:
        x, cut_a, cut_b = A.trim_silence(x, sr, opts.trim_db)
    if len(x) < MIN_SECONDS * sr:
        why = f"silent (nothing above {opts.trim_db:g} dBFS)" if len(x) == 0 else "too short"
        raise A.AudioError(
            f"{path.name}: {why} after trimming ({clip_s:.2f}s decoded)",
            "silent" if len(x) == 0 else "too_short",
        )
    loudness = A.rms_db(x)
    x, gain = A.normalize_loudness(x, LOUDNESS_DB)
    info = {
        "format": dec.format,
        "source_rate": dec.source_rate,
        "channels": dec.channels,
        "original_seconds": round(dec.duration, 3) if dec.duration is not None else None,
        "clip_seconds": round(clip_s, 3),
        "trimmed_seconds": round(cut_a + cut_b, 3),
        "trimmed_start": round(cut_a, 3),
        "trimmed_end": round(cut_b, 3),
        "loudness_db": round(loudness, 2),
        "gain_db": round(gain, 2),
    }
    if opts.tempo is not None:
        from tunelab.data.audio.tempo import estimate_tempo, fold_to, stretch_to_tempo

        est = estimate_tempo(x, sr)
        if est is None:
            why = (
                f"clip of {len(x) / sr:.2f}s is too short to estimate a tempo (under 1 s)"
                if len(x) < sr
                else "no beat found (too steady for the beat tracker)"
            )
            if opts.tempo_strict:
                raise A.AudioError(f"{path.name}: {why}; rejected (--tempo-strict)", "no_tempo")
            # A one-bar loop or a pad is still the user's sound: keep it at its own tempo.
            info.update(tempo_bpm=None, tempo_stretch_rate=1.0, tempo_note=f"{why}; not stretched")
            samples = E.to_int16(x)
            info["seconds"] = round(len(samples) / sr, 3)
            return {"status": "accepted", "samples": samples, "info": info}
        x, rate = stretch_to_tempo(x, sr, est.bpm, opts.tempo)
        x = np.clip(x, -1, 1)
        info["tempo_bpm"] = round(est.bpm, 2)
        info["tempo_folded_bpm"] = round(fold_to(est.bpm, opts.tempo), 2)
        info["tempo_stretch_rate"] = round(rate, 4)
    samples = E.to_int16(x)
    info["seconds"] = round(len(samples) / sr, 3)
    return {"status": "accepted", "samples": samples, "info": info}


def _work(job: tuple[int, str, Options]) -> tuple[int, dict]:
    i, path, opts = job
    return i, process_file(Path(path), opts)


def _labels(found: list[Found], srcs: list[Path], label: str) -> tuple[list, list, str]:
    """Raw label and tags per file, and the label source actually used."""
    from tunelab.progress import progress_bar as tqdm  # plain lines off a terminal

    tags = [read_tags(f.path) for f in tqdm(found, desc="reading tags", unit="file", leave=False)]
    source = label
    if label == "auto":
        source = "genre" if any(t["genre"] for t in tags) else "none"
    if source == "none":
        labels = [None] * len(found)
    elif source in TAG_LABELS:
        labels = [t[source] or "unknown" for t in tags]
    elif source == "folder":
        labels = [folder_label(f.path) or "unknown" for f in found]
    else:
        sidecar = Path(label)
        if not sidecar.is_file():
            raise DataDirError(
                f"--label {label!r}: not one of auto, genre, year, artist, title, folder, none, "
                "and no such sidecar file"
            )
        try:
            mapping = load_sidecar(sidecar)
        except (ValueError, OSError, csv.Error) as e:  # JSON/Unicode errors are ValueErrors
            raise DataDirError(f"--label sidecar {sidecar}: {e}") from e
        roots = [Path(s) for s in srcs]
        labels = [sidecar_label(mapping, f.path, roots) or "unknown" for f in found]
        source = f"sidecar:{sidecar.name}"
    return labels, tags, source


def _merge_rare(labels: list, min_count: int) -> tuple[list, list[str]]:
    counts = Counter(x for x in labels if x is not None)
    rare = sorted(k for k, c in counts.items() if c < min_count)
    if not rare:
        return labels, []
    rare_set = set(rare)
    return [("other" if x in rare_set else x) for x in labels], rare


def _inputs(srcs, builtin, sample_rate, workers, label, limit=None):
    """(found files, groups, labels, tags, label source)."""
    if builtin is None:
        found = scan([Path(s) for s in srcs], AUDIO_EXTS)
        found = [Found(f.path, printable(f.display), f.split) for f in found]
        labels, tags, source = _labels(found, list(srcs), label)
        return found, [None] * len(found), labels, tags, source
    if builtin not in BUILTINS:
        raise DataDirError(f"unknown builtin {builtin!r}; choose one of {', '.join(BUILTINS)}")
    from tunelab.data.audio.builtin import builtin_chorale_audio, builtin_limit

    items = builtin_chorale_audio(sample_rate, limit or builtin_limit(), workers)
    found = [Found(p, f"{builtin}/{p.name}", None) for p, _, _ in items]
    empty = {"genre": None, "year": None, "artist": None, "title": None}
    tags = [dict(empty) for _ in items]
    return found, [g for _, _, g in items], [t for _, t, _ in items], tags, "timbre"


def prepare_audio(
    srcs: list[Path],
    out: Path,
    *,
    builtin: str | None = None,
    overwrite: bool = False,
    workers: int = 0,
    ratios: tuple[float, float, float] = (0.9, 0.05, 0.05),
    dedup_splits: bool = False,
    sample_rate: int = 16000,
    clip_seconds: float | None = None,
    clip_offset: float = 0.0,
    trim_db: float | None = -50.0,
    tempo: float | None = None,
    label: str = "auto",
    min_label_count: int = 1,
    limit: int | None = None,
    tempo_strict: bool = False,
) -> int:
    """Build an audio data directory at ``out``; returns 0, or 1 when no file was usable.
    ``limit``: the built-in chorales only, the first ``limit`` of them (each in every timbre)."""
    from rich.console import Console

    from tunelab.progress import progress_bar as tqdm  # plain lines off a terminal

    console = Console(stderr=True)
    out = Path(out)
    if not 1000 <= sample_rate <= 192000:
        raise DataDirError(f"--sample-rate must be within 1000..192000 Hz, not {sample_rate}")
    if clip_seconds is not None and clip_seconds <= 0:
        raise DataDirError(f"--clip-seconds must be positive, not {clip_seconds}")
    if clip_offset < 0:
        raise DataDirError(f"--clip-offset must be >= 0, not {clip_offset}")
    if tempo is not None and not 20 <= tempo <= 400:
        raise DataDirError(f"--tempo must be within 20..400 BPM, not {tempo}")
    if builtin is None:
        require_sources(srcs)  # before creating anything
    opts = Options(sample_rate, clip_seconds, clip_offset, trim_db, tempo, tempo_strict)
    writer = DataDirWriter(out, "int16", overwrite=overwrite)
    with writer:
        found, groups, raw_labels, tags, label_source = _inputs(
            srcs, builtin, sample_rate, workers, label, limit
        )
        for path, why in ignored(list(srcs), AUDIO_EXTS) if builtin is None else []:
            writer.ignore(path, why)
        if not found:
            console.print(f"[red]no audio files ({', '.join(AUDIO_EXTS)}) found in the sources")
            writer.abort()
            return 1
        labels, merged = _merge_rare(raw_labels, min_label_count)
        n = max(1, min(workers or os.cpu_count() or 1, len(found)))
        jobs = [(i, str(f.path), opts) for i, f in enumerate(found)]
        rejections, examples = writer.rejections, writer.examples
        label_counts: Counter = Counter()
        tot = Counter()
        for i, r in tqdm(
            run_isolated(jobs, n, _work), total=len(jobs), desc="preparing audio", unit="file"
        ):
            f = found[i]
            if r["status"] != "accepted":
                writer.reject(f.display, r["key"], r["reason"])
                continue
            t = tags[i]
            info = {"source": f.display, "label": labels[i], **r["info"]}
            info.update({k: t[k] for k in ("genre", "year") if t.get(k)})
            writer.add_piece(r["samples"], info, group=groups[i], split=f.split)
            writer.add_manifest({"path": f.display, "status": "accepted", **info})
            label_counts[labels[i] if labels[i] is not None else "(none)"] += 1
            tot.update(
                pieces=1,
                samples=len(r["samples"]),
                clip_seconds=info["clip_seconds"],
                trimmed_seconds=info["trimmed_seconds"],
                not_stretched=int(tempo is not None and info.get("tempo_bpm", 0) is None),
            )
        if not tot["pieces"]:
            console.print(f"[red]nothing usable: all {len(found)} files were rejected")
            for line in examples:
                console.print(f"  {line}")
            writer.abort()
            return 1
        trimmed_frac = tot["trimmed_seconds"] / max(tot["clip_seconds"], 1e-9)
        meta = {
            "kind": "audio",
            "sample_rate": sample_rate,
            "labels": dict(sorted(label_counts.items())) if label_source != "none" else {},
            # the fixed order of label ids a conditioned model uses (also in its checkpoint)
            "label_names": sorted(label_counts) if label_source != "none" else [],
            "label_source": label_source,
            "labels_merged_into_other": merged,
            "mu_law": {"channels": 256},
            "scale": 32768,  # float sample = int16 / scale
            "loudness_target_db": LOUDNESS_DB,
            "tempo_target": tempo,
            "clip": {"seconds": clip_seconds, "offset": clip_offset},
            "trim_db": trim_db,
        }
        stats = {
            "kind": "audio",
            "files": len(found),
            "accepted": tot["pieces"],
            "rejected": sum(rejections.values()),
            "rejections": dict(sorted(rejections.items())),
            "seconds": round(tot["samples"] / sample_rate, 3),
            "decoded_seconds": round(tot["clip_seconds"], 3),
            "trimmed_seconds": round(tot["trimmed_seconds"], 3),
            "trimmed_fraction": round(trimmed_frac, 4),
        }
        if tempo is not None:
            stats["not_stretched"] = tot["not_stretched"]
        counts = writer.finish(
            meta, stats, ratios, refine=_frame_stats_meta, dedup_splits=dedup_splits
        )
    _summary(
        console,
        out,
        stats,
        counts,
        writer.rejection_report() + writer.duplicate_report() + writer.warning_report(),
        trimmed_frac,
    )
    return 0


def frame_stats(split, frame_size: int = STATS_FRAME) -> dict:
    """Per-feature mean and variance of non-overlapping frames over a split, streamed
    piece by piece: {"time": {size: {"mean", "var"}}, "fft": {...}} (float samples)."""
    out = {}
    for form in ("time", "fft"):
        d = E.frame_dim(frame_size, form)
        s1, s2, n = np.zeros(d), np.zeros(d), 0
        for piece in split:
            x = E.from_int16(piece)
            for a in range(0, len(x), 256 * frame_size):  # bounded memory per chunk
                fr = E.frames(x[a : a + 256 * frame_size], frame_size, form=form).astype(np.float64)
                s1 += fr.sum(0)
                s2 += np.square(fr).sum(0)
                n += len(fr)
        mean = s1 / max(n, 1)
        var = np.maximum(s2 / max(n, 1) - mean**2, 0.0)
        out[form] = {
            str(frame_size): {
                "mean": [round(float(v), 7) for v in mean],
                "var": [round(float(v), 7) for v in var],
                "frames": n,
            }
        }
    return out


def _frame_stats_meta(dd) -> dict:
    """meta.frame_stats from the training split (else all pieces)."""
    split = [piece for sp in dd.reference_splits() for piece in sp]
    return {"frame_stats": frame_stats(split)}


def _summary(console, out, stats, counts, rejection_report, trimmed_frac) -> None:
    console.print(
        f"[green]prepared[/] {stats['accepted']} of {stats['files']} files -> {escape(str(out))} "
        f"({stats['seconds'] / 60:.1f} minutes of audio)"
    )
    console.print(
        "splits: "
        + ", ".join(f"{k} {v['pieces']} pieces / {v['items']:,} samples" for k, v in counts.items())
    )
    if trimmed_frac > TRIMMED_SHARE:
        console.print(
            f"[yellow]warning:[/] trimming silence removed {trimmed_frac:.0%} of the decoded audio "
            f"({stats['trimmed_seconds']:.1f}s of {stats['decoded_seconds']:.1f}s); "
            "check --trim-db (manifest.jsonl has trimmed_seconds per file)"
        )
    if stats.get("not_stretched"):
        console.print(
            f"[yellow]{stats['not_stretched']} clips not stretched[/] (no beat found: too short "
            "or too steady); kept at their own tempo, manifest.jsonl has tempo_bpm null and "
            "tempo_note; --tempo-strict rejects them instead"
        )
    for line in rejection_report:
        console.print(line)
