"""Labels for conditioning: tags (mutagen), folder names, or a CSV/JSON sidecar.

Tag values are untrusted user data: ``clean_label`` strips control characters,
collapses whitespace, lower-cases (so "Rock" and "rock" are one label) and caps
the length. Labels are never used as path components.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from pathlib import Path

from tunelab.data.store import SPLITS

MAX_LABEL = 64


def clean_label(value) -> str | None:
    """A safe, normalised label from an untrusted string; None when nothing is left."""
    if value is None:
        return None
    s = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in str(value))
    s = re.sub(r"\s+", " ", s).strip().lower()
    return s[:MAX_LABEL].strip() or None


def _year(value) -> str | None:
    m = re.search(r"(?<!\d)([12]\d{3})(?!\d)", str(value or ""))
    return m.group(1) if m else None


def _first(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, list | tuple):
        v = v[0] if v else None
    return None if v is None else str(v)


def _from_id3(tags) -> dict:
    """Raw ID3 frames (WAV/AIFF files, which mutagen's easy interface does not wrap)."""
    out = {}
    tcon = tags.get("TCON")
    if tcon is not None:
        out["genre"] = _first(getattr(tcon, "genres", None) or tcon.text)
    for key in ("TDRC", "TYER", "TDOR"):
        if key in tags:
            out.setdefault("date", _first(tags[key].text))
    if "TPE1" in tags:
        out["artist"] = _first(tags["TPE1"].text)
    if "TIT2" in tags:
        out["title"] = _first(tags["TIT2"].text)
    return out


def read_tags(path: str | Path) -> dict:
    """genre / year / artist / title of an audio file, each a clean string or None.

    Reads ID3 (MP3, WAV, AIFF), Vorbis comments (OGG, FLAC, Opus) and MP4 atoms via
    mutagen, and RIFF INFO chunks via libsndfile. Never raises: unreadable tags
    simply give no values.
    """
    raw: dict = {}
    try:
        import mutagen

        f = mutagen.File(str(path), easy=True)
        tags = getattr(f, "tags", None) if f is not None else None
        if tags is not None:
            if type(tags).__name__ in ("ID3", "_WaveID3", "_IFFID3"):
                raw = _from_id3(tags)
            else:
                for key in ("genre", "date", "year", "artist", "title"):
                    try:
                        v = tags.get(key)
                    except Exception:  # some tag types raise on unknown easy keys
                        v = None
                    if v:
                        raw.setdefault("date" if key == "year" else key, _first(v))
    except Exception:
        raw = {}
    if not any(raw.values()):
        raw = _riff_info(path)
    return {
        "genre": clean_label(raw.get("genre")),
        "year": _year(raw.get("date")),
        "artist": clean_label(raw.get("artist")),
        "title": clean_label(raw.get("title")),
    }


def _riff_info(path) -> dict:
    try:
        import soundfile as sf

        with sf.SoundFile(str(path)) as f:
            meta = f.copy_metadata()
        return {k: meta.get(k) for k in ("genre", "date", "artist", "title")}
    except Exception:
        return {}


def folder_label(path: Path) -> str | None:
    """The name of the nearest parent folder that is not train/valid/test."""
    for parent in path.parents:
        if parent.name.lower() not in SPLITS:
            return clean_label(parent.name)
    return None


def load_sidecar(path: str | Path) -> dict[str, str]:
    """Read a label sidecar: a JSON object {file: label}, a JSON list of {path|file, label}
    objects, or a CSV with a header holding a path/file/filename column and a label
    column (the second column when none is called label). Keys may be relative paths,
    file names or stems."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    rows: list[tuple[str, str]] = []
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if isinstance(data, dict):
            rows = [(str(k), str(v)) for k, v in data.items()]
        elif isinstance(data, list):
            for d in data:
                if isinstance(d, dict):
                    key = d.get("path") or d.get("file") or d.get("filename")
                    if key is not None and d.get("label") is not None:
                        rows.append((str(key), str(d["label"])))
        else:
            raise ValueError(f"{path}: expected a JSON object or list")
    else:
        reader = csv.reader(text.splitlines())
        header = [h.strip().lower() for h in next(reader, [])]
        key_col = next((header.index(c) for c in ("path", "file", "filename") if c in header), 0)
        lab_col = header.index("label") if "label" in header else (1 if key_col != 1 else 0)
        for row in reader:
            if len(row) > max(key_col, lab_col):
                rows.append((row[key_col].strip(), row[lab_col]))
    out = {}
    for key, label in rows:
        lab = clean_label(label)
        if lab:
            out[key.replace("\\", "/").strip("/")] = lab
    if not out:
        raise ValueError(f"{path}: no (file, label) rows found")
    return out


def sidecar_label(mapping: dict[str, str], path: Path, roots: list[Path]) -> str | None:
    """Look ``path`` up in a sidecar mapping by path relative to a root, name, or stem."""
    keys = []
    for root in roots:
        try:
            keys.append(path.relative_to(root).as_posix())
        except ValueError:
            pass
    keys += [path.as_posix(), path.name, path.stem]
    for k in keys:
        if k in mapping:
            return mapping[k]
    return None
