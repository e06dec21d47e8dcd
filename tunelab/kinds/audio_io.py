"""What the audio kinds (``mulaw``, ``frames``) share: labels and the ``--label`` check, any
audio file decoded at the run's rate (samples to audit, primers), the WAV writer, the audio
audits' thresholds, the training audio that backs the copy audit, and the music metrics with
the set figures against the data's held-out and training audio (``audio_quality``).

``AudioKind`` holds these once. A kind keeps each piece in its own form (mu-law classes, or
float audio for frames) and says how through four small hooks: ``clip_type``, ``_data``,
``_encode_audio`` and ``_decode_audio``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tunelab.atomic import write_json
from tunelab.data.audio.encode import from_int16
from tunelab.kinds.base import KindDefaults

NO_LABEL = "(none)"  # the label name of pieces without one (as in meta.json "labels")
REFERENCE_MINUTES = 30.0  # at most this much training audio backs the copy audit
READ_SECONDS = 60.0  # a sample file is audited on its first this many seconds (long recordings)


def read_float(path, sample_rate: int, seconds: float | None = None) -> np.ndarray:
    """Any audio file -> float32 [N] at ``sample_rate``, its first ``seconds`` when given
    (ValueError naming the file if it cannot be read)."""
    from tunelab.data.audio.decode import AudioError, decode

    try:
        return decode(path, sample_rate, seconds=seconds).audio
    except (AudioError, ValueError) as e:
        raise ValueError(f"{path}: cannot read audio ({e})") from e


def label_names_of(meta: dict) -> list[str]:
    """The data's label names in id order (``meta["label_names"]``; data prepared before that
    field: the sorted names of ``meta["labels"]``, its label counts)."""
    names = meta.get("label_names")
    return list(sorted(meta.get("labels") or {}) if names is None else names)


def reference_audio(kind, data_dir) -> tuple[list[np.ndarray] | None, str]:
    """(the int16 training pieces that back the copy audit, at most REFERENCE_MINUTES in all,
    where they came from), or (None, reason)."""
    from tunelab.data.store import DataDirError, load_datadir

    if not data_dir:
        return None, "no data directory recorded in the run"
    try:
        dd = load_datadir(data_dir)
        kind.check_data(dd.meta, dd.path)
        splits = dd.reference_splits()
    except (DataDirError, ValueError, OSError) as e:
        return None, str(e)
    budget = int(REFERENCE_MINUTES * 60 * kind.sample_rate)
    pieces = []
    for sp in splits:
        for p in sp:
            take = np.asarray(p[: max(0, budget)])
            budget -= len(take)
            if len(take):
                pieces.append(take)
    if not pieces:
        return None, f"{dd.path}: no training audio"
    return pieces, f"training split of {dd.path}"


def held_out_audio(kind, data_dir) -> tuple[list[np.ndarray] | None, str, tuple | None]:
    """(the data's test split as float audio, at most REFERENCE_S seconds spread over its
    pieces, through the kind's encoding like the copy index; where it came from; where the
    kind's encoding is lossy (``quantised``), the same test pieces and as much of the training
    split as recorded, (test, train), else None), the valid split when there is no test split,
    or (None, reason, None)."""
    from tunelab.data.store import DataDirError, load_datadir
    from tunelab.kinds.audio_quality import REFERENCE_S, spread

    if not data_dir:
        return None, "no data directory recorded in the run", None
    try:
        dd = load_datadir(data_dir)
        kind.check_data(dd.meta, dd.path)
        name = next((s for s in ("test", "valid") if len(dd.split(s))), None)
        if name is None:
            return None, f"{dd.path}: no test or valid split", None
        sr = kind.sample_rate
        pieces = spread((np.asarray(p) for p in dd.split(name)), REFERENCE_S, sr)
        train = (
            spread((np.asarray(p) for p in dd.split("train")), REFERENCE_S, sr)
            if kind.quantised
            else None
        )
    except (DataDirError, ValueError, OSError) as e:
        return None, str(e), None
    recorded = [from_int16(p) for p in pieces]
    audio = [kind._decode_audio(kind._encode_audio(x)) for x in recorded]
    as_recorded = (recorded, [from_int16(p) for p in train]) if kind.quantised else None
    return audio, f"{name} split of {dd.path}", as_recorded


def training_reference(kind, data_dir, to_float: Callable[[np.ndarray], np.ndarray]):
    """The copy index of the run's training audio (at most REFERENCE_MINUTES), or (None,
    reason). ``to_float`` turns an int16 piece [N] into the float audio [N] the kind's output
    is compared in (mu-law runs: the mu-law round trip, so quantisation is no difference)."""
    from tunelab.metrics.audio import TrainingAudio

    pieces, where = reference_audio(kind, data_dir)
    if pieces is None:
        return None, where
    return TrainingAudio([to_float(p) for p in pieces], kind.sample_rate), where


def pack_audio(kind, pieces: list[np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    """What a bundle stores of the reference audio: (arrays, JSON info). ``samples``: the
    pieces end to end in the kind's own compact form when it has one (mu-law: the classes,
    one byte a sample), else as int16; ``piece_samples`` uint64[P]: each piece's length.
    ``unpack_audio`` gives back exactly the float audio the data gives (lossless)."""
    whole = np.concatenate(pieces).astype(np.int16)
    codes = np.asarray(kind._encode_audio(from_int16(whole)))
    form = "int16"
    if codes.dtype.kind in "iu" and len(codes) and 0 <= codes.min() and codes.max() < 2**16:
        whole, form = codes.astype(np.uint8 if codes.max() < 256 else np.uint16), "codes"
    lengths = np.array([len(p) for p in pieces], np.uint64)
    info = {"form": form, "sample_rate": int(kind.sample_rate), "samples": int(len(whole))}
    return {"samples": whole, "piece_samples": lengths}, info


def unpack_audio(kind, arrays: dict, info: dict):
    """The ``TrainingAudio`` copy index back from ``pack_audio``'s output (ValueError if it
    does not fit this run)."""
    from tunelab.metrics.audio import TrainingAudio

    data, lengths = np.asarray(arrays["samples"]), np.asarray(arrays["piece_samples"])
    if int(info["sample_rate"]) != int(kind.sample_rate):
        raise ValueError("copy-audit index: recorded at another sample rate")
    if lengths.dtype.kind != "u" or int(lengths.sum()) != len(data) or data.ndim != 1:
        raise ValueError("copy-audit index: the pieces do not add up to the samples")
    if info["form"] == "codes" and data.dtype in (np.uint8, np.uint16):
        audio = kind._decode_audio(data.astype(np.int64))
    elif info["form"] == "int16" and data.dtype == np.int16:
        audio = kind._decode_audio(kind._encode_audio(from_int16(data)))
    else:
        raise ValueError(f"copy-audit index: unknown sample form {info['form']!r}")
    ends = np.cumsum(lengths.astype(np.int64))[:-1]
    return TrainingAudio(np.split(np.asarray(audio), ends), kind.sample_rate)


class AudioKind(KindDefaults):
    """The shared half of an audio kind. A subclass sets ``meta``, ``sample_rate``,
    ``label_names`` and ``n_labels`` and implements the four hooks below."""

    suffix: ClassVar[str] = ".wav"
    clip_type: ClassVar[type]  # the kind's Clip: Clip(data, label) holds a piece
    # True where the kind's encoding loses detail (mu-law): audio it did not write (a
    # revision, a recording) is then also placed against the recordings as they are
    quantised: ClassVar[bool] = False
    meta: dict
    sample_rate: int
    label_names: list[str]
    n_labels: int

    # -- the kind's form of a piece (hooks) ---------------------------------------------
    def _data(self, clip) -> np.ndarray:
        """The clip's samples as the kind keeps them [N]."""
        raise NotImplementedError

    def _encode_audio(self, audio: np.ndarray) -> np.ndarray:
        """float audio [N] -> the kind's samples [N]."""
        raise NotImplementedError

    def _decode_audio(self, data: np.ndarray) -> np.ndarray:
        """The kind's samples [N] -> float audio [N]."""
        raise NotImplementedError

    def audio(self, clip) -> np.ndarray:
        """The clip as float audio [N] at ``sample_rate``."""
        return self._decode_audio(self._data(clip))

    # -- labels -------------------------------------------------------------------------
    def label_id(self, name: str | None) -> int | None:
        if not self.n_labels:
            return None
        return self.label_names.index(NO_LABEL if name is None else name)

    def _labels(self, split) -> np.ndarray | None:
        """int64 [P]: each piece's label id, or None for an unconditioned model."""
        if not self.n_labels:
            return None
        return np.array([self.label_id(p.get("label")) for p in split.pieces], np.int64)

    def check_label(self, label: str | None) -> None:
        """ValueError unless ``--label`` is None or one of the run's labels."""
        if label is None:
            return
        if not self.n_labels:
            raise ValueError("--label: this run is not conditioned on labels")
        if label not in self.label_names:
            raise ValueError(
                f"--label {label!r} is unknown; known labels: {', '.join(self.label_names)}"
            )

    # -- files --------------------------------------------------------------------------
    @property
    def sample_suffixes(self) -> tuple[str, ...]:
        from tunelab.data.scan import AUDIO_EXTS

        return tuple(AUDIO_EXTS)

    def _read_float(self, path) -> np.ndarray:
        return read_float(path, self.sample_rate)

    def read_primer(self, path) -> np.ndarray:
        """A primer file as float32 [P], conditioned like the training audio: DC removed,
        loudness at the data's target."""
        from tunelab.data.audio.decode import normalize_loudness, remove_dc

        target = float(self.meta.get("loudness_target_db") or -20.0)
        audio, _ = normalize_loudness(remove_dc(self._read_float(path)), target)
        return audio

    def read(self, path: Path) -> Any:
        """The first READ_SECONDS of any audio file, decoded at the run's rate (ValueError if
        it cannot be read): a long recording is audited on its start."""
        audio = read_float(path, self.sample_rate, seconds=READ_SECONDS)
        return self.clip_type(self._encode_audio(audio), None)

    def describe(self, clip) -> dict:
        n = len(self._data(clip))
        return {"duration_seconds": n / self.sample_rate, "samples": n, "label": clip.label}

    def write_audio(self, audio: np.ndarray, path: Path) -> None:
        """float audio [N] as a WAV at ``path`` (generate's partial files too)."""
        from tunelab.data.audio.synth import write_wav  # atomic: a partial file is whole or absent

        write_wav(path, audio, self.sample_rate)

    def write(self, clip, path: Path, side: dict) -> list[Path]:
        self.write_audio(self.audio(clip), path)
        write_json(path.with_name(path.name + ".json"), side)
        return [path]

    # -- audits -------------------------------------------------------------------------
    def held_out(self, data_dir) -> tuple[list[np.ndarray] | None, str, tuple | None]:
        """The data's held-out audio for ``music_metrics`` (``held_out_audio``)."""
        return held_out_audio(self, data_dir)

    def music_metrics(
        self, clips, index, held_out=None, *, recordings=None, sets: bool = True
    ) -> tuple[list[dict], dict]:
        """Per clip ``audio_features``; for the set (unless ``sets=False``: a second or two of
        the training audio's features), ``audio_quality.set_figures`` against the copy index's
        training audio, ``held_out`` (float waveforms) and ``recordings`` ((test, train) as
        recorded), e.g. ``held_out()``'s, where they are given."""
        from tunelab.kinds.audio_quality import set_figures
        from tunelab.metrics.audio_features import audio_features

        if not clips:  # nothing read back: no set to compare
            return [], {}
        streams = [self.audio(c) for c in clips]
        per = [audio_features(x, self.sample_rate) for x in streams]
        if not sets:
            return per, {}
        train = None if index is None else index.pieces
        figures = set_figures(
            streams, self.sample_rate, train=train, test=held_out, recordings=recordings
        )
        return per, figures

    def thresholds(self) -> dict:
        from tunelab.metrics.audio import thresholds

        return thresholds()

    def reference(self, data_dir):
        """The training audio's copy index (at most REFERENCE_MINUTES), or (None, reason)."""
        return training_reference(
            self, data_dir, lambda x: self._decode_audio(self._encode_audio(from_int16(x)))
        )

    def pack_reference(self, data_dir):
        """((arrays, info), where) of the copy index for a bundle (``pack_audio``), or
        (None, reason) when the training audio is not there."""
        pieces, where = reference_audio(self, data_dir)
        return (None if pieces is None else pack_audio(self, pieces)), where

    def reference_from_pack(self, arrays: dict, info: dict):
        """The copy index from a bundle's ``pack_reference`` output."""
        return unpack_audio(self, arrays, info)

    def primer_from_training(self, plan, index) -> dict | None:
        """The primer file's copy audit against the training audio (None without either)."""
        from tunelab.metrics.audio import COPY_NCC

        if index is None or plan.primer is None:
            return None
        a = index.copy_audit(self._decode_audio(plan.primer))
        return {"from_training": bool(a["max_xcorr"] >= COPY_NCC), "audit": a}
