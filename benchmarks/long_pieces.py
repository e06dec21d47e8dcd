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
from concurrent.futures import ProcessPoolExecutor
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
        score.write("midi", fp=str(dst))
        return f"{dst.parent.name}/{dst.name}: {length:.0f} quarters"
    except Exception as e:  # a corpus file music21 cannot read or write
        return f"skip {src}: {e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--min-quarters", type=float, default=100.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    jobs = []
    for i, src in enumerate(corpus_paths()):
        split = {0: "valid", 1: "test"}.get(i % 8, "train")
        rel = src.parts[src.parts.index("corpus") + 1 :]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(rel))
        (args.out / split).mkdir(parents=True, exist_ok=True)
        jobs.append((src, args.out / split / (Path(name).stem + ".mid"), args.min_quarters))
    with ProcessPoolExecutor(args.workers) as pool:
        for line in pool.map(convert, jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
