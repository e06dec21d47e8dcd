"""State carried across consecutive training windows (truncated backpropagation through time).

The loop knows nothing about a family's state except this contract: a model that supports
``train.carry_state`` has ``init_carry(batch_size, device)`` returning a pytree (nested
lists, tuples, dicts) of tensors with the batch on dim 0, where an all-zero row means "a
fresh start", and ``forward(x, label, state=state)`` returning ``(out, new_state)``. The
token RNNs carry their hidden states; the Transformer carries the keys and values of the
last window (its recurrence memory). Between steps the state is detached (gradients stop at
the window boundary), rows whose window starts a piece are zeroed, and in a checkpoint the
state is stored as global rows so a run resumes exactly, on any number of processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten


def supports_carry(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "init_carry", None))


def detach(state):
    return tree_map(lambda t: t.detach(), state)


def reset_rows(state, reset: torch.Tensor):
    """Zero the rows where ``reset`` (BoolTensor[B]) is True."""
    keep = ~reset

    def one(t: torch.Tensor) -> torch.Tensor:
        return t * keep.view(-1, *([1] * (t.dim() - 1))).to(t.dtype)

    return tree_map(one, state)


def gather_rows(state, world: int) -> list[torch.Tensor]:
    """The state's leaves as global rows (rank order), on the CPU. Every rank must call it."""
    leaves, _ = tree_flatten(state)
    out = []
    for t in leaves:
        if world > 1:
            parts = [torch.empty_like(t) for _ in range(world)]
            dist.all_gather(parts, t.contiguous())
            t = torch.cat(parts)
        out.append(t.detach().cpu())
    return out


def take_rows(leaves: list[torch.Tensor], template, rank: int, world: int, device):
    """The rows of this rank from saved global ``leaves``, shaped like ``template`` (a fresh
    ``init_carry`` state of this rank's batch); None when the saved state does not fit."""
    want, spec = tree_flatten(template)
    if len(leaves) != len(want):
        return None
    out = []
    for saved, t in zip(leaves, want, strict=True):
        n = t.shape[0]
        if saved.shape[0] != n * world or saved.shape[1:] != t.shape[1:]:
            return None
        out.append(saved[rank * n : (rank + 1) * n].to(device))  # dtype as saved: exact resume
    return tree_unflatten(out, spec)
