"""Which audio family a listener would keep: WaveNet, SampleRNN and the frame RNN trained for
the same wall time on the same recorded music, then scored the same way.

The music: Wesnoth's orchestral soundtrack (Debian's ``wesnoth-1.16-music``, GPL-2: 41 OGG
tracks, fetched once with ``apt-get download`` and unpacked with ``dpkg -x``), or any folder
(``--src``). It is prepared once (``tunelab prepare SRC --kind audio``: 16 kHz mono, split by
file; ``--files`` keeps the first N tracks by name, ``--clip-seconds`` the first seconds of
each), then for each family in turn, one at a time, on the same data:

    tunelab train PRESET data=DATA out=OUT/PRESET train.max_minutes=M
    tunelab evaluate OUT/PRESET --split test           # likelihood or loss, with baselines
    tunelab generate OUT/PRESET --n N --seconds S      # timed: samples per second
    tunelab evaluate OUT/PRESET --samples OUT/PRESET/samples

Printed per family: the test figure against its baselines (bits/sample for the mu-law
families, the frame loss for the frame RNN), the distance of the clips to the held-out test
audio (and to the training audio) with the flags they carry, and the generation speed. A
last row scores the held-out recordings themselves (``evaluate --samples`` on the test files),
so the table shows where real music lies. This comparison decides the audio family that
``tunelab run`` picks (``tunelab.cli.folder._preset``).

Run it alone on a quiet machine (issue 23 asks 30 minutes a family):

    .venv/bin/python benchmarks/audio_quality.py --minutes 30 --out /tmp/aq30
    .venv/bin/python benchmarks/audio_quality.py --minutes 30 --out /tmp/aq30 --reuse
                                            # rescore the runs already in /tmp/aq30
    .venv/bin/python benchmarks/audio_quality.py --minutes 0.3 --files 4 --clip-seconds 20 \\
        --out /tmp/aq_smoke                                            # a smoke test
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.first_try import CACHE  # noqa: E402

FAMILIES = ("wavenet-bench", "samplernn", "frame-gru")
MUSIC = ("wesnoth-1.16-music", "usr/share/games/wesnoth/1.16/data/core/music")


def tunelab(*args: str, cwd: Path, log) -> subprocess.CompletedProcess:
    """One tunelab command as a user types it; stderr to the log, stdout returned."""
    cmd = [sys.executable, "-m", "tunelab.cli", *args]
    print("$ tunelab " + " ".join(args), file=log, flush=True)
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=log, text=True)
    log.write(proc.stdout)
    if proc.returncode:
        raise SystemExit(f"tunelab {args[0]} failed ({proc.returncode}); see {log.name}")
    return proc


def music_folder(src: Path | None, files: int | None, out: Path) -> Path:
    """The recordings to learn from: ``src`` or Wesnoth's soundtrack, the first ``files``
    of them by name linked into OUT/music (so prepare sees just those)."""
    if src is None:
        package, inner = MUSIC
        root = CACHE / package
        if not (root / inner).is_dir():
            CACHE.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run(["apt-get", "download", package], cwd=tmp, check=True)
                deb = next(Path(tmp).glob("*.deb"))
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        src = root / inner
    tracks = sorted(
        p for p in Path(src).rglob("*") if p.suffix.lower() in {".ogg", ".flac", ".wav", ".mp3"}
    )
    if files is None:
        return Path(src)
    folder = out / "music"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for p in tracks[:files]:
        (folder / p.name).symlink_to(p)
    return folder


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _set_figures(audit: dict) -> dict:
    """The set figures of an ``evaluate --samples`` file: distances and the share flagged."""
    sets = audit.get("set_metrics") or {}
    files = audit.get("files") or []
    flagged = sum(1 for f in files if f.get("flags"))
    row = {k: v for k, v in sets.items() if "frechet" in k or "flatness" in k or "loudness" in k}
    # one reading for every family: mu-law runs read the recordings as they are here; a kind
    # that keeps the recordings' samples (the frame RNN) reads them so in frechet_to_test
    row["as_recorded"] = sets.get("frechet_to_test_recordings", sets.get("frechet_to_test"))
    row["flag_counts"] = {k: v for k, v in (audit.get("flag_counts") or {}).items() if v}
    row["share_flagged"] = flagged / len(files) if files else None
    return row


def one_family(preset: str, data: Path, out: Path, args, log) -> dict:
    run = out / preset
    cwd = out
    if args.reuse and (run / "model.safetensors").exists():
        print(f"reusing {run} (trained before; not trained again)", file=log, flush=True)
    else:
        tunelab(
            "train", preset, f"data={data}", f"out={run}", f"train.max_minutes={args.minutes}",
            "train.max_steps=100000000", cwd=cwd, log=log,
        )  # fmt: skip
    tunelab("evaluate", str(run), "--split", "test", cwd=cwd, log=log)
    row = {"family": preset, "test": _read(run / "eval" / "likelihood-test.json")}
    samples = run / "samples"
    if samples.exists():
        shutil.rmtree(samples)  # this run's clips only
    t0 = time.perf_counter()
    proc = tunelab(
        "generate", str(run), "--n", str(args.n), "--seconds", str(args.seconds),
        "--seed", "0", cwd=cwd, log=log,
    )  # fmt: skip
    row["generate_wall_s"] = time.perf_counter() - t0
    rate = [ln for ln in proc.stdout.splitlines() if ln.startswith("sampled ")]
    row["generate_line"] = rate[0] if rate else None
    row["realtime_x"] = args.n * args.seconds / row["generate_wall_s"]
    tunelab("evaluate", str(run), "--samples", str(samples), cwd=cwd, log=log)
    row["samples"] = _set_figures(_read(run / "eval" / "samples.json"))
    return row


def real_music_row(run: Path, data: Path, out: Path, log) -> dict:
    """``evaluate --samples`` on the held-out recordings themselves: where real music lies."""
    folder = out / "test-recordings"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for line in (data / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry.get("status") == "accepted" and entry.get("split") == "test":
            src = Path(entry["path"])
            (folder / f"{len(list(folder.iterdir()))}{src.suffix}").symlink_to(src)
    own = run / "eval" / "samples.json"
    kept = own.read_bytes()  # the run's own audit comes back after: its report reads it
    try:
        tunelab("evaluate", str(run), "--samples", str(folder), cwd=out, log=log)
        audit = _read(own)
    finally:
        own.write_bytes(kept)
    (out / "real-test-recordings.json").write_text(json.dumps(audit, indent=1), encoding="utf-8")
    return {"family": "real test recordings", "samples": _set_figures(audit)}


def verdict(test: dict) -> str:
    """The test figure against its baselines, in one cell."""
    if "bits_per_sample" in test:
        base = {k: v for k, v in test.items() if "baseline" in k and "bits" in k}
        parts = [f"{test['bits_per_sample']:.3f} bits/sample"]
        parts += [
            f"{k.replace('baseline_', '').replace('_bits_per_sample', '')} {v:.3f}"
            for k, v in base.items()
        ]
        return "; ".join(parts)
    base = {k: v for k, v in test.items() if "baseline" in k and k.endswith("loss")}
    parts = [f"loss {test.get('loss', float('nan')):.3f}"]
    parts += [f"{k.replace('baseline_', '').replace('_loss', '')} {v:.3f}" for k, v in base.items()]
    return "; ".join(parts)


def show(rows: list[dict], args) -> None:
    print(
        f"\n{args.minutes:g} minutes of training per family; {args.n} clips of {args.seconds:g} s each"
    )
    print(
        "| family | test figure (baselines) | Fréchet to the test recordings | to test as the run "
        "reads it | to train | share flagged | flags | generate, whole command |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        s = r.get("samples", {})
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        flags = ", ".join(f"{k} {v}" for k, v in s.get("flag_counts", {}).items()) or "none"
        test = verdict(r["test"]) if r.get("test") else "-"
        speed = f"{r['realtime_x']:.2f}x real time" if "realtime_x" in r else "-"
        share = s.get("share_flagged")
        print(
            f"| {r['family']} | {test} | {fmt(s.get('as_recorded'))} | "
            f"{fmt(s.get('frechet_to_test'))} | "
            f"{fmt(s.get('frechet_to_train'))} | {'-' if share is None else f'{share:.0%}'} | "
            f"{flags} | {speed} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="training minutes per family")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES))
    ap.add_argument("--src", type=Path, help="a folder of recordings (default: Wesnoth's music)")
    ap.add_argument("--files", type=int, help="the first N recordings by name only")
    ap.add_argument("--clip-seconds", type=float, help="the first seconds of each recording")
    ap.add_argument("--n", type=int, default=4, help="clips generated per family")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per clip")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "audio_quality")
    ap.add_argument(
        "--reuse", action="store_true",
        help="score OUT/FAMILY as it is where it already holds a trained run (e.g. a family "
        "trained earlier on the same OUT/data, to rescore after a metric changed)",
    )  # fmt: skip
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with open(out / "audio_quality.log", "a") as log:
        src = music_folder(args.src, args.files, out)
        data = out / "data"
        if not (data / "meta.json").exists():
            extra = ["--clip-seconds", str(args.clip_seconds)] if args.clip_seconds else []
            tunelab(
                "prepare", str(src), "--out", str(data), "--kind", "audio", *extra, cwd=out, log=log
            )
        for preset in args.families:
            print(
                f"training {preset} for {args.minutes:g} minutes ...", file=sys.stderr, flush=True
            )
            rows.append(one_family(preset, data, out, args, log))
            (out / "audio_quality.json").write_text(json.dumps(rows, indent=1))
        rows.append(real_music_row(out / args.families[0], data, out, log))
        (out / "audio_quality.json").write_text(json.dumps(rows, indent=1))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        show(rows, args)


if __name__ == "__main__":
    main()
