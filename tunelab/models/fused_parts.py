"""One stream on several cores: what a fused kernel needs to split each layer's matrix work
across threads (``wavenet_gen.FusedWaveNet(..., parts=2)``).

Each of P threads ("parts") holds a slice of every matrix: rows of the layers whose outputs
it can finish alone, columns of those whose partial sums it shares. A part writes its
partial sums to an exchange buffer, then meets the others at a barrier: a counter per part
on its own cache line, stored with release and spun on with acquire ordering (numba has no
atomics, so these are LLVM's, through ``@intrinsic``). Every part then adds the partial sums
in the same order, so all parts hold bit-identical activations with no second exchange.

A spinning part yields the core after a while, so a part whose partner was descheduled (a
busy machine) costs time slices, not a deadlock; one that waits PATIENCE_S (its partner
failed) abandons the call, and so do the others, so an error never leaves a thread spinning.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LINE = 16  # int64s per counter: 128 bytes apart, so two parts' counters never share a line
SPINS = 4096  # spins on the counter before each sched_yield


def _item_pointer(context, builder, sig, args):
    aryty = sig.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]])


@intrinsic
def load_acquire(typingctx, arr, i):
    """arr[i] (int64, 1-d), read with acquire ordering and never hoisted out of a loop."""

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_item_pointer(context, builder, sig, args), "acquire", 8)

    return types.int64(arr, i), codegen


@intrinsic
def store_release(typingctx, arr, i, v):
    """arr[i] = v (int64, 1-d) with release ordering: every earlier write is visible first."""

    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig, args)
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return types.none(arr, i, v), codegen


@intrinsic
def sched_yield(typingctx):
    """POSIX sched_yield(): give the core to another thread."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield"
        )
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def cycles(typingctx):
    """The CPU's cycle counter (LLVM readcyclecounter; the TSC on x86): cheap per-part timing."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter"
        )
        return builder.call(fn, [])

    return types.int64(), codegen


@njit(cache=True, inline="always")
def barrier(sync, part, epoch):
    """Wait until every part has reached barrier number epoch + 1; returns epoch + 1, or -1
    when the call was abandoned: a part waited longer than the patience new_sync set (its
    partner failed or vanished) and every part returns instead of spinning forever.

    sync: ``new_sync(P)``, fresh for each call. Partial sums written before the barrier are
    visible to every part after it.
    """
    e = epoch + 1
    parts = sync.shape[0] // LINE - 1
    if parts == 1:  # alone (blocks of streams share nothing): nothing to wait for
        return e
    store_release(sync, part * LINE, e)
    for q in range(parts):
        spins, since = 0, 0
        while load_acquire(sync, q * LINE) < e:
            spins += 1
            if spins >= SPINS:
                if load_acquire(sync, parts * LINE) != 0:
                    return -1
                if since == 0:
                    since = cycles()
                elif cycles() - since > sync[parts * LINE + 1]:
                    store_release(sync, parts * LINE, 1)
                    return -1
                sched_yield()
                spins = 0
    return e


def busy(cores: int) -> bool:
    """Whether other work holds half the cores or more, so that a split would wait on them:
    parts that spin at a barrier every layer need every core they use (with one core taken
    by another process, one stream fell 3x below its unsplit speed). Read from the kernel's
    count of runnable tasks (/proc/loadavg, the smallest of a few looks 2 ms apart, less
    this thread); where there is none, assume a quiet machine."""
    others = []
    for _ in range(5):
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                others.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return False
        time.sleep(0.002)
    return min(others) >= cores / 2


PATIENCE_S = 60.0  # how long a part waits at a barrier before the call is abandoned
_TICKS_PER_S: list[float] = []


@njit(cache=True)
def _ticks():
    return cycles()


def ticks_per_second() -> float:
    """The cycle counter's rate, measured once per process (50 ms of sleep)."""
    if not _TICKS_PER_S:
        c0, t0 = _ticks(), time.perf_counter()
        time.sleep(0.05)
        _TICKS_PER_S.append((_ticks() - c0) / (time.perf_counter() - t0))
    return _TICKS_PER_S[0]


def new_sync(parts: int, patience_s: float = PATIENCE_S) -> np.ndarray:
    """The barrier state for one call of a kernel run by ``parts`` threads: a counter per
    part on its own lines, then the abandoned flag and the patience in counter ticks."""
    sync = np.zeros((parts + 1) * LINE, np.int64)
    if parts > 1:
        sync[parts * LINE + 1] = int(patience_s * ticks_per_second())
    return sync


def abandoned(sync: np.ndarray) -> bool:
    """Whether a part gave up waiting during the call that used sync."""
    return bool(sync[-LINE])


def split(t: torch.Tensor, dim: int, parts: int) -> torch.Tensor:
    """t cut along dim into ``parts`` equal slices, zero-padded at the end, stacked first:
    [..., n, ...] -> [parts, ..., ceil(n / parts), ...]. The padding rows or columns are
    zeros, so they add exact zeros to every sum they enter."""
    n = t.shape[dim]
    each = -(-n // parts)
    pad = [0, 0] * (t.dim() - 1 - dim % t.dim()) + [0, each * parts - n]
    return torch.stack(torch.nn.functional.pad(t, pad).split(each, dim=dim))
