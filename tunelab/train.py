"""The one training loop for every model family.

AdamW with linear warmup and cosine decay, gradient clipping, optional EMA of the weights,
mixed precision on CUDA, transposition augmentation for MIDI. Budgets: ``train.max_steps``,
``train.max_minutes``, early stopping on validation (``train.patience``). Checkpoints
``last``/``best`` and a milestone every ``train.milestone_minutes``; a run resumes by itself
from ``checkpoints/last.pt`` exactly: same step, optimizer, RNG states, and the same batches
(batches are a function of seed and step, see data/dataset.py).

``train.max_minutes`` is wall clock over the whole ``train`` call (set-up, steps, validation,
saving), summed over the run's sessions; the loop stops early enough for the final validation
and saves to fit (see ``tunelab.run.budget``). A resumed run with no time left stops after
set-up (``already_done``); a run at step 0 always takes one step, so that it has a checkpoint.

The learning rate is a pure function of (step, elapsed time), so there is no scheduler state
to drift on resume: warmup, then cosine over ``train.decay_steps`` (default ``max_steps``),
or over ``max_minutes`` when time runs out first (``tunelab.run.budget.lr_at``).

Under ``torchrun`` (WORLD_SIZE > 1) it runs DDP (gloo on CPU, nccl on CUDA);
rank 0 writes every file. What a process and a checkpoint hold is in ``tunelab.run.state``.

A session reads top to bottom: ``_setup`` (config, data, model, batches, resume; the config
checks are in ``tunelab.train_checks``) makes a ``Live``; ``_loop`` runs ``_step`` (the forward
pass, then ``Trainer.backward_and_step``), ``_report`` and, at validation steps,
``_validate_and_save``; ``_finish`` exports and closes.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from tunelab.config import ConfigError, RunConfig, dump
from tunelab.data.dataset import prefetch
from tunelab.data.store import load_datadir
from tunelab.kinds import kind_for
from tunelab.models import build_model
from tunelab.run.budget import estimate_final, follow, lr_at, out_of_time, schedule_seconds
from tunelab.run.checkpoint import (
    CheckpointError,
    export_safetensors,
    load_checkpoint,
    newest_readable,
    rebuild_model,
    remove_stale_temps,
)
from tunelab.run.curves import RunLog, plot_run
from tunelab.run.state import Dist, Step, Trainer, forward, setup_dist
from tunelab.train_checks import check_config, check_resume, size_from_data


@dataclass
class TrainResult:
    status: str  # done | time_budget | early_stop | nan | interrupted | already_done
    step: int
    best_valid: float | None
    last_valid: float | None
    run_dir: Path
    message: str


def train(cfg: RunConfig) -> TrainResult:
    """Train (or resume) the run described by ``cfg``; see the module docstring."""
    if not cfg.data:
        raise ConfigError("data=DATA_DIR is required (a directory made by `tunelab prepare`)")
    if not cfg.out:
        raise ConfigError("out=RUN_DIR is required (where checkpoints and logs go)")
    started = time.perf_counter()  # the budget counts the whole call
    d = setup_dist(cfg.device)
    failed = True
    try:
        result = _train(cfg, d, started)
        failed = False
        return result
    finally:
        if d.world > 1 and dist.is_initialized():
            # After an error (rank 0 could not write a checkpoint, say) the other ranks wait
            # in another collective: a barrier here would hang; leaving lets torchrun end them.
            if not failed:
                dist.barrier()
            dist.destroy_process_group()


@dataclass
class Live:
    """The live objects of one training session: what ``_setup`` makes and the loop runs on."""

    cfg: RunConfig
    d: Dist
    kind: Any  # the data's kind (tunelab.kinds): batches, loss, validation figures, previews
    model: nn.Module
    net: nn.Module  # the model, or its DDP wrapper: training forward passes go through it
    tr: Trainer
    batch_at: Callable  # step -> that step's batch (x, y, label[, reset]), on any rank
    valid: list  # fixed validation batches; empty: no validation, only `last` is kept
    files: RunLog | None  # rank 0's logs (None on the other ranks)
    saved_last: bool  # this run has a `last` checkpoint (a flag, not exists(): ranks agree)

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out)

    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"


def _train(cfg: RunConfig, d: Dist, started: float) -> TrainResult:
    live = _setup(cfg, d, started)
    t, pr = cfg.train, live.tr.progress  # (restored by _setup when resuming)
    # A run with no time left for one more step and the final validation and saves stops here,
    # unless it has taken no step yet (it needs a checkpoint)
    budget = 60 * t.max_minutes if t.max_minutes else None
    if pr.step >= t.max_steps or (pr.step and out_of_time(pr, pr.step_seconds or 0.0, budget)):
        status = "already_done"
        msg = (
            f"{live.run_dir}: already trained to step {pr.step}, {pr.elapsed / 60:.2f} minutes "
            f"(train.max_steps={t.max_steps}, train.max_minutes={t.max_minutes})"
        )
    else:
        status, msg = _loop(live)
    return _finish(live, status, msg)


def _setup(cfg: RunConfig, d: Dist, started: float) -> Live:
    """What a session trains with: the checked config, the data's kind, the model (the same
    initial weights on every rank), the batches, the Trainer resumed from the run's newest
    readable checkpoint and its carried state; rank 0 writes config.yaml and opens the logs.
    The time since ``started`` (this call's start) is added to the run's elapsed time."""
    check_config(cfg)
    t = cfg.train
    data = load_datadir(cfg.data)
    size_from_data(t, data)
    if t.batch_size % d.world:
        raise ConfigError(
            f"train.batch_size={t.batch_size} is the global batch; it must be divisible by the "
            f"number of processes ({d.world}), e.g. train.batch_size={t.batch_size * d.world}"
        )
    try:
        kind = kind_for(cfg.model, data.meta, str(cfg.data), base=cfg.revision.base)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    # Same initial weights on every rank (DDP also broadcasts them); per-rank dropout streams
    # are seeded right after.
    torch.manual_seed(cfg.seed)
    try:
        model = build_model(cfg.model, kind.vocab_size, kind.n_labels).to(d.device)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from e
    rf = getattr(model, "receptive_field", None)
    # Unscored context at the head of each window: the receptive field, or for an RNN
    # (unbounded) the warm-up it asks for.
    context = rf or getattr(model, "warmup", None)
    try:
        batch_at = kind.train_batches(data.split("train"), t, cfg.seed, d.rank, d.world, context)
    except ValueError as e:
        raise ConfigError(f"{cfg.data} train split: {e}") from e
    valid = kind.valid_batches(data.split("valid"), t, context)

    torch.manual_seed(cfg.seed + d.rank)
    random.seed(cfg.seed + d.rank)
    np.random.seed((cfg.seed + d.rank) % 2**32)
    tr = Trainer(cfg, d, model, kind.meta)  # the data's meta, plus what the kind derived
    resumed_from = _resume(cfg, d, tr=tr, kind=kind)
    if t.carry_state:  # the state after the last step taken (zeros at the start)
        try:
            tr.start_carry(model.init_carry(t.batch_size // d.world, d.device))
        except ValueError as e:
            raise ConfigError(f"train.carry_state: {e}") from e
    files, run_dir = None, Path(cfg.out)
    if d.main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        dump(cfg, run_dir / "config.yaml")
        files = RunLog(run_dir, tr.progress.step if resumed_from else None, t.tensorboard)
        if rf is not None:
            print(f"receptive field: {rf:,} inputs", flush=True)
    net = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None
        )
    saved_last = resumed_from == run_dir / "checkpoints" / "last.pt"
    tr.start_clock(started)
    tr.tick()  # the set-up counts in the budget
    return Live(
        cfg, d, kind=kind, model=model, net=net, tr=tr, batch_at=batch_at, valid=valid,
        files=files, saved_last=saved_last,
    )  # fmt: skip


def _resume(cfg: RunConfig, d: Dist, tr: Trainer, kind) -> Path | None:
    """Restore ``tr`` from the run's newest readable checkpoint: the path it came from, or
    None for a new run. A damaged last.pt falls back to the newest readable milestone or
    best; checkpoints that exist but are all damaged stop the run (RNG states are loaded as
    CPU tensors, as they must stay)."""
    folder = Path(cfg.out) / "checkpoints"
    if d.main:
        remove_stale_temps(folder)
    found = newest_readable(folder)
    if found is None:
        return None
    from_path, ck, problems = found
    if d.main and problems:
        print(
            "warning: " + "; ".join(problems) + f"\nresuming from {from_path} "
            f"(step {ck.get('step')}) instead; the damaged file is replaced at the next save",
            file=sys.stderr,
            flush=True,
        )
    check_resume(ck, cfg, kind, Path(cfg.out))
    tr.restore(ck)
    return from_path


@dataclass
class _Window:
    """The steps since the last metrics line: their summed losses, scored targets, wall time,
    and the last step's learning rate and gradient norm."""

    loss: float = 0.0
    n: int = 0
    targets: float = 0
    t0: float = field(default_factory=time.perf_counter)
    lr: float = 0.0
    grad_norm: float = 0.0

    def add(self, done: Step, lr: float) -> None:
        self.loss += done.loss
        self.n += 1
        self.targets += done.targets
        self.lr, self.grad_norm = lr, float(done.grad_norm)

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def restart(self) -> None:
        self.loss, self.n, self.targets, self.t0 = 0.0, 0, 0, time.perf_counter()


def _loop(live: Live) -> tuple[str, str]:
    """Train until a budget ends or training fails: (status, message). Validates and saves
    every ``train.eval_every`` steps, at the last step, and under ``train.max_minutes`` when
    one more step and the final validation and saves would no longer fit."""
    cfg, tr = live.cfg, live.tr
    t, pr = cfg.train, tr.progress
    budget = 60 * t.max_minutes if t.max_minutes else None
    if budget is not None and pr.final_seconds is None:  # (a new run's first session)
        pr.final_seconds = estimate_final(tr, live.valid, live.kind.loss)
    start = (pr.step, pr.elapsed)  # this session's pace is measured from here
    bar = None
    if live.d.main and t.progress:
        from tunelab.progress import progress_bar

        bar = progress_bar(total=t.max_steps, initial=pr.step, unit="step", dynamic_ncols=True)
        if budget is not None:
            follow(bar, pr, start, budget, t.max_steps)
    status, msg = "done", ""
    batches = prefetch(live.batch_at, pr.step, t.num_workers)
    window = _Window()
    live.model.train()
    try:
        while pr.step < t.max_steps:
            lr = lr_at(cfg, pr.step, schedule_seconds(pr))
            before = pr.elapsed
            done = _step(live, next(batches), lr)
            if done.problem:
                status, msg = "nan", _stop(live, done.problem)
                break
            step_s = pr.step_seconds = pr.elapsed - before
            _report(live, bar, window, done, lr, start, budget)
            stop = out_of_time(pr, step_s, budget)
            if pr.step % t.eval_every == 0 or pr.step == t.max_steps or stop:
                _validate_and_save(live, bar)
                if t.patience and pr.bad_evals >= t.patience:
                    status = "early_stop"
                    msg = f"early stop: no improvement in {t.patience} evaluations"
                    break
                stop = out_of_time(pr, step_s, budget)  # (it took longer than the last)
            tr.save_milestone(live.run_dir / "checkpoints")
            if stop and pr.step < t.max_steps:
                status = "time_budget"
                msg = f"time budget used: {pr.elapsed / 60:.2f} of {t.max_minutes:g} minutes"
                break
    except KeyboardInterrupt:
        status, msg = "interrupted", f"interrupted at step {pr.step}; rerun the command to resume"
        if live.d.world == 1:  # under DDP the other ranks may be gone; keep the last eval's
            tr.save(live.last_path)
    finally:
        batches.close()
        if bar is not None:
            if status in ("time_budget", "early_stop"):
                bar.total = pr.step  # the step it ended at, not max_steps
            bar.close()
    if status in ("time_budget", "early_stop"):
        _log_window(live, window)  # the steps since the last metrics line: the end is logged
        msg += f"; trained to step {pr.step}"
    if status == "done":
        msg = f"reached train.max_steps={t.max_steps}"
    return status, msg


def _phase(bar, text: str | None) -> None:
    """What the run is doing between steps, on the bar (a plain bar's heartbeat lines say it)."""
    if bar is not None:
        bar.set_description(text or "")


def _step(live: Live, batch: tuple, lr: float) -> Step:
    """One optimizer step at learning rate ``lr`` on ``batch`` (x, y, label[, reset])."""
    d, tr = live.d, live.tr
    x, y, label, *reset = batch
    x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
    if label is not None:
        label = label.to(d.device)
    tr.set_lr(lr)
    state = tr.window_state(*reset)  # rows that start a piece start from a fresh state
    with tr.amp_ctx():
        out = forward(live.net, x, y, label=label, state=state)
    new_state = None
    if state is not None:
        out, new_state = out
    loss_sum, count = live.kind.loss(out, y, x)
    return tr.backward_and_step(loss_sum / count.clamp(min=1), count, new_carry=new_state)


def _stop(live: Live, problem: str) -> str:
    """A step that could not be taken (``problem``: a loss or gradient not finite): the
    weights are still those of the last good step, kept as `last`; the message."""
    last, step = live.last_path, live.tr.progress.step
    if not live.saved_last:  # (a flag, not exists(): every rank must agree)
        live.tr.save(last)
    msg = (
        f"stopped: {problem} at step {step + 1}; the weights were not updated. "
        f"Last good checkpoint: {last}"
        f"{' (step ' + str(_ckpt_step(last)) + ')' if live.d.main else ''}. "
        "Try a lower train.lr, a smaller train.clip, or train.amp=false."
    )
    if live.files:
        live.files.log({"step": step + 1, "nan": True})
    return msg


def _report(live: Live, bar, window: _Window, done: Step, lr: float, start: tuple, budget) -> None:
    """A step taken: the progress bar, its end at whichever budget ends first from the first
    step on, and every ``train.log_every`` steps a metrics line with the window's means."""
    t, pr = live.cfg.train, live.tr.progress
    window.add(done, lr)
    if bar is not None:
        if budget is not None:
            follow(bar, pr, start, budget, t.max_steps)
        speed = window.targets / max(1e-9, window.seconds())
        bar.update(1)
        bar.set_postfix(loss=f"{done.loss:.3f}", tok_s=f"{speed:,.0f}", refresh=False)
    if pr.step % t.log_every == 0 or pr.step == t.max_steps:
        _log_window(live, window)


def _log_window(live: Live, window: _Window) -> None:
    """A metrics line with the window's means (rank 0), then a new window."""
    pr = live.tr.progress
    if live.files and window.n:
        sec = window.seconds() / window.n
        live.files.log(
            {
                "step": pr.step,
                "loss": window.loss / window.n,
                "lr": window.lr,
                "grad_norm": window.grad_norm,
                "sec_per_step": sec,
                "tokens_per_s": window.targets / window.n / sec,
                "minutes": pr.elapsed / 60,
            }
        )
    window.restart()


def _validate_and_save(live: Live, bar) -> None:
    """The validation loss of the judged weights (the EMA when kept), logged; then `best` if
    it improved, `last` always, and a preview of the judged model in TensorBoard. The time it
    all took is kept as the time the final validation needs (``final_seconds``)."""
    tr, files, kind = live.tr, live.files, live.kind
    pr, improved = tr.progress, False
    start = tr.tick()
    if live.valid:  # an empty valid split: only `last` is kept
        _phase(bar, "validating")
        improved = tr.note_valid(tr.valid_loss(live.valid, kind.loss))
        if files:
            files.log(
                {
                    "step": pr.step,
                    "valid_loss": pr.last_valid,
                    "best_valid": pr.best_valid,
                    **kind.valid_figures(pr.last_valid),
                }
            )
        if bar is not None:
            bar.write(f"step {pr.step}: valid loss {pr.last_valid:.4f} (best {pr.best_valid:.4f})")
    _phase(bar, "saving")
    saving = tr.tick()
    if improved:
        tr.save(live.run_dir / "checkpoints" / "best.pt")
    tr.save(live.last_path)
    live.saved_last = True
    saves = tr.tick() - saving
    if files:
        _phase(bar, "previewing")
        files.preview(kind, tr.judge, pr.step, live.d.device)
    _phase(bar, None)
    # (the final validation may write both `best` and `last`: one more save if only `last`)
    pr.final_seconds = tr.tick() - start + (0.0 if improved else saves)


def _ckpt_step(path: Path) -> int | str:
    try:
        return load_checkpoint(path)["step"]
    except Exception:
        return "?"


def _finish(live: Live, status: str, msg: str) -> TrainResult:
    """Rank 0: plots, safetensors export of the best weights, close the logs."""
    cfg, files, run_dir, pr = live.cfg, live.files, live.run_dir, live.tr.progress
    if files is not None:
        best_path = run_dir / "checkpoints" / "best.pt"
        try:
            ck = load_checkpoint(best_path) if best_path.exists() and status != "nan" else None
        except CheckpointError as e:  # the run itself is fine; only the export is skipped
            print(f"warning: model.safetensors not written: {e}", file=sys.stderr, flush=True)
            ck = None
        if ck is not None:
            export = rebuild_model(ck["config"], ck["meta"], ck, best_path)[0]
            meta = {"config": json.dumps(ck["config"]), "step": ck["step"]}
            export_safetensors(export, run_dir / "model.safetensors", meta)
        files.close()
        if cfg.train.plots:
            plot_run(run_dir)
    return TrainResult(status, pr.step, pr.best_valid, pr.last_valid, run_dir, msg)
