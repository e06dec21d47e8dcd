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
    """'midi' or 'audio': the only kind of file found under ``srcs``.

    Raises ValueError with both counts when the folder holds both (the user must choose: a
    data set is one kind, and dropping the other kind without a word loses files)."""
    # scan() takes a file named as SRC whatever its name: judge those by their extension
    files = [Path(s) for s in srcs if Path(s).is_file()]
    folders = [Path(s) for s in srcs if not Path(s).is_file()]
    n_midi = len(scan(folders, MIDI_EXTS)) + sum(f.suffix.lower() in MIDI_EXTS for f in files)
    n_audio = len(scan(folders, AUDIO_EXTS)) + sum(f.suffix.lower() in AUDIO_EXTS for f in files)
    if n_midi and n_audio:
        raise ValueError(
            f"found {n_midi} MIDI and {n_audio} audio files; a data set holds one kind: "
            "choose with --kind midi or --kind audio (the other kind is listed as ignored)"
        )
    return "audio" if n_audio else "midi"


def ignored(srcs: list[Path], exts: tuple[str, ...]) -> list[tuple[str, str]]:
    """(display path, reason) of every file under ``srcs`` that a prepare of ``exts`` files
    skips, so that the manifest lists every input file."""
    kind = "MIDI" if exts == MIDI_EXTS else "audio"
    other = AUDIO_EXTS if exts == MIDI_EXTS else MIDI_EXTS
    out = []
    for src in map(Path, srcs):
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for p in files:
            suffix = p.suffix.lower()
            if suffix in exts:
                continue
            if suffix in other:
                why = (
                    f"{'audio' if kind == 'MIDI' else 'MIDI'} file: this data set is {kind} "
                    f"(prepare it apart with --kind {'audio' if kind == 'MIDI' else 'midi'})"
                )
            else:
                article = "an" if kind == "audio" else "a"
                why = f"not {article} {kind} file name ({', '.join(exts)})"
            out.append((str(p), why))
    return out
