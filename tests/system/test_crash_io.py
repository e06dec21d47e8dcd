"""Crash safety of `tunelab prepare`, and full or read-only disks for prepare and train.

A full disk is simulated with RLIMIT_FSIZE in the child (writes past the limit fail with
EFBIG, the same OSError path as ENOSPC; works for any user). A read-only output is a real
read-only bind mount inside a private user+mount namespace (`unshare -r -m`), since chmod
does not stop root; that test is skipped where namespaces are not allowed.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.data.midi.test_prepare import run as prepare_in_process
from tests.data.midi.test_prepare import tune, write_tune
from tests.system.test_crash import tunelab
from tests.test_train import make_datadir
from tunelab.cli import app
from tunelab.data.store import SPLITS, load_datadir
from tunelab.run.checkpoint import load_checkpoint


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def same_data(a: Path, b: Path) -> None:
    """Two data directories hold the same arrays, indexes, statistics and meta."""
    names = [f"{s}.{x}" for s in SPLITS for x in ("bin", "index.jsonl")] + ["meta.json"]
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_prepare_killed_at_random_moments(tmp_path):
    rng = random.Random(5)
    src = tmp_path / "src"
    for i in range(12):
        write_tune(src / f"t{i:02d}.mid", tune(i))
    out = tmp_path / "data"
    t0 = time.perf_counter()
    proc = tunelab("prepare", str(src), "--out", str(out), "--workers", "1")
    assert proc.wait(60) == 0, proc.communicate()
    took = time.perf_counter() - t0
    good = snapshot(out)
    for i in range(12, 30):  # more files: the rerun rewrites the whole set
        write_tune(src / f"t{i:02d}.mid", tune(i))
    ref = tmp_path / "ref"
    # the command's own defaults: the grid and encoding the collection calls for
    assert prepare_in_process([src], ref, steps_per_quarter="auto", encoding="auto") == 0
    for _ in range(4):  # seeded: kills land before, during and after the writes
        proc = tunelab("prepare", str(src), "--out", str(out), "--workers", "1", "--overwrite")
        time.sleep(rng.uniform(0.3, 1.0) * took)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = snapshot(out)  # the earlier data set whole, or (killed late) the new one whole
        if now != good:
            same_data(out, ref)
        load_datadir(out)
    proc = tunelab("prepare", str(src), "--out", str(out), "--workers", "1", "--overwrite")
    assert proc.wait(60) == 0, proc.communicate()
    same_data(out, ref)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past ``nbytes`` fail with EFBIG (Python ignores SIGXFSZ) inside the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _trained_ten_steps(tmp_path: Path) -> tuple[Path, list[str]]:
    """A tiny run trained to step 10 (a checkpoint there) and the `tunelab train` arguments
    that made it, less max_steps, to train it on."""
    data = make_datadir(tmp_path / "data")
    run = tmp_path / "run"
    args = [
        "train", "tiny", f"data={data}", f"out={run}", "train.eval_every=10",
        "train.progress=false", "train.tensorboard=false", "train.plots=false",
    ]  # fmt: skip
    assert CliRunner().invoke(app, [*args, "train.max_steps=10"]).exit_code == 0
    return run, args


def test_full_disk_train_keeps_last_checkpoint(tmp_path):
    run, args = _trained_ten_steps(tmp_path)
    last = run / "checkpoints" / "last.pt"
    with file_size_limit(last.stat().st_size // 2):
        r = CliRunner().invoke(app, [*args, "train.max_steps=20"])
    assert r.exit_code == 1, r.output
    assert f"cannot write checkpoint {run / 'checkpoints'}" in r.output
    assert "File too large" in r.output and "previous checkpoint" in r.output
    assert load_checkpoint(last)["step"] == 10  # the earlier checkpoint, intact
    assert not list((run / "checkpoints").glob(".*tmp*"))


def test_full_disk_prepare_keeps_earlier_data(tmp_path):
    src = tmp_path / "src"
    for i in range(6):
        write_tune(src / f"t{i}.mid", tune(i))
    out = tmp_path / "data"
    assert prepare_in_process([src], out) == 0
    good = snapshot(out)
    write_tune(src / "long.mid", tune(1) * 400)  # its tokens alone pass the limit
    with file_size_limit(20_000):
        r = CliRunner().invoke(
            app,
            [
                "prepare", str(src), "--out", str(out), "--workers", "1", "--overwrite",
                "--steps-per-quarter", "24", "--encoding", "steps",
            ],
        )  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "File too large" in r.output and str(out) in r.output.replace("\n", "")
    assert snapshot(out) == good
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _read_only(folder: Path, *args: str) -> subprocess.Popen:
    """`tunelab ARGS` with ``folder`` mounted read-only (private namespace; root cannot write)."""
    if subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True).returncode:
        pytest.skip("user/mount namespaces are not available here")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.Popen(
        ["unshare", "-r", "-m", "sh", "-c", script, str(folder), sys.executable, "-m", "tunelab"]
        + list(args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_read_only_output(tmp_path):
    if not shutil.which("unshare"):
        pytest.skip("unshare is not installed")
    src = tmp_path / "src"
    for i in range(6):
        write_tune(src / f"t{i}.mid", tune(i))
    box = tmp_path / "box"
    out = box / "data"
    assert prepare_in_process([src], out) == 0
    good = snapshot(box)
    proc = _read_only(box, "prepare", str(src), "--out", str(out), "--overwrite")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "Read-only file system" in err and str(box) in err
    assert snapshot(box) == good
    run = box / "run"
    proc = _read_only(box, "train", "tiny", f"data={out}", f"out={run}", "train.max_steps=2")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "Read-only file system" in err and str(run) in err
    assert snapshot(box) == good


def test_a_really_full_disk_during_training(tmp_path):
    """A real ENOSPC: the run lives on a tmpfs (private namespace) with room for the run as
    it is plus a little, not for another checkpoint."""
    if not shutil.which("unshare"):
        pytest.skip("unshare is not installed")
    if subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True).returncode:
        pytest.skip("user/mount namespaces are not available here")
    run, args = _trained_ten_steps(tmp_path)
    size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    after = tmp_path / "after"
    # mount a tmpfs over the run folder, put the run back into it, train, copy it out
    script = (
        'cp -a "$0" "$0.src" && mount -t tmpfs -o size=$1 tmpfs "$0" && cp -a "$0.src/." "$0/" '
        '&& shift 2 && "$@"; rc=$?; cp -a "$RUN/." "$AFTER/"; exit $rc'
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2]),
           "RUN": str(run), "AFTER": str(after)}  # fmt: skip
    after.mkdir()
    cmd = [sys.executable, "-m", "tunelab", *args, "train.max_steps=20"]
    proc = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", script, str(run), str(size + 48 * 1024), "x", *cmd],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "No space left on device" in proc.stderr and str(run) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert load_checkpoint(after / "checkpoints" / "last.pt")["step"] == 10  # intact
    assert not list((after / "checkpoints").glob(".*tmp*"))
