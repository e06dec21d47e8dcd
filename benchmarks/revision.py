"""Does the revision pass pay for its training time? Drafts against revised clips at equal total
training time, on the same prepared audio data.

Two ways to spend ``--minutes`` of training:

- **draft only**: the audio family (``--family``, default ``wavenet-bench``) trains all of it;
- **draft + revision**: the family trains ``(1 - --share)`` of it (a run of its own) and the
  reviser (``tunelab train revision revision.base=THAT_RUN``: corruptions of real audio and
  the run's own drafts) the rest, its own drafts' generation included; its clips are
  ``generate --revise``'s.

Both generate ``--n`` clips of ``--seconds`` with the same seed, and ``evaluate --samples``
places each set against the data's held-out test audio (Fréchet distance over per-second
MFCC + chroma statistics, in the training audio's standard deviations per feature) with its
flags and spectral flatness beside the data's. ``evaluate`` reads the test audio as the base
run does (a mu-law run: through the mu-law round trip); a revised clip is no longer mu-law
audio, so each set is also placed against the test recordings as they are (evaluate's
``frechet_to_test_recordings``; before 2026-12-07 this benchmark read the WAV files itself:
67.3 for the revised Wesnoth clips where evaluate, reading them through mu-law, gives 67.7).
Each clip (draft and revised) is also scored under the base model that drew it, in bits per sample: a
reviser that only makes audio the base model finds likely has learnt the base model's habits,
and one whose clips the base model finds far less likely has moved away from what it drew
(which is the point where the drafts are far from the music).

    .venv/bin/python benchmarks/revision.py --data DATA --minutes 30 --out /tmp/revbench
    .venv/bin/python benchmarks/revision.py --data DATA --minutes 30 --alone AQ/wavenet-bench \\
        --out /tmp/revbench          # reuse audio_quality.py's 30-minute run as the first arm
    .venv/bin/python benchmarks/revision.py --data DATA --minutes 1 --n 2 --seconds 2 \\
        --family wavenet-tiny --out /tmp/revsmoke                    # a smoke test

``DATA``: any prepared audio data directory (``tunelab prepare --builtin bach-chorales-audio``,
or a folder of recordings). Run it alone: the training budgets are wall clock.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tunelab(*args: str, log) -> None:
    print("$ tunelab " + " ".join(args), file=log, flush=True)
    proc = subprocess.run([sys.executable, "-m", "tunelab.cli", *args], stdout=log, stderr=log)
    if proc.returncode:
        raise SystemExit(f"tunelab {args[0]} failed ({proc.returncode}); see {log.name}")


def train(preset: str, data: Path, out: Path, minutes: float, log, *extra: str) -> None:
    if minutes > 0:
        keys = [f"data={data}", f"out={out}", f"train.max_minutes={minutes}"]
        tunelab("train", preset, *keys, "train.max_steps=100000000", *extra, log=log)


def bits_per_sample(run: Path, files: list[Path]) -> float | None:
    """Mean bits per sample of the WAV files under the run's model (mu-law families; None for
    others), each scored from silence with its sidecar's label, as ``evaluate`` scores a piece."""
    import soundfile as sf
    import torch

    from tunelab.data.audio.encode import mu_law_encode
    from tunelab.kinds.mulaw import Kind as MuLaw
    from tunelab.kinds.mulaw import lead_in
    from tunelab.kinds.scoring import piece_nll
    from tunelab.run.checkpoint import load_run

    loaded = load_run(run)
    kind = loaded.kind
    if not isinstance(kind, MuLaw):
        return None
    total, n = 0.0, 0
    for f in files:
        side = json.loads(f.with_name(f.name + ".json").read_text(encoding="utf-8"))
        x = sf.read(str(f), dtype="float32")[0]
        q = torch.from_numpy(mu_law_encode(np.clip(x, -1, 1), kind.vocab_size))
        rf = lead_in(loaded.model)
        seq = torch.cat([torch.full((rf,), kind.silence, dtype=torch.long), q])
        nll = piece_nll(loaded.model, seq, label=kind.label_id(side.get("label")))[-len(q) :]
        total += float(nll.double().sum())
        n += len(q)
    return total / max(n, 1) / np.log(2)


