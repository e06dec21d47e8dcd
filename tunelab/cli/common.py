"""What every ``tunelab`` command shares: the one-line error exit and its wording."""

from __future__ import annotations

import typer


def fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


def os_error(e: OSError, intact: str, out) -> str:
    """One line for a failed write: the path, the system's reason, what was kept."""
    where = e.filename or f"into {out}"
    return f"cannot write {where}: {e.strerror or e}; {intact}"


def device_name(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
