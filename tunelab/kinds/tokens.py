"""MIDI tokens: what the loop, the evaluator and ``generate`` need to know about them.

Dimensions from ``meta.json`` (vocabulary, no labels), windows over the flat token
arrays (windows may straddle pieces: pieces carry BOS/EOS) with random transposition,
cross-entropy, per-token/per-step likelihood with an n-gram baseline, the decoding
grammar (``tunelab.kinds.constraints``) and the writer: a standard MIDI file, a WAV preview
rendered with the SoundFont synthesizer, and audits against the training split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunelab.atomic import atomic_path, write_json
from tunelab.data.dataset import WindowSampler, eval_windows, transpose_tables
from tunelab.data.midi import Rejected, codec_from_meta
from tunelab.data.streams import PieceStreams, stream_eval_batches
from tunelab.kinds import categorical_loss
from tunelab.kinds.base import KindDefaults
from tunelab.kinds.scoring import piece_nll
from tunelab.metrics.midi import token_nll_summary

NGRAM_MAX_TRAIN_TOKENS = 1_000_000  # past this, no n-gram baseline: a pure-Python count model


def steps_for_seconds(seconds: float, meta: dict) -> int:
    """Grid steps lasting ``seconds`` at the training tempo: s * qpm / 60 * steps_per_quarter."""
    qpm = float(meta.get("tempo_qpm") or 120.0)
    return max(1, round(seconds * qpm / 60.0 * int(meta["steps_per_quarter"])))


def load_primer(path: str | Path, meta: dict) -> list[int]:
    """Encode a MIDI primer with the run's codec; tokens after BOS, without EOS. Tokens that
    break the decoding rules (e.g. more simultaneous keys than the training data ever had)
    are dropped with a warning, so the continuation starts from a valid state."""
    import symusic

    from tunelab.kinds.constraints import make_constraint

    path = Path(path)
    try:
        tokens = codec_from_meta(meta).encode(symusic.Score(str(path)))
    except Rejected as e:
        raise ValueError(f"{path}: cannot use as a primer ({e})") from e
    except Exception as e:
        raise ValueError(f"{path}: cannot read MIDI ({e})") from e
    con = make_constraint(meta)
    st = con.new_state(1)
    kept, dropped = [], 0
    for t in tokens[1:-1].tolist():
        if con.why_not(st, 0, t):
            dropped += 1
            continue
        kept.append(t)
        con.advance(st, 0, t)
    if dropped:
        warnings.warn(
            f"{path}: {dropped} primer tokens break the decoding rules; dropped", stacklevel=2
        )
    return kept


def grammar_bias(meta: dict) -> torch.Tensor | None:
    """FloatTensor[V, V]: 0 where token j may follow token i in this encoding, -inf where the
    format forbids it (``Codec.allowed_after``; None for encodings without such a table).

    Training and scoring add row x[t] to the logits that predict x[t+1], so the model is the
    format-constrained distribution that ``generate`` samples from (its constraints forbid at
    least these tokens), and no probability is spent on tokens that cannot come next."""
    allowed = getattr(codec_from_meta(meta), "allowed_after", None)
    if allowed is None:
        return None
    return torch.from_numpy(np.where(allowed(), 0.0, -np.inf).astype(np.float32))


def likelihood(model, pieces, meta: dict, device="cpu", progress: bool = False) -> dict:
    """Pieces (int arrays, BOS..EOS) scored whole under the format-constrained model
    (``grammar_bias``); see ``metrics.token_nll_summary``.

    The piece memory (a model with ``rescore``) adapts to each piece as it scores it, so its
    figures do not compare with models that do not adapt: the fixed model's figures under it,
    from the same pass, are added as ``fixed_model_nll_per_token`` and ``..._per_step``."""
    pieces = [np.asarray(p, np.int64) for p in pieces]
    bias = grammar_bias(meta)
    if progress:
        from tunelab.progress import progress_bar

        pieces = progress_bar(pieces, desc="scoring", unit="piece")
    memory = hasattr(model, "rescore")
    scored, fixed = [], []
    for p in (p for p in pieces if len(p) >= 2):
        if memory:  # piece_nll's own path for a wrapper, keeping the inner model's figures
            inner = piece_nll(model.base, p, device, prev_bias=bias)
            fixed.append((p, inner.double().cpu().numpy()))
            nll = model.rescore(torch.from_numpy(p), inner.cpu())
        else:
            nll = piece_nll(model, p, device, prev_bias=bias)
        scored.append((p, nll.double().cpu().numpy()))
    sp, count = meta["specials"], codec_from_meta(meta).count_steps
    result = token_nll_summary(scored, bos=sp["bos"], eos=sp["eos"], count_steps=count)
    if memory:
        f = token_nll_summary(fixed, bos=sp["bos"], eos=sp["eos"], count_steps=count)
        result["fixed_model_nll_per_token"] = f["nll_per_token"]
        result["fixed_model_nll_per_step"] = f["nll_per_step"]
    return result


@dataclass
class Plan:
    """One generate call, resolved: length in grid steps and the primer's tokens."""

    steps: int
    primer: list[int]
    primer_steps: int
    settings: dict  # recorded in each sidecar's "settings"
    primer_info: dict | None  # the sidecar's settings.primer


