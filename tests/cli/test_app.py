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
