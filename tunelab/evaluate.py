"""``tunelab evaluate``: likelihood of a split, and audits of a folder of samples.

Likelihood: each piece of the split is scored whole from its first element, the way it is
generated (``tunelab.kinds.scoring.piece_nll``), with the accounting of the run's kind of data:

* tokens (MIDI), per piece ``x_0 .. x_T`` with ``x_0`` = BOS, ``x_T`` = EOS:
  ``nll_per_token`` = sum_{t=1..T} -log p(x_t | x_<t) / ``tokens`` (every predicted token, EOS
  included; BOS is never predicted); ``nll_per_step`` = the same sum over targets that are
  neither BOS nor EOS, divided by ``steps``, the number of quantized grid steps;
* mu-law audio: ``nll_per_token`` and ``bits_per_sample`` = nats / ln 2 over every sample of
  every piece (the first predicted from silence, as generation starts), and ``samples``;
* audio frames (not a likelihood model): the run's ``loss`` and ``mse`` over every frame of
  every piece after its first, beside the mean-frame and repeat-last-frame baselines and
  ``learned`` (beats both); ``nll_per_token`` is null (``tunelab.kinds.frames``).

The same file holds a baseline with the same accounting under names containing ``baseline``
(an interpolated Kneser-Ney n-gram for tokens, the training split's class histogram for audio).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from tunelab.atomic import json_safe, write_json
from tunelab.generate import draft_path
from tunelab.kinds import kind_for
from tunelab.kinds.audio_io import READ_SECONDS, AudioKind
from tunelab.run.bundle import output_home
from tunelab.version import stamp


def evaluate_split(
    run_dir: str | Path,
    split: str = "test",
    which: str = "best",
    data: str | Path | None = None,
    device: str = "cpu",
    baseline: bool = True,
    progress: bool = True,
    transpose_mix: int | None = None,
    piece_memory: bool | None = None,
) -> tuple[Path, dict]:
    """Write RUN_DIR/eval/likelihood-<split>.json; returns (path, result). ``transpose_mix``,
    ``piece_memory``: as in ``checkpoint.load_run`` (None: the run's own setting)."""
    from tunelab.data.store import load_datadir
    from tunelab.run.checkpoint import find_data, load_run

    run = load_run(
        run_dir, which, device=device, transpose_mix=transpose_mix, piece_memory=piece_memory
    )
    dd = load_datadir(data or find_data(run_dir, run.config["data"]))
    kind = run.kind
    kind.check_data(dd.meta, dd.path)
    pieces = dd.split(split)
    if not len(pieces):  # e.g. a collection too small for a test split
        have = [s for s in ("train", "valid", "test") if len(dd.split(s))]
        raise ValueError(
            f"{dd.path}: the {split} split has no pieces; choose --split from {', '.join(have)}"
        )
    result = {
        "version": stamp(),
        "split": split,
        "checkpoint": str(run.path),
        "checkpoint_step": run.step,
        "transpose_mix": run.transpose_mix,
        "piece_memory": run.piece_memory,
        "data": str(dd.path),
        **kind.likelihood(run.model, pieces, device=device, progress=progress),
    }
    if baseline:
        result.update(kind.baseline(dd, split))
    path = write_json(output_home(run_dir) / "eval" / f"likelihood-{split}.json", json_safe(result))
    return path, result


def audit_samples(
    run_dir: str | Path,
    samples: str | Path,
    data: str | Path | None = None,
    which: str = "best",
) -> tuple[Path, dict]:
    """Audit every sample file under ``samples``; write RUN_DIR/eval/samples.json.

    MIDI runs: every .mid/.midi file, read, quantized and encoded with the run's codec (so
    it is judged on the training grid). Audio runs: every audio file, decoded at the run's
    sample rate (the first ``audio_io.READ_SECONDS`` of each: a folder of long recordings
    works too), and the set placed against the data's held-out test audio and its training
    audio (``kinds.audio_quality``). An unreadable file gets only the ``invalid`` flag and its
    reason. Flags recorded in a file's sidecar by ``generate`` (``training_primer``) are kept.
    """
    from tunelab.data.store import printable
    from tunelab.run import audit_index
    from tunelab.run.checkpoint import find_data, load_run

    run = load_run(run_dir, which)  # a run directory or a bundle
    meta, config = run.meta, run.config
    kind = kind_for(config["model"], meta, str(run_dir))
    root = Path(samples).absolute()  # the JSON names the folder from any directory
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of samples")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in kind.sample_suffixes)
    # generate --revise: x.draft.wav beside its revision x.wav is not a sample of its own (the
    # revised clip's sidecar holds the draft's audit); counted, not scored twice
    drafts = {draft_path(p) for p in files} & set(files)
    files = [p for p in files if p not in drafts]
    data = data or find_data(run_dir, config.get("data"))
    index, where = audit_index.reference(run, run_dir, data)  # the data, else the bundle's
    if index is None:
        warnings.warn(f"copy audit skipped: {where}", stacklevel=2)
    entries, pieces, ok = [], [], []
    for f in files:
        e = {"file": printable(str(f.relative_to(root)))}  # a non-UTF-8 name stays writable
        try:
            pieces.append(kind.read(f))
        except ValueError as err:
            e.update(error=printable(str(err)), flags=["invalid"])
        else:
            ok.append(len(entries))
        entries.append(e)
    audio = isinstance(kind, AudioKind)
    if audio:  # the set against the data's recordings: held-out test and training audio
        held, held_where, recorded = kind.held_out(data)
        music, summary = kind.music_metrics(pieces, index, held_out=held, recordings=recorded)
        summary = summary and {"test_reference": held_where, **summary}
    else:
        music, summary = kind.music_metrics(pieces, index)
    for k, a in zip(ok, kind.audit(pieces, None, index) if pieces else [], strict=True):
        flags = a.pop("flags")
        side = files[k].with_name(files[k].name + ".json")
        if side.exists():
            try:
                if "training_primer" in json.loads(side.read_text(encoding="utf-8")).get(
                    "flags", []
                ):
                    flags.append("training_primer")
            except (OSError, ValueError, AttributeError, TypeError):
                pass  # an unreadable or odd sidecar ({"flags": null}, a list, ...) adds nothing
        if "most_similar" in a:
            a["most_similar"] = entries[ok[a["most_similar"]]]["file"]
        entries[k].update(metrics=a | music[ok.index(k)], flags=flags)
        if audio and a["seconds"] >= READ_SECONDS - 1 / kind.sample_rate:
            entries[k]["read_first_seconds"] = READ_SECONDS  # the file may be longer
    if summary:
        summary["flagged_share"] = sum(bool(e["flags"]) for e in entries) / len(entries)
    result = {
        "version": stamp(),
        "run": str(run_dir),
        "samples": str(root),
        "reference": where,
        "audited": index is not None,  # False: the copy audit could not run (reason: reference)
        "thresholds": kind.thresholds(),
        **({"read_seconds_per_file": READ_SECONDS} if audio else {}),
        **({"drafts_left_out": len(drafts)} if drafts else {}),
        "flag_counts": {
            f: sum(f in e["flags"] for e in entries)
            for f in (
                "copied",
                "silent",
                "noise",
                "mismatch",
                "identical",
                "training_primer",
                "invalid",
            )
            + (("unpitched",) if audio else ())
            + kind.extra_flags
        },
        "set_metrics": summary,
        "files": entries,
    }
    result = json_safe(result)
    return write_json(output_home(run_dir) / "eval" / "samples.json", result), result
