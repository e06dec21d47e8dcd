"""One shareable file per trained model: ``tunelab export RUN_DIR --out FILE``.

A bundle is a zip archive (stored, not compressed) of two or three members:

    tunelab-bundle.json   {"format": "tunelab-bundle", "format_version": 1, "config": run config,
                           "meta": the data's meta.json (label vocabulary, tempo, sample rate,
                           codec, statistics), "step", "data_fingerprint", "weights_sha256",
                           "version": {"tunelab", "commit"} of the tunelab that wrote it,
                           "audit_index": what the copy-audit index is (``run.audit_index``)}
    model.safetensors     the weights (EMA weights when the run kept them)
    audit-index.npz       the training data's copy-audit index (numpy arrays, no objects), when
                          the data was there at export; bundles without it still load

Nothing in it is pickled, so opening a bundle someone sent you cannot run code: the JSON
is parsed, the tensors are read by safetensors, the index by ``numpy.load(allow_pickle=False)``,
and the model is built from the config
by ``build_model`` exactly as for a run directory. ``generate`` and ``evaluate`` accept a
bundle wherever they accept a run directory (see ``checkpoint.load_run``); what they
write goes to ``output_home(bundle)``, a folder beside it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from pathlib import Path

from torch import nn

from tunelab.atomic import atomic_path
from tunelab.version import stamp

FORMAT = "tunelab-bundle"
FORMAT_VERSION = 1
HEADER, WEIGHTS = "tunelab-bundle.json", "model.safetensors"
MAX_HEADER_BYTES = 64 * 2**20  # a header larger than this is not ours (zip-bomb guard)


class BundleError(ValueError):
    """A file that is not a readable tunelab bundle of a version this tunelab reads."""


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a file that could be a bundle (a zip archive, not a folder)."""
    return Path(path).is_file() and zipfile.is_zipfile(path)


def output_home(run_or_bundle: str | Path) -> Path:
    """Where generate/evaluate write: the run directory, or ``NAME-output/`` beside a bundle."""
    p = Path(run_or_bundle)
    return p.with_name(p.stem + "-output") if p.is_file() else p


def data_fingerprint(meta: dict, data_dir: str | Path | None) -> str | None:
    """The training data's fingerprint: from meta.json (written by prepare), else a SHA-256
    of the data directory's arrays and indexes when it is still there, else None."""
    if meta.get("data_fingerprint"):
        return str(meta["data_fingerprint"])
    folder = Path(data_dir) if data_dir else None
    if folder is None or not (folder / "meta.json").is_file():
        return None
    h = hashlib.sha256()
    for name in sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".jsonl")):
        if name == "manifest.jsonl":
            continue  # lists rejected files too: not training data
        h.update(name.encode() + b"\0")
        with open(folder / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return f"sha256-files:{h.hexdigest()}"


def export_bundle(
    config: dict,
    meta: dict,
    step: int,
    model: nn.Module,
    out: str | Path,
    audit_index: tuple[bytes | None, dict] | None = None,
    extra: dict | None = None,
) -> dict:
    """Write ``model`` (built from ``config`` and ``meta``, weights loaded) to one bundle file
    at ``out``, atomically. ``audit_index``: (the index member's bytes or None, its header
    entry), from ``run.audit_index.pack``; ``extra``: more header entries (an audio run's
    ``precision_check``, ``run.precision``). Returns the header written."""
    from safetensors.torch import save_model

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / WEIGHTS
        save_model(model, str(weights))  # tied weights stored once
        blob = weights.read_bytes()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config,
        "meta": meta,
        "step": int(step),
        "data_fingerprint": data_fingerprint(meta, config.get("data")),
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "version": stamp(),
        **(extra or {}),
    }
    index_blob = None
    if audit_index is not None:
        index_blob, header["audit_index"] = audit_index
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        z.writestr(HEADER, json.dumps(header, indent=2, ensure_ascii=False))
        z.writestr(WEIGHTS, blob)
        if index_blob is not None:
            z.writestr(header["audit_index"]["member"], index_blob)
    return header


def read_member(path: str | Path, name: str, sha256: str | None, limit: int) -> bytes:
    """The bytes of member ``name`` of the bundle at ``path``, checked against ``sha256`` and
    ``limit`` bytes (BundleError when absent, too large, or altered)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            if name not in z.namelist():
                raise BundleError(f"{path}: the bundle has no {name}")
            if z.getinfo(name).file_size > limit:
                raise BundleError(f"{path}: {name} is larger than {limit} bytes")
            data = z.read(name)
    except (zipfile.BadZipFile, OSError) as e:
        raise BundleError(f"{path}: damaged or not a tunelab bundle ({e})") from e
    if hashlib.sha256(data).hexdigest() != sha256:
        raise BundleError(f"{path}: damaged bundle: the SHA-256 of {name} does not match")
    return data


def read_bundle(path: str | Path) -> tuple[dict, bytes]:
    """(header, safetensors bytes) of a bundle, checked: format, version, weights digest."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if HEADER not in names or WEIGHTS not in names:
                raise BundleError(f"{path}: not a tunelab bundle (no {HEADER} and {WEIGHTS})")
            if z.getinfo(HEADER).file_size > MAX_HEADER_BYTES:
                raise BundleError(f"{path}: not a tunelab bundle ({HEADER} is too large)")
            header = json.loads(z.read(HEADER).decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise BundleError(f"{path}: not a tunelab bundle (format is not {FORMAT!r})")
            version = header.get("format_version")
            if version != FORMAT_VERSION:
                raise BundleError(
                    f"{path}: bundle format version {version!r}; this tunelab reads version "
                    f"{FORMAT_VERSION} only. Export the model again from its run directory "
                    "with this tunelab (`tunelab export RUN_DIR --out FILE`)"
                )
            blob = z.read(WEIGHTS)
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: damaged or not a tunelab bundle ({e})") from e
    if hashlib.sha256(blob).hexdigest() != header.get("weights_sha256"):
        raise BundleError(f"{path}: damaged bundle: the weights' SHA-256 does not match")
    return header, blob


def load_weights(model: nn.Module, blob: bytes, where: Path) -> None:
    """Load safetensors bytes into ``model`` (strict: every weight present, shapes equal)."""
    from safetensors.torch import load_model

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / WEIGHTS
        f.write_bytes(blob)
        try:
            load_model(model, str(f))
        except Exception as e:  # a header that does not match its weights
            msg = f"{where}: the weights do not fit the model in its config ({e})"
            raise BundleError(msg) from e
