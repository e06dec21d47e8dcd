"""Labels from untrusted tags (path-like, NUL bytes, 10,000 characters, markup) never escape
the output directory and never reach the terminal as markup: prepare, info, generate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from tunelab.cli import app

SR = 16000
NASTY = [
    "../../escaped",
    "/etc/passwd",
    "a\x00b\x1b[31mred",
    "y" * 10_000,
    "[bold red]markup[/] <b>html</b>",
]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_nasty_labels_stay_inside_and_print_literally(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    t = np.arange(SR) / SR
    mapping = {}
    for i, label in enumerate(NASTY):
        sf.write(str(src / f"f{i}.wav"), 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t), SR)
        mapping[f"f{i}.wav"] = label
    (src / "[blink]bad[red]x.wav").write_bytes(b"RIFF broken")  # an untrusted file name
    sidecar = tmp_path / "labels.json"
    sidecar.write_text(json.dumps(mapping))
    before = files_under(tmp_path)
    data = tmp_path / "data"
    runner = CliRunner()
    r = runner.invoke(
        app,
        ["prepare", str(src), "--out", str(data), "--kind", "audio", "--label", str(sidecar),
         "--workers", "1", "--split", "1,0,0"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "[blink]bad[red]x.wav" in r.output  # the name, shown as text, not as markup
    assert "\x00" not in r.output and "\x1b" not in r.output
    assert files_under(tmp_path) - before <= files_under(data)  # nothing outside DATA_DIR
    names = json.loads((data / "meta.json").read_text())["label_names"]
    assert len(names) == len(NASTY)
    for n in names:
        assert len(n) <= 64 and not re.search(r"[\x00-\x1f\x7f]", n)
    r = runner.invoke(app, ["info", str(data), "--no-plots"])
    assert r.exit_code == 0, r.output
    assert "[bold red]markup[/] <b>html</b>" in r.output and "\x1b" not in r.output

    run = tmp_path / "run"
    r = runner.invoke(
        app,
        ["train", "wavenet-tiny", f"data={data}", f"out={run}", "train.max_steps=2",
         "train.seq_len=64", "train.batch_size=2", "train.progress=false",
         "train.tensorboard=false", "train.plots=false"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    before = files_under(tmp_path)
    for i, label in enumerate(names):
        r = runner.invoke(
            app,
            ["generate", str(run), "--label", label, "--seconds", "0.01", "--seed", str(i),
             "--no-audit"],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "\x00" not in r.output and "\x1b" not in r.output
    new = files_under(tmp_path) - before
    assert new and all(p.parent == run / "samples" for p in new)  # nowhere else
    assert all(re.fullmatch(r"seed\d+-\d\d\.wav(\.json)?", p.name) for p in new)
    labels = {json.loads(p.read_text())["label"] for p in new if p.suffix == ".json"}
    assert labels == set(names)  # each label kept as data, in the sidecar only
