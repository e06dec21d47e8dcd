"""Which weights a fused audio generator stores (``generate --precision``): float32,
bfloat16 or int8, chosen per run so that quality does not pay for speed.

``auto`` (the default) first checks the run: its own validation split (up to
CHECK_SAMPLES samples, scored from silence as ``evaluate`` scores) under float32 weights
and under each rounded copy the generator would multiply by (``round_weights``). A
precision passes when its bits per sample are within TOLERANCE of float32's. The check runs
once per checkpoint and is kept beside it (``precision.json`` in the run folder, or in a
bundle's header, made on export); ``auto`` then takes the fastest passing precision
(FASTEST, one order whatever the number of streams, so that stream i of a seed is the same
whatever ``--n`` is). With no validation data to check against (a bundle exported
without it), ``auto`` keeps float32. The sidecar records the choice and the check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tunelab.atomic import write_json

TOLERANCE = 0.01  # bits per sample a rounded copy may lose against float32
CHECK_SAMPLES = 1 << 16  # validation samples scored per precision (4 s at 16 kHz)
CHOICES = ("auto", "float32", "bfloat16", "int8")
# Fastest first, by benchmarks/wavenet_speed.py on the 2-core Zen 4 (docs/benchmarks.md):
# int8 (AVX-512 VNNI dot products, a quarter of float32's bytes: one stream's share of the
# weights stays in its core's L2) led one stream by about 20 % and tied or led blocks of
# streams; bfloat16 dot products next. One order for every --n keeps stream i of a seed the
# same whatever --n is.
FASTEST = ("int8", "bfloat16", "float32")
CACHE = "precision.json"
# What a check vouches for changes when a precision's arithmetic does: version 2 (2026-12-07)
# rounds the matmul inputs of the WaveNet and SampleRNN generators (not SampleRNN's GRU) to
# bfloat16 too; version 3 (the same day) quantises them to int8 (one scale per row) for int8.
# A check of another version is made again (or, in a bundle with no data to check on, not
# trusted).
CHECK_VERSION = 3
KEEP = 8  # checks kept in the cache, the newest


def check_precision(precision: str) -> str:
    if precision not in CHOICES:
        raise ValueError(f"--precision must be one of {', '.join(CHOICES)}, got {precision!r}")
    return precision


def quality_check(run, data_dir, progress: bool = False) -> dict | None:
    """Validation bits per sample of the run's model under each weights its generator takes;
    None when data_dir holds no prepared data (moved or deleted since training). progress:
    one line on stderr saying what is being checked (the scoring itself is short)."""
    from tunelab.data.store import DataDirError, Split, load_datadir

    model = run.model
    try:
        split = load_datadir(data_dir).split("valid")
    except (DataDirError, OSError):
        return None
    if not len(split):
        return None
    pieces, left = [], CHECK_SAMPLES
    for p in split.pieces:
        if left <= 0:
            break
        pieces.append({**p, "length": min(int(p["length"]), left)})
        left -= pieces[-1]["length"]
    head, samples = Split(split.name, split.data, pieces), sum(p["length"] for p in pieces)
    if progress:
        print(
            f"--precision auto: scoring {samples:,} validation samples"
            f" with {', '.join(model.generator_weights)} weights (once per checkpoint)",
            file=sys.stderr,
        )
    bits = {}
    for weights in model.generator_weights:
        rounded = model.rounded(weights)
        bits[weights] = run.kind.likelihood(rounded, head)["bits_per_sample"]
    base = bits["float32"]
    return {
        "version": CHECK_VERSION,
        "split": "valid",
        "samples": samples,
        "bits_per_sample": bits,
        "tolerance": TOLERANCE,
        "passed": [w for w, b in bits.items() if b is not None and b - base <= TOLERANCE],
    }


def _key(run) -> str:
    st = Path(run.path).stat()
    return f"{Path(run.path).name}:{run.step}:{st.st_size}:{st.st_mtime_ns}:v{CHECK_VERSION}"


def cached_check(run, run_dir, data_dir, progress: bool = False) -> dict | None:
    """The run's quality check: from the bundle header or the run folder's cache, else made
    now (and cached in a run folder). None when there is no validation data to check on."""
    from tunelab.run.bundle import is_bundle, read_bundle

    if is_bundle(run_dir):
        check = read_bundle(run_dir)[0].get("precision_check")
        if check is not None and check.get("version") != CHECK_VERSION:
            check = None  # made for another arithmetic
        if check is not None or data_dir is None:
            return check
        return quality_check(run, data_dir, progress)
    cache = Path(run_dir) / CACHE
    key = _key(run)
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    if not isinstance(stored, dict):  # a damaged cache is rebuilt, never trusted
        stored = {}
    stored = {k: v for k, v in stored.items() if isinstance(v, dict)}
    if key in stored:
        return stored[key]
    if data_dir is None:
        return None
    check = quality_check(run, data_dir, progress)
    if check is None:
        return None
    kept = dict(list(stored.items())[-(KEEP - 1) :])
    try:
        write_json(cache, {**kept, key: check})  # best, last, milestones: a few checkpoints
    except OSError:
        pass  # a read-only run folder: checked again next time
    return check


def resolve(run, run_dir, precision: str, data_dir, progress: bool = False) -> dict:
    """The sidecar's record: {"precision": asked, "weights": used[, "precision_check"]}."""
    check_precision(precision)
    available = run.model.generator_weights
    if precision != "auto":
        if precision not in available:
            raise ValueError(f"this model's generator takes --precision {', '.join(available)}")
        return {"precision": precision, "weights": precision}
    check = cached_check(run, run_dir, data_dir, progress)
    if check is None:
        return {"precision": "auto", "weights": "float32", "precision_check": None}
    passed = [w for w in FASTEST if w in check["passed"] and w in available]
    return {"precision": "auto", "weights": (passed or ["float32"])[0], "precision_check": check}
