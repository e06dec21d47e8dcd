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
rank 0 writes every file.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from tunelab.checkpoint import export_safetensors, load_checkpoint, save_checkpoint
from tunelab.config import ConfigError, RunConfig, dump, to_dict
from tunelab.curves import RunLog, plot_run
from tunelab.data.dataset import WindowSampler, eval_windows, prefetch, transpose_tables
from tunelab.data.store import load_datadir
from tunelab.models import build_model


@dataclass
class TrainResult:
    status: str  # done | time_budget | early_stop | nan | interrupted | already_done
    step: int
    best_valid: float | None
    last_valid: float | None
    run_dir: Path
    message: str


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_dist(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return _Dist(rank, world, local_rank, dev)


def _all_reduce(t: torch.Tensor, d: _Dist) -> torch.Tensor:
    if d.world > 1:
        dist.all_reduce(t)
    return t


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


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    p = s["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only; biases, norms and embeddings train freely."""
    decay, free = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name else free).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate_nll(
    model: nn.Module, windows: np.ndarray, batch_size: int, d: _Dist, amp_ctx
) -> float:
    """Mean next-token NLL (nats) over ``windows`` [N, L], sharded over ranks."""
    was = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=d.device)
    mine = windows[d.rank :: d.world]
    for i in range(0, len(mine), batch_size):
        w = torch.from_numpy(mine[i : i + batch_size]).to(d.device)
        with amp_ctx():
            logits = model(w[:, :-1])
        nll = F.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten(), reduction="sum")
        total += torch.stack([nll.double(), torch.tensor(w[:, 1:].numel(), device=d.device)])
    model.train(was)
    _all_reduce(total, d)
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


def train(cfg: RunConfig) -> TrainResult:
    """Train (or resume) the run described by ``cfg``; see the module docstring."""
    if not cfg.data:
        raise ConfigError("data=DATA_DIR is required (a directory made by `tunelab prepare`)")
    if not cfg.out:
        raise ConfigError("out=RUN_DIR is required (where checkpoints and logs go)")
    d = _setup_dist(cfg.device)
    try:
        return _train(cfg, d)
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


