"""Built-in corpora: J.S. Bach's chorales from the music21 corpus installed with the package.

The chorales ship as MusicXML/Humdrum inside music21; parsing those with music21 is slow
(~0.3 s each), so they are converted to MIDI once, in parallel, into a versioned folder of
the user's cache directory (``$TUNELAB_CACHE`` overrides it). Each file is written to a
temporary name and renamed, so an interrupted conversion never leaves a half-written MIDI
file; a later call converts only what is missing and is cheap once everything is there.
"""

from __future__ import annotations

import os
import re
from multiprocessing import get_context
from pathlib import Path

from tunelab.atomic import atomic_path, write_text

CHORALE_VERSION = 1  # bump when the conversion changes: a new cache folder is used
_SCORE_EXTS = (".mxl", ".xml", ".musicxml", ".krn")  # not .rntxt (roman-numeral analyses)


def cache_root() -> Path:
    """``$TUNELAB_CACHE`` if set, else the platform's user cache dir for tunelab."""
    env = os.environ.get("TUNELAB_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("tunelab"))


def chorale_sources() -> list[Path]:
    """The chorale score files inside the installed music21 corpus, sorted by name."""
    import music21

    folder = Path(music21.__file__).parent / "corpus" / "bach"
    best: dict[str, Path] = {}  # one file per chorale: some ship as both .mxl and .krn
    for p in sorted(folder.iterdir()):
        ext = p.suffix.lower()
        if p.is_file() and ext in _SCORE_EXTS:
            old = best.get(p.stem)
            if old is None or _SCORE_EXTS.index(ext) < _SCORE_EXTS.index(old.suffix.lower()):
                best[p.stem] = p
    return [best[k] for k in sorted(best)]


def chorale_dir() -> Path:
    import music21

    version = getattr(music21, "__version__", "unknown")
    return cache_root() / "bach-chorales" / f"v{CHORALE_VERSION}-music21-{version}"


def chorale_group(path: str | Path) -> str:
    """The BWV number (with movement) of a chorale file: ``bwv248.23-2.mid`` -> ``"248.23"``.

    Variants of one chorale (``-a``, ``-lz``, ``-w``, ``.xml`` vs ``.mxl``) share it,
    so they land in one split.
    """
    stem = Path(path).name
    m = re.match(r"bwv(\d+(?:\.\d+)?)", stem, re.IGNORECASE)
    return m.group(1) if m else Path(path).stem.split("-")[0]


def _convert(job: tuple[str, str]) -> tuple[str, str | None]:
    """Parse one chorale with music21 and write it as MIDI, atomically. Returns (dst, error)."""
    src, dst = job
    try:
        from music21 import converter

        score = converter.parse(src)
        with atomic_path(dst) as tmp:
            score.write("midi", fp=str(tmp))
        return dst, None
    except Exception as e:  # one bad score must not stop the others
        return dst, f"{type(e).__name__}: {e}"


def builtin_chorale_midis(limit: int | None = None, workers: int = 0) -> list[Path]:
    """MIDI files of the Bach chorales (~410), converted on first use; sorted paths.

    ``limit`` keeps only the first ``limit`` chorales (by file name). Scores music21
    cannot convert are remembered in ``failed.txt`` and skipped.
    """
    sources = chorale_sources()
    if limit is not None:
        sources = sources[:limit]
    out = chorale_dir()
    out.mkdir(parents=True, exist_ok=True)
    failed_path = out / "failed.txt"
    failed = set(failed_path.read_text(encoding="utf-8").split()) if failed_path.exists() else set()
    jobs = []
    for src in sources:
        dst = out / f"{src.stem}.mid"
        if not dst.exists() and dst.name not in failed:
            jobs.append((str(src), str(dst)))
    if jobs:
        from tunelab.progress import progress_bar as tqdm  # plain lines off a terminal

        n = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        if len(jobs) < 8:
            n = 1  # starting workers (each imports music21) costs more than a few files
        errors = []
        bar = tqdm(total=len(jobs), desc="converting Bach chorales (once)", unit="file")
        if n == 1:
            results = map(_convert, jobs)
            pool = None
        else:
            pool = get_context("spawn").Pool(n)  # spawn: music21 is not fork-friendly everywhere
            results = pool.imap_unordered(_convert, jobs)
        try:
            for dst, err in results:
                bar.update()
                if err:
                    errors.append((Path(dst).name, err))
        finally:
            bar.close()
            if pool is not None:
                pool.close()
                pool.join()
        if errors:
            for name, err in errors:
                print(f"warning: could not convert chorale {name}: {err}")
            write_text(failed_path, "\n".join(sorted(failed | {n for n, _ in errors})))
    return sorted(out / f"{s.stem}.mid" for s in sources if (out / f"{s.stem}.mid").exists())
