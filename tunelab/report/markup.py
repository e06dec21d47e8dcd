"""The report's HTML pieces: escaping (every value from a user's file goes through ``e``),
number formatting, tables and image tags, and a JSON reader that never raises."""

from __future__ import annotations

import html
import json
from pathlib import Path


def e(x) -> str:
    """Escaped text of any value (quotes too: safe inside attributes)."""
    return html.escape(str(x), quote=True)


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) > 6 and all(isinstance(x, int | float) for x in v):
        return "[" + ", ".join(f"{x:.2g}" for x in v) + "]"
    return str(v)


def num(v, spec: str) -> str:
    """``format(v, spec)``, or str(v) for a value that is not a number (odd log lines)."""
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def table(rows, head=None, cls=None) -> str:
    """rows: [(cell, ...)] of already-escaped HTML strings."""
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
    return "".join(out) + "</table>"


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def img(asset: Path | None, alt: str) -> str:
    if asset is None:
        return ""
    return f'<img src="assets/{asset.name}" alt="{e(alt)}">'
