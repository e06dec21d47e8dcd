"""``tunelab report RUN_DIR``: one static page to read a run, listen to it and judge it.

Writes ``RUN_DIR/report/index.html`` and ``RUN_DIR/report/assets/`` (PNG pictures, WAV audio),
a page that opens from disk with no network: no script, no CDN, styles inline. It opens with
three answers in plain words (did it learn, are the samples clean, do they resemble the data:
``tunelab.report.summary``), then holds the run summary (config, data set, hardware, steps and
time from the newest checkpoint, the tunelab version and commit that made the page), the
data's distributions, the learning curves, the checkpoint ranking of ``evaluate --checkpoints``
when there is one, and the samples (``tunelab.report.samples``: a player, a piano roll or
spectrogram and the audit of every generated file).

Everything read from users' files (config values, labels, file names, MIDI track names and
markers, sidecars) is escaped (``tunelab.report.markup.e``); asset names are made here
(``sample-007.wav``), never taken from file names. A Content-Security-Policy forbids scripts.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from tunelab.atomic import write_text
from tunelab.report import plots as P
from tunelab.report import summary as S
from tunelab.report.markup import e, fmt, img, num, read_json, table
from tunelab.report.samples import sample_files, samples_section

CSP = (
    "default-src 'none'; img-src 'self' file: data:; media-src 'self' file:; "
    "style-src 'unsafe-inline'; script-src 'none'"
)
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1.5em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;
text-align:left;vertical-align:top;font-size:.9em}th{background:#f4f4f4}
.fail{color:#fff;background:#c62828;font-weight:bold}.ok{color:#2e7d32}
.sample{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.note{background:#fff3cd;padding:.5em 1em;border-radius:4px}img{max-width:100%}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.85em;max-height:24em}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid img{max-width:48%}.muted{color:#777}
.pair{display:flex;gap:1em}.pair>div{flex:1}
"""


def build_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report/index.html and its assets; returns the page's path."""
    import yaml

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists() and not (run_dir / "samples").is_dir():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.yaml, no samples/)")
    out = run_dir / "report"
    assets = out / "assets"
    if assets.exists():
        shutil.rmtree(assets)  # only what an earlier report made
    assets.mkdir(parents=True)
    config_text = ""
    if (run_dir / "config.yaml").exists():
        config_text = (run_dir / "config.yaml").read_text(encoding="utf-8", errors="replace")
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError:
        config = {}
    config = config if isinstance(config, dict) else {}
    dd = _datadir(run_dir, config.get("data"))
    index = S.training_index(dd)  # MIDI: the data's statistics, for the verdict and the plots
    files = sample_files(run_dir / "samples") if (run_dir / "samples").is_dir() else []
    parts = [
        S.verdict_block(run_dir, files, dd, index),  # the first screen: the three answers
        _summary(run_dir, config, config_text, dd),
        _data(dd, index, assets),
        _curves(run_dir, assets),
        _ranking(run_dir),
        samples_section(run_dir, files, assets),
    ]
    made = S.made_by()
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="generator" content="{e(made)}">'
        f"<title>tunelab report: {e(run_dir.resolve().name)}</title><style>{STYLE}{S.STYLE}</style>"
        f"</head><body><h1>tunelab report: {e(run_dir.resolve().name)}</h1>"
        + "".join(parts)
        + f"<p class='muted'>made {e(time.strftime('%Y-%m-%d %H:%M:%S'))} by {e(made)}"
        "</p></body></html>"
    )
    return write_text(out / "index.html", page)


def _datadir(run_dir: Path, path):
    """The run's data directory, found from any working directory (``find_data``), or None."""
    from tunelab.data.store import DataDirError, load_datadir
    from tunelab.run.checkpoint import find_data

    if not isinstance(path, str) or not path:
        return None
    try:
        return load_datadir(find_data(run_dir, path))
    except (DataDirError, OSError, ValueError):
        return None


# -- summary --------------------------------------------------------------------------------


def _hardware() -> str:
    import os
    import platform

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{platform.platform()}, {os.cpu_count()} CPU cores, GPU: {gpu}, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def _summary(run_dir: Path, config: dict, config_text: str, dd) -> str:
    from tunelab.run.curves import read_metrics

    recs = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in recs if "loss" in r]
    valid = [r for r in recs if isinstance(r.get("valid_loss"), int | float)]
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    rows = [
        ("run", e(run_dir.resolve())),
        ("report made by", e(S.made_by())),
        ("model family", e(model.get("family", "?"))),
        ("data", e(config.get("data", "?")) + ("" if dd else " <i>(not found)</i>")),
        ("device (config)", e(config.get("device", "?"))),
        ("this machine", e(_hardware())),
    ]
    done = S.trained(run_dir)  # the checkpoints' count: the log is written every log_every
    if done is not None:
        rows.append(("steps trained", e(f"{done['step']} (checkpoint {done['checkpoint']})")))
        if done["minutes"] is not None:
            m = done["minutes"]
            rows.append(("training time", e(f"{m:.1f} minutes" if m >= 1 else f"{m * 60:.0f} s")))
    elif train:
        rows.append(("steps trained", e(f"{train[-1]['step']} (last log line)")))
    if train:
        last = train[-1]
        if "tokens_per_s" in last:
            rows.append(("speed (last log)", e(f"{num(last['tokens_per_s'], ',.0f')} targets/s")))
    if valid:
        best = min(valid, key=lambda r: r["valid_loss"])
        rows.append(
            ("best valid loss", e(f"{num(best['valid_loss'], '.4f')} at step {best.get('step')}"))
        )
    ck = run_dir / "checkpoints" / "last.pt"
    if ck.exists():
        rows.append(
            ("last saved", e(time.strftime("%Y-%m-%d %H:%M", time.localtime(ck.stat().st_mtime))))
        )
    for f in sorted((run_dir / "eval").glob("likelihood-*.json")):
        rows.append((e(f.stem), e(_likelihood_text(read_json(f) or {}))))
    html_ = "<h2>Run</h2>" + table([(f"<b>{k}</b>", v) for k, v in rows])
    if dd is not None:
        splits = dd.meta.get("splits") or {}
        srows = [(e(s), e(c.get("pieces")), e(c.get("items"))) for s, c in splits.items()]
        html_ += f"<h3>Data set: {e(dd.path)} ({e(dd.meta.get('kind', 'midi'))})</h3>"
        html_ += table(srows, ("split", "pieces", "tokens / samples"))
    return html_ + f"<details><summary>config.yaml</summary><pre>{e(config_text)}</pre></details>"


