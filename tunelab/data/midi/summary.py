"""What ``prepare`` tells the user at the end of a MIDI run: counts, splits, the grid advice,
and, in plain words, what the filters dropped when it is a large share of the notes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.markup import escape

DROPPED_SHARE = 0.05  # a filter that drops more of the notes than this is said in plain words


def dropped_notes(filters: Counter, kept: int) -> dict:
    """Notes the filters dropped, as counts and as a share of the notes read."""
    dropped = {k: int(v) for k, v in filters.items() if k.endswith("notes_dropped") and v}
    read = kept + sum(dropped.values()) + int(filters.get("duplicate_notes_merged", 0))
    return {
        "notes_read": read,
        "by_rule": dropped,
        "share": round(sum(dropped.values()) / read, 4) if read else 0.0,
    }


def print_summary(
    console, out: Path, stats: dict, counts: dict, rejection_report: list[str]
) -> None:
    console.print(
        f"[green]prepared[/] {stats['accepted']} of {stats['files']} files -> {escape(str(out))} "
        f"({stats['tokens']:,} tokens, {stats['steps']:,} steps, {stats['notes']:,} notes)"
    )
    split_text = ", ".join(
        f"{k} {v['pieces']} pieces / {v['items']:,} tokens" for k, v in counts.items()
    )
    console.print(f"splits: {split_text}")
    for line in rejection_report:
        console.print(line)
    ctx = stats["context"]
    rec = ctx["recommended"]
    per_bar = ctx["tokens_per_bar"]
    console.print(
        f"grid: the notes need {ctx['finest_grid_spq'] or 'more than 48 (performed timing)'} "
        f"steps per quarter; tokens per bar: {ctx['measured_tokens_per_bar']} here, "
        + ", ".join(f"{k} {v}" for k, v in per_bar.items() if not isinstance(v, dict))
        + ", steps "
        + ", ".join(f"{v} @{s}" for s, v in per_bar["steps"].items())
    )
    console.print(
        f"recommended: --steps-per-quarter {rec['steps_per_quarter']} --encoding "
        f"{rec['encoding']}, then train {rec['preset']} ({escape(rec['why'])})"
    )
    hits = {k: v for k, v in stats["filters"].items() if v}
    if hits:
        console.print("filters: " + ", ".join(f"{k} {v}" for k, v in hits.items()))
    for line in dropped_warnings(stats["dropped"], stats["choices"]):
        console.print(f"[yellow]warning:[/] {escape(line)}")


_DROP_WORDS = {
    "short_notes_dropped": "were shorter than one grid step (a finer --steps-per-quarter keeps them)",
    "off_piano_notes_dropped": "lay outside the encoding's pitch range (--off-piano fold keeps them)",
    "drum_notes_dropped": "were drums (--keep-drums keeps them; remi-programs carries them)",
}


def dropped_warnings(dropped: dict, choices: dict) -> list[str]:
    """Plain-word lines when the filters dropped more than DROPPED_SHARE of the notes read."""
    if dropped["share"] <= DROPPED_SHARE:
        return []
    read = dropped["notes_read"]
    lines = [
        f"{dropped['share']:.0%} of the notes read ({sum(dropped['by_rule'].values()):,} of "
        f"{read:,}) were dropped:"
    ]
    for k, n in sorted(dropped["by_rule"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n:,} ({n / read:.0%}) {_DROP_WORDS.get(k, k.replace('_', ' '))}")
    return lines
