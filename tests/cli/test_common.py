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


def test_check_device_takes_auto_cpu_cuda_and_cuda_n_and_says_what_else(monkeypatch):
    from tunelab.cli.common import check_device

    assert [check_device(d) for d in ("auto", "cpu", " CPU ")] == ["auto", "cpu", "cpu"]
    with pytest.raises(typer.BadParameter, match="'gpu' is not a device: did you mean 'cpu'"):
        check_device("gpu")
    with pytest.raises(typer.BadParameter, match="choose auto.cpu.cuda.cuda:N"):
        check_device("cuda:x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(typer.BadParameter, match="cuda: no CUDA GPU is available here"):
        check_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == "cuda:1"
    with pytest.raises(typer.BadParameter, match="has 2 CUDA GPU.s., cuda:0 to cuda:1"):
        check_device("cuda:2")


def test_checkpoint_name_is_checked_against_the_run_before_any_work(tmp_path, capsys):
    from tunelab.cli.common import checkpoint_name

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("last", "milestone-00000120"):
        (run / "checkpoints" / f"{name}.pt").write_bytes(b"")  # names only: nothing is read
    assert checkpoint_name(run, "last") == "last"
    assert checkpoint_name(run, "best") == "best"  # best falls back to last
    assert checkpoint_name(run, "120") == "milestone-00000120"  # a step: its milestone
    assert checkpoint_name(run, "milestone-00000120") == "milestone-00000120"
    bundle = tmp_path / "model.tlb"
    bundle.write_bytes(b"x")
    assert checkpoint_name(bundle, "anything") == "anything"  # a bundle holds one model
    for which, said in [
        ("lats", "--checkpoint lats: no such checkpoint in " + str(run) + "; did you mean 'last'?"),
        ("99", "--checkpoint 99: no such checkpoint"),
        (str(tmp_path / "x.pt"), "no such file; give a .pt file that exists"),
    ]:
        with pytest.raises(typer.Exit) as e:
            checkpoint_name(run, which)
        assert e.value.exit_code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1, err
    with pytest.raises(typer.Exit):
        checkpoint_name(tmp_path / "nowhere", "best")
    assert "no such run directory or bundle" in capsys.readouterr().err
    with pytest.raises(typer.Exit):
        checkpoint_name(tmp_path, "best")  # a folder with no checkpoints
    assert "not a run directory, or not trained yet" in capsys.readouterr().err
