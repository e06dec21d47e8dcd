"""The report's first screen: did it learn, are the samples clean, do they resemble the data.

Three lines in plain words, each with its figures, read from what the run already holds:

* did it learn: ``RUN_DIR/eval/likelihood-<split>.json`` (test first), the model against the
  baseline in the same file (token runs: nats/step against the n-gram; mu-law audio:
  bits/sample against the class histogram; frame runs: the loss against the mean-frame and
  repeat-last-frame baselines);
* are the samples clean: the flags in each sample's sidecar; a sample whose copy audit could
  not run (``audited: false``) or that has no sidecar is "not audited", with the reason, and
  never counted as clean;
* do they resemble the data: MIDI, the samples' note density, polyphony and on-beat share as
  ratios to the training data's; audio, the spectral flatness and loudness of the samples
  beside the training audio's, and the Fréchet distance of ``evaluate --samples``.

A figure that is missing says which command makes it. Every text taken from users' files
(reasons, paths, flag names) is escaped here.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

import numpy as np

from tunelab.report.markup import e, read_json

RATIO_RANGE = (0.5, 2.0)  # MIDI ratios to the training data's that read as "like the data"
LOUDNESS_CLOSE_DB = 6.0  # audio loudness this close to the training audio's reads as alike
REFERENCE_SECONDS = 60.0  # training audio measured for the comparison (enough for a mean)
SPLITS = ("test", "valid", "train")  # the likelihood file the verdict reads, first found
STYLE = (
    ".verdict{border:2px solid #ccc;border-radius:6px;padding:.4em 1em;margin:1em 0}"
    ".verdict ul{padding-left:0}.verdict li{margin:.3em 0;list-style:none}"
    ".verdict .yes b{color:#2e7d32}"
    ".verdict .no b{color:#c62828}.verdict .unknown b{color:#9a6700}"
)


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def _cmd(*words) -> str:
    """A command line to copy, shell-quoted, as HTML code."""
    return "<code>" + e(" ".join(shlex.quote(str(w)) for w in words)) + "</code>"


def verdict_block(run_dir: Path, files: list[Path], dd, index) -> str:
    """The three answers as an HTML block. ``files``: the sample files the page shows (not
    the WAV previews of MIDI files); ``dd``: the run's data directory or None; ``index``: the
    MIDI training index (``kinds.midi_audit.training_index``) or None."""
    sides = [read_json(f.with_name(f.name + ".json")) for f in files]
    sides = [s if isinstance(s, dict) else None for s in sides]
    midi = any(f.suffix.lower() in (".mid", ".midi") for f in files)
    if not files and dd is not None:
        midi = dd.meta.get("kind", "midi") != "audio"
    lines = [
        ("Did it learn?", *learned(run_dir)),
        ("Are the samples clean?", *clean(run_dir, files, sides)),
        ("Do they resemble the data?", *resemble(run_dir, files, sides, dd, index, midi)),
    ]
    items = "".join(f"<li class='{c}'><b>{q}</b> {text}</li>" for q, c, text in lines)
    return f"<div class='verdict'><ul>{items}</ul></div>"


# -- did it learn ---------------------------------------------------------------------------


def learned(run_dir: Path) -> tuple[str, str]:
    """(yes / no / unknown, HTML): the model against its baseline on the first scored split."""
    for split in SPLITS:
        lik = read_json(run_dir / "eval" / f"likelihood-{split}.json")
        if isinstance(lik, dict):
            break
    else:
        return "unknown", f"Not measured yet: run {_cmd('tunelab', 'evaluate', run_dir)}."
    where = f"on {e(split)}"
    if _num(lik.get("checkpoint_step")):
        where += f" (checkpoint of step {lik['checkpoint_step']})"
    if "learned" in lik:  # a frame run: its loss beside two trivial baselines
        loss, mean = lik.get("loss"), lik.get("baseline_mean_frame_loss")
        last = lik.get("baseline_repeat_last_frame_loss")
        if not all(_num(v) for v in (loss, mean, last)):
            return (
                "unknown",
                f"The loss file lacks its figures: run {_cmd('tunelab', 'evaluate', run_dir)}.",
            )
        word = "Yes" if lik["learned"] else "No"
        how = "below both" if lik["learned"] else "not below both"
        return ("yes" if lik["learned"] else "no"), (
            f"{word}: {e(lik.get('loss_name', 'loss'))} loss {loss:.3f} {where}, {how} "
            f"baselines (mean frame {mean:.3f}, repeat last frame {last:.3f})."
        )
    if _num(lik.get("bits_per_sample")):
        unit, model, name = "bits/sample", lik["bits_per_sample"], "class-histogram baseline"
        per = "sample"  # no piece memory for audio: no fixed_model_* figures
        base = lik.get("baseline_histogram_bits_per_sample")
    else:
        per = "step" if _num(lik.get("nll_per_step")) else "token"
        unit, name = f"nats/{per}", "n-gram baseline"
        # The piece memory adapts to each piece as it is scored: judge the fixed model.
        model = lik.get(f"fixed_model_nll_per_{per}", lik.get(f"nll_per_{per}"))
        base = lik.get(f"baseline_ngram_nll_per_{per}")
    if not _num(model):
        return "unknown", f"No figure in the file: run {_cmd('tunelab', 'evaluate', run_dir)}."
    if not _num(base):
        return "unknown", (
            f"{model:.3f} {unit} {where}, but no baseline to judge it by: run "
            f"{_cmd('tunelab', 'evaluate', run_dir)} (it adds the {name})."
        )
    better = model < base
    gap = f"{abs(base - model):.2f} {'better' if better else 'worse'}, {model / base:.2f}x"
    memory = lik.get(f"nll_per_{per}") if f"fixed_model_nll_per_{per}" in lik else None
    return ("yes" if better else "no"), (
        f"{'Yes' if better else 'No'}: {model:.2f} {unit} {where} against the {name}'s "
        f"{base:.2f} ({gap}; lower is better)"
        + (
            f"; {memory:.2f} with the piece memory, which adapts as it scores."
            if _num(memory)
            else "."
        )
    )


# -- are the samples clean ------------------------------------------------------------------


def clean(run_dir: Path, files: list[Path], sides: list[dict | None]) -> tuple[str, str]:
    """(yes / no / unknown, HTML): flags over the samples; unaudited ones named as such."""
    if not files:
        return "unknown", f"No samples yet: run {_cmd('tunelab', 'generate', run_dir)}."
    n, flags, clean_n, why = len(files), Counter(), 0, Counter()
    for s in sides:
        fl = s.get("flags") if s is not None else None
        if isinstance(fl, list) and fl:
            flags.update(str(x) for x in fl)
        if s is None:
            why["no sidecar (made outside tunelab generate)"] += 1
        elif s.get("audited") is False:
            why[str(s.get("not_audited_reason") or "no reason recorded")] += 1
        elif not isinstance(fl, list):
            why["the sidecar holds no flag list"] += 1
        elif not fl:
            clean_n += 1
    flagged = sum(1 for s in sides if s and isinstance(s.get("flags"), list) and s["flags"])
    parts = []
    if flagged:
        counts = ", ".join(f"{e(k)} {v}" for k, v in flags.most_common())
        parts.append(f"{flagged} of {n} flagged ({counts})")
    if clean_n:
        parts.append(f"{clean_n} of {n} carry no flag")
    not_audited = sum(why.values())
    if not_audited:
        reasons = "; ".join(f"{e(r)}" + (f" ({c})" if c > 1 else "") for r, c in why.items())
        parts.append(f"{not_audited} of {n} not audited: {reasons}")
    if flagged:
        return "no", "No: " + "; ".join(parts) + "."
    if not_audited:
        head = "Not audited" if not clean_n else "Not all audited"
        cmd = _cmd("tunelab", "evaluate", run_dir, "--samples", run_dir / "samples")
        fix = f" Once the run finds its training data again, {cmd} audits them."
        return "unknown", f"{head}: " + "; ".join(parts) + "." + fix
    return "yes", f"Yes: {clean_n} of {n} carry no flag."


# -- do they resemble the data --------------------------------------------------------------


def resemble(run_dir, files, sides, dd, index, midi: bool) -> tuple[str, str]:
    """(yes / no / unknown, HTML): the samples' statistics beside the training data's."""
    if not files:
        return "unknown", f"No samples to compare: run {_cmd('tunelab', 'generate', run_dir)}."
    audits = [s.get("audit") for s in sides if s and isinstance(s.get("audit"), dict)]
    if not audits:
        return "unknown", "Not measured: the samples' sidecars hold no audit figures."
    return _midi_ratios(audits, index) if midi else _audio_figures(run_dir, audits, dd)


def _mean(audits: list[dict], key: str) -> float | None:
    vals = [a[key] for a in audits if _num(a.get(key))]
    return float(np.mean(vals)) if vals else None


def _midi_ratios(audits: list[dict], index) -> tuple[str, str]:
    """Note density, polyphony and on-beat share of the samples (means) over the training
    data's; without the training data now, the ratios the sidecars recorded."""
    stats = getattr(index, "stats", None) or {}
    names = (
        ("note density", "note_density", "density_ratio"),
        ("polyphony", "mean_polyphony", "polyphony_ratio"),
        ("on-beat", "on_beat_share", None),
    )
    ratios = {}
    for name, key, recorded in names:
        mine, ref = _mean(audits, key), stats.get(key)
        if mine is not None and _num(ref) and ref > 0:
            ratios[name] = mine / ref
        elif recorded and _mean(audits, recorded) is not None:
            ratios[name] = _mean(audits, recorded)
    if not ratios:
        return "unknown", (
            "Not measured: the training data was not found, so there is nothing to compare "
            "with (see the data row below)."
        )
    text = ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items())
    text += f" the training data's (mean of {len(audits)} sample{'s' * (len(audits) != 1)})"
    lo, hi = RATIO_RANGE
    off = [k for k, v in ratios.items() if not lo <= v <= hi]
    missing = [name for name, _, _ in names if name not in ratios]
    if missing:
        why = "the training data was not found" if index is None else "not in the sidecars"
        text += f"; {', '.join(missing)} not measured ({why})"
    if off:
        return "no", f"Not quite: {text}; {', '.join(off)} outside {lo:g}x to {hi:g}x."
    return ("yes" if not missing else "unknown"), f"{'Yes' if not missing else 'Partly'}: {text}."


