"""The ``Kind`` contract (``tunelab.kinds.base``): every kind states all of it, with signatures
the callers can use, and the optional abilities answer neutrally where a kind lacks them."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from tests.helpers_generate import steps_meta
from tunelab.data.audio.encode import mu_law_decode
from tunelab.kinds import Kind, base, frames, mulaw, tokens
from tunelab.kinds.audio_io import AudioKind, label_names_of

AUDIO_META = {"kind": "audio", "sample_rate": 8000, "label_names": ["(none)", "a", "b"]}
FRAME_MODEL = {"frame_size": 64, "frame_form": "time", "frame_labels": True}


def _kinds() -> dict:
    """One kind object of each module, built as ``kind_for`` builds it (``for_model``)."""
    return {
        "tokens": tokens.Kind.for_model({}, steps_meta()),
        "mulaw": mulaw.Kind.for_model({}, dict(AUDIO_META)),
        "frames": frames.Kind.for_model(FRAME_MODEL, dict(AUDIO_META)),
    }


def _contract() -> tuple[list[str], list[str]]:
    """(the Protocol's methods and properties, its data attributes)."""
    callables = [n for n in vars(Kind) if not n.startswith("_")]
    fields = [n for n in Kind.__annotations__ if n not in callables]
    return callables, fields


def _compatible(want: inspect.Signature, have: inspect.Signature) -> str | None:
    """Why ``have`` cannot stand in for ``want`` (None: it can). Every parameter of ``want``
    is in ``have`` under its name (a positional-only one: at its place), in its order, and
    optional where ``want``'s is; whatever else ``have`` takes is optional."""
    have_params = list(have.parameters.values())
    names = [p.name for p in have_params]
    matched, at = set(), -1
    for j, p in enumerate(want.parameters.values()):
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            i = (
                j
                if j < len(have_params) and have_params[j].kind.name.startswith("POSITIONAL")
                else -1
            )
        else:
            i = names.index(p.name) if p.name in names else -1
        if i < 0:
            return f"lacks {p.name!r}"
        if i < at:
            return f"{p.name!r} is out of order"
        matched.add(i)
        at = i
        q = have_params[i]
        if p.default is not inspect.Parameter.empty and q.default is inspect.Parameter.empty:
            return f"{p.name!r} must be optional"
        if q.kind is inspect.Parameter.KEYWORD_ONLY and p.kind is not q.kind:
            return f"{p.name!r} must be positional"
    for i, q in enumerate(have_params):
        optional = q.default is not inspect.Parameter.empty or q.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        if i not in matched and not optional:
            return f"takes {q.name!r}, which the contract does not give"
    return None


def test_the_contract_names_what_the_callers_use():
    callables, fields = _contract()
    for name in (
        "for_model", "signature", "check_data", "train_batches", "valid_batches", "loss",
        "valid_figures", "preview", "likelihood", "baseline", "inference_model", "memory_model",
        "plan", "sample", "reference", "primer_from_training", "audit", "music_metrics", "read",
        "thresholds", "describe", "write", "write_preview", "sample_suffixes",
    ):  # fmt: skip
        assert name in callables
    for name in ("name", "suffix", "plan_options", "extra_flags", "vocab_size", "n_labels"):
        assert name in fields


@pytest.mark.parametrize("name", ["tokens", "mulaw", "frames"])
def test_every_kind_satisfies_the_protocol_with_compatible_signatures(name):
    kind = _kinds()[name]
    assert isinstance(kind, Kind)
    callables, fields = _contract()
    for f in fields:
        assert hasattr(kind, f), f"{name} lacks {f}"
    assert kind.name == name
    for m in callables:
        want = vars(Kind)[m]
        if isinstance(want, property):
            assert isinstance(kind.sample_suffixes, tuple) and kind.sample_suffixes
            continue
        want = inspect.signature(getattr(want, "__func__", want))  # (self or cls, ...)
        want = want.replace(parameters=list(want.parameters.values())[1:])
        why = _compatible(want, inspect.signature(getattr(kind, m)))  # bound: as called
        assert why is None, f"{name}.{m}: {why}"


def test_the_compatibility_check_itself_refuses_what_a_caller_could_not_call():
    def want(a, b, c=None): ...

    assert _compatible(inspect.signature(want), inspect.signature(want)) is None
    for bad in (
        lambda a: None,  # lacks b
        lambda b, a, c=None: None,  # out of order
        lambda a, b, c: None,  # c must be optional
        lambda a, b, c=None, d=None, *, e: None,  # e is required and not given
    ):
        assert _compatible(inspect.signature(want), inspect.signature(bad)) is not None
    ok = lambda a, b, c=None, wav=True, **kw: None  # noqa: E731
    assert _compatible(inspect.signature(want), inspect.signature(ok)) is None

    def by_place(out, y, /): ...

    assert _compatible(inspect.signature(by_place), inspect.signature(lambda logits, y: 0)) is None
    assert _compatible(inspect.signature(by_place), inspect.signature(lambda *, o, y: 0))


def test_only_frames_add_the_mean_frame_flag_and_take_join_and_training_clip():
    k = _kinds()
    assert k["tokens"].extra_flags == () and k["mulaw"].extra_flags == ()
    assert k["frames"].extra_flags == ("mean_frame",)
    assert k["tokens"].plan_options == () and k["mulaw"].plan_options == ()
    assert set(k["frames"].plan_options) == {"join", "training_clip"}
    plan = k["frames"].plan(1.0, steps=None, primer=None, label=None, sampling=None, join="concat")
    assert plan.settings["join"] == "concat"


def test_for_model_gives_frames_the_model_config_and_the_others_the_meta_alone():
    meta = dict(AUDIO_META)
    assert mulaw.Kind.for_model({"frame_size": 64}, meta).meta is meta
    f = frames.Kind.for_model({"frame_size": 64, "frame_hop": 16, "frame_form": "fft"}, meta)
    assert (f.size, f.hop, f.form) == (64, 16, "fft") and "frames" not in meta
    with pytest.raises(ValueError, match="frame settings"):
        frames.Kind(meta)  # without for_model, a frame kind has no form


def test_kinds_without_an_ability_give_its_neutral_answer(tmp_path):
    k = _kinds()
    model = torch.nn.Linear(2, 2)
    for name in ("mulaw", "frames"):  # no transposition mixture, no piece memory
        assert k[name].inference_model(model, 2) is None
        assert k[name].memory_model(model) is None
    clip = frames.Clip(np.zeros(200, np.float32), None)
    per, sets = k["frames"].music_metrics([clip, clip], None)  # the audio kinds' shared figures
    assert len(per) == 2 and per[0]["silence_fraction"] == 1.0
    assert sets["frechet_to_train"] is None and sets["seconds"]["train"] is None
    assert k["frames"].baseline(None, "test") == {}  # its baselines come with likelihood()
    assert k["frames"].valid_figures(1.0) == {} and k["tokens"].valid_figures(1.0) == {}
    assert k["mulaw"].valid_figures(np.log(2))["valid_bits_per_sample"] == pytest.approx(1.0)
    assert k["tokens"].preview(model, "cpu") is None
    for name in ("tokens", "mulaw"):  # nothing read back: no set to compare
        assert k[name].music_metrics([], None) == ([], {})
    # an audio kind's file is already audio: nothing to preview
    path = tmp_path / "x.wav"
    k["mulaw"].write_preview(mulaw.Clip(np.full(80, 128, np.uint8), None), path, {})
    assert not list(tmp_path.iterdir())


def test_the_neutral_defaults_are_the_base_class_answers():
    d = base.KindDefaults
    assert d.plan_options == () and d.extra_flags == ()
    assert d.music_metrics(None, [1, 2], None) == ([{}, {}], {})
    assert d.inference_model(None, None, 1) is None and d.memory_model(None, None) is None
    assert d.baseline(None, None, "test") == {} and d.preview(None, None, "cpu") is None


# -- the shared audio parts (tunelab.kinds.audio_io.AudioKind) ------------------------------


def _audio_kinds(conditioned: bool = True) -> list:
    model = {"frame_size": 64, "frame_labels": conditioned}
    return [mulaw.Kind(dict(AUDIO_META)), frames.Kind.for_model(model, dict(AUDIO_META))]


def test_label_names_come_from_label_names_or_the_sorted_label_counts():
    assert label_names_of(AUDIO_META) == ["(none)", "a", "b"]
    assert label_names_of({"labels": {"b": 3, "a": 1}}) == ["a", "b"]
    assert label_names_of({}) == []


@pytest.mark.parametrize("i", [0, 1], ids=["mulaw", "frames"])
def test_audio_kinds_share_labels_and_the_label_check(i):
    kind = _audio_kinds()[i]
    assert isinstance(kind, AudioKind)
    assert kind.label_id(None) == 0 and kind.label_id("b") == 2
    kind.check_label(None)
    kind.check_label("a")
    with pytest.raises(ValueError, match=r"--label 'c' is unknown; known labels: \(none\), a, b"):
        kind.check_label("c")
    unconditioned = _audio_kinds(conditioned=False)[1]
    assert unconditioned.n_labels == 0 and unconditioned.label_id("a") is None
    with pytest.raises(ValueError, match="not conditioned on labels"):
        unconditioned.check_label("a")


def test_audio_kinds_write_read_and_describe_a_clip_alike(tmp_path):
    rng = np.random.default_rng(0)
    audio = (0.3 * np.sin(np.arange(800) / 5) + 0.01 * rng.standard_normal(800)).astype(np.float32)
    mu, fr = _audio_kinds()
    clips = {"mulaw": mulaw.Clip(mu._encode_audio(audio), "a"), "frames": frames.Clip(audio, "a")}
    back = {}
    for kind, name in ((mu, "mulaw"), (fr, "frames")):
        path = tmp_path / f"{name}.wav"
        assert kind.write(clips[name], path, {"file": path.name}) == [path]
        assert json.loads(path.with_name(path.name + ".json").read_text()) == {"file": path.name}
        assert kind.describe(clips[name]) == {"duration_seconds": 0.1, "samples": 800, "label": "a"}
        back[name] = kind.read(path)
        assert back[name].label is None and len(kind.audio(back[name])) == 800
    # 16-bit PCM keeps the audio to within an LSB, and so the mu-law classes to within one
    assert np.abs(back["frames"].audio - audio).max() < 1e-4
    assert np.abs(back["mulaw"].classes.astype(int) - clips["mulaw"].classes).max() <= 1
    assert np.array_equal(mu.audio(clips["mulaw"]), mu_law_decode(clips["mulaw"].classes, 256))
    start = fr.describe(frames.Clip(audio, None, start={"piece": 1}))["training_start"]
    assert start == {"piece": 1}
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not audio")
    for kind in (mu, fr):
        with pytest.raises(ValueError, match="bad.wav: cannot read audio"):
            kind.read(bad)
        assert ".wav" in kind.sample_suffixes and ".flac" in kind.sample_suffixes
