"""Progress bars that suit where the output goes.

On a terminal: a tqdm bar redrawn in place. Anywhere else (a log file, a pipe, CI): tqdm
would write a carriage-return redraw for every update, hundreds of kilobytes in a few
minutes, so ``progress_bar`` returns a ``PlainProgress`` instead, which prints one plain line
every ``TUNELAB_PROGRESS_SECONDS`` seconds (default 10) with the same figures: count, total,
rate, the postfix (loss, speed) and the ETA. Both take the tqdm arguments the callers use.

The plain lines keep their cadence while nothing calls ``update`` (a long step, a validation
pass, a save): a daemon heartbeat thread prints the current line when none was printed for
``every`` seconds, with the description as the phase (``set_description("validating")``).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator

PLAIN_EVERY_S = 10.0  # seconds between plain progress lines (TUNELAB_PROGRESS_SECONDS)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def progress_bar(iterable: Iterable | None = None, **kwargs):
    """A tqdm bar on a terminal (stderr), else a ``PlainProgress``; same arguments."""
    if _is_terminal(sys.stderr):
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    return PlainProgress(iterable, **kwargs)


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class PlainProgress:
    """tqdm's surface (update, set_postfix, write, close, total, iteration) as plain lines:
    ``desc: n/total unit (pct) | rate unit/s | key=value ... | elapsed m:ss, ETA m:ss``."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: float | None = None,
        initial: float = 0,
        desc: str | None = None,
        unit: str = "it",
        unit_scale: bool = False,
        every: float | None = None,
        file=None,
        **_ignored,  # dynamic_ncols, leave, ...: drawing options with no plain meaning
    ):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.unit_scale = unit_scale
        if every is None:
            every = float(os.environ.get("TUNELAB_PROGRESS_SECONDS", PLAIN_EVERY_S))
        self.every = every
        self.file = file
        self.postfix: dict = {}
        self.ends_by: float | None = None  # a perf_counter() time the count ends by at the latest
        self.t0 = self.last = time.perf_counter()
        self.start_n = initial
        self.printed: tuple = (initial, total, desc)  # the figures of the last line
        self.closed = False
        # The heartbeat prints from its own thread: printing and the figures go under one lock.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        if self.every > 0:  # (every=0: a line at every update, nothing to keep up)
            threading.Thread(
                target=_heartbeat, args=(weakref.ref(self), self._stop), daemon=True
            ).start()

    def _out(self, text: str) -> None:
        with self._lock:
            print(text, file=self.file or sys.stderr, flush=True)

    def __iter__(self) -> Iterator:
        try:
            for x in self.iterable or ():
                yield x
                self.update(1)
        finally:  # (also when the loop over it is left early: the heartbeat stops)
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, refresh: bool = True, **kv) -> None:
        self.postfix = kv

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def write(self, text: str) -> None:
        self._out(text)

    def update(self, k: float = 1) -> None:
        with self._lock:
            self.n += k
            self._beat(time.perf_counter())

    def _beat(self, now: float) -> None:
        """Print the current line if none was printed for ``every`` seconds (under the lock)."""
        if not self.closed and now - self.last >= self.every:
            self.last, self.printed = now, (self.n, self.total, self.desc)
            self._out(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The current state as one line (what is printed every few seconds)."""
        now = now or time.perf_counter()
        elapsed = now - self.t0
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        done = f"{self._num(self.n)}"
        left = None  # seconds: at this rate, or what a time limit (ends_by) leaves if sooner
        if self.total:
            done += f"/{self._num(self.total)} {self.unit} ({100 * self.n / self.total:.0f}%)"
            if rate > 0:
                left = (self.total - self.n) / rate
        else:
            done += f" {self.unit}"
        if self.ends_by is not None:
            left = min(math.inf if left is None else left, self.ends_by - now)
        eta = "" if left is None else f", ETA {_clock(left)}"
        parts = [f"{self.desc}: {done}" if self.desc else done, f"{self._num(rate)} {self.unit}/s"]
        if self.postfix:
            parts.append(" ".join(f"{k}={v}" for k, v in self.postfix.items()))
        parts.append(f"elapsed {_clock(elapsed)}{eta}")
        return " | ".join(parts)

    def _num(self, x: float) -> str:
        if self.unit_scale and abs(x) >= 1000:
            for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
                if abs(x) >= div:
                    return f"{x / div:.1f}{suffix}"
        return f"{x:,.0f}" if abs(x) >= 10 or float(x).is_integer() else f"{x:.2f}"

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if not self.closed:
                self.closed = True
                # The final figures, unless just printed (a count, total or phase since)
                if (self.n, self.total, self.desc) != self.printed:
                    self._out(self.line())


def _heartbeat(ref: weakref.ref, stop: threading.Event) -> None:
    """The heartbeat thread of a ``PlainProgress``: wakes when its next line is due and prints
    it unless ``update`` did. Holds the bar weakly: a bar dropped without close() ends it too."""
    while True:
        bar = ref()
        if bar is None or bar.closed:
            return
        with bar._lock:
            now = time.perf_counter()
            bar._beat(now)
            wait = max(0.01, bar.last + bar.every - now)
        del bar  # (not held while waiting)
        if stop.wait(wait):
            return
