"""The crash-isolating pool: every job yields once, whatever its worker does (dies, hangs,
finishes), and a failure costs only the job that caused it."""

from __future__ import annotations

import os
import time

from tunelab.data.pool import run_isolated


def _stuck_on_one(job):
    i, path = job
    if path == "hang":
        time.sleep(120)  # in C, like a decoder looping on a hostile header
    return i, {"status": "accepted"}


def test_a_reader_stuck_on_one_file_costs_only_that_file():
    jobs = [(0, "a"), (1, "hang"), (2, "b"), (3, "c")]
    t0 = time.monotonic()
    got = dict(run_isolated(jobs, 2, _stuck_on_one, timeout_s=1))
    assert time.monotonic() - t0 < 60
    assert [got[i]["status"] for i in (0, 2, 3)] == ["accepted"] * 3
    assert got[1]["key"] == "crashed" and "ran past 1 s" in got[1]["reason"]


def _dies_on_one(job):
    i, path = job
    if path == "crash":
        os._exit(3)  # a parser segfault, as far as the pool can tell
    return i, {"status": "accepted", "pid": os.getpid()}


def test_a_dying_worker_in_a_chunk_costs_only_its_own_job():
    """The chunk-mates of the job that killed its worker are retried alone and accepted."""
    jobs = [(i, "crash" if i == 4 else f"f{i}.mid") for i in range(9)]
    got = list(run_isolated(jobs, 2, _dies_on_one, chunk=3))
    assert sorted(i for i, _ in got) == list(range(9))  # each job yields exactly once
    by = dict(got)
    assert by[4]["status"] == "rejected" and by[4]["key"] == "crashed"
    assert "crash: the worker process crashed" in by[4]["reason"]
    assert all(by[i]["status"] == "accepted" for i in range(9) if i != 4)
    assert all(by[i]["pid"] != os.getpid() for i in range(9) if i != 4)  # in workers


def test_one_worker_runs_in_this_process_in_order():
    jobs = [(i, f"f{i}") for i in range(5)]
    got = list(run_isolated(jobs, 1, _dies_on_one))
    assert [i for i, _ in got] == list(range(5))
    assert {r["pid"] for _, r in got} == {os.getpid()}