@contextlib.contextmanager
def _defer_interrupt():
    """Hold Ctrl-C until the block ends, so the weights and the step counter change
    together; the interrupt is then raised as usual. A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if caught:
        raise KeyboardInterrupt


def _check(cfg: RunConfig) -> None:
    t = cfg.train
    for name in ("batch_size", "seq_len", "max_steps", "eval_every", "log_every"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
    if t.lr <= 0 or t.warmup < 0 or t.augment_transpose < 0 or not 0 <= t.ema < 1:
        raise ConfigError(
            "need train.lr > 0, train.warmup >= 0, augment_transpose >= 0, 0 <= ema < 1"
        )
    if t.max_minutes is not None and t.max_minutes <= 0:
        raise ConfigError(
            f"train.max_minutes must be > 0 (or null for no time budget), got {t.max_minutes}"
        )


def _train(cfg: RunConfig, d: _Dist) -> TrainResult:
    _check(cfg)
    t = cfg.train
    run_dir = Path(cfg.out)
    data = load_datadir(cfg.data)
    meta = data.meta
    if "vocab_size" not in meta:
        raise ConfigError(f"{cfg.data}: meta.json has no vocab_size (kind={meta.get('kind')})")
    # Same initial weights on every rank (DDP also broadcasts them); per-rank dropout streams
    # are seeded right after.
    torch.manual_seed(cfg.seed)
    try:
        model = build_model(cfg.model, int(meta["vocab_size"])).to(d.device)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from e
    tables = None
    if t.augment_transpose > 0 and meta.get("kind") == "midi":
        from tunelab.data.midi import codec_from_meta

        tables = transpose_tables(codec_from_meta(meta), t.augment_transpose)
    try:
        sampler = WindowSampler(
            data.split("train").data, t.seq_len, t.batch_size, cfg.seed, d.rank, d.world, tables
        )
    except ValueError as e:
        raise ConfigError(f"{cfg.data} train split: {e}") from e
    valid = eval_windows(data.split("valid").data, t.seq_len, t.eval_batches * t.batch_size)

    torch.manual_seed(cfg.seed + d.rank)
    random.seed(cfg.seed + d.rank)
    np.random.seed((cfg.seed + d.rank) % 2**32)
    ema = copy.deepcopy(model).requires_grad_(False) if t.ema > 0 else None
    opt = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.lr, betas=tuple(t.betas))
    use_amp = t.amp and d.device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def amp_ctx():
        if not use_amp:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=amp_dtype)

    # -- resume ----------------------------------------------------------------------
    step, elapsed, best, last_valid, bad_evals = 0, 0.0, None, None, 0
    next_milestone = 60 * t.milestone_minutes if t.milestone_minutes > 0 else math.inf
    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    resumed = saved_last = last_path.exists()
    if resumed:
        ck = load_checkpoint(last_path)  # on CPU: RNG states must stay CPU tensors
        if ck["config"]["model"] != to_dict(cfg.model):
            raise ConfigError(
                f"{run_dir} holds a run with another model config ({ck['config']['model']}); "
                "choose another out= or remove that run"
            )
        if ck["meta"].get("vocab_size") != meta.get("vocab_size"):
            raise ConfigError(
                f"{run_dir} was trained on data with vocabulary {ck['meta'].get('vocab_size')}, "
                f"but {cfg.data} has {meta.get('vocab_size')}; choose another out= or data="
            )
        model.load_state_dict(ck["model"])
        if ema is not None and ck.get("ema") is not None:
            ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        step, elapsed, best = ck["step"], ck["elapsed"], ck["best_valid"]
        last_valid, bad_evals = ck["last_valid"], ck["bad_evals"]
        if t.milestone_minutes > 0:
            next_milestone = ck["next_milestone"] or elapsed + 60 * t.milestone_minutes
        if len(ck["rng"]) == d.world:
            _set_rng_state(ck["rng"][d.rank])

    files = None
    if d.main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        dump(cfg, run_dir / "config.yaml")
        files = RunLog(run_dir, step if resumed else None, t.tensorboard)
    net = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None
        )

    def checkpoint(path: Path) -> None:
        rng = [_rng_state()]
        if d.world > 1:
            rng = [None] * d.world
            dist.all_gather_object(rng, _rng_state())
        if not d.main:
            return
        save_checkpoint(
            path,
            {
                "model": model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "step": step,
                "elapsed": elapsed,
                "best_valid": best,
                "last_valid": last_valid,
                "bad_evals": bad_evals,
                "next_milestone": next_milestone if math.isfinite(next_milestone) else None,
                "rng": rng,
                "config": to_dict(cfg),
                "meta": meta,
            },
        )

    if step >= t.max_steps or (t.max_minutes and elapsed >= 60 * t.max_minutes):
        msg = (
            f"{run_dir}: already trained to step {step}, {elapsed / 60:.1f} minutes "
            f"(train.max_steps={t.max_steps}, train.max_minutes={t.max_minutes})"
        )
        return _finish(cfg, files, run_dir, "already_done", step, best, last_valid, msg)

    # -- loop ------------------------------------------------------------------------
    bar = None
    if d.main and t.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=t.max_steps, initial=step, unit="step", dynamic_ncols=True)
    status, msg = "done", ""
    batches = prefetch(sampler.batch, step, t.num_workers)
    win_loss, win_n, win_t0 = 0.0, 0, time.perf_counter()
    t_mark = time.perf_counter()
    tokens_per_step = t.batch_size * t.seq_len * d.world
    model.train()
    try:
        while step < t.max_steps:
            x, y = next(batches)
            x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
            lr = lr_at(cfg, step, elapsed)
            for g in opt.param_groups:
                g["lr"] = lr
            with amp_ctx():
                logits = net(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            gnorm = nn.utils.clip_grad_norm_(model.parameters(), t.clip if t.clip > 0 else math.inf)
            # One collective per step: mean loss (NaN anywhere stops every rank) and the
            # wall time since the last step, so all ranks share one clock for budgets.
            now = time.perf_counter()
            stats = torch.stack([loss.detach().float().cpu(), torch.tensor(now - t_mark)])
            loss_v, dt = (_all_reduce(stats.to(d.device), d) / d.world).tolist()
            t_mark = now
            bad_grad = not scaler.is_enabled() and not math.isfinite(float(gnorm))
            if not math.isfinite(loss_v) or bad_grad:
                status = "nan"
                what = (
                    f"loss is {loss_v}" if not math.isfinite(loss_v) else "gradient is not finite"
                )
                if not saved_last:  # (a flag, not exists(): every rank must agree)
                    checkpoint(last_path)  # weights are still those of the last good step
                msg = (
                    f"stopped: {what} at step {step + 1}; the weights were not updated. "
                    f"Last good checkpoint: {last_path}"
                    f"{' (step ' + str(_ckpt_step(last_path)) + ')' if d.main else ''}. "
                    "Try a lower train.lr, a smaller train.clip, or train.amp=false."
                )
                if files:
                    files.log({"step": step + 1, "nan": True})
                break
            with _defer_interrupt():  # a Ctrl-C here would save new weights with the old step
                scaler.step(opt)
                scaler.update()
                if ema is not None:
                    decay = min(t.ema, (1 + step) / (10 + step))  # short warmup of the average
                    with torch.no_grad():
                        torch._foreach_lerp_(
                            list(ema.parameters()), list(model.parameters()), 1 - decay
                        )
                        for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
                            be.copy_(bm)
                step += 1
            elapsed += dt
            win_loss += loss_v
            win_n += 1
            if bar is not None:
                bar.update(1)
                speed = tokens_per_step * win_n / max(1e-9, time.perf_counter() - win_t0)
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
                        "tokens_per_s": tokens_per_step / sec,
                        "minutes": elapsed / 60,
                    }
                )
            if step % t.log_every == 0:
                if bar is not None and t.max_minutes:  # ETA: whichever budget ends first
                    left = (60 * t.max_minutes - elapsed) * win_n / (time.perf_counter() - win_t0)
                    bar.total = max(step + 1, min(t.max_steps, step + int(left)))
                win_loss, win_n, win_t0 = 0.0, 0, time.perf_counter()
            out_of_time = t.max_minutes is not None and elapsed >= 60 * t.max_minutes
            if step % t.eval_every == 0 or step == t.max_steps or out_of_time:
                improved = False
                if len(valid):  # an empty valid split: only `last` is kept
                    last_valid = evaluate_nll(
                        model if ema is None else ema, valid, t.batch_size, d, amp_ctx
                    )
                    improved = best is None or last_valid < best
                    best, bad_evals = (last_valid, 0) if improved else (best, bad_evals + 1)
                    if files:
                        files.log({"step": step, "valid_loss": last_valid, "best_valid": best})
                    if bar is not None:
                        bar.write(f"step {step}: valid loss {last_valid:.4f} (best {best:.4f})")
                if improved:
                    checkpoint(best_path)
                checkpoint(last_path)
                saved_last = True
                if t.patience and bad_evals >= t.patience:
                    status = "early_stop"
                    msg = f"early stop: no improvement in {t.patience} evaluations"
                    break
            if elapsed >= next_milestone:
                checkpoint(run_dir / "checkpoints" / f"milestone-{step:08d}.pt")
                next_milestone += 60 * t.milestone_minutes
            if out_of_time:
                status, msg = "time_budget", f"time budget of {t.max_minutes} minutes used"
                break
    except KeyboardInterrupt:
        status, msg = "interrupted", f"interrupted at step {step}; rerun the command to resume"
        if d.world == 1:  # under DDP the other ranks may be gone; keep the last eval's
            checkpoint(last_path)
            saved_last = True
    finally:
        batches.close()
        if bar is not None:
            bar.close()
    if status == "done":
        msg = f"reached train.max_steps={t.max_steps}"
    return _finish(cfg, files, run_dir, status, step, best, last_valid, msg)


def _ckpt_step(path: Path) -> int | str:
    try:
        return load_checkpoint(path)["step"]
    except Exception:
        return "?"


def _finish(cfg, files, run_dir, status, step, best, last_valid, msg) -> TrainResult:
    """Rank 0: plots, safetensors export of the best weights, close the logs."""
    if files is not None:
        best_path = run_dir / "checkpoints" / "best.pt"
        if best_path.exists() and status != "nan":
            ck = load_checkpoint(best_path)
            export = build_model(ck["config"]["model"], int(ck["meta"]["vocab_size"]))
            export.load_state_dict(ck.get("ema") or ck["model"])
            meta = {"config": json.dumps(ck["config"]), "step": ck["step"]}
            export_safetensors(export, run_dir / "model.safetensors", meta)
        files.close()
        if cfg.train.plots:
            plot_run(run_dir)
    return TrainResult(status, step, best, last_valid, run_dir, msg)
