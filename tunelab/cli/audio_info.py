"""``tunelab info`` for audio data directories: a statistics table and PNG plots.

Plots (in DATA_DIR/plots/): labels.png (pieces per label, e.g. genre), years.png
(pieces per year, when tags gave years), durations.png, tempo.png (original
tempi, when tempo normalisation ran) and loudness.png (RMS level before
normalisation).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from rich.markup import escape

from tunelab.data.store import SPLITS, load_datadir


def _pieces(dd) -> list[dict]:
    return [p for s in SPLITS for p in dd.split(s).pieces]


def _fmt_seconds(s: float) -> str:
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


def show_audio_info(datadir: str | Path, plots: bool = True) -> int:
    """Print a table of an audio data directory's statistics; write plots. Returns 0."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    dd = load_datadir(datadir)
    meta, st = dd.meta, dd.stats
    pieces = _pieces(dd)
    sr = meta["sample_rate"]
    durs = np.array([p["length"] / sr for p in pieces]) if pieces else np.zeros(0)
    t = Table(title=f"{dd.path} (audio, {sr} Hz mono, 16-bit)", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    rows = [
        ("files scanned", st.get("files")),
        ("accepted", st.get("accepted")),
        ("rejected", st.get("rejected")),
        ("total duration", _fmt_seconds(float(durs.sum()))),
        (
            "piece duration (s)",
            f"min {durs.min():.1f} / median {np.median(durs):.1f} / max {durs.max():.1f}"
            if len(durs)
            else "-",
        ),
        ("trimmed silence", f"{st.get('trimmed_fraction', 0):.1%} of decoded audio"),
        ("label source", meta.get("label_source")),
        ("labels", len(meta.get("labels") or {})),
        ("tempo target (BPM)", meta.get("tempo_target") or "-"),
    ]
    for name, v in meta.get("splits", {}).items():
        rows.append((f"split {name}", f"{v['pieces']} pieces, {_fmt_seconds(v['items'] / sr)}"))
    for k, v in (st.get("rejections") or {}).items():
        rows.append((f"rejected: {k}", v))
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)
    labels = meta.get("labels") or {}
    if labels:
        lt = Table(title="labels")
        lt.add_column("label")
        lt.add_column("pieces", justify="right")
        for k, v in sorted(labels.items(), key=lambda kv: -kv[1]):
            lt.add_row(escape(k), str(v))  # labels are untrusted tag text, not markup
        console.print(lt)
    if plots:
        written = write_audio_plots(dd.path, pieces, meta)
        console.print("plots: " + ", ".join(str(p) for p in written))
    return 0


def write_audio_plots(path: Path, pieces: list[dict], meta: dict) -> list[Path]:
    """Write the PNG plots into ``path/plots``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path) / "plots"
    out.mkdir(exist_ok=True)
    sr = meta["sample_rate"]
    written: list[Path] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)

    def bars(counts: Counter, title: str, name: str, sort_keys: bool = False) -> None:
        items = sorted(counts.items()) if sort_keys else counts.most_common(40)
        fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(items) + 2), 4))
        # Labels are tag text: an escaped "$" keeps matplotlib from parsing them as math.
        names = [str(k).replace("$", r"\$") for k, _ in items]
        ax.bar(names, [v for _, v in items], color="tab:blue")
        ax.set_title(title)
        ax.set_ylabel("pieces")
        ax.tick_params(axis="x", rotation=60)
        save(fig, name)

    labels = Counter(p.get("label") for p in pieces if p.get("label") is not None)
    if labels:
        bars(labels, f"pieces per label ({meta.get('label_source')})", "labels.png")
    years = Counter(p["year"] for p in pieces if p.get("year"))
    if years:
        bars(years, "pieces per year", "years.png", sort_keys=True)

    def hist(values, title: str, xlabel: str, name: str) -> None:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(values, bins=min(40, max(5, len(values) // 3)), color="tab:green")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("pieces")
        save(fig, name)

    if pieces:
        hist([p["length"] / sr for p in pieces], "piece durations", "seconds", "durations.png")
    tempi = [p["tempo_bpm"] for p in pieces if p.get("tempo_bpm")]
    if tempi:
        hist(tempi, "original tempo (estimated)", "BPM", "tempo.png")
    loud = [p["loudness_db"] for p in pieces if p.get("loudness_db") is not None]
    if loud:
        hist(loud, "loudness before normalisation", "RMS dBFS", "loudness.png")
    return written