def clips(run: Path, out: Path, args, log, revise: Path | None = None) -> dict:
    """Generate, audit and score one set; the set figures and per-set means."""
    samples = out / "samples"
    opts = ["--n", str(args.n), "--seconds", str(args.seconds), "--seed", "0", "--out"]
    tunelab(
        "generate",
        str(run),
        *opts,
        str(samples),
        *(["--revise", str(revise)] if revise else []),
        log=log,
    )
    tunelab("evaluate", str(run), "--samples", str(samples), log=log)
    audit = json.loads((run / "eval" / "samples.json").read_text(encoding="utf-8"))
    (out / "samples.json").write_text(json.dumps(audit, indent=1), encoding="utf-8")
    sets = audit.get("set_metrics") or {}
    files = sorted(p for p in samples.glob("*.wav") if not p.name.endswith(".draft.wav"))
    row = {
        "frechet_to_test": sets.get("frechet_to_test"),
        "frechet_test_to_train": sets.get("frechet_test_to_train"),
        "flatness_quartiles": sets.get("flatness_quartiles"),
        "flags": {k: v for k, v in (audit.get("flag_counts") or {}).items() if v},
        "bits_per_sample_under_base": bits_per_sample(run, files),
        # a revised clip is no longer mu-law audio: read against the recordings as they are
        "frechet_to_test_recordings": sets.get("frechet_to_test_recordings"),
    }
    if revise:  # the drafts the reviser rewrote, scored the same way
        drafts = sorted(samples.glob("*.draft.wav"))
        from tunelab.evaluate import audit_samples

        folder = out / "drafts"
        folder.mkdir(exist_ok=True)
        for d in drafts:
            (folder / d.name).write_bytes(d.read_bytes())
            side = d.with_name(d.name.replace(".draft.wav", ".wav") + ".json")
            (folder / (d.name + ".json")).write_text(side.read_text(encoding="utf-8"))
        _, a = audit_samples(run, folder)
        row["drafts"] = {
            "frechet_to_test": (a.get("set_metrics") or {}).get("frechet_to_test"),
            "flatness_quartiles": (a.get("set_metrics") or {}).get("flatness_quartiles"),
            "flags": {k: v for k, v in (a.get("flag_counts") or {}).items() if v},
            "bits_per_sample_under_base": bits_per_sample(run, sorted(folder.glob("*.wav"))),
            "frechet_to_test_recordings": (a.get("set_metrics") or {}).get(
                "frechet_to_test_recordings"
            ),
        }
    return row


