"""A new user's first try: `tunelab run` with default settings on real collections we do not ship.

Three public, licensed collections from Debian's archive (fetched once with ``apt-get
download`` and unpacked with ``dpkg -x``; any folder can be given instead with ``--src``):

- ``pianobooster``: the 9 MIDI lessons and tunes of PianoBooster (GPL-3), with the SVG
  score pictures beside them, as a teacher's folder holds them: a small MIDI folder;
- ``openmsx``: the 31 General MIDI songs of OpenTTD's OpenMSX set (GPL-2), with its
  licence and readme files: a multi-instrument MIDI folder, drums included;
- ``frozen-bubble``: Frozen Bubble's sound folder (GPL-2): 3 music tracks (OGG, about 7
  minutes) mixed with 18 short sound effects: an audio folder as a game or a sample
  library has it.

Each runs ``tunelab run SRC --out OUT/NAME --minutes M`` in a fresh working directory, as a
stranger would, one after another (never two at once). Printed per collection: the wall time
against the budget, the choices the command made, the files accepted, rejected and ignored,
the model against its baseline, the samples' flags, and the samples against the data (MIDI:
note density, polyphony and on-beat ratios; audio: the Fréchet distance of the samples'
per-second features to the training audio, and their spectral flatness).

The aim (issue 21), at ``--minutes 8``: the model beats its baseline, the samples carry no
flag, the MIDI ratios lie between 0.5 and 2, and the command ends within the budget plus 3
minutes.

Run: ``.venv/bin/python benchmarks/first_try.py [--minutes 8] [--only openmsx] [--json]``
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

from tunelab.cli.folder import verdict  # noqa: E402

# name -> (Debian package, folder inside it)
COLLECTIONS = {
    "pianobooster": ("pianobooster", "usr/share/doc/pianobooster/courses"),
    "openmsx": ("openttd-openmsx", "usr/share/games/openttd/baseset/openmsx"),
    "frozen-bubble": ("frozen-bubble-data", "usr/share/games/frozen-bubble/snd"),
}
CACHE = Path.home() / ".cache" / "tunelab-bench" / "debian"


def fetch(name: str) -> Path:
    """The collection's folder, downloaded and unpacked on first use (no root needed)."""
    package, inner = COLLECTIONS[name]
    root = CACHE / package
    if not (root / inner).is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            # apt's lines go to stderr: stdout carries the table (or the JSON)
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, stdout=sys.stderr)
            deb = next(Path(tmp).glob("*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root / inner


def run_one(name: str, src: Path, out: Path, minutes: float) -> dict:
    """``tunelab run`` on ``src`` from an empty working directory; what it chose and measured."""
    dest = out / name
    if dest.exists():
        shutil.rmtree(dest)  # a first try: nothing prepared or trained before
    log = out / f"{name}.log"
    with tempfile.TemporaryDirectory() as cwd, open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "tunelab.cli", "run", str(src), "--out", str(dest)]
            + ["--minutes", str(minutes)],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=f,
            text=True,
        )
        wall = time.perf_counter() - t0
    row = {"collection": name, "source": str(src), "minutes": minutes, "wall_minutes": wall / 60}
    row["exit_code"] = proc.returncode
    row["last_line"] = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode:
        row["error"] = f"exit {proc.returncode}; see {log}"
        return row
    choices = json.loads((dest / "choices.json").read_text())
    row["choices"] = {
        k: v["value"] for k, v in choices.items() if isinstance(v, dict) and "value" in v
    }
    statuses: dict[str, int] = {}
    for line in (dest / "data" / "manifest.jsonl").read_text().splitlines():
        s = json.loads(line).get("status", "?")
        statuses[s] = statuses.get(s, 0) + 1
    row["files"] = statuses
    ev = dest / "run" / "eval"
    lik_path = next(iter(sorted(ev.glob("likelihood-*.json"))), None)
    if lik_path:
        lik = json.loads(lik_path.read_text())
        row["split"] = lik.get("split")
        row["verdict"] = verdict(lik)
        row["beats_baseline"] = "better" in row["verdict"]
    audit = json.loads((ev / "samples.json").read_text())
    row["audited"] = audit.get("audited")
    row["flags"] = {k: v for k, v in audit.get("flag_counts", {}).items() if v}
    files = [f for f in audit.get("files", []) if "metrics" in f]
    row["samples"] = len(audit.get("files", []))
    ratios = {}
    for key in ("density_ratio", "polyphony_ratio", "on_beat_ratio"):
        vals = [f["metrics"][key] for f in files if f["metrics"].get(key) is not None]
        if vals:
            ratios[key] = sum(vals) / len(vals)
    if ratios:
        row["ratios"] = ratios
    summary = audit.get("set_metrics") or {}
    if "frechet_distance" in summary:
        row["frechet_distance"] = summary["frechet_distance"]
    flat = [f["metrics"].get("spectral_flatness") for f in files]
    if any(v is not None for v in flat):
        row["spectral_flatness"] = [round(v, 4) for v in flat if v is not None]
    row["aims"] = aims(row)
    return row


def aims(row: dict) -> dict:
    """Issue 21's aims for this collection: met (True) or not (False)."""
    met = {
        "beats baseline": bool(row.get("beats_baseline")),
        "no flag": not row.get("flags") and row.get("audited") is True,
        "within budget + 3 min": row["wall_minutes"] <= row["minutes"] + 3,
    }
    if "ratios" in row:
        met["ratios in 0.5..2"] = all(0.5 <= v <= 2 for v in row["ratios"].values())
    return met


def show(rows: list[dict]) -> None:
    for r in rows:
        print(f"\n== {r['collection']} ({r['source']})")
        print(f"wall {r['wall_minutes']:.2f} min for --minutes {r['minutes']:g}")
        if "error" in r:
            print(f"FAILED: {r['error']}")
            continue
        print("choices: " + ", ".join(f"{k}={v}" for k, v in r["choices"].items()))
        print("files: " + ", ".join(f"{v} {k}" for k, v in sorted(r["files"].items())))
        print(f"{r.get('split')}: {r.get('verdict')}")
        flags = ", ".join(f"{k} {v}" for k, v in r["flags"].items()) or "none"
        print(
            f"samples: {r['samples']}, flags: {flags}" + ("" if r["audited"] else " (not audited)")
        )
        if "ratios" in r:
            print("against the data: " + ", ".join(f"{k} {v:.2f}" for k, v in r["ratios"].items()))
        if "frechet_distance" in r:
            print(f"Fréchet distance to the training audio: {r['frechet_distance']:.3f}")
        if "spectral_flatness" in r:
            print(f"spectral flatness of the samples: {r['spectral_flatness']}")
        print(
            "aims: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in r["aims"].items())
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="the budget given to tunelab run")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "first_try")
    ap.add_argument("--only", action="append", choices=sorted(COLLECTIONS), help="repeatable")
    ap.add_argument(
        "--src", action="append", default=[], metavar="NAME=DIR", help="a folder of your own"
    )
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    sources = {k: None for k in (args.only or COLLECTIONS)}
    for spec in args.src:
        name, _, folder = spec.partition("=")
        sources[name] = Path(folder)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, src in sources.items():
        src = src or fetch(name)
        print(f"running {name} ({src}) ...", file=sys.stderr, flush=True)
        rows.append(run_one(name, src.resolve(), args.out.resolve(), args.minutes))
        (args.out / "first_try.json").write_text(json.dumps(rows, indent=1))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        show(rows)


if __name__ == "__main__":
    main()
