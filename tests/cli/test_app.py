"""The ``tunelab`` command as a whole: every command of the contract is there with its help,
``python -m tunelab.cli`` runs it, and an unknown command is a usage error."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tunelab.cli import app

COMMANDS = ["prepare", "info", "train", "plot", "generate", "evaluate", "report", "export", "run"]
COMMANDS += ["demo"]
runner = CliRunner()


def test_every_command_is_listed_and_has_its_help():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in r.output, name


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_answers_help(name):
    r = runner.invoke(app, [name, "--help"])
    assert r.exit_code == 0, r.output
    assert f" {name} [OPTIONS]" in r.output  # the runner names the program "root"


def test_train_help_names_the_presets_and_the_config_keys():
    r = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert r.exit_code == 0
    assert "midi-roll" in r.output and "train.max_steps" in r.output


def test_python_dash_m_runs_the_command_and_unknown_commands_are_usage_errors():
    p = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0 and "Usage: tunelab" in p.stdout
    r = runner.invoke(app, ["compose"])
    assert r.exit_code == 2 and "No such command" in r.output
    r = runner.invoke(app, [])  # bare: the help, and no error line
    assert r.exit_code == 2 and " prepare " in r.output and "error" not in r.output


def test_train_takes_out_as_an_option_and_stores_resolved_paths(tmp_path, monkeypatch):
    import yaml

    from tests.test_train import make_datadir

    make_datadir(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(
        app,
        ["train", "tiny", "data=data", "--out", "run", "train.max_steps=2", "train.plots=false"],
    )
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["data"] == str(tmp_path / "data") and cfg["out"] == str(tmp_path / "run")


# -- the command line: checked choices, one error style, exit statuses, help panels ----------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny untrained run (best, last, and a milestone at step 7) on a tiny data directory."""
    import shutil

    from tests.helpers_generate import make_datadir, make_run

    root = tmp_path_factory.mktemp("cli")
    run = make_run(root / "run", root / "data", make_datadir(root / "data", n_pieces=8))
    ckpts = run / "checkpoints"
    shutil.copy(ckpts / "last.pt", ckpts / "milestone-00000007.pt")
    return run


def one_error_line(r, code: int = 2) -> str:
    """The command's output is one line, ``error: ...``, and its exit status ``code``."""
    lines = r.output.strip().splitlines()
    assert r.exit_code == code and len(lines) == 1, r.output
    assert lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    return lines[0]


def test_device_is_auto_by_default_wherever_it_is_taken():
    import typer

    from tunelab.config import RunConfig

    group = typer.main.get_command(app)
    device = {n: p for n, c in group.commands.items() for p in c.params if p.name == "device"}
    assert {"generate", "evaluate", "train"} <= set(device)
    for name, param in device.items():  # train: --device or the config's key, auto
        assert param.default == ("auto" if name != "train" else None), name
    assert RunConfig().device == "auto"


def help_text(name: str) -> str:
    """``tunelab NAME --help`` on a wide terminal (rich reads COLUMNS): nothing wrapped."""
    r = runner.invoke(app, [name, "--help"], env={"COLUMNS": "220"})
    assert r.exit_code == 0, r.output
    return r.output


def test_help_lists_the_choices():
    help_of = {n: help_text(n) for n in COMMANDS}
    for name in ("generate", "evaluate", "train"):
        assert "auto|cpu|cuda|cuda:N" in help_of[name], name
    assert "ola|concat" in help_of["generate"] and "train|valid|test" in help_of["evaluate"]
    assert "bach-chorales|bach-chorales-audio" in help_of["prepare"]
    from tunelab.cli.sample import Join
    from tunelab.kinds.frame_ops import JOINS

    assert tuple(j.value for j in Join) == JOINS  # the frame kind's joins, every one


def _panels(text: str) -> dict[str, str]:
    """--help's boxes: {title: the lines inside}."""
    import re

    panels, title = {}, None
    for line in text.splitlines():
        m = re.match(r"╭─ (.+?) ─", line)
        if m:
            title = m.group(1)
            panels[title] = ""
        elif title:
            panels[title] += line + "\n"
    return panels