def picture(samples: Path, out: Path) -> Path:
    """The first draft beside its revision, as spectrograms, into ``out`` (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf
    from scipy.signal import spectrogram

    draft = sorted(samples.glob("*.draft.wav"))[0]
    revised = draft.with_name(draft.name.replace(".draft.wav", ".wav"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3), sharey=True)
    for ax, f, title in ((axes[0], draft, "draft"), (axes[1], revised, "revised")):
        x, sr = sf.read(str(f), dtype="float32")
        fr, t, sxx = spectrogram(x, sr, nperseg=1024, noverlap=768)
        ax.pcolormesh(t, fr, 10 * np.log10(sxx + 1e-12), shading="auto", cmap="magma", vmin=-120)
        ax.set(title=f"{title} ({f.name})", xlabel="seconds")
    axes[0].set_ylabel("Hz")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    return out


def _flatness(row: dict) -> str:
    """The clips' median spectral flatness beside the test audio's, in one cell."""
    q = row.get("flatness_quartiles") or {}
    mid = [(q.get(k) or [None, None])[1] for k in ("samples", "test")]
    return " ".join(
        "-" if v is None else (f"{v:.3g}" if i == 0 else f"({v:.3g})") for i, v in enumerate(mid)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="a prepared audio data directory")
    ap.add_argument("--family", default="wavenet-bench", help="the audio preset that drafts")
    ap.add_argument("--minutes", type=float, default=30.0, help="total training minutes")
    ap.add_argument("--share", type=float, default=0.25, help="of them, the reviser's share")
    # 16 clips of 4 s: 64 per-second feature rows for the 38-number Fréchet statistics (4 x
    # 4 s gave 16 rows, fewer than the features: revisers a few updates apart read 60 and 75)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "revision_bench")
    ap.add_argument(
        "--alone",
        type=Path,
        metavar="RUN",
        help="reuse RUN (the family trained --minutes on the same data, e.g. audio_quality.py's) "
        "as the draft-only arm instead of training it",
    )
    ap.add_argument(
        "--base",
        type=Path,
        metavar="RUN",
        help="reuse RUN (the family trained (1 - --share) x --minutes on the same data) as the "
        "base the reviser learns from and revises, instead of training it",
    )
    ap.add_argument(
        "--reviser",
        type=Path,
        metavar="REV",
        help="reuse REV (a revision run trained --share x --minutes for the base) instead of "
        "training it",
    )
    ap.add_argument(
        "--corruptions-only",
        action="store_true",
        help="train the reviser on corruptions of real audio only (no revision.base): the "
        "reviser before it learnt from its base run's own drafts",
    )
    ap.add_argument(
        "--picture",
        nargs=2,
        type=Path,
        metavar=("SAMPLES", "PNG"),
        help="only draw the first draft of SAMPLES (generate --revise's folder) beside its "
        "revision into PNG",
    )
    args = ap.parse_args()
    if args.picture:
        print(picture(*args.picture))
        return
    if args.data is None:
        ap.error("--data is required (unless --picture)")
    out, data = args.out.resolve(), args.data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    with open(out / "revision.log", "a") as log:
        alone, base, rev = out / "draft-only", out / "base", out / "reviser"
        alone_run = args.alone.resolve() if args.alone else alone / "run"
        if not args.alone:
            train(args.family, data, alone_run, args.minutes, log)
        rows["draft only"] = clips(alone_run, alone, args, log)
        base_run = args.base.resolve() if args.base else base / "run"
        if not args.base:
            train(args.family, data, base_run, (1 - args.share) * args.minutes, log)
        own = [] if args.corruptions_only else [f"revision.base={base_run}"]
        if args.reviser:
            rev = args.reviser.resolve()
        else:
            train("revision", data, rev, args.share * args.minutes, log, *own)
        rows["draft + revision"] = clips(base_run, base, args, log, revise=rev)
    (out / "revision.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"{args.minutes:g} training minutes in all ({args.family}; reviser {args.share:.0%})")
    print(
        "| clips | Fréchet to test (as the run reads it) | to the test recordings | flags "
        "| spectral flatness, median (test audio's) | bits/sample under their base model |"
    )
    print("|---|---:|---:|---|---:|---:|")
    show = {
        "draft only": rows["draft only"],
        "drafts of the shorter run": rows["draft + revision"]["drafts"],
        "the same, revised": rows["draft + revision"],
    }
    for name, r in show.items():
        f, b = r.get("frechet_to_test"), r.get("bits_per_sample_under_base")
        g = r.get("frechet_to_test_recordings")
        flags = ", ".join(f"{k} {v}" for k, v in r["flags"].items()) or "none"
        print(
            f"| {name} | {'-' if f is None else f'{f:.1f}'} | {'-' if g is None else f'{g:.1f}'} "
            f"| {flags} | {_flatness(r)} | {'-' if b is None else f'{b:.3f}'} |"
        )
    t = rows["draft only"].get("frechet_test_to_train")
    if t is not None:
        print(f"(the test audio's own distance to the training audio: {t:.1f})")


if __name__ == "__main__":
    main()
