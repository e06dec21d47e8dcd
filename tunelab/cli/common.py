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


KEY_METRICS = ("note_density", "mean_polyphony", "on_beat_share", "rms_db", "duration_seconds")


def samples_table(result: dict) -> None:
    """``evaluate --samples``: a table of file, flags and key metrics, then the flag counts in
    words (or "not audited" when the copy audit could not run)."""
    from rich.console import Console
    from rich.table import Table

    files = result.get("files", [])
    shown = [k for k in KEY_METRICS if any(k in (f.get("metrics") or {}) for f in files)]
    table = Table(title=f"{len(files)} files audited")
    for col in ("file", "flags", *shown):
        table.add_column(col)
    for f in files:
        m = f.get("metrics") or {}
        cells = [f"{m[k]:.3g}" if isinstance(m.get(k), int | float) else "" for k in shown]
        table.add_row(f["file"], ", ".join(f.get("flags", [])) or "none", *cells)
    Console(soft_wrap=True).print(table)
    counts = {k: v for k, v in result.get("flag_counts", {}).items() if v}
    words = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
    if result.get("audited") is False:
        words += f"; NOT AUDITED for copies: {result.get('reference')}"
    typer.echo(f"flags: {words}")
