"""The one training loop for every model family.

AdamW with linear warmup and cosine decay, gradient clipping, optional EMA of
the weights, mixed precision on CUDA, transposition augmentation for MIDI.
Budgets: ``train.max_steps``, ``train.max_minutes``, early stopping on
validation (``train.patience``). Checkpoints ``last``/``best`` and a milestone
every ``train.milestone_minutes``; a run resumes by itself from
``checkpoints/last.pt`` exactly: same step, optimizer, RNG states, and the same
batches (batches are a function of seed and step, see data/dataset.py).

The learning rate is a pure function of (step, elapsed time): cosine over
``train.decay_steps`` (default ``max_steps``), or over ``max_minutes`` when
time runs out first, so there is no scheduler state to drift on resume.

Under ``torchrun`` (WORLD_SIZE > 1) it runs DDP (gloo on CPU, nccl on CUDA);
rank 0 writes every file. What a process and a checkpoint hold is in ``tunelab.run.state``.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from tunelab.config import REFUSED, ConfigError, RunConfig, dump, model_config, to_dict
from tunelab.data.dataset import prefetch
from tunelab.data.store import load_datadir
from tunelab.kinds import kind_for
from tunelab.models import build_model, family_of
from tunelab.run import carry as carried
from tunelab.run.checkpoint import (
    CheckpointError,
    export_safetensors,
    load_checkpoint,
    newest_readable,
    rebuild_model,
    remove_stale_temps,
)
from tunelab.run.curves import RunLog, plot_run
from tunelab.run.state import Dist, Progress, Trainer, all_reduce, setup_dist


@dataclass
class TrainResult:
    status: str  # done | time_budget | early_stop | nan | interrupted | already_done
    step: int
    best_valid: float | None
    last_valid: float | None
    run_dir: Path
    message: str


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


def forward(net: nn.Module, x: torch.Tensor, y: torch.Tensor, label, state=None):
    """The model's outputs for the positions that have targets: y [B, N] holds the targets of
    x's last N positions (N < T when a window's head is context only, as for WaveNet).
    With a carried ``state`` (see tunelab/run/carry.py): ``(outputs, state after the window)``."""
    if state is not None:
        return net(x, label, state=state)
    if y.shape[1] == x.shape[1]:
        return net(x, label)
    return net(x, label, tail=y.shape[1])


@torch.no_grad()
def evaluate_loss(model: nn.Module, batches: list, loss_fn, d: Dist, amp_ctx) -> float:
    """Mean loss per scored target over fixed ``batches`` [(x, y, label)], sharded over ranks.

    Batches [(x, y, label, reset)] are consecutive windows with carried state: every rank
    runs them all in order, on its share of the rows (the global batch rule)."""
    was = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=d.device)
    carry = bool(batches) and len(batches[0]) == 4
    state = None
    for x, y, label, *reset in batches if carry else batches[d.rank :: d.world]:
        if carry:
            n = len(x) // d.world
            mine = slice(d.rank * n, (d.rank + 1) * n)
            x, y, reset = x[mine], y[mine], reset[0][mine].to(d.device)
            state = model.init_carry(n, d.device) if state is None else state
            state = carried.reset_rows(state, reset)
        x, y = x.to(d.device), y.to(d.device)
        with amp_ctx():
            out = forward(model, x, y, None if label is None else label.to(d.device), state)
        if carry:
            out, state = out
        loss_sum, count = loss_fn(out, y, x)
        total += torch.stack([loss_sum.double(), count.double()])
    model.train(was)
    all_reduce(total, d)
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


def train(cfg: RunConfig) -> TrainResult:
    """Train (or resume) the run described by ``cfg``; see the module docstring."""
    if not cfg.data:
        raise ConfigError("data=DATA_DIR is required (a directory made by `tunelab prepare`)")
    if not cfg.out:
        raise ConfigError("out=RUN_DIR is required (where checkpoints and logs go)")
    d = setup_dist(cfg.device)
    failed = True
    try:
        result = _train(cfg, d)
        failed = False
        return result
    finally:
        if d.world > 1 and dist.is_initialized():
            # After an error (rank 0 could not write a checkpoint, say) the other ranks wait
            # in another collective: a barrier here would hang; leaving lets torchrun end them.
            if not failed:
                dist.barrier()
            dist.destroy_process_group()


def _check(cfg: RunConfig) -> None:
    t = cfg.train
    for name in ("batch_size", "seq_len", "max_steps", "eval_every", "log_every"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
    if t.lr <= 0 or t.warmup < 0 or t.augment_transpose < 0 or not 0 <= t.ema < 1:
        raise ConfigError(
            "need train.lr > 0, train.warmup >= 0, augment_transpose >= 0, 0 <= ema < 1"
        )
    family = family_of(cfg.model)  # its MODELS row: the options the family supports
    if t.burn_in < 0 or (t.burn_in and (t.carry_state or not family.burn_in)):
        raise ConfigError(
            "train.burn_in must be >= 0, and 0 unless the family is token_rnn without "
            "train.carry_state (carried state already gives each window its context)"
        )
    if t.carry_state and not family.carry_state:
        raise ConfigError(f"train.carry_state: model family {cfg.model.family!r} carries no state")
    # A family without transpose_mix or piece_memory refused them when the config was read.
    if getattr(cfg.model, "transpose_mix", 0) < 0:
        raise ConfigError(REFUSED["transpose_mix"])
    if t.max_minutes is not None and t.max_minutes <= 0:
        raise ConfigError(
            f"train.max_minutes must be > 0 (or null for no time budget), got {t.max_minutes}"
        )


def _check_resume(ck: dict, cfg: RunConfig, kind, run_dir: Path) -> None:
    # The saved model section is read as load_run reads it: a key that a later version added
    # is absent from older checkpoints (it had its default), and runs saved before per-family
    # configs hold every family's keys (model_config keeps the family's). transpose_mix and
    # piece_memory only change scoring and sampling, never the weights: they may change.
    def weights_part(model: dict) -> dict:
        return {k: v for k, v in model.items() if k not in ("transpose_mix", "piece_memory")}

    try:
        saved = weights_part(to_dict(model_config(ck["config"]["model"])))
    except (ConfigError, KeyError, TypeError):
        saved = None  # not a model config this version reads
    if saved != weights_part(to_dict(cfg.model)):
        raise ConfigError(
            f"{run_dir} holds a run with another model config ({ck['config']['model']}); "
            "choose another out= or remove that run"
        )
    try:
        before = type(kind)(ck["meta"]).signature()
    except (KeyError, TypeError, ValueError):
        before = None
    if before != kind.signature():
        raise ConfigError(
            f"{run_dir} was trained on data with {before}, but {cfg.data} has "
            f"{kind.signature()}; choose another out= or data="
        )


def tokens_per_bar(data) -> float | None:
    """The data's tokens per bar: meta.json ``tokens_per_bar``, or for data prepared before it
    was recorded, the training pieces' tokens over their bars (4/4 assumed)."""
    if data.meta.get("tokens_per_bar"):
        return float(data.meta["tokens_per_bar"])
    spq = data.meta.get("steps_per_quarter")
    pieces = data.split("train").pieces
    steps = sum(p.get("steps", 0) for p in pieces)
    if not spq or not steps:
        return None
    return sum(p["length"] for p in pieces) / (steps / spq / 4)


