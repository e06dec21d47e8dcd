"""Finding input files: recursive scan by extension, and the train/valid/test folder rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.data.store import SPLITS

MIDI_EXTS = (".mid", ".midi", ".kar", ".smf")
AUDIO_EXTS = (
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".aifc",
    ".m4a",
    ".aac",
    ".mp4",
    ".webm",
    ".wma",
    ".caf",
    ".au",
    ".w64",
    ".rf64",
)


@dataclass(frozen=True)
class Found:
    """One input file: where it is, how to show it, and a split fixed by its folder (or None)."""

    path: Path
    display: str
    split: str | None


def _split_of(rel: Path) -> str | None:
    for part in rel.parts[:-1]:
        if part.lower() in SPLITS:
            return part.lower()
    return None


def scan(srcs: list[Path], exts: tuple[str, ...]) -> list[Found]:
    """All files under ``srcs`` whose suffix (case-insensitive) is in ``exts``, sorted.

    A file under a ``train/``, ``valid/`` or ``test/`` folder (below a SRC) gets that
    split fixed; the folder names are matched case-insensitively. Missing SRC paths
    raise FileNotFoundError naming them.
    """
    out: list[Found] = []
    for src in srcs:
        src = Path(src)
        if not src.exists():
            raise FileNotFoundError(f"{src}: no such file or folder")
        if src.is_file():
            out.append(Found(src, str(src), None))
            continue
        for p in sorted(src.rglob("*")):
            if p.is_file() and p.suffix.lower() in exts:
                rel = p.relative_to(src)
                out.append(Found(p, str(p), _split_of(rel)))
    seen: set[Path] = set()
    unique = []
    for f in out:
        key = f.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def require_sources(srcs: list[Path]) -> None:
    """Raise FileNotFoundError naming the first SRC that does not exist (before any work)."""
    for src in srcs:
        if not Path(src).exists():
            raise FileNotFoundError(f"{src}: no such file or folder")


def guess_kind(srcs: list[Path]) -> str:
    """'midi' or 'audio': whichever kind of file is more common under ``srcs``."""
    n_midi = len(scan(srcs, MIDI_EXTS))
    n_audio = len(scan(srcs, AUDIO_EXTS))
    return "audio" if n_audio > n_midi else "midi"
