"""A crash-isolating process pool for per-file work (MIDI and audio prepare).

``multiprocessing.Pool`` waits forever for the result of a worker that died (a
parser or decoder crashing on a hostile file). Here a broken pool is rebuilt and
the files it held are retried alone, so a crash costs only the file that caused it.
A worker stuck on one file (a decoder looping on a hostile header) is killed after
``FILE_TIMEOUT_S`` by SIGALRM's default action, which works even inside C code; to
the pool that is a crash, so that file alone is rejected.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

FILE_TIMEOUT_S = 600  # per file: hours of audio decode and stretch well inside it


def _apply(work: Callable, chunk: list, timeout_s: int = FILE_TIMEOUT_S) -> list:
    out = []
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the default action ends the process
    for job in chunk:
        signal.alarm(timeout_s)
        out.append(work(job))
    signal.alarm(0)
    return out


def run_isolated(
    jobs: list, workers: int, work: Callable, chunk: int = 1, timeout_s: int = FILE_TIMEOUT_S
) -> Iterator[tuple[int, dict]]:
    """Yield ``work(job)`` = (i, result) for every job, in completion order.

    A job is a tuple ``(i, path, ...)``. ``workers`` > 1: a process pool with a
    bounded number of chunks of ``chunk`` jobs in flight (bounded memory; chunks
    amortise the cost of a round trip when one job is quick). The jobs of a chunk
    whose worker crashed are retried one by one; a job that crashes alone yields
    ``(i, {"status": "rejected", "key": "crashed", "reason": ...})``; so does a job that
    runs past ``timeout_s`` seconds.
    ``workers`` <= 1: in this process, with no crash isolation.
    """
    if workers <= 1:
        yield from map(work, jobs)
        return
    ctx = get_context("fork")
    pending = deque(jobs[a : a + chunk] for a in range(0, len(jobs), chunk))
    suspects: list = []
    while pending:
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            inflight: dict = {}
            broken = False
            while (pending or inflight) and not broken:
                while pending and len(inflight) < 2 * workers:
                    part = pending.popleft()
                    inflight[ex.submit(_apply, work, part, timeout_s)] = part
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    part = inflight.pop(fut)
                    try:
                        yield from fut.result()
                    except BrokenProcessPool:
                        broken = True
                        suspects.extend(part)
            for part in inflight.values():
                suspects.extend(part)
    for job in suspects:  # alone in a fresh process each: a crash now is this file's own
        with ProcessPoolExecutor(1, mp_context=ctx) as ex:
            try:
                yield ex.submit(_apply, work, [job], timeout_s).result()[0]
            except BrokenProcessPool:
                reason = (
                    f"{Path(job[1]).name}: the worker process crashed on this file "
                    f"(or ran past {timeout_s} s)"
                )
                yield job[0], {"status": "rejected", "key": "crashed", "reason": reason}
