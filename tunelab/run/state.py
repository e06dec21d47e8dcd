"""What one training process holds: its place in the distributed world, and the state of the
run that every checkpoint saves whole (model, EMA, optimizer, gradient scaler, progress, RNG
streams, carried state), with the step that changes weights and step counter together
(``Trainer.backward_and_step``).

``tunelab.train`` runs the loop over these; nothing here reads data or knows a model family.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from tunelab.config import RunConfig, to_dict
from tunelab.run import carry as carried
from tunelab.run.checkpoint import record_checkpoint, save_checkpoint


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_dist(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:  # plain "cuda": this process's GPU (set_device needs an index)
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return Dist(rank, world, local_rank, dev)


def all_reduce(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        dist.all_reduce(t)
    return t


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    p = s["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only; biases, norms and embeddings train freely."""
    decay, free = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name else free).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


@dataclass
class Progress:
    """Where a run stands: saved whole in every checkpoint, restored whole on resume."""

    step: int = 0
    # Wall seconds spent in `train` (summed over the run's sessions, set-up, validation and
    # saving included): what train.max_minutes counts
    elapsed: float = 0.0
    best_valid: float | None = None
    last_valid: float | None = None
    bad_evals: int = 0  # validations in a row without improvement
    next_milestone: float | None = None  # elapsed seconds of the next milestone checkpoint
    # Seconds the last validation and its saves took (or an estimate before the first): the
    # time the loop keeps for the final one under a time budget
    final_seconds: float | None = None
    # Wall seconds of the last training step: a resumed run that has no time left for one more
    # step and the final saves stops after set-up instead of overrunning by a step
    step_seconds: float | None = None

    @classmethod
    def restore(cls, ck: dict) -> Progress:
        # final_seconds and step_seconds are only measurements: checkpoints written before they
        # existed lack them (they are measured again); any other field missing is an error
        optional = ("final_seconds", "step_seconds")
        return cls(
            **{f.name: ck[f.name] for f in fields(cls) if f.name in ck or f.name not in optional}
        )


def forward(net: nn.Module, x: torch.Tensor, y: torch.Tensor, label, state=None):
    """The model's outputs for the positions that have targets: y [B, N] holds the targets of
    x's last N positions (N < T when a window's head is context only, as for WaveNet).
    With a carried ``state`` (see tunelab/run/carry.py): ``(outputs, state after the window)``."""
    if state is not None:
        return net(x, label, state=state)
    if y.shape[1] == x.shape[1]:
        return net(x, label)
    return net(x, label, tail=y.shape[1])


@dataclass
class Step:
    """What one training step measured: the figures every rank shares (one collective)."""

    loss: float  # mean loss over the ranks
    targets: float  # scored targets, summed over the ranks
    grad_norm: torch.Tensor  # the gradient norm before clipping
    problem: str | None  # why the weights were not updated ("loss is nan", ...); None: they were


@contextlib.contextmanager
def defer_interrupt():
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


