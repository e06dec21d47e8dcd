"""The copy-audit index a bundle carries, so that whoever receives a bundle gets the copy audit
too, without the training data.

``tunelab export`` asks the run's kind for a compact form of the index its copy audit uses
(``kind.pack_reference``): for MIDI the training split's step hashes (distinct values and one
small code per grid step), the piece boundaries, and the statistics and histograms the music
metrics compare with; for audio the reference audio itself in the kind's compact sample form
(mu-law classes, one byte a sample; int16 otherwise), the same at most
``audio_io.REFERENCE_MINUTES`` the audit uses from the data. ``pack`` writes the arrays as an
``.npz`` (deflated) and the rest as JSON in the bundle's header; ``unpack`` reads the arrays
with ``allow_pickle=False``, so loading an index never runs code. Rebuilt, the index is the
one the data gives: the audit's figures and flags are the same from the bundle alone.

``reference`` is the one way ``generate`` and ``evaluate`` find the index: from the training
data when it is there, else from the bundle, else (None, the reason), which they record as
"not audited".
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

MEMBER = "audit-index.npz"
MAX_INDEX_BYTES = 4 * 2**30  # arrays larger than this, unpacked, are not an index we wrote


def pack(kind: Any, data_dir: str | Path | None) -> tuple[bytes | None, dict]:
    """(the index member's bytes, its header entry) of the training data at ``data_dir``;
    (None, {"present": False, "reason"}) when the data is not there."""
    packed, where = kind.pack_reference(data_dir)
    if packed is None:
        return None, {"present": False, "reason": where}
    arrays, info = packed
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    blob = buf.getvalue()
    entry = {
        "present": True,
        "member": MEMBER,
        "kind": kind.name,
        "source": where,
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "info": info,
    }
    return blob, entry


def unpack(kind: Any, blob: bytes, entry: dict) -> Any:
    """The kind's copy-audit index from a bundle's member bytes and header entry (ValueError
    when they do not fit the run: another kind, altered or unreadable arrays)."""
    if entry.get("kind") != kind.name:
        raise ValueError(f"the index is for {entry.get('kind')!r} data, the run's is {kind.name!r}")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:  # bound what np.load will inflate
            if sum(i.file_size for i in z.infolist()) > MAX_INDEX_BYTES:
                raise ValueError("the index is too large")
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return kind.reference_from_pack(arrays, entry["info"])
    except (zipfile.BadZipFile, OSError, KeyError, TypeError) as e:
        raise ValueError(f"unreadable copy-audit index ({type(e).__name__}: {e})") from e


def from_bundle(kind: Any, path: str | Path, header: dict) -> tuple[Any, str]:
    """(the index stored in the bundle at ``path``, where it came from), or (None, reason)."""
    from tunelab.run.bundle import BundleError, read_member

    name = Path(path).name
    entry = header.get("audit_index")
    if not isinstance(entry, dict) or not entry.get("present"):
        why = entry.get("reason") if isinstance(entry, dict) else None
        return None, (
            f"the bundle {name} carries no copy-audit index ("
            + (f"its training data was not there at export: {why}" if why else "exported by "
               "an older tunelab")
            + "; export it again from its run directory, beside its data)"
        )  # fmt: skip
    try:
        blob = read_member(path, str(entry.get("member")), entry.get("sha256"), MAX_INDEX_BYTES)
        index = unpack(kind, blob, entry)
    except (BundleError, ValueError) as e:
        return None, f"the bundle {name}'s copy-audit index cannot be used: {e}"
    return index, f"copy-audit index in the bundle {name} (from the {entry.get('source')})"


def reference(run: Any, run_dir: str | Path, data_dir: str | Path | None) -> tuple[Any, str]:
    """(the copy-audit index, where it came from) for ``run`` (a ``LoadedRun`` of ``run_dir``):
    the training data at ``data_dir`` (``checkpoint.find_data`` finds the run's from any
    working directory), else the index in the bundle when ``run_dir`` is one; (None, every
    reason) when neither is there."""
    from tunelab.run.bundle import is_bundle, read_bundle

    index, where = run.kind.reference(data_dir)
    if index is not None or not is_bundle(run_dir):  # (a checkpoint .pt is a zip file too)
        return index, where
    header, _ = read_bundle(run_dir)
    index, got = from_bundle(run.kind, run_dir, header)
    if index is None:
        return None, f"training data not found ({where}), and {got}"
    return index, f"{got}; the training data itself was not found ({where})"


def measure(data_dir: str | Path, family: str | None = None) -> dict:
    """The size of the copy-audit index ``export`` would store for the data at ``data_dir``,
    per hour of the training material it covers (MIDI: grid steps at the data's tempo;
    audio: seconds of reference audio). ``family``: the model family that decides the audio
    kind (``wavenet``: mu-law, ``frame_rnn``: frames); MIDI data needs none."""
    from tunelab.data.store import load_datadir
    from tunelab.kinds import kind_for

    meta = load_datadir(data_dir).meta
    audio = meta.get("kind") == "audio"
    kind = kind_for({"family": family or ("wavenet" if audio else "token_rnn")}, meta, data_dir)
    blob, entry = pack(kind, data_dir)
    if blob is None:
        raise ValueError(entry["reason"])
    info = entry["info"]
    if audio:
        seconds = info["samples"] / info["sample_rate"]
        unit = {"bytes_per_second": len(blob) / seconds}
    else:
        quarters = info["steps"] / info["steps_per_quarter"]
        seconds = quarters * 60.0 / float(meta.get("tempo_qpm") or 120.0)
        unit = {
            "bytes_per_step": len(blob) / info["steps"],
            "bytes_per_quarter": len(blob) / quarters,
        }
    per_hour = len(blob) / seconds * 3600
    return {
        "data": str(data_dir),
        "kind": kind.name,
        "index_bytes": len(blob),
        "hours_covered": seconds / 3600,
        **unit,
        "bytes_per_hour": per_hour,
        "bytes_for_100_hours": per_hour * 100,
    }


if __name__ == "__main__":  # python -m tunelab.run.audit_index DATA_DIR [FAMILY]
    import json
    import sys

    print(json.dumps(measure(sys.argv[1], *sys.argv[2:3]), indent=2))
