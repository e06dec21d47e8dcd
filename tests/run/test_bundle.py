"""`tunelab export`: one shareable bundle (safetensors + JSON, no pickle) that generate and
evaluate --samples accept in place of a run directory; other format versions are refused."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from typer.testing import CliRunner

from tests.test_train import cfg_for, make_datadir
from tunelab.cli import app
from tunelab.generate import generate
from tunelab.run.bundle import HEADER, WEIGHTS
from tunelab.run.checkpoint import CheckpointError, load_run
from tunelab.train import train

torch.set_num_threads(1)
runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("bundle")
    data = make_datadir(root / "data")
    run = root / "run"
    train(cfg_for(data, run, "train.max_steps=10", "train.eval_every=5", "train.ema=0.9"))
    bundle = root / "share" / "model.tlb"
    bundle.parent.mkdir()
    r = runner.invoke(app, ["export", str(run), "--out", str(bundle)])
    assert r.exit_code == 0, r.output
    return data, run, bundle


def rewrite(src: Path, dst: Path, header_change=None, weights=None) -> Path:
    with zipfile.ZipFile(src) as z:
        header, blob = json.loads(z.read(HEADER)), z.read(WEIGHTS)
    if header_change:
        header_change(header)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr(HEADER, json.dumps(header))
        z.writestr(WEIGHTS, weights if weights is not None else blob)
    return dst


def test_bundle_holds_weights_json_and_fingerprint(exported):
    data, run, bundle = exported
    with zipfile.ZipFile(bundle) as z:
        assert sorted(z.namelist()) == sorted([HEADER, WEIGHTS])
        header = json.loads(z.read(HEADER))
        weights = load_safetensors(z.read(WEIGHTS))
    meta = json.loads((data / "meta.json").read_text())
    assert header["format_version"] == 1 and header["meta"] == meta
    assert header["config"]["model"]["family"] == "token_rnn" and header["step"] > 0
    assert header["data_fingerprint"] == meta["data_fingerprint"]
    ema = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["ema"]
    for k, v in weights.items():  # the EMA weights, as generation from the run uses
        assert torch.equal(v, ema[k]), k


def test_fingerprint_follows_the_data(tmp_path):
    a = json.loads((make_datadir(tmp_path / "a") / "meta.json").read_text())
    b = json.loads((make_datadir(tmp_path / "b") / "meta.json").read_text())
    c = json.loads((make_datadir(tmp_path / "c", seed=1) / "meta.json").read_text())
    assert a["data_fingerprint"] == b["data_fingerprint"] != c["data_fingerprint"]


def test_generate_and_evaluate_from_the_bundle(exported, tmp_path):
    _, run, bundle = exported
    kw = dict(n=2, steps=24, seed=3, wav=False, audit=False, progress=False)
    from_run = generate(run, out=tmp_path / "a", **kw)
    from_bundle = generate(bundle, **kw)  # default out: beside the bundle
    assert [p.parent for p in from_bundle] == [bundle.parent / "model-output" / "samples"] * 2
    for a, b in zip(from_run, from_bundle, strict=True):
        assert a.read_bytes() == b.read_bytes()
    r = runner.invoke(app, ["evaluate", str(bundle), "--samples", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    report = json.loads((bundle.parent / "model-output" / "eval" / "samples.json").read_text())
    assert len(report["files"]) == 2


def test_other_versions_and_damage_are_refused(exported, tmp_path):
    _, _, bundle = exported
    old = rewrite(bundle, tmp_path / "old.tlb", lambda h: h.update(format_version=0))
    with pytest.raises(
        CheckpointError, match="bundle format version 0; this tunelab reads version 1"
    ):
        load_run(old)
    r = runner.invoke(app, ["generate", str(old), "--steps", "8", "--no-wav", "--no-audit"])
    assert r.exit_code == 2 and "format version 0" in r.output
    with zipfile.ZipFile(bundle) as z:
        blob = bytearray(z.read(WEIGHTS))
    blob[-3] ^= 0xFF
    bad = rewrite(bundle, tmp_path / "bad.tlb", weights=bytes(blob))
    with pytest.raises(CheckpointError, match="damaged bundle"):
        load_run(bad)
    foreign = rewrite(bundle, tmp_path / "f.tlb", lambda h: h.update(format="other"))
    with pytest.raises(CheckpointError, match="not a tunelab bundle"):
        load_run(foreign)
