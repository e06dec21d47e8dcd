"""The budget of `tunelab run`: wall clock for the whole command, counted from the process's
start (start-up and imports too). Preparing is measured; training gets what is left after a
reserve for generating, scoring, ranking and the report (``reserve``); set-up and validation
inside training are ``train``'s to count (``train.max_minutes``). What each stage spent is
printed and kept (``Clock.spent``, choices.json ``spent``), and an overrun is said in words
with the stage that caused it (``account``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

# Generating, scoring, ranking and the report took 8 s after a 1-minute MIDI training and about
# 13 s after a half-minute audio one on the 2-core reference machine (docs/benchmarks.md,
# `tunelab run` on a folder). Audio scoring reads every sample of the split: 4 minutes of
# chorale audio took 20 s on one thread with wavenet-tiny. Three quarters of a minute, or a
# tenth of larger budgets (bigger test splits, more checkpoints), leaves room without taking
# half of a small budget from training; a rerun reserves what the last run took, if more.
RESERVE_SHARE = 0.1
RESERVE_MIN = 0.75  # minutes
RESERVE_MARGIN = 1.25  # on the time the previous run of the same OUT took after training
MIN_TRAIN = 0.25  # minutes: training never gets less, even when preparing ate the budget
AFTER_TRAINING = ("generate", "evaluate", "rank", "report")


class Clock:
    """Seconds per stage since ``t0`` (default: now): each ``lap`` charges the time since the
    last one to a stage."""

    def __init__(self, t0: float | None = None):
        self.t0 = self.mark = time.time() if t0 is None else t0
        self.spent: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.time()
        self.spent[stage] = round(self.spent.get(stage, 0.0) + now - self.mark, 1)
        self.mark = now

    def minutes(self) -> float:
        return (time.time() - self.t0) / 60


def command_start() -> float:
    """When this process started (Linux ``/proc``), so that interpreter start-up and imports
    count against the budget; the call's own time when the process is older than a minute
    (tunelab called from a test or a notebook, whose age is not this command's) or unknown."""
    now = time.time()
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        start = now - uptime + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return now
    return start if 0 <= now - start < 60 else now


def reserve(minutes: float, previous: dict | None = None) -> tuple[float, str]:
    """Minutes kept for generating, scoring, ranking and the report, and why: a share of the
    budget with a floor, or what the previous run of this OUT spent on them (``spent`` of its
    choices.json) with a margin, whichever is more."""
    share = max(RESERVE_MIN, RESERVE_SHARE * minutes)
    why = f"{RESERVE_SHARE:.0%} of the budget, at least {RESERVE_MIN:g} min"
    after = sum((previous or {}).get(k, 0.0) for k in AFTER_TRAINING) / 60
    if after * RESERVE_MARGIN > share:
        return after * RESERVE_MARGIN, f"the last run's {after:.1f} min + {RESERVE_MARGIN - 1:.0%}"
    return share, why


def plan_training(minutes: float, used: float, kept: float, why_kept: str) -> tuple[float, str]:
    """Training minutes (the budget less what preparing spent and the reserve), and why."""
    left = minutes - used - kept
    why = (
        f"budget {minutes:g} min - {used:.1f} spent starting and preparing - {kept:.1f} kept for "
        f"generating, scoring and the report ({why_kept})"
    )
    if left < MIN_TRAIN:
        why += (
            f"; that leaves {max(left, 0):.2f}, under the {MIN_TRAIN:g}-minute floor: the command "
            f"will run over its budget by about {MIN_TRAIN - left:.1f} min"
        )
        return MIN_TRAIN, why
    return left, why


def account(console, clock: Clock, minutes: float, train_minutes: float, kept: float) -> None:
    """The time each stage took against the budget; an overrun in words, with its cause."""
    total = clock.minutes()
    clock.spent["total"] = round(total * 60, 1)
    parts = ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in clock.spent.items())
    console.print(f"done in {total:.1f} minutes (budget {minutes:g}): {parts}")
    if total <= minutes + 0.05:
        return
    causes = []
    trained = clock.spent.get("train", 0.0) / 60
    if trained > train_minutes + 0.05:
        causes.append(
            f"training took {trained:.2f} min of its {train_minutes:.2f} (set-up and validation)"
        )
    after = sum(clock.spent.get(k, 0.0) for k in AFTER_TRAINING) / 60
    if after > kept:
        causes.append(
            f"generating, scoring and the report took {after:.2f} min, {kept:.2f} were kept"
        )
    if not causes:
        causes.append("preparing took more than the budget left for it")
    console.print(f"[yellow]over the budget by {total - minutes:.1f} minutes: {'; '.join(causes)}")


def previous_spent(out: Path) -> dict | None:
    """Seconds per stage of the last finished run into ``out`` (None when there was none)."""
    try:
        return json.loads((out / "choices.json").read_text(encoding="utf-8")).get("spent")
    except (OSError, ValueError):
        return None
