"""Benchmark: `tunelab prepare --kind midi` on a real collection vs music21 and pretty_midi.

The collection is the built-in Bach chorales (MIDI converted once from the music21
corpus), copied round-robin into a temporary folder until it holds ``--files`` files.
Our path is the whole pipeline (read, parse, filter, quantize, encode, spool, split,
write the data directory). music21 and pretty_midi only *parse* the same files (no
quantization, no encoding, no writing), measured on a subset and reported per file, so
their rows are an upper bound on what a pipeline built on them could reach.

    .venv/bin/python benchmarks/prepare_midi.py [--files 2000] [--workers 2] [--subset 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path


def _time_per_file(fn, paths) -> float:
    t = time.perf_counter()
    for p in paths:
        fn(p)
    return (time.perf_counter() - t) / len(paths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000, help="collection size (default 2000)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--subset", type=int, default=40, help="files parsed by music21/pretty_midi")
    ap.add_argument(
        "--encodings", default="steps,remi", help="encodings to time (default steps,remi)"
    )
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()

    from tunelab.data.midi.chorales import builtin_chorale_midis
    from tunelab.data.midi.prepare import prepare_midi
    from tunelab.data.store import load_datadir

    t = time.perf_counter()
    chorales = builtin_chorale_midis()
    print(f"chorales: {len(chorales)} (cache ready in {time.perf_counter() - t:.1f} s)")
    tmp = Path(tempfile.mkdtemp(prefix="tunelab-bench-"))
    try:
        src = tmp / "src"
        src.mkdir()
        for i in range(args.files):
            shutil.copyfile(chorales[i % len(chorales)], src / f"{i:05d}.mid")
        files = sorted(src.iterdir())
        rows = []
        ours = None
        for enc in args.encodings.split(","):
            for workers in sorted({1, args.workers}):
                out = tmp / f"out-{enc}-{workers}"
                t = time.perf_counter()
                code = prepare_midi([src], out, workers=workers, encoding=enc)
                dt = time.perf_counter() - t
                assert code == 0
                st = load_datadir(out).stats
                rows.append(
                    (
                        f"tunelab prepare ({enc}, {workers} worker{'s' * (workers > 1)}): "
                        "parse+filter+quantize+encode+write",
                        len(files),
                        len(files) / dt,
                        st["tokens"] / dt,
                    )
                )
                if enc == "steps" and workers == args.workers:
                    ours = rows[-1][2]
                shutil.rmtree(out)

        subset = files[: args.subset]
        import pretty_midi
        import symusic
        from music21 import converter

        warnings.filterwarnings("ignore")
        per = {
            "symusic parse only (1 process)": _time_per_file(symusic.Score.from_file, subset),
            "pretty_midi parse only (1 process)": _time_per_file(pretty_midi.PrettyMIDI, subset),
            "music21 parse only (1 process)": _time_per_file(converter.parse, subset),
        }
        for name, sec in per.items():
            rows.append((name, len(subset), 1 / sec, None))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(
        f"Collection: {args.files} chorale MIDI files ({len(chorales)} distinct), "
        f"{os.cpu_count()} CPU cores visible."
    )
    print()
    print("| path | files timed | files/s | tokens/s | tunelab (steps) is faster by |")
    print("|---|---:|---:|---:|---:|")
    for name, n, fps, tps in rows:
        slow = "parse only" in name and not name.startswith("symusic")
        speed = f"{ours / fps:.0f}x" if ours and slow else ""
        tok = f"{tps:,.0f}" if tps else "n/a"
        print(f"| {name} | {n} | {fps:,.0f} | {tok} | {speed} |")
    print()
    print(
        "parse-only rows are timed on the first "
        f"{len(subset)} files and reported per file (extrapolated); they do no quantization, "
        "encoding or writing. symusic is the parser tunelab uses (shown for reference)."
    )
    if args.json:
        from tunelab.atomic import json_safe, write_json

        out = []
        for name, n, fps, tps in rows:
            slow = "parse only" in name and not name.startswith("symusic")
            out.append({"path": name, "files_timed": n, "files_per_s": fps, "tokens_per_s": tps})
            out[-1]["tunelab_faster_by"] = ours / fps if ours and slow else None
        head = {"files": args.files, "distinct": len(chorales), "cpu_count": os.cpu_count()}
        write_json(args.json, json_safe({**head, "workers": args.workers, "rows": out}))


if __name__ == "__main__":
    main()