@pytest.mark.parametrize(
    "name, midi, audio",
    [
        ("prepare", ["--encoding", "--steps-per-quarter", "--keep-drums"], ["--sample-rate"]),
        ("generate", ["--transpose-mix", "--piece-memory", "--wav"], ["--join", "--label"]),
        ("evaluate", ["--transpose-mix", "--piece-memory"], []),
    ],
)
def test_help_groups_midi_only_and_audio_only_options(name, midi, audio):
    panels = _panels(help_text(name))
    for opt in midi:
        assert opt in panels["MIDI options"] and opt not in panels["Options"], opt
    for opt in audio:
        assert opt in panels["Audio options"] and opt not in panels["Options"], opt


MISTAKES = {
    "an unknown command": (["compose"], "No such command 'compose'"),
    "a missing argument": (["generate"], "Missing argument"),
    "an unknown option": (["generate", "RUN", "--bogus"], "No such option: --bogus"),
    "a device": (["generate", "RUN", "--device", "gpu"], "'gpu' is not a device: did you mean"),
    "a join": (["generate", "RUN", "--join", "mix"], "'mix' is not one of 'ola', 'concat'"),
    "a split": (["evaluate", "RUN", "--split", "tset"], "'tset' is not one of 'train', 'valid'"),
    "a checkpoint": (["evaluate", "RUN", "--checkpoint", "lats"], "did you mean 'last'?"),
    "a step": (["export", "RUN", "--out", "m.tlb", "--checkpoint", "9"], "available: best"),
    "a run": (["generate", "nowhere"], "nowhere: no such run directory or bundle"),
    "a builtin": (["prepare", "--builtin", "bach", "--out", "o"], "'bach' is not one of"),
    "a preset": (["train", "midi-gur", "data=d"], "did you mean 'midi-gru'?"),
    "a train key": (["train", "tiny", "train.max_minuts=3"], "did you mean 'train.max_minutes'?"),
    "a model key": (["train", "tiny", "model.hiden=3"], "did you mean 'model.hidden'?"),
    "the device key": (["train", "tiny", "device=gpu"], "device=gpu: 'gpu' is not a device"),
    "two outs": (["train", "tiny", "out=a", "--out", "b"], "--out b and out=a disagree"),
    "a data directory": (["info", "nowhere"], "not a prepared data directory"),
}


@pytest.mark.parametrize("what", MISTAKES)
def test_a_usage_mistake_is_one_error_line_and_exit_status_2(what, run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, said = MISTAKES[what]
    line = one_error_line(runner.invoke(app, [str(run) if a == "RUN" else a for a in args]))
    assert said in line, line


def test_cuda_where_there_is_none_is_a_clear_usage_error(run, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for args in (["generate", str(run)], ["evaluate", str(run)], ["train", "tiny", "data=d"]):
        line = one_error_line(runner.invoke(app, [*args, "--device", "cuda"]))
        assert "no CUDA GPU is available here; use --device cpu (or auto)" in line, line


def test_a_step_picks_its_milestone(run):
    r = runner.invoke(app, ["evaluate", str(run), "--checkpoint", "7", "--no-baseline"])
    assert r.exit_code == 0, r.output
    assert (run / "eval" / "likelihood-test.json").exists()


def test_a_failure_of_the_work_is_one_error_line_and_exit_status_1(tmp_path, monkeypatch):
    import errno

    import tunelab.train

    def full_disk(cfg):
        raise OSError(errno.ENOSPC, "No space left on device", f"{cfg.out}/checkpoints/last.pt")

    monkeypatch.setattr(tunelab.train, "train", full_disk)
    r = runner.invoke(app, ["train", "tiny", "data=d", f"out={tmp_path / 'r'}"])
    assert "No space left on device" in one_error_line(r, code=1)
