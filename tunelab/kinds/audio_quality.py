"""How close a set of audio clips comes to the real recordings of the data.

Both audio kinds (``mulaw``, ``frames``) give these set figures from ``music_metrics``;
``evaluate --samples`` adds the held-out (test) audio, so a folder of generated clips, or of
real recordings, is placed against the data:

* ``frechet_to_train`` / ``frechet_to_test``: the Fréchet distance of the clips' per-second MFCC
  + chroma statistics (``metrics.audio_features.second_features``) to the training audio's and
  to the held-out test audio's, every set's features divided by their standard deviation over
  the training audio's seconds (the test audio's when there is no training audio), so that
  all three distances are in the same units; ``frechet_test_to_train``: the test audio's to
  the training audio's, for scale: where real music of the same collection lies, the figure a perfect model
  would approach. ``frechet_distance`` repeats ``frechet_to_train`` (older readers use it).
* ``frechet_to_test_recordings`` (mu-law runs): the clips' distance to the same test audio as
  recorded, not through the mu-law round trip, standardised by the training audio as
  recorded (the round trip's noise floor narrows some features' spread, so the units differ
  a little from ``frechet_to_test``'s: compare it with itself). A clip the model drew is
  mu-law audio and is read against the round trip (``frechet_to_test``), so quantisation is
  no difference; a revised clip (``generate --revise``) or a recording is not, and the round
  trip's noise floor in the music's quiet passages would count against it.
* ``flatness_quartiles``, ``loudness_dbfs_quartiles``, ``pitch_salience_quartiles``: the 25th,
  50th and 75th percentiles over whole seconds of spectral flatness (seconds above SILENCE_DB),
  RMS level in dBFS and pitch salience (seconds above SILENCE_DB; ``metrics.pitch``), per set:
  ``samples``, ``test``, ``train`` (None for a set that is not there).
* ``seconds``: the seconds of each set behind the figures.

Each reference set is at most REFERENCE_S seconds, taken in equal whole-second shares from the
start of every piece (so every piece, and label, has its say).
"""

from __future__ import annotations

import numpy as np

REFERENCE_S = 300  # seconds of the training (and of the test) audio behind the set figures
SETS = ("samples", "test", "train")
MEASURES = ("flatness", "loudness_dbfs", "pitch_salience")  # per second, in quartiles


def spread(pieces, seconds: float, sr: int) -> list[np.ndarray]:
    """At most ``seconds`` of ``pieces`` (float arrays [N]): the first whole seconds of each
    piece, an equal share per piece (at least one second), pieces in order until it is spent;
    the share of a piece shorter than it goes to the rest."""
    pieces = [np.asarray(p) for p in pieces if len(p)]
    left = int(seconds) * sr
    out = []
    for i, p in enumerate(pieces):
        if left <= 0:
            break
        share = max(sr, left // (len(pieces) - i) // sr * sr)
        take = p[: min(len(p), share, left)]
        out.append(take)
        left -= len(take)
    return out


def per_second(x, sr: int) -> dict[str, np.ndarray]:
    """float64 arrays over the clip's whole seconds: ``flatness`` (non-silent seconds only),
    ``loudness_dbfs`` (RMS level) and ``pitch_salience`` (non-silent seconds only)."""
    from tunelab.metrics.audio import SILENCE_DB, spectral_flatness
    from tunelab.metrics.pitch import pitch_salience

    x = np.asarray(x, np.float64).ravel()
    K = len(x) // sr
    secs = x[: K * sr].reshape(K, sr)
    rms = 20 * np.log10(np.maximum(np.sqrt(np.mean(secs**2, axis=1)), 1e-10))
    loud = [s for s, r in zip(secs, rms, strict=True) if r >= SILENCE_DB]
    return {
        "flatness": np.array([spectral_flatness(s, sr) for s in loud]),
        "loudness_dbfs": rms,
        "pitch_salience": np.array([v for s in loud if (v := pitch_salience(s, sr)) is not None]),
    }


def quartiles(values: np.ndarray) -> list[float] | None:
    """[25th, 50th, 75th percentile] rounded to 4 significant digits; None when empty."""
    if not len(values):
        return None
    return [float(f"{v:.4g}") for v in np.percentile(values, [25, 50, 75])]


def frechet_to(clips, sr: int, test, train=None) -> float:
    """The Fréchet distance of ``clips`` to ``test`` (lists of float waveforms at ``sr``; the
    references cut to REFERENCE_S seconds here), every feature divided by its spread over
    ``train``'s seconds (``test``'s without it)."""
    from tunelab.metrics.audio_features import feature_rows

    return _frechet_of_rows(feature_rows(clips, sr), sr, test, train)


def _frechet_of_rows(rows: np.ndarray, sr: int, test, train=None) -> float:
    """``frechet_to`` for clips whose feature rows are already at hand."""
    from tunelab.metrics.audio_features import feature_rows, frechet_distance, standardised

    ref = feature_rows(spread(test, REFERENCE_S, sr), sr)
    scale = feature_rows(spread(train, REFERENCE_S, sr), sr) if train else ref
    return frechet_distance(standardised(rows, scale), standardised(ref, scale))


def set_figures(clips, sr: int, train=None, test=None, recordings=None) -> dict:
    """The figures of the module docstring for ``clips`` (float waveforms at ``sr``) against
    ``train`` and ``test`` (lists of float waveforms, or None where that set is missing; both
    cut to REFERENCE_S seconds here); ``recordings``: (test, train) as recorded, for
    ``frechet_to_test_recordings``."""
    from tunelab.metrics.audio_features import feature_rows, frechet_distance, standardised

    sets = {"samples": list(clips), "test": test, "train": train}
    for k in ("test", "train"):
        if sets[k] is not None:
            sets[k] = spread(sets[k], REFERENCE_S, sr)
    rows, stats = {}, {}
    for k, xs in sets.items():
        if xs is None:
            continue
        rows[k] = feature_rows(xs, sr)
        per = [per_second(x, sr) for x in xs]
        stats[k] = {m: np.concatenate([np.zeros(0)] + [p[m] for p in per]) for m in MEASURES}

    sample_rows = rows["samples"]  # unscaled: the recordings' reading scales them its way
    scale = rows.get("train", rows.get("test"))
    if scale is not None:
        rows = {k: standardised(v, scale) for k, v in rows.items()}

    def fd(a: str, b: str) -> float | None:
        return frechet_distance(rows[a], rows[b]) if a in rows and b in rows else None

    out = {
        "frechet_to_test": fd("samples", "test"),
        "frechet_to_train": fd("samples", "train"),
        "frechet_test_to_train": fd("test", "train"),
    }
    if recordings is not None and recordings[0] and sets["samples"]:
        out["frechet_to_test_recordings"] = _frechet_of_rows(sample_rows, sr, *recordings)
    out["frechet_distance"] = out["frechet_to_train"]
    for m in MEASURES:
        out[f"{m}_quartiles"] = {k: quartiles(stats[k][m]) if k in stats else None for k in SETS}
    out["seconds"] = {
        k: (sum(len(x) for x in sets[k]) / sr if sets[k] is not None else None) for k in SETS
    }
    return out
