"""Built-in audio: the Bach chorales rendered with the General MIDI SoundFont in several timbres.

Each chorale is rendered once per timbre (``synth.TIMBRES``: organ, strings,
piano, choir) and cached as 16-bit FLAC under the same cache root as the MIDI
chorales (``$TUNELAB_CACHE`` overrides it), in a folder versioned by this
module's ``RENDER_VERSION``, the sample rate, and the chorale MIDI folder (which
carries music21's version). Writes are atomic (temp file + rename), so an
interrupted run leaves no half-written file, and a rerun renders only what is
missing. Rendering is deterministic, so the cache is equivalent to rerendering.
"""

from __future__ import annotations

import os
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from tunelab.atomic import atomic_path
from tunelab.data.audio.synth import TIMBRES

RENDER_VERSION = 1
LIMIT_ENV = "TUNELAB_BUILTIN_LIMIT"  # shared with the MIDI builtin: first N chorales only


def builtin_limit() -> int | None:
    v = os.environ.get(LIMIT_ENV)
    return int(v) if v else None


def render_dir(sample_rate: int) -> Path:
    from tunelab.data.midi.chorales import cache_root, chorale_dir

    return (
        cache_root()
        / "bach-chorales-audio"
        / f"v{RENDER_VERSION}-{sample_rate}hz-{chorale_dir().name}"
    )


def _render_one(job: tuple[str, str, int, int]) -> tuple[str, str | None]:
    midi_path, dst, program, sr = job
    import soundfile as sf

    from tunelab.data.audio.synth import render_midi

    try:
        audio = render_midi(midi_path, sample_rate=sr, program=program)
        if len(audio) == 0:
            return dst, "no notes to render"
        with atomic_path(dst) as tmp:
            sf.write(tmp, np.clip(audio, -1, 1), sr, format="FLAC", subtype="PCM_16")
        return dst, None
    except Exception as e:  # one bad chorale must not stop the others
        return dst, f"{type(e).__name__}: {e}"


def builtin_chorale_audio(
    sample_rate: int = 16000, limit: int | None = None, workers: int = 0
) -> list[tuple[Path, str, str]]:
    """Rendered chorales as (flac path, timbre, BWV group), rendering what is missing.

    ``limit`` keeps the first ``limit`` chorales (each in every timbre).
    """
    from tunelab.data.midi.chorales import builtin_chorale_midis, chorale_group
    from tunelab.progress import progress_bar as tqdm  # plain lines off a terminal

    midis = builtin_chorale_midis(limit, workers=workers)
    out = render_dir(sample_rate)
    out.mkdir(parents=True, exist_ok=True)
    items, jobs = [], []
    for m in midis:
        for timbre, program in TIMBRES.items():
            dst = out / f"{m.stem}.{timbre}.flac"
            items.append((dst, timbre, chorale_group(m)))
            if not dst.exists():
                jobs.append((str(m), str(dst), program, sample_rate))
    if jobs:
        n = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        bar = tqdm(total=len(jobs), desc="rendering chorales (once)", unit="file")
        pool = get_context("spawn").Pool(n) if n > 1 else None
        results = pool.imap_unordered(_render_one, jobs) if pool else map(_render_one, jobs)
        try:
            for dst, err in results:
                bar.update()
                if err:
                    print(f"warning: could not render {Path(dst).name}: {err}")
        finally:
            bar.close()
            if pool is not None:
                pool.close()
                pool.join()
    return [it for it in items if it[0].exists()]
