"""tunelab's version, and the commit of the source it runs from when that is a git checkout."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path


@functools.cache
def version() -> str:
    try:
        return metadata.version("tunelab")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def _git(*args: str) -> str:
    """What ``git ARGS`` prints about the package's source tree (raises outside a checkout)."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


@functools.cache
def commit() -> str | None:
    """The git commit of the package's source (with "+dirty" for uncommitted changes), or None
    outside a checkout."""
    try:
        head = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def version_string() -> str:
    c = commit()
    return f"{version()} ({c})" if c else version()


def stamp() -> dict:
    """What every checkpoint, bundle, sidecar and report records about the code that wrote it:
    ``{"tunelab": version, "commit": commit or None}`` (JSON-ready)."""
    return {"tunelab": version(), "commit": commit()}