def training_audio(dd) -> dict | None:
    """Spectral flatness and loudness (dBFS) of the first REFERENCE_SECONDS of the training
    split, measured as the audit measures a sample; None without audio."""
    from tunelab.data.audio.encode import from_int16
    from tunelab.metrics.audio import spectral_flatness

    sr = int(dd.meta.get("sample_rate") or 16000)
    left, flat, sq, n = int(REFERENCE_SECONDS * sr), [], 0.0, 0
    for piece in dd.split("train"):
        x = from_int16(np.asarray(piece[:left])).astype(np.float64)
        if not len(x):
            continue
        left -= len(x)
        flat.append(spectral_flatness(x, sr))
        sq, n = sq + float(np.sum(x * x)), n + len(x)
        if left <= 0:
            break
    if not n:
        return None
    return {"flatness": float(np.mean(flat)), "dbfs": 10 * np.log10(max(sq / n, 1e-20))}


def _audio_figures(run_dir: Path, audits: list[dict], dd) -> tuple[str, str]:
    """Spectral flatness and loudness of the samples (means) beside the training audio's, and
    the Fréchet distance that ``evaluate --samples`` measured: to the held-out test audio,
    beside the test audio's own to the training audio (where real music lies), when there is
    a test split; else to the training audio."""
    from tunelab.metrics.audio import NOISE_FLATNESS

    flat, loud = _mean(audits, "spectral_flatness"), _mean(audits, "rms_dbfs")
    try:
        ref = training_audio(dd) if dd is not None else None
    except Exception:  # unreadable training audio must not cost the page: not compared
        ref = None
    parts, ok = [], []
    if flat is not None:
        s = f"spectral flatness {flat:.2g}"
        if ref:
            s += f" against the training audio's {ref['flatness']:.2g}"
            ok.append(flat < max(NOISE_FLATNESS, 2 * ref["flatness"]))
        parts.append(s + f" ({NOISE_FLATNESS:g} and above sounds like noise)")
    if loud is not None:
        s = f"loudness {loud:.1f} dBFS"
        if ref:
            s += f" against {ref['dbfs']:.1f}"
            ok.append(abs(loud - ref["dbfs"]) <= LOUDNESS_CLOSE_DB)
        parts.append(s)
    n = len(audits)
    text = f"over {n} sample{'s' * (n != 1)}, " + "; ".join(parts)
    audit = read_json(run_dir / "eval" / "samples.json")
    sets = audit.get("set_metrics") if isinstance(audit, dict) else None
    if not isinstance(sets, dict):  # no audit of the samples yet
        cmd = _cmd("tunelab", "evaluate", run_dir, "--samples", run_dir / "samples")
        text += f"; for the Fréchet distance to the real recordings run {cmd}"
    elif _num(sets.get("frechet_to_test")):
        text += f"; Fréchet distance {sets['frechet_to_test']:.3g} to the held-out test audio"
        if _num(sets.get("frechet_test_to_train")):
            scale = sets["frechet_test_to_train"]
            text += f" (the test audio's own to the training audio: {scale:.3g})"
    elif _num(sets.get("frechet_distance")):
        text += f"; Fréchet distance {sets['frechet_distance']:.3g} to the training audio"
    elif "frechet_distance" in sets:
        text += "; no Fréchet distance (it needs two seconds of samples and of training audio)"
    if not ref:
        return "unknown", f"Not compared (the training audio was not found): {text}."
    if all(ok):
        return "yes", f"Yes: {text}."
    return ("no", f"No: {text}.") if not any(ok) else ("unknown", f"Partly: {text}.")