def size_from_data(t, data) -> None:
    """Resolve ``train.seq_bars`` and ``train.batch_tokens`` against the data (in place):
    seq_len = clamp(round(seq_bars * tokens per bar), 16, seq_len); batch_size =
    round(batch_tokens / seq_len), the same on any number of processes (the global batch), so a
    run resumes on another number of processes with the same data order."""
    if t.seq_bars is not None:
        per_bar = tokens_per_bar(data)
        if not per_bar:
            raise ConfigError(
                f"train.seq_bars: {data.path} does not say how many tokens a bar holds "
                "(MIDI data with steps per piece is needed); set train.seq_len instead"
            )
        t.seq_len = int(min(t.seq_len, max(16, round(t.seq_bars * per_bar))))
    if t.batch_tokens is not None:
        t.batch_size = max(1, round(t.batch_tokens / t.seq_len))


def _train(cfg: RunConfig, d: Dist) -> TrainResult:
    _check(cfg)
    t = cfg.train
    run_dir = Path(cfg.out)
    data = load_datadir(cfg.data)
    size_from_data(t, data)
    if t.batch_size % d.world:
        raise ConfigError(
            f"train.batch_size={t.batch_size} is the global batch; it must be divisible by the "
            f"number of processes ({d.world}), e.g. train.batch_size={t.batch_size * d.world}"
        )
    try:
        kind = kind_for(cfg.model, data.meta, str(cfg.data))
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
    if t.carry_state and not carried.supports_carry(model):
        raise ConfigError(f"train.carry_state: model family {cfg.model.family!r} carries no state")
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
    pr = tr.progress

    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    # on CPU: RNG states must stay CPU tensors. A damaged last.pt falls back to the newest
    # readable milestone or best; checkpoints that exist but are all damaged stop the run.
    if d.main:
        remove_stale_temps(run_dir / "checkpoints")
    found = newest_readable(run_dir / "checkpoints")
    resumed = found is not None
    saved_last = resumed and found[0] == last_path
    if resumed:
        from_path, ck, problems = found
        if d.main and problems:
            print(
                "warning: " + "; ".join(problems) + f"\nresuming from {from_path} "
                f"(step {ck.get('step')}) instead; the damaged file is replaced at the next save",
                file=sys.stderr,
                flush=True,
            )
        _check_resume(ck, cfg, kind, run_dir)
        tr.restore(ck)
        pr = tr.progress
    if t.carry_state:  # the state after the last step taken (zeros at the start)
        try:
            fresh = model.init_carry(t.batch_size // d.world, d.device)
        except ValueError as e:
            raise ConfigError(f"train.carry_state: {e}") from e
        saved = tr.saved_carry and carried.take_rows(
            tr.saved_carry, fresh, d.rank, d.world, d.device
        )
        tr.carry = saved or fresh

    files = None
    if d.main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        dump(cfg, run_dir / "config.yaml")
        files = RunLog(run_dir, pr.step if resumed else None, t.tensorboard)
        if rf is not None:
            print(f"receptive field: {rf:,} inputs", flush=True)
    net = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None
        )

    if pr.step >= t.max_steps or (t.max_minutes and pr.elapsed >= 60 * t.max_minutes):
        msg = (
            f"{run_dir}: already trained to step {pr.step}, {pr.elapsed / 60:.1f} minutes "
            f"(train.max_steps={t.max_steps}, train.max_minutes={t.max_minutes})"
        )
        return _finish(cfg, files, run_dir, "already_done", pr, msg)

    # -- loop ------------------------------------------------------------------------
    bar = None
    if d.main and t.progress:
        from tunelab.progress import progress_bar

        bar = progress_bar(total=t.max_steps, initial=pr.step, unit="step", dynamic_ncols=True)
    status, msg = "done", ""
    batches = prefetch(batch_at, pr.step, t.num_workers)
    win_loss, win_n, win_t0 = 0.0, 0, time.perf_counter()
    win_targets = 0
    t_mark = time.perf_counter()
    model.train()
    try:
        while pr.step < t.max_steps:
            x, y, label, *reset = next(batches)
            x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
            if label is not None:
                label = label.to(d.device)
            lr = lr_at(cfg, pr.step, pr.elapsed)
            for g in tr.opt.param_groups:
                g["lr"] = lr
            state = None
            if t.carry_state:  # rows that start a piece start from a fresh state
                state = carried.reset_rows(tr.carry, reset[0].to(d.device))
            with tr.amp_ctx():
                out = forward(net, x, y, label, state)
            if state is not None:
                out, new_state = out
                tr.next_carry = carried.detach(new_state)  # gradients stop at the window edge
            loss_sum, count = kind.loss(out, y, x)
            loss = loss_sum / count.clamp(min=1)
            tr.opt.zero_grad(set_to_none=True)
            tr.scaler.scale(loss).backward()
            tr.scaler.unscale_(tr.opt)
            gnorm = nn.utils.clip_grad_norm_(model.parameters(), t.clip if t.clip > 0 else math.inf)
            # One collective per step: mean loss (NaN anywhere stops every rank), the scored
            # targets, and the wall time since the last step, so all ranks share one clock.
            now = time.perf_counter()
            stats = torch.stack(
                [loss.detach().float().cpu(), count.float().cpu(), torch.tensor(now - t_mark)]
            )
            loss_v, n_targets, dt = all_reduce(stats.to(d.device), d).tolist()
            loss_v, dt = loss_v / d.world, dt / d.world
            t_mark = now
            bad_grad = not tr.scaler.is_enabled() and not math.isfinite(float(gnorm))
            if not math.isfinite(loss_v) or bad_grad:
                status = "nan"
                what = (
                    f"loss is {loss_v}" if not math.isfinite(loss_v) else "gradient is not finite"
                )
                if not saved_last:  # (a flag, not exists(): every rank must agree)
                    tr.save(last_path)  # weights are still those of the last good step
                msg = (
                    f"stopped: {what} at step {pr.step + 1}; the weights were not updated. "
                    f"Last good checkpoint: {last_path}"
                    f"{' (step ' + str(_ckpt_step(last_path)) + ')' if d.main else ''}. "
                    "Try a lower train.lr, a smaller train.clip, or train.amp=false."
                )
                if files:
                    files.log({"step": pr.step + 1, "nan": True})
                break
            tr.update(pr.step)
            step = pr.step
            pr.elapsed += dt
            win_loss += loss_v
            win_n += 1
            win_targets += n_targets
            if bar is not None:
                speed = win_targets / max(1e-9, time.perf_counter() - win_t0)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_v:.3f}", tok_s=f"{speed:,.0f}", refresh=False)
            if files and (step % t.log_every == 0 or step == t.max_steps):
                sec = (time.perf_counter() - win_t0) / win_n
                files.log(
                    {
                        "step": step,
                        "loss": win_loss / win_n,
                        "lr": lr,
                        "grad_norm": float(gnorm),
                        "sec_per_step": sec,
                        "tokens_per_s": win_targets / win_n / sec,
                        "minutes": pr.elapsed / 60,
                    }
                )
            if step % t.log_every == 0:
                if bar is not None and t.max_minutes:  # ETA: whichever budget ends first
                    left = (
                        (60 * t.max_minutes - pr.elapsed) * win_n / (time.perf_counter() - win_t0)
                    )
                    bar.total = max(step + 1, min(t.max_steps, step + int(left)))
                win_loss, win_n, win_targets, win_t0 = 0.0, 0, 0, time.perf_counter()
            out_of_time = t.max_minutes is not None and pr.elapsed >= 60 * t.max_minutes
            if step % t.eval_every == 0 or step == t.max_steps or out_of_time:
                improved = False
                if valid:  # an empty valid split: only `last` is kept
                    judge = model if tr.ema is None else tr.ema
                    pr.last_valid = evaluate_loss(judge, valid, kind.loss, d, tr.amp_ctx)
                    tr.valid_step = step
                    improved = pr.best_valid is None or pr.last_valid < pr.best_valid
                    if improved:
                        pr.best_valid, pr.bad_evals = pr.last_valid, 0
                    else:
                        pr.bad_evals += 1
                    if files:
                        files.log(
                            {
                                "step": step,
                                "valid_loss": pr.last_valid,
                                "best_valid": pr.best_valid,
                                **kind.valid_figures(pr.last_valid),
                            }
                        )
                    if bar is not None:
                        bar.write(
                            f"step {step}: valid loss {pr.last_valid:.4f} (best {pr.best_valid:.4f})"
                        )
                if improved:
                    tr.save(best_path)
                tr.save(last_path)
                saved_last = True
                if files:
                    files.preview(kind, model if tr.ema is None else tr.ema, step, d.device)
                if t.patience and pr.bad_evals >= t.patience:
                    status = "early_stop"
                    msg = f"early stop: no improvement in {t.patience} evaluations"
                    break
            if pr.next_milestone is not None and pr.elapsed >= pr.next_milestone:
                tr.save(run_dir / "checkpoints" / f"milestone-{step:08d}.pt")
                pr.next_milestone += 60 * t.milestone_minutes
            if out_of_time:
                status, msg = "time_budget", f"time budget of {t.max_minutes} minutes used"
                break
    except KeyboardInterrupt:
        status, msg = "interrupted", f"interrupted at step {pr.step}; rerun the command to resume"
        if d.world == 1:  # under DDP the other ranks may be gone; keep the last eval's
            tr.save(last_path)
    finally:
        batches.close()
        if bar is not None:
            bar.close()
    if status == "done":
        msg = f"reached train.max_steps={t.max_steps}"
    return _finish(cfg, files, run_dir, status, pr, msg)


def _ckpt_step(path: Path) -> int | str:
    try:
        return load_checkpoint(path)["step"]
    except Exception:
        return "?"


def _finish(cfg, files, run_dir, status, pr: Progress, msg) -> TrainResult:
    """Rank 0: plots, safetensors export of the best weights, close the logs."""
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
