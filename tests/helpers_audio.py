"""A tiny labelled audio data set for the audio model tests (any family of kind mulaw)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SR = 16000


def chorale_audio(root: Path, cache: Path | None = None) -> tuple[Path, Path]:
    """Two chorales rendered in four timbres, split by folder, labelled by timbre folder and
    prepared at 16 kHz in clips of 8 s: returns (data directory, source folder).

    cache: where the renders are kept (default root/cache); give the session's base temp
    folder so that test modules render them once."""
    old = os.environ.get("TUNELAB_CACHE")
    os.environ["TUNELAB_CACHE"] = str(cache or root / "cache")
    try:
        from tunelab.data.audio.builtin import builtin_chorale_audio

        items = builtin_chorale_audio(SR, limit=2, workers=1)
    finally:
        if old is None:
            del os.environ["TUNELAB_CACHE"]
        else:
            os.environ["TUNELAB_CACHE"] = old
    groups = sorted({g for _, _, g in items})
    src = root / "src"
    for path, timbre, group in items:
        split = "train"
        if group == groups[1] and timbre == "organ":
            split = "valid"
        elif group == groups[1] and timbre == "piano":
            split = "test"
        dst = src / split / timbre / path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dst)
    data = root / "data"
    from tunelab.data.audio.prepare import prepare_audio

    assert prepare_audio([src], data, label="folder", clip_seconds=8.0, workers=1) == 0
    return data, src
