"""Audio reading shared by the audio kinds (``mulaw``, ``frames``): any audio file decoded at
the run's rate, and the training audio that backs the copy audit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

REFERENCE_MINUTES = 30.0  # at most this much training audio backs the copy audit


def read_float(path, sample_rate: int) -> np.ndarray:
    """Any audio file -> float32 [N] at ``sample_rate`` (ValueError naming the file if it
    cannot be read)."""
    from tunelab.data.audio.decode import AudioError, decode

    try:
        return decode(path, sample_rate).audio
    except (AudioError, ValueError) as e:
        raise ValueError(f"{path}: cannot read audio ({e})") from e


def training_reference(kind, data_dir, to_float: Callable[[np.ndarray], np.ndarray]):
    """The copy index of the run's training audio (at most REFERENCE_MINUTES), or (None,
    reason). ``to_float`` turns an int16 piece [N] into the float audio [N] the kind's output
    is compared in (mu-law runs: the mu-law round trip, so quantisation is no difference)."""
    from tunelab.data.store import DataDirError, load_datadir
    from tunelab.metrics.audio import TrainingAudio

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
                pieces.append(to_float(take))
    if not pieces:
        return None, f"{dd.path}: no training audio"
    return TrainingAudio(pieces, kind.sample_rate), f"training split of {dd.path}"
