"""The report's samples section: every generated file in ``RUN_DIR/samples`` with a player
(MIDI rendered with the SoundFont), a piano roll (MIDI) or spectrogram (audio), and its audit
from the sidecar, failed flags in red. A revised clip (``generate --revise``: ``x.wav`` with
its draft ``x.draft.wav`` beside it) plays beside its draft, each with its spectrogram.

Asset names are made here (``sample-007.wav``), never taken from file names; every text read
from a file or a sidecar is escaped (``markup.e``)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from tunelab.generate import draft_path
from tunelab.report import plots as P
from tunelab.report.markup import e, fmt, img, read_json, table

FLAGS = ("copied", "silent", "noise", "identical", "training_primer", "invalid")
MIDI_SUFFIXES = (".mid", ".midi")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")


def sample_files(samples: Path) -> list[Path]:
    """MIDI files and audio files, but not the WAV previews rendered beside MIDI files, nor
    the drafts beside revised clips (shown with them)."""
    files = sorted(p for p in samples.rglob("*") if p.is_file())
    midi = {p.with_suffix("") for p in files if p.suffix.lower() in MIDI_SUFFIXES}
    drafts = {draft_path(p) for p in files}
    return [
        p
        for p in files
        if p.suffix.lower() in MIDI_SUFFIXES
        or (p.suffix.lower() in AUDIO_SUFFIXES and p.with_suffix("") not in midi)
        and p not in drafts
    ]


def samples_section(run_dir: Path, files: list[Path], assets: Path) -> str:
    samples = run_dir / "samples"
    if not files:
        return "<h2>Samples</h2><p>No samples yet: run <code>tunelab generate RUN_DIR</code>.</p>"
    blocks = [_sample(i, f, samples, assets) for i, f in enumerate(files)]
    counts: Counter = Counter()
    for f in files:
        side = read_json(f.with_name(f.name + ".json"))
        flags = side.get("flags") if isinstance(side, dict) else None
        if isinstance(side, dict) and side.get("audited") is False:
            flags = None  # the copy audit could not run: not a clean sample
        counts.update({str(x) for x in flags} if isinstance(flags, list) else ["not audited"])
    verdict = ", ".join(f"{e(k)}: {v}" for k, v in counts.most_common()) or "no flags"
    return (
        f"<h2>Samples ({len(files)})</h2><p>Flags over all samples: <b>{verdict}</b>. "
        "Flags: <i>copied</i> (a long run or most windows found in the training set), "
        "<i>silent</i>, <i>noise</i> (statistics far from the training data), <i>unpitched</i> "
        "(audio with little pitch where the training audio is pitched), <i>identical</i> "
        "(near-duplicate of another sample), <i>training_primer</i>, <i>invalid</i>.</p>"
        + "".join(blocks)
    )


def _sample(i: int, f: Path, root: Path, assets: Path) -> str:
    from tunelab.data.store import printable

    side = read_json(f.with_name(f.name + ".json"))
    side = side if isinstance(side, dict) else {}
    name = printable(str(f.relative_to(root)))
    stem = f"sample-{i:03d}"
    extra, note = [], ""
    try:
        if f.suffix.lower() in MIDI_SUFFIXES:
            audio, picture, extra = _midi_assets(f, assets, stem)
        else:
            audio, picture = _audio_assets(f, assets, stem)
    except Exception as err:  # one unreadable file must not cost the page
        audio, picture = None, None
        note = f"<p class='fail'>could not read this file: {e(err)}</p>"
    player = ""
    if audio is not None:
        player = f'<audio controls preload="auto" src="assets/{audio.name}"></audio>'
    view = f"{player}<br>{img(picture, name)}"
    draft = draft_path(f)
    if f.suffix.lower() in AUDIO_SUFFIXES and draft.is_file():  # revised: beside its draft
        beside = _draft(draft, side, assets, stem)
        view = f"<div class='pair'><div><b>revised</b><br>{view}</div>{beside}</div>"
    return (
        f"<div class='sample'><h3>{e(name)}</h3>{note}{view}" + _audit_table(side, extra) + "</div>"
    )


def _draft(f: Path, side: dict, assets: Path, stem: str) -> str:
    """The draft of a revised clip: its player, spectrogram and flags (from the clip's sidecar)."""
    info = side.get("draft") if isinstance(side.get("draft"), dict) else {}
    flags = info.get("flags") if isinstance(info.get("flags"), list) else None
    said = "not audited" if flags is None else (", ".join(map(str, flags)) or "no flags")
    try:
        audio, picture = _audio_assets(f, assets, f"{stem}-draft")
    except Exception as err:  # one unreadable file must not cost the page
        return f"<div><b>draft</b><p class='fail'>could not read the draft: {e(err)}</p></div>"
    player = f'<audio controls preload="auto" src="assets/{audio.name}"></audio>'
    return f"<div><b>draft</b> ({e(said)})<br>{player}<br>{img(picture, 'draft')}</div>"


def _midi_assets(f: Path, assets: Path, stem: str):
    """(WAV, piano roll, MIDI text rows): the preview WAV beside the file when generate wrote
    one, else rendered here with the SoundFont."""
    import symusic

    from tunelab.data.audio.synth import render_midi, write_wav

    wav = assets / f"{stem}.wav"
    preview = f.with_suffix(".wav")
    if preview.exists():
        shutil.copyfile(preview, wav)
    else:
        sr = 16000
        audio = render_midi(str(f), sample_rate=sr, peak=0.8)
        write_wav(wav, audio if len(audio) else np.zeros(sr // 2, np.float32), sr)
    picture = P.piano_roll(f, assets / f"{stem}.png")
    score = symusic.Score(str(f))
    texts = [("track", t.name) for t in score.tracks if t.name]
    texts += [("marker", m.text) for m in score.markers]
    texts += [("lyric", x.text) for t in score.tracks for x in t.lyrics][:20]
    return wav, picture, texts


def _audio_assets(f: Path, assets: Path, stem: str):
    import soundfile as sf

    audio, sr = sf.read(str(f), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    wav = assets / f"{stem}.wav"
    if f.suffix.lower() == ".wav":
        shutil.copyfile(f, wav)
    else:  # players read WAV everywhere
        from tunelab.data.audio.synth import write_wav

        write_wav(wav, mono, sr)
    return wav, P.spectrogram(mono, sr, assets / f"{stem}.png")


def _audit_table(side: dict, extra: list) -> str:
    """Flags (failed in red), the sidecar's settings, audit figures and music metrics."""
    flags = side.get("flags") if isinstance(side.get("flags"), list) else []
    known = list(FLAGS) + [f for f in flags if f not in FLAGS]
    cells = "".join(
        f"<td class='fail'>{e(f)}: failed</td>" if f in flags else f"<td class='ok'>{e(f)}: ok</td>"
        for f in known
    )
    out = f"<table><tr><th>flags</th>{cells}</tr></table>" if side else "<p>no sidecar</p>"
    if side.get("audited") is False:
        out = f"<p class='fail'>not audited: {e(side.get('not_audited_reason'))}</p>" + out
    rows = [(e(k), e(v)) for k, v in extra]
    for k in ("label", "seed", "checkpoint_step", "duration_seconds"):
        if k in side:
            rows.append((e(k), e(fmt(side[k]))))
    out += table(rows) if rows else ""
    figures = []
    for group in ("audit", "metrics"):
        d = side.get(group)
        if isinstance(d, dict):
            for k, v in d.items():
                if not isinstance(v, dict):
                    figures.append((e(f"{group}: {k}"), e(fmt(v))))
    if figures:  # long: folded, one click away
        out += "<details><summary>audit figures and music metrics</summary>"
        out += table(figures) + "</details>"
    return out
