"""``tunelab generate``: sample from a run, write the files, audit them once.

One way through for every kind of data: load the run, let its kind (``tunelab.kinds``)
resolve the length, primer and label, sample, audit the whole batch once against the
training split, then hand each piece with its sidecar to the kind's writer (MIDI + WAV
preview for tokens, WAV for audio). With ``revise`` (audio runs: a revision run, see
``tunelab.revise``) each draft is written as ``x.draft.wav`` and its revision as ``x.wav``;
both are audited, and ``x.wav.json`` holds the revision's figures with the draft's under
``draft``. Every file gets ``<file>.json``: checkpoint, seed,
sampling settings, label, duration, the audit figures and ``flags``, and the ``version``
({"tunelab", "commit"}) that wrote it. The copy audit's index comes from the training data, or
from the bundle when the data is not there (``run.audit_index``).
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from tunelab.atomic import json_safe, write_json
from tunelab.kinds.sampling import Sampling, piece_seed
from tunelab.version import stamp


def safe_name(text: str, limit: int = 60) -> str:
    """A file-name component from untrusted text: [A-Za-z0-9._-] only, no leading dots."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")
    return name[:limit] or "untitled"


def generate(
    run_dir: str | Path,
    n: int = 1,
    seconds: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    sampling: Sampling | None = None,
    primer: str | Path | None = None,
    which: str = "best",
    device: str = "cpu",
    wav: bool = True,
    audit: bool = True,
    progress: bool = True,
    timing: dict | None = None,
    label: str | None = None,
    save_every: float | None = None,
    join: str | None = None,
    from_training: bool = False,
    transpose_mix: int | None = None,
    piece_memory: bool | None = None,
    revise: str | Path | None = None,
    precision: str = "auto",
) -> list[Path]:
    """Generate ``n`` pieces; write them with sidecars. Returns the main files' paths
    (MIDI for token runs, WAV for audio runs). ``seconds`` None: the kind's default length. ``timing`` (optional) receives the sampling
    loop's figures; ``save_every`` (audio) writes a partial WAV every that many seconds.
    Frame runs: ``join`` (ola or concat) and ``from_training`` (start from a training clip).
    ``transpose_mix``: sample the token model's mixture over transpositions -n..n (None: the
    run's ``model.transpose_mix``; 0: the plain model). ``piece_memory``: True samples the
    model mixed with the memory of the piece so far, the model ``evaluate`` scores when the run
    has ``model.piece_memory``. Off unless asked for: sampled, the memory learns from the
    piece's own output, and loops feed themselves (README: on Piano-midi.de one of four
    60-second pieces fell silent and two thinned out). ``revise``: a revision run or bundle
    that rewrites each audio draft (module docstring). ``precision``: how a WaveNet or
    SampleRNN generator stores its weights (``tunelab.run.precision``; auto checks the run
    once and records its choice)."""
    from tunelab.run import audit_index
    from tunelab.run.bundle import output_home
    from tunelab.run.checkpoint import find_data, load_run
    from tunelab.run.precision import check_precision, resolve

    check_precision(precision)
    sampling = sampling or Sampling()
    sampling.check()
    if n < 1:
        raise ValueError("--n must be >= 1")
    if (steps is not None and steps < 1) or (
        steps is None and seconds is not None and seconds <= 0
    ):
        raise ValueError("the length (--seconds or --steps) must be positive")
    if save_every is not None and save_every <= 0:
        raise ValueError("--save-every must be a positive number of seconds")
    run = load_run(
        run_dir,
        which,
        device=device,
        transpose_mix=transpose_mix,
        piece_memory=bool(piece_memory),
    )
    kind = run.kind
    reviser = None
    if revise is not None:  # loaded first: a wrong path fails before any sampling
        if run.meta.get("kind") != "audio":
            raise ValueError("--revise applies to audio runs (it rewrites audio drafts)")
        from tunelab.revise import load_reviser

        reviser = load_reviser(revise, device)
    extra = {"join": join} if join else {}
    if from_training:
        extra["training_clip"] = run.config.get("data")
    if not set(extra) <= set(kind.plan_options):
        raise ValueError("--join and --from-training apply to frame runs only")
    plan = kind.plan(
        seconds=seconds, steps=steps, primer=primer, label=label, sampling=sampling, **extra
    )
    if run.transpose_mix:
        plan.settings["transpose_mix"] = run.transpose_mix
    if run.piece_memory:
        plan.settings["piece_memory"] = True
    if hasattr(run.model, "generator_weights"):  # a fused sample-level generator
        data = find_data(run_dir, run.config.get("data"))
        plan.settings |= resolve(run, run_dir, precision, data, progress=progress)
    elif precision not in ("auto", "float32"):  # every other generator is float32
        raise ValueError("--precision applies to WaveNet and SampleRNN runs")
    out_dir = Path(out) if out else output_home(run_dir) / "samples"
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    index, reference = (None, "audit disabled")
    if audit:
        data = find_data(run_dir, run.config.get("data"))
        index, reference = audit_index.reference(run, run_dir, data)  # else the bundle's
        if index is None:
            warnings.warn(f"copy audit skipped: {reference}", stacklevel=2)
    # An audit that could not run is recorded as such: "not audited", never a clean flag list.
    audited = {"audited": index is not None}
    if index is None:
        audited["not_audited_reason"] = reference
    if plan.primer_info is not None:
        plan.primer_info.update(kind.primer_from_training(plan, index) or {})

    stem = (safe_name(Path(primer).stem) + "-" if primer else "") + f"seed{seed}"

    def path_of(i: int) -> Path:
        return out_dir / f"{stem}-{i:02d}{kind.suffix}"

    pieces = kind.sample(
        run.model,
        plan,
        n=n,
        seed=seed,
        sampling=sampling,
        device=device,
        progress=progress,
        timing=timing,
        save_every=save_every,
        partial=path_of,
    )
    audits = kind.audit(pieces, plan, index)
    music, _ = kind.music_metrics(pieces, index, sets=False)
    if reviser is not None:
        rev_audits, rev_music, rev_info = _revise(kind, reviser, pieces, path_of, plan, index)

    written = []
    for i, (piece, a) in enumerate(zip(pieces, audits, strict=True)):
        flags = a.pop("flags")
        if plan.primer_info and plan.primer_info.get("from_training"):
            flags.append("training_primer")
        if "most_similar" in a:
            a["most_similar"] = f"{stem}-{a['most_similar']:02d}{kind.suffix}"
        path = path_of(i)
        side = {
            "file": path.name,
            "kind": run.meta.get("kind", "midi"),
            "checkpoint": str(run.path),
            "checkpoint_step": run.step,
            "version": stamp(),
            "seed": seed,
            "index": i,
            "piece_seed": piece_seed(seed, i),
            "settings": {**asdict(sampling), **plan.settings, "n": n, "primer": plan.primer_info},
            "label": label,
            **kind.describe(piece),
            "audit_reference": reference,
            **audited,
            "audit": a,
            "metrics": music[i],
            "flags": sorted(set(flags)),
        }
        if reviser is not None:  # x.wav is the revision; the draft's figures go beside
            r = rev_audits[i]
            r_flags = r.pop("flags") + [f for f in flags if f == "training_primer"]
            if "most_similar" in r:
                r["most_similar"] = f"{stem}-{r['most_similar']:02d}{kind.suffix}"
            side["draft"] = {
                "file": draft_path(path).name, "audit": a, "metrics": music[i],
                "flags": side["flags"],
            }  # fmt: skip
            side |= {"audit": r, "metrics": rev_music[i], "flags": sorted(set(r_flags))}
            side["revision"] = rev_info[i]
            write_json(path.with_name(path.name + ".json"), json_safe(side))
            written.append(path)
            continue
        side = json_safe(side)
        written += kind.write(piece, path, side)
        if wav:  # a listenable copy of a MIDI file (audio kinds: the file is the audio)
            kind.write_preview(piece, path, side)
    return written


def draft_path(path: Path) -> Path:
    """Where ``--revise`` keeps the draft of ``x.wav``: ``x.draft.wav``."""
    return path.with_name(f"{path.stem}.draft{path.suffix}")


def _revise(kind, reviser, pieces: list, path_of, plan, index) -> tuple[list, list, list]:
    """``--revise``: each piece's draft written as ``x.draft.wav`` and its revision as ``x.wav``;
    (the revisions' audits, music metrics, and revision records), the revisions audited as
    written and read back (as ``evaluate --samples`` reads them)."""
    clips, info = [], []
    for i, piece in enumerate(pieces):
        path, draft = path_of(i), kind.audio(piece)
        kind.write_audio(draft, draft_path(path))
        start = time.perf_counter()
        revised = reviser.revise(draft, kind.sample_rate)
        seconds = time.perf_counter() - start
        kind.write_audio(revised, path)
        clips.append(kind.read(path))
        info.append(
            {
                "checkpoint": str(reviser.path),
                "checkpoint_step": reviser.step,
                "x_real_time": len(draft) / kind.sample_rate / max(seconds, 1e-9),
            }
        )
    return kind.audit(clips, plan, index), kind.music_metrics(clips, index, sets=False)[0], info