class Kind(KindDefaults):
    """MIDI tokens of one data directory (``meta.json`` of kind ``midi``). A piece is an int
    token array [T], BOS..EOS."""

    name = "tokens"
    suffix = ".mid"  # of the files generate writes
    sample_suffixes = (".mid", ".midi")  # of the files evaluate --samples reads

    def __init__(self, meta: dict):
        if "vocab_size" not in meta:
            raise ValueError(f"meta.json has no vocab_size (kind={meta.get('kind')})")
        self.meta = meta
        self.vocab_size = int(meta["vocab_size"])
        self.n_labels = 0
        self.label_names: list[str] = []
        self.codec = codec_from_meta(meta)
        self.spq = self.codec.steps_per_quarter
        self.qpm = float(meta.get("tempo_qpm") or 120.0)  # the training tempo
        self.prev_bias = grammar_bias(meta)

    def loss(self, logits, y, x=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the format-constrained model (``grammar_bias``): (sum, count)."""
        if self.prev_bias is not None and self.prev_bias.device != logits.device:
            self.prev_bias = self.prev_bias.to(logits.device)  # once, not a [V, V] copy per step
        return categorical_loss(logits, y, x, prev_bias=self.prev_bias)

    def signature(self) -> dict:
        """What a resumed run's data must share with the data it started on."""
        return {"vocabulary": self.vocab_size}

    # -- training -------------------------------------------------------------------
    def train_batches(self, split, t, seed: int, rank: int, world: int, receptive_field):
        """Batches as a pure function of the step: step -> (x, y, None), LongTensor[B, T] each."""
        tables = None
        if t.augment_transpose > 0:
            tables = transpose_tables(self.codec, t.augment_transpose)
        if getattr(t, "carry_state", False):  # consecutive windows, with reset flags
            streams = PieceStreams(
                split.data,
                split.pieces,
                seq_len=t.seq_len,
                batch_size=t.batch_size,
                seed=seed,
                rank=rank,
                world=world,
                transpose_tables=tables,
            )

            def stream_batch(step: int):
                x, y, reset = streams.batch(step)
                return x, y, None, reset

            return stream_batch
        burn = t.burn_in  # x holds `burn` tokens of context, then the window
        sampler = WindowSampler(
            split.data,
            seq_len=t.seq_len + burn,
            batch_size=t.batch_size,
            seed=seed,
            rank=rank,
            world=world,
            transpose_tables=tables,
        )

        def batch(step: int):
            x, y = sampler.batch(step)
            return x, y[:, burn:], None

        return batch

    def valid_batches(self, split, t, receptive_field) -> list[tuple]:
        """Fixed validation batches [(x, y, None)] at stride seq_len (with carried state:
        [(x, y, None, reset)], every piece's windows in order)."""
        if getattr(t, "carry_state", False):
            pieces = [np.asarray(p) for p in split]
            return [
                (x, y, None, r)
                for x, y, r in stream_eval_batches(
                    pieces, seq_len=t.seq_len, batch_size=t.batch_size, limit=t.eval_batches
                )
            ]
        burn = t.burn_in  # the last seq_len targets of each window are scored
        w = eval_windows(split.data, t.seq_len + burn, t.eval_batches * t.batch_size)
        w = torch.from_numpy(w)
        return [(b[:, :-1], b[:, 1 + burn :], None) for b in w.split(t.batch_size)]

    # valid_figures(), preview(): the neutral defaults (no extra figures, nothing to listen to)

    # -- likelihood ------------------------------------------------------------------
    def inference_model(self, model, shifts: int) -> torch.nn.Module:
        """``model`` scored and sampled as its mixture over transpositions by -shifts..shifts
        semitones (``model.transpose_mix``; ``tunelab.models.transpose_mix``)."""
        from tunelab.models.transpose_mix import TransposeMixture

        tables = transpose_tables(self.codec, shifts)
        return TransposeMixture(model, tables, self.prev_bias).to(model.head.weight.device)

    def memory_model(self, model) -> torch.nn.Module:
        """``model`` mixed with the memory of the piece so far (``model.piece_memory``;
        ``tunelab.models.piece_memory``)."""
        from tunelab.models.piece_memory import PieceMemoryModel

        device = next(model.parameters()).device
        return PieceMemoryModel(model, self.prev_bias).to(device)

    def likelihood(self, model, pieces, device="cpu", progress: bool = False) -> dict:
        return likelihood(model, pieces, meta=self.meta, device=device, progress=progress)

    def check_data(self, data_meta: dict, where) -> None:
        from tunelab.kinds.midi_audit import check_same_encoding

        check_same_encoding(self.meta, data_meta, where)

    def baseline(self, datadir, split: str) -> dict:
        """An interpolated Kneser-Ney n-gram (``tunelab.metrics.ngram``), its order chosen on
        the valid split, scored on ``split``. Empty when the training split is too large for a
        quick pure-Python count model (NGRAM_MAX_TRAIN_TOKENS), or without validation data."""
        from tunelab.metrics.ngram import fit_best, score

        train, valid = datadir.split("train"), datadir.split("valid")
        if len(train.data) > NGRAM_MAX_TRAIN_TOKENS or len(valid) == 0:
            return {}
        sp, count_steps = self.meta["specials"], self.codec.count_steps
        model, _ = fit_best(
            train, valid, vocab_size=self.vocab_size, bos=sp["bos"], eos=sp["eos"],
            count_steps=count_steps,
        )  # fmt: skip
        r = score(model, datadir.split(split), eos=sp["eos"], count_steps=count_steps)
        return {
            "baseline_ngram_order": model.order,
            "baseline_ngram_nll_per_token": r["nll_per_token"],
            "baseline_ngram_nll_per_step": r["nll_per_step"],
        }

    # -- generation ------------------------------------------------------------------
    def plan(self, seconds, steps, primer, label, sampling) -> Plan:
        if label is not None:
            raise ValueError("--label: MIDI runs are not conditioned on labels")
        gen = steps if steps is not None else steps_for_seconds(seconds or 30.0, self.meta)
        tokens = load_primer(primer, self.meta) if primer else []
        eos = self.meta["specials"]["eos"]
        primer_steps = self.codec.count_steps([*tokens, eos]) if primer else 0
        settings = {
            "steps": gen,
            "seconds": gen / self.spq * 60.0 / self.qpm,
            "tempo_qpm": self.qpm,
        }
        settings["constraints"] = True
        info = None
        if primer:
            info = {"file": Path(primer).name, "steps": primer_steps, "from_training": None}
        return Plan(
            steps=gen, primer=tokens, primer_steps=primer_steps, settings=settings, primer_info=info
        )

    def sample(
        self, model, plan: Plan, n, seed, sampling, device, progress, timing,
        save_every=None, partial=None,
    ) -> list[np.ndarray]:  # fmt: skip
        """n token pieces (``tunelab.kinds.sampling``); a piece is written whole when done,
        so ``save_every`` and ``partial`` (partial audio files) do not apply."""
        from tunelab.kinds.sampling import sample

        return sample(
            model,
            self.meta,
            n=n,
            steps=plan.steps,
            seed=seed,
            sampling=sampling,
            primer=plan.primer,
            device=device,
            progress=progress,
            timing=timing,
        )

    def reference(self, data_dir):
        """The training split's audit index, or (None, reason)."""
        from tunelab.kinds.midi_audit import training_index

        return training_index(self.meta, data_dir)

    def pack_reference(self, data_dir):
        """((arrays, info), where) of the training index for a bundle (``midi_audit.pack_index``),
        or (None, reason) when the data is not there."""
        from tunelab.kinds.midi_audit import pack_index, training_index

        index, where = training_index(self.meta, data_dir)
        return (None if index is None else pack_index(index)), where

    def reference_from_pack(self, arrays: dict, info: dict):
        """The training index from a bundle's ``pack_reference`` output."""
        from tunelab.kinds.midi_audit import unpack_index

        return unpack_index(arrays, info)

    def primer_from_training(self, plan: Plan, index) -> dict | None:
        """The primer's copy audit: is it (mostly) a training excerpt?"""
        from tunelab.kinds.midi_audit import roll_from_tokens
        from tunelab.metrics.copying import WINDOW, copy_audit

        if index is None or not plan.primer_steps:
            return None
        bos = self.meta["specials"]["bos"]
        pa = copy_audit(roll_from_tokens([bos, *plan.primer], self.meta), index)
        # From the training set: most of its windows, or a long run, appear verbatim there.
        hit = bool(
            pa["copied_window_fraction_transposed"] >= 0.5
            or pa["longest_copy_steps_transposed"] >= min(plan.primer_steps, 2 * WINDOW)
        )
        return {"from_training": hit, "audit": pa}

    def audit(self, pieces, plan: Plan | None, index) -> list[dict]:
        """One audit per piece (of what follows the primer), with ``flags``."""
        from tunelab.kinds.constraints import check_tokens
        from tunelab.kinds.midi_audit import audit_rolls, roll_from_tokens, roll_tail

        skip = plan.primer_steps if plan else 0
        rolls = [roll_tail(roll_from_tokens(p, self.meta), skip) for p in pieces]
        problems = [check_tokens(p, self.meta) for p in pieces]
        return audit_rolls(rolls, problems, index=index, spq=self.spq)

    def music_metrics(self, pieces, index, *, sets: bool = True) -> tuple[list[dict], dict]:
        """Per piece ``music_metrics.music_metrics`` (histogram distances to the training split when
        ``index``); for the set, the mean of each histogram distance."""
        from tunelab.kinds.midi_audit import roll_from_tokens
        from tunelab.metrics.music import music_metrics

        if not pieces:
            return [], {}
        ref = index.histograms if index is not None else None
        per = [music_metrics(roll_from_tokens(p, self.meta), self.spq, ref) for p in pieces]
        summary = {}
        for k in ("pitch_class_hist_distance", "interval_hist_distance") if sets else ():
            vals = [m[k] for m in per if m.get(k) is not None]
            if vals:
                summary[f"mean_{k}"] = float(np.mean(vals))
        return per, summary

    def read(self, path: Path) -> np.ndarray:
        """A MIDI file encoded with the run's codec (ValueError naming the file and reason)."""
        import symusic

        try:
            return self.codec.encode(symusic.Score(str(path)))
        except Rejected as err:
            raise ValueError(f"{path}: {err}") from err
        except Exception as err:  # symusic raises RuntimeError/ValueError on broken files
            raise ValueError(f"{path}: cannot read MIDI ({err})") from err

    def thresholds(self) -> dict:
        from tunelab.metrics.midi import thresholds

        return thresholds()

    def describe(self, tokens) -> dict:
        total = self.codec.count_steps(tokens)
        return {
            "duration_seconds": total / self.spq * 60.0 / self.qpm,
            "steps": total,
            "tokens": len(tokens),
        }

    def write(self, tokens, path: Path, side: dict) -> list[Path]:
        """MIDI file + sidecar."""
        score = self.codec.decode(tokens, self.qpm)
        with atomic_path(path) as tmp:
            score.dump_midi(str(tmp))
        write_json(path.with_name(path.name + ".json"), side)
        return [path]

    def write_preview(self, tokens, path: Path, side: dict) -> None:
        """A WAV preview (+ sidecar) of the MIDI file at ``path``, rendered with the SoundFont."""
        _write_preview(self.codec.decode(tokens, self.qpm), path.with_suffix(".wav"), side)


def _write_preview(score, path: Path, side: dict, sr: int = 16000) -> None:
    """WAV preview with the SoundFont synthesizer (skipped with a warning if it fails)."""
    try:
        from tunelab.data.audio.synth import render_midi, write_wav

        audio = render_midi(score, sample_rate=sr, peak=0.8)
        write_wav(path, audio, sr)
    except Exception as e:  # a preview must never cost the MIDI file
        warnings.warn(f"{path.name}: WAV preview skipped ({e})", stacklevel=2)
        return
    write_json(
        path.with_name(path.name + ".json"),
        {**side, "file": path.name, "kind": "audio", "preview_of": side["file"], "sample_rate": sr},
    )
