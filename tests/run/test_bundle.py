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
from tunelab.run.audit_index import MEMBER
from tunelab.run.bundle import HEADER, WEIGHTS
from tunelab.run.checkpoint import CheckpointError, load_run
from tunelab.train import train
from tunelab.version import stamp

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
        assert sorted(z.namelist()) == sorted([HEADER, WEIGHTS, MEMBER])
        header = json.loads(z.read(HEADER))
        weights = load_safetensors(z.read(WEIGHTS))
    meta = json.loads((data / "meta.json").read_text())
    assert header["format_version"] == 1 and header["meta"] == meta
    assert header["config"]["model"]["family"] == "token_rnn" and header["step"] > 0
    assert header["data_fingerprint"] == meta["data_fingerprint"]
    assert header["version"] == stamp() and header["version"]["tunelab"]
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


# -- the copy-audit index a bundle carries ---------------------------------------------------

AUDIT_FIGURES = (
    "longest_copy_steps",
    "longest_copy_steps_transposed",
    "longest_copy_shift",
    "longest_copy_quarters",
    "copied_window_fraction",
    "copied_window_fraction_transposed",
    "density_ratio",
    "polyphony_ratio",
    "pitch_class_distance",
    "pitch_class_hist_distance",
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A tiny run (untrained, no training needed), its bundle, and a folder of samples with a
    training piece planted among two generated ones."""
    from tests.helpers_generate import make_datadir as make_steps_data
    from tests.helpers_generate import make_run
    from tunelab.data.midi import codec_from_meta
    from tunelab.data.store import load_datadir
    from tunelab.run.checkpoint import export_run

    root = tmp_path_factory.mktemp("audit-index")
    meta = make_steps_data(root / "data", n_pieces=12, n_steps=48)
    run = make_run(root / "run", root / "data", meta)
    bundle = root / "share" / "model.tlb"
    bundle.parent.mkdir()
    header = export_run(run, bundle)
    samples = root / "samples"
    generate(run, n=2, steps=40, seed=2, out=samples, wav=False, audit=False, progress=False)
    train_piece = load_datadir(root / "data").split("train").piece(2)
    codec_from_meta(meta).decode(train_piece).dump_midi(str(samples / "planted.mid"))
    return root, run, bundle, header, samples


def _by_file(result: dict) -> dict:
    return {e["file"]: e for e in result["files"]}


def test_the_bundle_audits_as_the_data_does_when_the_data_is_gone(shared, tmp_path):
    from tunelab.evaluate import audit_samples

    root, run, bundle, header, samples = shared
    entry = header["audit_index"]
    assert entry["present"] and entry["kind"] == "tokens" and entry["bytes"] > 0
    _, with_data = audit_samples(run, samples)
    side_data = _sidecars(generate(run, n=2, steps=40, seed=7, out=tmp_path / "a", **QUIET))
    hidden = root / "data-hidden"
    (root / "data").rename(hidden)  # the receiver's machine: no training data
    try:
        _, alone = audit_samples(bundle, samples)
        side_alone = _sidecars(generate(bundle, n=2, steps=40, seed=7, out=tmp_path / "b", **QUIET))
    finally:
        hidden.rename(root / "data")
    assert with_data["audited"] and alone["audited"]
    assert "bundle model.tlb" in alone["reference"] and "not found" in alone["reference"]
    a, b = _by_file(with_data), _by_file(alone)
    assert a.keys() == b.keys() == {"seed2-00.mid", "seed2-01.mid", "planted.mid"}
    assert "copied" in b["planted.mid"]["flags"]  # caught from the bundle alone
    assert b["planted.mid"]["metrics"]["longest_copy_steps"] >= 40
    for name in a:
        assert a[name]["flags"] == b[name]["flags"], name
        for k in AUDIT_FIGURES:
            assert a[name]["metrics"][k] == b[name]["metrics"][k], (name, k)
    assert with_data["flag_counts"] == alone["flag_counts"]
    assert with_data["set_metrics"] == alone["set_metrics"]
    for x, y in zip(side_data, side_alone, strict=True):
        assert x["audited"] and y["audited"] and x["flags"] == y["flags"]
        assert x["audit"] == y["audit"] and x["metrics"] == y["metrics"]


QUIET = dict(wav=False, progress=False)


def _sidecars(paths) -> list[dict]:
    return [json.loads(p.with_name(p.name + ".json").read_text()) for p in paths]


def test_a_bundle_without_an_index_is_not_audited_and_says_why(shared, tmp_path):
    """Bundles exported before the index (or without the data) still load; with the data gone
    their audit is recorded as not run, with the reason."""
    from tunelab.evaluate import audit_samples

    root, _, bundle, _, samples = shared
    old = rewrite(bundle, tmp_path / "old.tlb", lambda h: h.pop("audit_index"))
    hidden = root / "data-hidden"
    (root / "data").rename(hidden)
    try:
        _, result = audit_samples(old, samples)
        side = _sidecars(generate(old, n=1, steps=16, seed=1, out=tmp_path / "s", **QUIET))[0]
    finally:
        hidden.rename(root / "data")
    assert result["audited"] is False and "carries no copy-audit index" in result["reference"]
    assert side["audited"] is False and "carries no copy-audit index" in side["not_audited_reason"]


def test_an_altered_index_is_refused_not_trusted(shared, tmp_path):
    from tunelab.run.audit_index import from_bundle

    _, run, bundle, header, _ = shared
    with zipfile.ZipFile(bundle) as z:
        blob = bytearray(z.read(MEMBER))
    blob[len(blob) // 2] ^= 0xFF
    bad = rewrite(bundle, tmp_path / "bad.tlb")
    with zipfile.ZipFile(bad, "a") as z:
        z.writestr(MEMBER, bytes(blob))
    index, why = from_bundle(load_run(run).kind, bad, header)
    assert index is None and "does not match" in why


def test_the_index_loads_without_pickle(shared, monkeypatch):
    """Reading the index never unpickles: numpy is asked with allow_pickle=False."""
    import numpy as np

    from tunelab.run import audit_index

    _, run, bundle, header, _ = shared
    seen = []
    real = np.load

    def spy(*a, **k):
        seen.append(k.get("allow_pickle"))
        return real(*a, **k)

    monkeypatch.setattr(np, "load", spy)
    index, _ = audit_index.from_bundle(load_run(run).kind, bundle, header)
    assert index is not None and seen == [False]


def test_measure_reports_the_index_export_stores(shared):
    from tunelab.run.audit_index import measure

    root, _, _, header, _ = shared
    m = measure(root / "data")
    assert m["kind"] == "tokens" and m["index_bytes"] == header["audit_index"]["bytes"]
    steps = header["audit_index"]["info"]["steps"]
    assert m["bytes_per_step"] == pytest.approx(m["index_bytes"] / steps)
    assert m["bytes_for_100_hours"] == pytest.approx(100 * m["bytes_per_hour"])


def test_export_says_what_index_it_carries_and_can_leave_it_out(shared, tmp_path):
    _, run, _, _, _ = shared
    r = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "a.tlb")])
    assert r.exit_code == 0 and "copy-audit index" in r.output and " MB" in r.output, r.output
    r = runner.invoke(
        app, ["export", str(run), "--out", str(tmp_path / "b.tlb"), "--no-audit-index"]
    )
    assert r.exit_code == 0 and "no copy-audit index (left out on export" in r.output, r.output
    with zipfile.ZipFile(tmp_path / "b.tlb") as z:
        assert MEMBER not in z.namelist()
        assert json.loads(z.read(HEADER))["audit_index"]["present"] is False
