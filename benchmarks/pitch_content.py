"""Pitch salience (``tunelab.metrics.pitch.pitch_salience``) of pitched and unpitched audio: the
measurements behind the ``unpitched`` flag's thresholds (docs/evaluation.md).

Pitched: synthesized tones and a chord, the built-in rendered chorales (the first ``--chorales``
chorales in every timbre, rendered once into ``$TUNELAB_CACHE``) and real recorded music
(``--music``: Frozen Bubble's three music tracks, Debian's ``frozen-bubble-data``). Unpitched:
white and pink noise, clicks, noise bursts with a decaying envelope, game sound effects
(``--effects``, less the ``--music`` files) and the output of a lightly trained WaveNet (``--generated``: a folder of its
WAVs). Each file is cut into 4-second excerpts (at most ``--excerpts`` per file, spread evenly);
the table gives the spread of the excerpts' salience and the data-level figure
(``data_pitch_salience``: the median of 15 spread excerpts) the flag compares with.

    cd /tmp && apt-get download frozen-bubble-data && dpkg -x frozen-bubble-data*.deb /tmp/fb
    .venv/bin/tunelab train wavenet-tiny data=DATA out=/tmp/wn train.max_steps=600
    .venv/bin/tunelab generate /tmp/wn --n 4 --seconds 4 --out /tmp/wn-clips
    .venv/bin/python benchmarks/pitch_content.py \\
        --music '/tmp/fb/usr/share/games/frozen-bubble/snd/*zik*.ogg' \\
        --effects '/tmp/fb/usr/share/games/frozen-bubble/snd/*.ogg' --generated /tmp/wn-clips
"""

from __future__ import annotations

import argparse
import glob
import json
import sys

import numpy as np

SR = 16000
EXCERPT_S = 4


def synthetic(rng) -> dict[str, list[np.ndarray]]:
    t = np.arange(EXCERPT_S * SR) / SR

    def tone(f0):
        return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 9))

    def pink():
        X = np.fft.rfft(rng.standard_normal(len(t)))
        X[1:] /= np.sqrt(np.arange(1, len(X)))
        return np.fft.irfft(X, len(t))

    def clicks():
        x = np.zeros(len(t))
        x[rng.integers(0, len(t), 40)] = rng.uniform(-1, 1, 40)
        return x

    def bursts():
        return rng.standard_normal(len(t)) * np.exp(-((t * 4) % 1) * 12)

    return {
        "harmonic tone (220 Hz, 8 partials)": [tone(220)],
        "chord C-E-G": [tone(261.6) + tone(329.6) + tone(392)],
        "sine with vibrato (5 Hz, +-15 Hz)": [
            np.sin(2 * np.pi * 440 * t + 3 * np.sin(10 * np.pi * t))
        ],
        "white noise": [rng.standard_normal(len(t)) for _ in range(3)],
        "pink noise": [pink() for _ in range(3)],
        "clicks (10 a second)": [clicks() for _ in range(3)],
        "noise bursts (4 a second, decaying)": [bursts() for _ in range(3)],
    }


def excerpts(x: np.ndarray, k: int) -> list[np.ndarray]:
    n = max(1, len(x) // (EXCERPT_S * SR))
    idx = np.unique(np.linspace(0, n - 1, min(k, n)).astype(int))
    return [x[i * EXCERPT_S * SR : (i + 1) * EXCERPT_S * SR] for i in idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--music", help="glob of recorded music files")
    ap.add_argument("--effects", help="glob of sound-effect files")
    ap.add_argument("--generated", help="folder of generated WAVs")
    ap.add_argument("--chorales", type=int, default=6, help="rendered chorales (0: none)")
    ap.add_argument("--excerpts", type=int, default=1000, help="4 s excerpts per file at most")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from tunelab.kinds.audio_io import read_float
    from tunelab.metrics.audio import spectral_flatness
    from tunelab.metrics.pitch import data_pitch_salience, pitch_salience, unpitched

    groups = {k: (v, None) for k, v in synthetic(np.random.default_rng(0)).items()}

    def files(name: str, paths: list[str]) -> None:
        whole = [read_float(p, SR) for p in sorted(paths)]
        if whole:
            cut = [e for x in whole for e in excerpts(x, args.excerpts)]
            groups[name] = (cut, data_pitch_salience(whole, SR))

    if args.chorales:
        from tunelab.data.audio.builtin import builtin_chorale_audio

        items = builtin_chorale_audio(SR, limit=args.chorales, workers=1)
        files(f"rendered chorales ({len(items)} files)", [str(p) for p, _, _ in items])
    if args.music:
        files("recorded music", glob.glob(args.music))
    if args.effects:
        music = set(glob.glob(args.music or ""))
        files("sound effects", [p for p in glob.glob(args.effects) if p not in music])
    if args.generated:
        files("generated clips", glob.glob(f"{args.generated}/*.wav"))
    rows = []
    for name, (xs, data) in groups.items():
        s = [v for x in xs if (v := pitch_salience(x, SR)) is not None]
        fl = [spectral_flatness(x, SR) for x in xs]
        q = np.percentile(s, [0, 5, 50, 100]).round(3).tolist() if s else None
        own = None if data is None else float(np.mean([unpitched(v, data) for v in s]))
        rows.append({"audio": name, "excerpts": len(xs), "salience_min_p5_median_max": q,
                     "data_level": data, "flatness_median": float(np.median(fl)),
                     "unpitched_against_own_data": own})  # fmt: skip
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        return
    print(f"pitch salience of {EXCERPT_S}-second excerpts")
    print(
        "| audio | excerpts | min | 5% | median | max | data level | flagged unpitched against "
        "its own data | flatness (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lo, p5, med, hi = r["salience_min_p5_median_max"] or [None] * 4
        lvl = "-" if r["data_level"] is None else f"{r['data_level']:.3f}"
        own = r["unpitched_against_own_data"]
        own = "-" if own is None else f"{own:.1%}"
        print(
            f"| {r['audio']} | {r['excerpts']} | {lo:.3f} | {p5:.3f} | {med:.3f} | {hi:.3f} | "
            f"{lvl} | {own} | {r['flatness_median']:.3f} |"
        )


if __name__ == "__main__":
    main()
