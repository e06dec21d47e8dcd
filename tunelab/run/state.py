"""What one training process holds: its place in the distributed world, and the state of the
run that every checkpoint saves whole (model, EMA, optimizer, gradient scaler, progress, RNG
streams, carried state), with the update that changes weights and step counter together.

``tunelab.train`` runs the loop over these; nothing here reads data or knows a model family.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import signal
import sys
import threading
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
    elapsed: float = 0.0  # seconds of training (summed over the run's sessions)
    best_valid: float | None = None
    last_valid: float | None = None
    bad_evals: int = 0  # validations in a row without improvement
    next_milestone: float | None = None  # elapsed seconds of the next milestone checkpoint

    @classmethod
    def restore(cls, ck: dict) -> Progress:
        return cls(**{f.name: ck[f.name] for f in fields(cls)})


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
