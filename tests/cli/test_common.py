"""What every command shares: the one-line error exit, the wording of a failed write, and the
device name ``auto`` resolves to."""

from __future__ import annotations

import errno

import pytest
import torch
import typer

from tunelab.cli.common import device_name, fail, os_error


def test_fail_prints_one_error_line_and_exits_with_the_code(capsys):
    with pytest.raises(typer.Exit) as e:
        fail("no data in /x")
    assert e.value.exit_code == 2
    assert capsys.readouterr().err == "error: no data in /x\n"
    with pytest.raises(typer.Exit) as e:
        fail("nothing usable", code=1)
    assert e.value.exit_code == 1


def test_a_failed_write_names_the_path_the_reason_and_what_was_kept():
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/a/last.pt")
    msg = os_error(full, "the last checkpoint is intact", "/runs/a")
    assert (
        msg
        == "cannot write /runs/a/last.pt: No space left on device; the last checkpoint is intact"
    )
    bare = OSError("disk quota")
    assert os_error(bare, "nothing changed", "/data") == (
        "cannot write into /data: disk quota; nothing changed"
    )


def test_device_auto_is_cuda_only_when_there_is_one():
    assert device_name("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device_name("cpu") == "cpu" and device_name("cuda:1") == "cuda:1"
