"""Audio prepare throughput: seconds of audio per wall second, and peak memory.

The collection: Bach chorales rendered with the General MIDI SoundFont at
44.1 kHz stereo (what a music library holds), written round-robin as 16-bit WAV,
FLAC and 192 kbit/s MP3, in four timbres. Rows, all measured in this run:

- decode + resample + mu-law, one core: ours (block-wise streaming decode with
  soxr) vs the usual reference, ``librosa.load(sr=16000, mono=True)`` on whole files;
- the full ``prepare`` (decode, resample, DC, trim, loudness, int16 store, splits,
  frame statistics) with 2 worker processes, without and with ``--tempo 120``;
- the same without tempo on half the collection, to show memory does not grow
  with the collection size.

Run: ``.venv/bin/python benchmarks/prepare_audio.py [--chorales 24]``
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tunelab.data.audio import decode as A  # noqa: E402
from tunelab.data.audio import encode as E  # noqa: E402
from tunelab.data.audio.synth import TIMBRES, render_midi  # noqa: E402

FORMATS = [("wav", {"subtype": "PCM_16"}), ("flac", {}), ("mp3", {"format": "MP3"})]


def make_collection(folder: Path, n_chorales: int) -> tuple[list[Path], float]:
    """Render chorales to 44.1 kHz stereo files; returns (paths, total seconds)."""
    from tunelab.data.midi.chorales import builtin_chorale_midis

    folder.mkdir(parents=True, exist_ok=True)
    paths, total = [], 0.0
    timbres = list(TIMBRES.items())
    for i, midi in enumerate(builtin_chorale_midis(n_chorales)):
        name, program = timbres[i % len(timbres)]
        ext, kw = FORMATS[i % len(FORMATS)]
        mono = render_midi(midi, sample_rate=44100, program=program, peak=0.8)
        # a little width so the downmix has real work to do
        stereo = np.stack([mono, np.roll(mono, 7) * 0.9], axis=1)
        path = folder / f"{midi.stem}.{name}.{ext}"
        sf.write(str(path), stereo, 44100, **kw)
        paths.append(path)
        total += len(mono) / 44100
    return paths, total


def time_decode(paths: list[Path], fn) -> float:
    t = time.perf_counter()
    for p in paths:
        fn(p)
    return time.perf_counter() - t


def ours(p: Path) -> np.ndarray:
    return E.mu_law_encode(A.decode(p, 16000).audio)


def reference(p: Path) -> np.ndarray:
    import librosa

    y, _ = librosa.load(str(p), sr=16000, mono=True)
    return E.mu_law_encode(y)


def traced_peak_mib(path: Path, fn) -> float:
    """Peak Python-heap (numpy included) MiB while ``fn`` decodes one file."""
    import tracemalloc

    tracemalloc.start()
    fn(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def run_prepare(src: Path, out: Path, tempo: float | None) -> tuple[float, float, float]:
    """Run `tunelab prepare` in a fresh process; (wall s, main peak MiB, worker peak MiB)."""
    code = (
        "import resource, sys, time;"
        "from tunelab.data.audio.prepare import prepare_audio;"
        "t = time.perf_counter();"
        f"rc = prepare_audio([{str(src)!r}], {str(out)!r}, workers=2, tempo={tempo!r});"
        "w = time.perf_counter() - t;"
        # VmHWM, not ru_maxrss: the latter carries the parent's peak across fork+exec
        "m = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024;"
        "c = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024;"
        "print(rc, w, m, c)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    rc, wall, main, child = r.stdout.split()[-4:]
    assert rc == "0", r.stderr[-2000:]
    return float(wall), float(main), float(child)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chorales", type=int, default=24, help="collection size (files)")
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    longest_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        paths, seconds = make_collection(tmp / "lib", args.chorales)
        print(
            f"collection: {len(paths)} files, {seconds / 60:.1f} min of 44.1 kHz stereo "
            f"(WAV/FLAC/MP3), rendered in {time.perf_counter() - t:.0f}s",
            file=sys.stderr,
        )
        half = tmp / "half"
        half.mkdir()
        half_seconds = 0.0
        for p in paths[: len(paths) // 2]:
            os.link(p, half / p.name)
            half_seconds += sf.info(str(p)).duration
        ours(paths[0]), reference(paths[0])  # warm caches and imports
        rows = []
        longest = max(paths, key=lambda p: p.stat().st_size)
        longest_s = sf.info(str(longest)).duration
        for label, fn in [
            ("decode+resample+mu-law, ours (streaming soxr), 1 core", ours),
            ("decode+resample+mu-law, librosa.load, 1 core", reference),
        ]:
            w = time_decode(paths, fn)
            rows.append((label, seconds, w, traced_peak_mib(longest, fn)))
        for label, src, secs, tempo in [
            ("prepare, 2 workers, no tempo", tmp / "lib", seconds, None),
            ("prepare, 2 workers, no tempo, half the files", half, half_seconds, None),
            ("prepare, 2 workers, --tempo 120", tmp / "lib", seconds, 120.0),
        ]:
            wall, main_mb, child_mb = run_prepare(src, tmp / f"out{len(rows)}", tempo)
            rows.append((label, secs, wall, (main_mb, child_mb)))
    print(f"\n{os.cpu_count()} CPU cores; audio -> 16 kHz mono\n")
    print("| what | audio (min) | wall (s) | x real time | peak memory (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for label, secs, wall, rss in rows:
        if isinstance(rss, tuple):
            mem = f"RSS main {rss[0]:.0f} / worker {rss[1]:.0f}"
        else:
            mem = f"heap {rss:.0f} (largest file, {longest_s:.0f}s)"
        print(f"| {label} | {secs / 60:.1f} | {wall:.1f} | {secs / wall:.0f}x | {mem} |")
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(benchmark process peak RSS {self_mb:.0f} MiB)")
    if args.json:
        from tunelab.atomic import json_safe, write_json

        out = []
        for label, secs, wall, rss in rows:
            r = {"what": label, "audio_minutes": secs / 60, "wall_s": wall}
            r["x_real_time"] = secs / wall
            if isinstance(rss, tuple):
                r["rss_main_mib"], r["rss_worker_mib"] = rss
            else:
                r["heap_mib"], r["largest_file_s"] = rss, longest_s
            out.append(r)
        head = {"chorales": args.chorales, "cpu_count": os.cpu_count(), "peak_rss_mib": self_mb}
        write_json(args.json, json_safe({**head, "rows": out}))


if __name__ == "__main__":
    main()
