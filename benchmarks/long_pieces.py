"""Write the long classical pieces of the installed music21 corpus as MIDI folders.

A stand-in, offline, for the long-piece benchmark (Piano-midi.de: long classical piano pieces,
hundreds to thousands of quarter notes each) on which carried state and memory must show:
the string quartet movements and piano pieces of Beethoven, Mozart, Haydn, Robert and Clara
Schumann, Schubert, Joplin, Chopin and others that music21 ships, every part merged into one
piano roll. Pieces shorter than ``--min-quarters`` are left out. Writes ``OUT/train``,
``OUT/valid`` and ``OUT/test`` (every 8th piece valid, the one after it test, by path order),
then:

    tunelab prepare OUT --steps-per-quarter 1 --encoding steps --off-piano fold --out DATA

    python benchmarks/long_pieces.py /tmp/long-midi
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

COMPOSERS = (
    "beethoven",
    "mozart",
    "haydn",
    "schumann_robert",
    "schumann_clara",
    "schubert",
    "joplin",
    "chopin",
    "corelli",
    "cpebach",
    "weber",
    "beach",
)


def corpus_paths() -> list[Path]:
    """One file per work: a .krn twin of a .mxl is the same movement (Beethoven's opus 59)."""
    from music21 import corpus

    paths = sorted(
        Path(p) for p in corpus.getCorePaths() if any(f"/{c}/" in str(p) for c in COMPOSERS)
    )
    stems = {p.with_suffix("") for p in paths if p.suffix != ".krn"}
    return [p for p in paths if p.suffix != ".krn" or p.with_suffix("") not in stems]


def convert(job: tuple[Path, Path, float]) -> str:
    from music21 import converter

    src, dst, min_q = job
    try:
        score = converter.parse(str(src))
        length = float(score.highestTime)
        if length < min_q:
            return f"skip {src.name}: {length:.0f} quarters"
        tmp = dst.with_suffix(".part")
        score.write("midi", fp=str(tmp))
        tmp.replace(dst)  # an interrupted run leaves no half-written .mid behind
        return f"{dst.parent.name}/{dst.name}: {length:.0f} quarters"
    except Exception as e:  # a corpus file music21 cannot read or write
        return f"skip {src}: {e}"


def convert_with_limit(job: tuple[Path, Path, float], seconds: float) -> str:
    """``convert`` in a child process that is killed after ``seconds``: a few corpus files
    (repeats music21 expands for minutes) would otherwise hold the whole run."""
    src, dst, min_q = job
    if dst.exists():  # written by an earlier, interrupted run
        return f"{dst.parent.name}/{dst.name}: kept"
    cmd = [sys.executable, __file__, "--one", str(src), str(dst), str(min_q)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds)
        return done.stdout.strip() or f"skip {src.name}: {done.stderr.strip()[-200:]}"
    except subprocess.TimeoutExpired:
        dst.with_suffix(".part").unlink(missing_ok=True)
        return f"skip {src.name}: over {seconds:.0f} s"


def main() -> None:
    if sys.argv[1:2] == ["--one"]:  # the child process of convert_with_limit
        print(convert((Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--min-quarters", type=float, default=100.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per file")
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    jobs = []
    for i, src in enumerate(corpus_paths()):
        split = {0: "valid", 1: "test"}.get(i % 8, "train")
        rel = src.parts[src.parts.index("corpus") + 1 :]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(rel))
        (args.out / split).mkdir(parents=True, exist_ok=True)
        jobs.append((src, args.out / split / (Path(name).stem + ".mid"), args.min_quarters))
    lines = []
    with ThreadPoolExecutor(args.workers) as pool:
        for line in pool.map(lambda job: convert_with_limit(job, args.timeout), jobs):
            print(line, flush=True)
            lines.append(line)
    if args.json:  # one line per corpus file: written (with its length) or skipped (why)
        from tunelab.atomic import write_json

        skipped = [ln for ln in lines if ln.startswith("skip ")]
        written = [ln for ln in lines if not ln.startswith("skip ")]
        write_json(args.json, {"out": str(args.out), "written": written, "skipped": skipped})


if __name__ == "__main__":
    main()