# -- the run: how far it trained, what made the page, the data's statistics ---------------


def trained(run_dir: Path) -> dict | None:
    """``step`` and ``minutes`` of training from the run's newest checkpoint (what the
    checkpoints hold, not the last log line, which is written only every log_every steps);
    None without a readable checkpoint."""
    from tunelab.run.checkpoint import CheckpointError, newest_readable

    try:
        found = newest_readable(run_dir / "checkpoints")
    except (CheckpointError, OSError):
        return None
    if found is None or not _num(found[1].get("step")):
        return None
    ck = found[1]
    minutes = ck["elapsed"] / 60 if _num(ck.get("elapsed")) else None
    return {"step": int(ck["step"]), "minutes": minutes, "checkpoint": found[0].name}


def made_by() -> str:
    """The tunelab release and commit that wrote this page."""
    from tunelab.version import stamp

    st = stamp()
    return f"tunelab {st['tunelab']}" + (f" (commit {st['commit']})" if st["commit"] else "")


def training_index(dd):
    """MIDI: the training split's index and statistics (``kinds.midi_audit``), or None."""
    if dd is None or dd.meta.get("kind", "midi") == "audio":
        return None
    from tunelab.kinds.midi_audit import training_index

    return training_index(dd.meta, dd.path)[0]
