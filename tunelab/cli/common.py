"""What every ``tunelab`` command shares: the one-line error exit and its wording, the checked
choices (device, checkpoint), the help panels.

Errors have one style, one line on stderr: ``error: <what>: <why>; <what to do>``. Exit status
2 is a usage error (an option, key, path or name the user gave that does not fit; nothing was
done), 1 a failure of the work itself (a full disk, a diverged run, nothing usable found)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer

USAGE, FAILED = 2, 1  # exit statuses
MIDI, AUDIO = "MIDI options", "Audio options"  # --help panels of options for one kind only
DEVICES = "auto|cpu|cuda|cuda:N"


def plain_warnings() -> None:
    """tunelab's own warnings (an audit that could not run, a small split) as one
    "warning: ..." line on stderr, in the errors' style, not Python's file:line: UserWarning
    form; other packages' warnings keep theirs."""
    import warnings

    default = warnings.showwarning
    root = str(Path(__file__).resolve().parent.parent)

    def show(message, category, filename, lineno, file=None, line=None):
        if str(Path(filename).resolve()).startswith(root):
            print(f"warning: {message}", file=file or sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def fail(msg: str, code: int = USAGE) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


def _is(e: BaseException, name: str) -> bool:
    """Whether ``e`` is click's exception ``name``, by class name: typer vendors click from 0.20
    on (typer._click), so the classes live in one package or the other."""
    return any(c.__name__ == name for c in type(e).__mro__)


class Group(typer.core.TyperGroup):
    """The ``tunelab`` group: click's own usage errors (a bad choice, a missing option, an
    unknown command) come out in the same one-line style as the commands' errors, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **kw):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **kw)
        try:
            rv = super().main(args, prog_name, complete_var, False, **kw)
        except Exception as e:
            if _is(e, "NoArgsIsHelpError"):  # bare `tunelab`: typer has printed the help
                pass
            elif _is(e, "ClickException"):
                ctx = getattr(e, "ctx", None)
                see = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
                msg = " ".join(e.format_message().split()).rstrip(".")  # one line
                msg = msg.replace(": Value error, ", ": ")  # typer's wording of a bad choice
                typer.secho(f"error: {msg}{see}", fg="red", err=True)
            elif _is(e, "Abort"):
                typer.secho("error: aborted", fg="red", err=True)
                sys.exit(FAILED)
            else:
                raise
            sys.exit(e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


def os_error(e: OSError, intact: str, out) -> str:
    """One line for a failed write: the path, the system's reason, what was kept."""
    where = e.filename or f"into {out}"
    return f"cannot write {where}: {e.strerror or e}; {intact}"


def device_name(name: str) -> str:
    """The torch device ``name`` means: auto is cuda when a GPU is there, else cpu."""
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def check_device(name: str) -> str:
    """``name`` when it is auto, cpu, cuda or cuda:N and that device is there; else a usage
    error (BadParameter) that says what to give instead."""
    name = name.strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        from tunelab.config import did_you_mean

        hint = did_you_mean(name, ["auto", "cpu", "cuda"])
        raise typer.BadParameter(f"{name!r} is not a device:{hint} choose {DEVICES}")
    if name.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if not count:
            raise typer.BadParameter(
                f"{name}: no CUDA GPU is available here; use --device cpu (or auto)"
            )
        if index >= count:
            raise typer.BadParameter(
                f"{name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    return name


def device_option(**kw):
    """``--device``, auto by default, checked before any work."""
    return typer.Option(
        "auto",
        parser=check_device,
        metavar=DEVICES,
        help="Where to run: auto (cuda when a GPU is there, else cpu), cpu, cuda or cuda:N.",
        **kw,
    )


CHECKPOINT_HELP = "best, last, a step (its milestone checkpoint), a checkpoint name or a .pt file."


def checkpoint_name(run_dir: Path, which: str) -> str:
    """``which`` checked against the run's checkpoints before any work: best, last, a step
    number (milestone-STEP), a checkpoint's name or a .pt file. A bundle holds one model, so
    any name passes for one. Returns the name to load; a usage error names what exists."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return which
    if not run_dir.is_dir():
        fail(f"{run_dir}: no such run directory or bundle; give a trained run's folder")
    p = Path(which)
    if p.suffix == ".pt":
        if not p.is_file():
            fail(f"--checkpoint {which}: no such file; give a .pt file that exists")
        return which
    ckpts = run_dir / "checkpoints"
    have = sorted(q.stem for q in ckpts.glob("*.pt")) if ckpts.is_dir() else []
    if not have:
        fail(f"{run_dir}: no checkpoints/*.pt (not a run directory, or not trained yet)")
    name = which
    if which.isdigit():  # milestones are named by their step, zero-padded: milestone-00001200
        steps = {int(h[10:]): h for h in have if re.fullmatch(r"milestone-\d+", h)}
        name = steps.get(int(which), f"milestone-{int(which):08d}")
    if name in have or (name == "best" and "last" in have):  # best falls back to last
        return name
    from tunelab.config import did_you_mean

    fail(
        f"--checkpoint {which}: no such checkpoint in {run_dir};{did_you_mean(name, have)} "
        f"available: {', '.join(have)}"
    )


KEY_METRICS = ("note_density", "mean_polyphony", "on_beat_share", "rms_db", "duration_seconds")
KEY_METRICS += ("rms_dbfs", "spectral_flatness", "pitch_salience")  # audio


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