class Trainer:
    """The pieces of one run that a checkpoint holds: model, EMA, optimizer, scaler, progress."""

    def __init__(self, cfg: RunConfig, d: Dist, model: nn.Module, meta: dict):
        t = cfg.train
        self.cfg, self.d, self.model, self.meta = cfg, d, model, meta
        self.ema = copy.deepcopy(model).requires_grad_(False) if t.ema > 0 else None
        self.opt = torch.optim.AdamW(
            param_groups(model, t.weight_decay), lr=t.lr, betas=tuple(t.betas)
        )
        use_amp = t.amp and d.device.type == "cuda"
        bf16 = use_amp and torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.use_amp = use_amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not bf16)
        first = 60 * t.milestone_minutes if t.milestone_minutes > 0 else None
        self.progress = Progress(next_milestone=first)
        self.valid_step: int | None = None  # the step progress.last_valid was measured at
        # Carried state (train.carry_state): this rank's rows, and the state the step being
        # applied produced (it becomes ``carry`` together with the weights, in update()).
        self.carry, self.next_carry, self.saved_carry = None, None, None
        self.clock = time.perf_counter()  # when the last step ended (see start_clock)

    @property
    def judge(self) -> nn.Module:
        """The weights that are validated, previewed and exported: the EMA when one is kept."""
        return self.model if self.ema is None else self.ema

    def amp_ctx(self):
        if not self.use_amp:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def restore(self, ck: dict) -> None:
        self.model.load_state_dict(ck["model"])
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.progress = Progress.restore(ck)
        t = self.cfg.train
        if t.milestone_minutes <= 0:  # milestones switched off since the last session
            self.progress.next_milestone = None
        elif self.progress.next_milestone is None:
            self.progress.next_milestone = self.progress.elapsed + 60 * t.milestone_minutes
        # Data order is a function of the step alone; only per-process streams (dropout)
        # live here. Rank r takes saved state r; a rank that did not exist before keeps its
        # fresh seed, moved on by the step so it does not replay the first session's masks.
        if self.d.main and len(ck["rng"]) != self.d.world:
            print(
                f"note: saved by {len(ck['rng'])} processes, resuming on {self.d.world}: the "
                "same batches (the global batch is split by rank); per-process random streams "
                "(dropout) of new ranks start afresh",
                file=sys.stderr,
                flush=True,
            )
        if self.d.rank < len(ck["rng"]):
            set_rng_state(ck["rng"][self.d.rank])
        else:
            torch.manual_seed(hash((self.cfg.seed, self.d.rank, self.progress.step)) % 2**63)
        self.saved_carry = ck.get("carry")

    def save(self, path: Path) -> None:
        """Every rank joins (RNG states are gathered); rank 0 writes, atomically."""
        rng = [rng_state()]
        if self.d.world > 1:
            rng = [None] * self.d.world
            dist.all_gather_object(rng, rng_state())
        carry = None if self.carry is None else carried.gather_rows(self.carry, self.d.world)
        if not self.d.main:
            return
        save_checkpoint(
            path,
            {
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                **asdict(self.progress),
                "rng": rng,
                "carry": carry,  # global rows of the carried state (None: not carrying)
                "config": to_dict(self.cfg),
                "meta": self.meta,
            },
        )
        p = self.progress  # the valid loss belongs to these weights only if measured now
        record_checkpoint(path, p.step, p.last_valid if self.valid_step == p.step else None)

    def start_carry(self, fresh) -> None:
        """Carry state from here on (train.carry_state): the resumed checkpoint's rows of this
        rank when they fit ``fresh`` (a zero ``init_carry`` state of this rank's batch), else
        ``fresh``: the state after the last step taken."""
        d = self.d
        saved = self.saved_carry and carried.take_rows(
            self.saved_carry, fresh, d.rank, d.world, d.device
        )
        self.carry = saved or fresh

    def window_state(self, reset: torch.Tensor | None = None):
        """The state a training window starts from: the carried state with the rows of windows
        that start a piece (reset BoolTensor[B]) zeroed; None when not carrying state."""
        if not self.cfg.train.carry_state:
            return None
        return carried.reset_rows(self.carry, reset.to(self.d.device))

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def start_clock(self, since: float | None = None) -> None:
        """The wall time still to add to ``progress.elapsed`` counts from ``since``
        (a ``time.perf_counter()`` reading; default now)."""
        self.clock = time.perf_counter() if since is None else since

    def tick(self) -> float:
        """Add the wall time since the last step or tick to ``progress.elapsed`` (averaged over
        the ranks, one collective: every rank calls it, and all agree on the budget) and return
        the elapsed seconds."""
        now = time.perf_counter()
        dt = now - self.clock
        if self.d.world > 1:
            dt = float(all_reduce(torch.tensor([dt], device=self.d.device), self.d)) / self.d.world
        self.clock = now
        self.progress.elapsed += dt
        return self.progress.elapsed

    def backward_and_step(self, loss: torch.Tensor, count: torch.Tensor, new_carry=None) -> Step:
        """One training step from this rank's mean ``loss`` (a scalar with gradients) over
        ``count`` scored targets; ``new_carry``: the carried state after this window.

        Gradients (scaled under float16 AMP), clipping at ``train.clip``, then one collective
        for what every rank must agree on: the mean loss, the targets and the wall time since
        the last step. A loss (on any rank) or gradient that is not finite leaves the weights
        as they were, with the reason in ``Step.problem``; otherwise the update (optimizer,
        carried state, EMA, step counter; see update) and the elapsed time.
        """
        d, clip = self.d, self.cfg.train.clip
        if new_carry is not None:
            self.next_carry = carried.detach(new_carry)  # gradients stop at the window edge
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        gnorm = nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else math.inf)
        # One collective per step: mean loss (NaN anywhere stops every rank), the scored
        # targets, and the wall time since the last step, so all ranks share one clock.
        now = time.perf_counter()
        stats = torch.stack(
            [loss.detach().float().cpu(), count.float().cpu(), torch.tensor(now - self.clock)]
        )
        loss_v, targets, dt = all_reduce(stats.to(d.device), d).tolist()
        loss_v, dt = loss_v / d.world, dt / d.world
        self.clock = now
        problem = None
        if not math.isfinite(loss_v):
            problem = f"loss is {loss_v}"
        elif not self.scaler.is_enabled() and not math.isfinite(float(gnorm)):
            problem = "gradient is not finite"  # (a float16 scaler skips such steps itself)
        if problem is None:
            self.update(self.progress.step)
            self.progress.elapsed += dt
        return Step(loss_v, targets, gnorm, problem)

    @torch.no_grad()
    def valid_loss(self, batches: list, loss_fn) -> float:
        """The judged weights' mean loss per scored target over fixed ``batches`` [(x, y,
        label)], sharded over ranks; ``loss_fn(out, y, x) -> (loss_sum, count)``.

        Batches [(x, y, label, reset)] are consecutive windows with carried state: every rank
        runs them all in order, on its share of the rows (the global batch rule)."""
        model, d = self.judge, self.d
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
            label = None if label is None else label.to(d.device)
            with self.amp_ctx():
                out = forward(model, x, y, label=label, state=state)
            if carry:
                out, state = out
            loss_sum, count = loss_fn(out, y, x)
            total += torch.stack([loss_sum.double(), count.double()])
        model.train(was)
        all_reduce(total, d)
        return float(total[0] / total[1]) if total[1] > 0 else float("nan")

    def note_valid(self, loss: float) -> bool:
        """Record a validation loss of the current weights; True when it is the best yet."""
        p = self.progress
        p.last_valid, self.valid_step = loss, p.step
        improved = p.best_valid is None or loss < p.best_valid
        if improved:
            p.best_valid, p.bad_evals = loss, 0
        else:
            p.bad_evals += 1
        return improved

    def save_milestone(self, folder: Path) -> None:
        """Every ``train.milestone_minutes`` of training: a checkpoint no later save replaces."""
        p = self.progress
        if p.next_milestone is not None and p.elapsed >= p.next_milestone:
            self.save(folder / f"milestone-{p.step:08d}.pt")
            p.next_milestone += 60 * self.cfg.train.milestone_minutes

    def update(self, step: int) -> None:
        """Optimizer step and EMA, held together against Ctrl-C (see defer_interrupt)."""
        t = self.cfg.train
        with defer_interrupt():  # a Ctrl-C here would save new weights with the old step
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.next_carry is not None:
                self.carry, self.next_carry = self.next_carry, None
            if self.ema is not None:
                decay = min(t.ema, (1 + step) / (10 + step))  # short warmup of the average
                with torch.no_grad():
                    torch._foreach_lerp_(
                        list(self.ema.parameters()), list(self.model.parameters()), 1 - decay
                    )
                    for be, bm in zip(self.ema.buffers(), self.model.buffers(), strict=True):
                        be.copy_(bm)
            self.progress.step += 1
