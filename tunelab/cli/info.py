"""``tunelab info DATA_DIR|RUN_DIR``: a table of a data set's statistics and PNG plots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from rich.markup import escape

from tunelab.data.store import SPLITS, DataDirError, load_datadir


def _find_run_data(run: Path) -> Path | None:
    """The data directory a run was trained on, from its config.yaml (key ``data``)."""
    import yaml

    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    except Exception:
        return None
    data = cfg.get("data") if isinstance(cfg, dict) else None
    if isinstance(data, dict):  # a nested data section: data.path / data.dir
        data = data.get("path") or data.get("dir")
    if not isinstance(data, str):
        return None
    for cand in (Path(data), run / data, run.parent / data):
        if (cand / "meta.json").exists():
            return cand
    return None


def _error(msg: str) -> int:
    """The commands' one-line error (``tunelab.cli.common.fail``), as an exit status: 2, the
    path given is not one info can read."""
    import typer

    typer.secho(f"error: {msg}", fg="red", err=True)
    return 2


def show_info(path: str | Path, plots: bool = True) -> int:
    """Print the statistics of a data directory (or of the one a run used); 0 ok, 2 when the
    path is neither (the error said why)."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    path = Path(path)
    if (path / "config.yaml").exists() and (path / "checkpoints").is_dir():
        data = _find_run_data(path)
        if data is None:
            return _error(
                f"{path}: a run directory whose data directory (config.yaml key 'data') was "
                "not found; run `tunelab info DATA_DIR`"
            )
        console.print(f"run {path} was trained on {data}")
        path = data
    try:
        dd = load_datadir(path)
    except DataDirError as e:
        return _error(str(e))
    if dd.meta.get("kind") == "audio":
        from tunelab.cli.audio_info import show_audio_info

        return show_audio_info(dd.path, plots)  # the data directory's Path
    _midi_table(console, dd)
    if plots:
        written = write_midi_plots(dd)
        console.print("plots: " + ", ".join(str(p) for p in written))
    return 0


def _midi_table(console, dd) -> None:
    from rich.table import Table

    meta, st = dd.meta, dd.stats
    t = Table(title=f"{dd.path} (MIDI, {meta.get('encoding')} encoding)", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    rows = [
        ("files scanned", st.get("files")),
        ("accepted", st.get("accepted")),
        ("rejected", st.get("rejected")),
        ("pieces", st.get("pieces")),
        ("tokens", st.get("tokens")),
        ("steps", st.get("steps")),
        ("notes", st.get("notes")),
        ("vocabulary", meta.get("vocab_size")),
        ("steps per quarter", meta.get("steps_per_quarter")),
        ("max polyphony", meta.get("max_polyphony")),
        ("median tempo (qpm)", meta.get("tempo_qpm")),
    ]
    for k, v in rows:
        t.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    for reason, n in (st.get("rejections") or {}).items():
        t.add_row(f"  rejected: {reason}", f"{n:,}")
    for rule, n in (st.get("filters") or {}).items():
        t.add_row(f"  filter: {rule}", f"{n:,}")
    for split, c in (meta.get("splits") or {}).items():
        t.add_row(f"split {split}", f"{c['pieces']:,} pieces, {c['items']:,} tokens")
    labels = _labels(dd)
    for label, n in sorted(labels.items()):
        t.add_row(escape(f"  label: {label}"), f"{n:,}")  # labels are untrusted tag text
    _context_rows(t, st.get("context"), meta)
    console.print(t)
    rec = (st.get("context") or {}).get("recommended")
    if rec:
        console.print(
            f"recommended: tunelab prepare ... --steps-per-quarter {rec['steps_per_quarter']} "
            f"--encoding {rec['encoding']}  ({rec['why']}); a 4-bar window is about "
            f"{rec['seq_len_for_4_bars']} tokens (train.seq_bars=4 sizes it from the data); "
            f"preset: {rec.get('preset', 'midi-gru')}"
        )


def _context_rows(t, ctx: dict | None, meta: dict) -> None:
    """Grid and tokens-per-bar rows (data prepared before these figures existed: none)."""
    if not ctx:
        return
    finest = ctx.get("finest_grid_spq")
    t.add_row("finest grid the notes need", f"{finest} steps per quarter" if finest else "> 48")
    shares = ctx.get("onset_share_on_grid") or {}
    t.add_row(
        "  onsets on the grid",
        ", ".join(f"{v:.0%} @{k}" for k, v in shares.items() if v is not None),
    )
    t.add_row("quarters per bar", str(ctx.get("quarters_per_bar")))
    t.add_row(
        f"tokens per bar ({meta.get('encoding')}, here)", str(ctx.get("measured_tokens_per_bar"))
    )
    for enc, v in (ctx.get("tokens_per_bar") or {}).items():
        text = ", ".join(f"{n} @{s}" for s, n in v.items()) if isinstance(v, dict) else str(v)
        t.add_row(f"  tokens per bar, {enc}", text)
    if ctx.get("programs"):
        t.add_row("instruments (GM programs)", ", ".join(map(str, ctx["programs"])))


def _labels(dd) -> Counter:
    c: Counter = Counter()
    for s in SPLITS:
        for p in dd.split(s).pieces:
            if p.get("label") is not None:
                c[str(p["label"])] += 1
    return c


def write_midi_plots(dd) -> list[Path]:
    """pitches.png, polyphony.png, lengths.png (and labels.png) into DATA_DIR/plots/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = dd.path / "plots"
    out.mkdir(exist_ok=True)
    st = dd.stats
    written = []

    def save(fig, name):
        p = out / name
        fig.tight_layout()
        fig.savefig(p, dpi=90)
        plt.close(fig)
        written.append(p)

    hist = st.get("pitch_histogram") or {}
    if hist:
        fig, ax = plt.subplots(figsize=(8, 3))
        pitches = [int(k) for k in hist]
        ax.bar(pitches, list(hist.values()), width=1.0)
        ax.set(xlabel="MIDI pitch", ylabel="notes", title="Pitch histogram")
        save(fig, "pitches.png")
    poly = st.get("polyphony_histogram") or []
    if poly:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar(range(len(poly)), poly, width=0.8)
        ax.set(xlabel="keys sounding at once", ylabel="steps", title="Polyphony histogram")
        save(fig, "polyphony.png")
    lengths = {s: [p.get("steps", p["length"]) for p in dd.split(s).pieces] for s in SPLITS}
    if any(lengths.values()):
        fig, ax = plt.subplots(figsize=(6, 3))
        spq = dd.meta.get("steps_per_quarter", 24)
        ax.hist(
            [np.asarray(v, float) / spq for v in lengths.values() if v],
            bins=30,
            stacked=True,
            label=[s for s, v in lengths.items() if v],
        )
        ax.set(xlabel="length (quarter notes)", ylabel="pieces", title="Piece lengths")
        ax.legend()
        save(fig, "lengths.png")
    labels = _labels(dd)
    if labels:
        fig, ax = plt.subplots(figsize=(6, 3))
        names, counts = zip(*labels.most_common(30), strict=True)
        ax.bar(range(len(names)), counts)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
        ax.set(ylabel="pieces", title="Label counts")
        save(fig, "labels.png")
    return written
