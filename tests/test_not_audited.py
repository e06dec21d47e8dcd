"""Nothing silently skipped: a run whose config holds the data path as typed (relative) is
audited from any working directory, and an audit that cannot run says "not audited"."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from tests.helpers_generate import make_datadir, make_run
from tunelab.cli import app
from tunelab.evaluate import audit_samples
from tunelab.generate import generate
from tunelab.report.page import build_report
from tunelab.run.checkpoint import find_data


def test_relative_data_path_is_found_from_anywhere_and_a_missing_one_is_not_audited(
    tmp_path, monkeypatch
):
    root = tmp_path / "project"
    meta = make_datadir(root / "data-rp")
    # as an older run stored it: the path as typed in the project folder
    run = make_run(root / "run-rp", tmp_path / "unused", meta)
    import torch

    ck = torch.load(run / "checkpoints" / "best.pt", weights_only=False)
    ck["config"]["data"] = "data-rp"
    from tunelab.run.checkpoint import save_checkpoint

    for name in ("best", "last"):
        save_checkpoint(run / "checkpoints" / f"{name}.pt", ck)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert find_data(run, "data-rp") == str(root / "data-rp")
    files = generate(run, n=1, steps=16, seed=1, out=tmp_path / "a", wav=False, progress=False)
    side = json.loads(files[0].with_name(files[0].name + ".json").read_text())
    assert side["audited"] is True and "not_audited_reason" not in side
    _, result = audit_samples(run, tmp_path / "a")
    assert result["audited"] is True

    shutil.rmtree(root / "data-rp")  # the data is gone: the audit cannot run, and says so
    files = generate(run, n=1, steps=16, seed=1, out=run / "samples", wav=False, progress=False)
    side = json.loads(files[0].with_name(files[0].name + ".json").read_text())
    assert side["audited"] is False and side["not_audited_reason"]
    r = CliRunner().invoke(app, ["evaluate", str(run), "--samples", str(run / "samples")])
    assert r.exit_code == 0, r.output
    assert "NOT AUDITED for copies" in r.output
    page = build_report(run).read_text()
    assert "not audited" in page

    # The command line says it in one plain line, not as a Python UserWarning with a path.
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "generate", str(run), "--n", "1", "--steps", "8"]
        + ["--out", str(tmp_path / "c"), "--no-wav"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
    )
    assert r.returncode == 0, r.stderr
    assert "warning: copy audit skipped: data-rp is not a prepared data directory" in r.stderr
    assert "UserWarning" not in r.stderr