def _likelihood_text(lik: dict) -> str:
    """A likelihood file's figures. The piece memory adapts to each piece as it is scored, so
    the fixed model's figures (``fixed_model_*``) come first and the memory's are named."""
    figs = {
        k: v for k, v in lik.items() if isinstance(v, int | float) and ("nll" in k or "bits" in k)
    }
    fixed = {
        k.removeprefix("fixed_model_"): figs.pop(k)
        for k in list(figs)
        if k.startswith("fixed_model_")
    }

    def join(d: dict) -> str:
        return ", ".join(f"{k} {fmt(v)}" for k, v in d.items())

    text = join(figs)
    if fixed:
        adapted = {k: figs.pop(k) for k in fixed if k in figs}
        parts = [f"fixed model: {join(fixed)}"]
        parts += [f"with piece memory (online adaptation): {join(adapted)}"]
        text = "; ".join(parts + ([join(figs)] if figs else []))
    # How the model was scored: these change the figures several-fold on repetitive music.
    how = [f"transposition mixture {lik['transpose_mix']}"] if lik.get("transpose_mix") else []
    how += ["piece memory"] if lik.get("piece_memory") else []
    return text + (f" (scored with {' and '.join(how)})" if how else "")


# -- data, curves, ranking ------------------------------------------------------------------


def _data(dd, index, assets: Path) -> str:
    if dd is None:
        return ""
    from tunelab.data.store import SPLITS

    pieces = [p for s in SPLITS for p in dd.split(s).pieces]
    labels = Counter(str(p["label"]) for p in pieces if p.get("label") is not None)
    imgs = [img(P.label_counts(labels, assets / "data-labels.png"), "labels")]
    if dd.meta.get("kind") == "audio":
        loud = [p["loudness_db"] for p in pieces if p.get("loudness_db") is not None]
        imgs.append(img(P.loudness_histogram(loud, assets / "data-loudness.png"), "loudness"))
    elif index is not None:
        r = index.roll
        pitches = (r.keys()[r.onset] + 21).astype(np.int64)
        imgs.append(img(P.pitch_histogram(pitches, assets / "data-pitches.png"), "pitches"))
    label_rows = [(e(k), e(v)) for k, v in labels.most_common(30)]
    text = table(label_rows, ("label", "pieces")) if label_rows else ""
    return "<h2>Data</h2><div class='grid'>" + "".join(imgs) + "</div>" + text


def _curves(run_dir: Path, assets: Path) -> str:
    if not (run_dir / "metrics.jsonl").exists():
        return ""
    from tunelab.run.curves import plot_run

    imgs = []
    for p in plot_run(run_dir):  # RUN_DIR/plots/loss.png, speed.png
        dst = assets / f"curve-{p.stem}.png"
        shutil.copyfile(p, dst)
        imgs.append(img(dst, p.stem))
    return "<h2>Learning curves</h2><div class='grid'>" + "".join(imgs) + "</div>"


def _ranking(run_dir: Path) -> str:
    res = read_json(run_dir / "eval" / "checkpoints.json")
    if not isinstance(res, dict) or not isinstance(res.get("checkpoints"), list):
        return ""
    rows = []
    for r in res["checkpoints"]:
        flags = ", ".join(f"{k} {v}" for k, v in (r.get("flag_counts") or {}).items() if v)
        rows.append(
            (
                e(r.get("rank")),
                e(r.get("name")),
                e(r.get("step")),
                e(f"{r.get('flagged')}/{r.get('pieces')}")
                + (f" <span class='fail'>{e(flags)}</span>" if flags else ""),
                e(fmt(r.get("distance"))),
                e(fmt(r.get("valid_loss")))
                + f" <span class='muted'>({e(r.get('valid_loss_source'))})</span>",
            )
        )
    note = f"<p class='note'>{e(res['note'])}</p>" if res.get("note") else ""
    head = ("rank", "checkpoint", "step", "flagged pieces", "distance to training", "valid loss")
    return (
        "<h2>Checkpoints ranked by what they generate</h2>"
        + note
        + table(rows, head)
        + f"<p class='muted'>{e(res.get('rule', ''))}</p>"
    )
