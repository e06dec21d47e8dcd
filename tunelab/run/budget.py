"""The time budget of a training run (``train.max_minutes``): what it counts, when the loop
must stop so that the ``train`` call ends within it, and the learning rate that follows it.

The budget is wall clock over the whole ``train`` call, summed over the run's sessions:
``Progress.elapsed`` counts from the call's start (set-up: data, model, resume), through the
steps, validations and saves (``Trainer.tick`` adds the time between steps), and the
checkpoint carries it to the next session. The loop stops when one more step and the final
validation and saves would not fit; what those need is ``Progress.final_seconds``: measured
at every validation, carried in the checkpoint, and before the first one estimated here from
one timed validation batch and the checkpoint's size.
"""

from __future__ import annotations

import math
import time

# Checkpoint bytes written per second, for the time kept for the final saves before a save was
# measured: slow on purpose (a disk shared with others); the first measurement replaces it.
SAVE_BYTES_PER_S = 100e6


def estimate_final(tr, valid: list, loss_fn) -> float:
    """Seconds the final validation and saves (`best`, `last`) will take, before any was
    measured: one validation batch timed (its time counts in the budget too), times the
    batches this rank runs, and the checkpoint's bytes at ``SAVE_BYTES_PER_S``. ``tr``: the
    run's ``Trainer``; every rank calls this (collectives)."""
    start, valid_s = tr.tick(), 0.0
    if valid:
        tr.valid_loss(valid[:1], loss_fn)
        # Each rank runs its share of the batches, or all of them with carried state.
        share = len(valid) if len(valid[0]) == 4 else math.ceil(len(valid) / tr.d.world)
        valid_s = (tr.tick() - start) * share
    weights = sum(x.numel() * x.element_size() for x in tr.model.state_dict().values())
    copies = 3 + (tr.ema is not None)  # the weights, two AdamW moments, the EMA
    return valid_s + 2 * copies * weights / SAVE_BYTES_PER_S


def lr_at(cfg, step: int, elapsed_s: float) -> float:
    """Learning rate before optimizer step ``step`` (0-based): warmup, then cosine."""
    t = cfg.train
    if step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    horizon = (t.decay_steps or t.max_steps) - t.warmup
    progress = (step - t.warmup) / max(1, horizon)
    if t.max_minutes:
        progress = max(progress, elapsed_s / (60 * t.max_minutes))
    progress = min(1.0, progress)
    floor = t.lr * t.min_lr_ratio
    return floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def schedule_seconds(progress) -> float:
    """The time the learning-rate schedule reads: elapsed plus the final validation and saves
    still to come, so that under a time budget the cosine ends where the loop does."""
    return progress.elapsed + (progress.final_seconds or 0.0)


def out_of_time(progress, step_s: float, budget: float | None) -> bool:
    """True when another step of ``step_s`` seconds and the final validation and saves would
    end past ``budget`` seconds (None: no time budget)."""
    return budget is not None and schedule_seconds(progress) + step_s >= budget


def follow(bar, progress, start: tuple[int, float], budget: float, max_steps: int) -> None:
    """Point a progress bar at whichever budget ends first, from its first line on: its total
    at the step the run will end at (``end_step``), and its ``ends_by`` at the wall-clock time
    the steps must end by (a plain bar's ETA never passes it; a tqdm bar ignores it)."""
    bar.total = end_step(progress, start, budget, max_steps)
    bar.ends_by = time.perf_counter() + max(0.0, budget - schedule_seconds(progress))


def end_step(progress, start: tuple[int, float], budget: float, max_steps: int) -> int:
    """The step the run will end at: ``max_steps``, or sooner the one the time budget ends at,
    at the pace since ``start`` (step, elapsed), validations included (before a step was
    taken: ``max_steps``)."""
    steps, seconds = progress.step - start[0], progress.elapsed - start[1]
    if steps <= 0:
        return max_steps
    left = max(0.0, budget - schedule_seconds(progress))
    return max(
        progress.step, min(max_steps, progress.step + int(left * steps / max(1e-9, seconds)))
    )
