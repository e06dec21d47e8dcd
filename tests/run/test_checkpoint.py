"""Runs come back whole: runs written before per-family configs (fixtures) load, generate the
same bytes and resume; a new run's config lists its own family's keys only."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.test_train import cfg_for, make_datadir
from tunelab.config import RunConfig, load, model_config, to_dict
from tunelab.generate import generate
from tunelab.models import MODELS
from tunelab.run.checkpoint import export_run, load_checkpoint, load_run, save_checkpoint
from tunelab.train import train
from tunelab.version import commit, stamp, version

torch.set_num_threads(1)

# Tiny runs trained by the code of commit 9f83293, whose config.yaml and checkpoints hold the
# flat model section (every family's 35 keys); see tests/fixtures/old_runs/README.md.
OLD = Path(__file__).parents[1] / "fixtures" / "old_runs"
FAMILY = {"rnn": "token_rnn", "frames": "frame_rnn", "wavenet": "wavenet"}
# What that code's `tunelab generate RUN --seconds 1 --seed 3` wrote first (piece 0).
OLD_SAMPLES = {
    "rnn": ("seed3-00.mid", "5a7cd5729b2f3674e345e41a53c44c99ddece5e3"),
    "frames": ("seed3-00.wav", None),  # matched to old-code-seed3-00.wav, within 2 LSB
}


def own_keys(family: str) -> set[str]:
    return {f.name for f in dataclasses.fields(MODELS[family].config)}


@pytest.fixture
def old_run(tmp_path, request) -> Path:
    """A writable copy of a fixture run (generate and train write into it)."""
    return Path(shutil.copytree(OLD / request.param, tmp_path / request.param))


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_an_old_run_loads_with_its_model_section_reduced_to_its_family(name):
    family = FAMILY[name]
    ck = load_checkpoint(OLD / name / "checkpoints" / "best.pt")
    flat = ck["config"]["model"]
    assert len(flat) == 35 and flat["family"] == family  # the old layout
    assert "version" not in ck  # written before checkpoints recorded it: loads all the same
    run = load_run(OLD / name)
    assert set(run.config["model"]) == own_keys(family)
    # Its own keys keep their values: the same model, only the keys it never read are gone
    # (keys its family gained since take their defaults).
    default = to_dict(MODELS[family].config())
    assert run.config["model"] == {k: flat.get(k, default[k]) for k in own_keys(family)}
    for k, v in run.model.state_dict().items():
        torch.testing.assert_close(v, (ck["ema"] or ck["model"])[k], rtol=0, atol=0)
    # The old config.yaml reads as the same family config.
    assert load(RunConfig, str(OLD / name / "config.yaml")).model == model_config(flat)


@pytest.mark.parametrize("old_run", sorted(OLD_SAMPLES), indirect=True)
def test_an_old_run_generates_what_the_old_code_wrote(old_run):
    """MIDI: the same bytes. Audio frames are floats through matrix kernels that round
    differently on other CPUs (an AVX-512 machine and this one differ by 1 LSB here and there),
    so the WAV the old code wrote (commit bcb10ab) is matched to within 2 LSB of 16 bits."""
    file, sha1 = OLD_SAMPLES[old_run.name]
    (path,) = generate(old_run, n=1, seconds=1, seed=3, audit=False, progress=False)
    assert path.name == file
    if sha1 is not None:
        assert hashlib.sha1(path.read_bytes()).hexdigest() == sha1
        return
    import soundfile as sf

    new, sr = sf.read(str(path), dtype="int16")
    old, old_sr = sf.read(str(OLD / old_run.name / f"old-code-{file}"), dtype="int16")
    assert sr == old_sr and new.shape == old.shape and np.abs(old).max() > 1000
    assert np.abs(new.astype(int) - old.astype(int)).max() <= 2


@pytest.mark.parametrize("old_run", ["wavenet"], indirect=True)
def test_an_old_audio_run_generates_and_exports_in_the_new_layout(old_run):
    (path,) = generate(old_run, n=1, seconds=0.2, seed=3, audit=False, progress=False)
    assert path.stat().st_size > 0
    bundle = old_run / "model.tlb"
    header = export_run(old_run, bundle)
    assert set(header["config"]["model"]) == own_keys("wavenet")
    again = load_run(bundle)
    for k, v in load_run(old_run).model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v, rtol=0, atol=0)


@pytest.mark.parametrize("old_run", ["rnn"], indirect=True)
def test_an_old_run_resumes_from_its_own_config_yaml(old_run, tmp_path):
    """`tunelab train RUN/config.yaml` on an old run: the flat file reads, the saved model is
    the same model (no 'another model config'), training goes on from step 30, and the files
    rewritten are in the new layout."""
    data = make_datadir(tmp_path / "data")  # the same vocabulary (91 steps tokens)
    over = [f"data={data}", f"out={old_run}", "train.max_steps=32", "train.progress=false"]
    cfg = load(RunConfig, str(old_run / "config.yaml"), [*over, "train.plots=false"])
    result = train(cfg)
    assert result.step == 32 and result.status == "done"
    saved = yaml.safe_load((old_run / "config.yaml").read_text())
    assert set(saved["model"]) == own_keys("token_rnn")
    assert set(load_checkpoint(old_run / "checkpoints" / "last.pt")["config"]["model"]) == set(
        saved["model"]
    )


def test_a_gru_run_lists_no_other_family_keys(tmp_path):
    data = make_datadir(tmp_path / "data", n_pieces=12)
    run = tmp_path / "run"
    train(cfg_for(data, run, "train.max_steps=2", "train.eval_every=2"))
    others = set().union(*(own_keys(f) for f in MODELS)) - own_keys("token_rnn")
    assert {"residual_channels", "srnn_frame_size", "frame_size", "d_model"} <= others
    for model in (
        yaml.safe_load((run / "config.yaml").read_text())["model"],
        load_checkpoint(run / "checkpoints" / "last.pt")["config"]["model"],
        load_run(run).config["model"],
    ):
        assert set(model) == own_keys("token_rnn") and not set(model) & others
        assert model == to_dict(load(RunConfig, str(run / "config.yaml")).model)


def test_every_checkpoint_records_the_tunelab_version_and_commit(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 3, "model": {}})
    ck = load_checkpoint(path)
    assert ck["version"] == stamp() == {"tunelab": version(), "commit": commit()}
    assert ck["step"] == 3
