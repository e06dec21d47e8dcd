"""``tunelab info``: a data directory's table, or the one a run names in its config.yaml."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.cli.test_prepare import write_chords
from tunelab.cli import app
from tunelab.cli.info import show_info

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small MIDI data directory (4 steps per quarter, onsets)."""
    root = tmp_path_factory.mktemp("info")
    for i in range(4):
        write_chords(root / "src" / f"song{i}.mid", 40 + 3 * i)
    args = ["prepare", str(root / "src"), "--out", str(root / "data"), "--kind", "midi"]
    args += ["--workers", "1", "--steps-per-quarter", "4", "--encoding", "onsets"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return root / "data"


def _run_dir(path, config: str):
    (path / "checkpoints").mkdir(parents=True)
    (path / "config.yaml").write_text(config)
    return path


def test_info_on_non_data_dir_and_run_dir(tmp_path):
    """A path that is neither: one error line in the commands' style, exit status 2 (a usage
    error, as every command's)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("data: nowhere\n")
    for path, said in [(tmp_path, "meta.json"), (run, f"{run}: a run directory whose data")]:
        r = runner.invoke(app, ["info", str(path)])
        lines = r.output.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
        assert said in r.output


def test_a_run_finds_its_data_by_relative_or_nested_path(data, tmp_path, capsys):
    beside = _run_dir(data.parent / "run-beside", f"data: {data.name}\n")  # run.parent / data
    nested = _run_dir(tmp_path / "nested", f"data:\n  path: {data}\n")
    broken = _run_dir(tmp_path / "broken", "data: [unclosed\n")
    for run in (beside, nested):
        assert show_info(run, plots=False) == 0
        out = capsys.readouterr().out
        assert f"was trained on {data}" in out.replace("\n", "")
        assert "steps per quarter" in out and "max polyphony" in out
    assert show_info(broken, plots=False) == 2
    assert "key 'data'" in capsys.readouterr().err.replace("\n", " ")


def test_the_midi_table_and_plots_on_request(data, capsys):
    for png in (data / "plots").glob("*.png"):
        png.unlink()
    assert show_info(data, plots=False) == 0
    out = capsys.readouterr().out
    assert "onsets encoding" in out and "pieces" in out and "split train" in out
    assert not list((data / "plots").glob("*.png"))
    assert show_info(data, plots=True) == 0
    assert {p.name for p in (data / "plots").glob("*.png")} >= {
        "pitches.png",
        "polyphony.png",
        "lengths.png",
    }
