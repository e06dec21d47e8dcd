"""A data directory's tokens per bar: what ``train.seq_bars`` (windows sized in bars)
multiplies to give a window's length in tokens (``tunelab.train_checks.size_from_data``)."""

from __future__ import annotations


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
