"""8-bit mu-law audio samples: what the loop, the evaluator and ``generate`` need to know.

Data: int16 pieces at ``meta.sample_rate`` (``tunelab prepare --kind audio``), encoded to
256 mu-law classes as batches are made (``tunelab.data.audio.encode``: no decoders here).
Training windows lie inside one piece and carry its label: receptive_field + seq_len
samples, scored only where the whole receptive field is inside the piece (an RNN, whose
receptive field is unbounded, takes its ``warmup`` instead). Likelihood scores every
sample of a piece from silence (``lead_in``), the way generation starts, in
``bits_per_sample``, beside the training split's class histogram as a baseline.
Generation runs the family's fused kernel (``model.generator``: ``models/wavenet_gen.py``,
``models/samplernn_gen.py``) in chunks with a progress bar and optional partial WAVs; the
audits are ``tunelab.metrics.audio``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunelab.data.audio.encode import from_int16, mu_law_decode, mu_law_encode
from tunelab.data.dataset import PieceWindows, piece_windows
from tunelab.kinds import categorical_loss
from tunelab.kinds.audio_io import AudioKind, label_names_of
from tunelab.kinds.scoring import piece_nll

CHUNK = 4096  # samples per stream generated between progress updates / partial saves
PREVIEW_SECONDS = 1.0  # TensorBoard audio written at each validation
BF16_BELOW_STREAMS = 16  # generate with bfloat16 weights for fewer streams than this


def lead_in(model) -> int:
    """Samples of silence fed before a piece is scored or generated: the receptive field
    (every scored sample sees a whole one), or an RNN's training warm-up, or one."""
    return getattr(model, "receptive_field", None) or getattr(model, "warmup", None) or 1


@dataclass
class Plan:
    """One generate call, resolved: samples per stream, primer context, label ids."""

    samples: int
    primer: np.ndarray | None  # int64 [P] mu-law classes (the primer's last receptive field)
    labels: list[int | None]  # per stream: label id, or None when unconditioned
    settings: dict
    primer_info: dict | None


@dataclass
class Clip:
    """A generated (or read) piece: mu-law classes and the label name it was made with."""

    classes: np.ndarray  # int [N] (uint8 for 8-bit mu-law)
    label: str | None


class Kind(AudioKind):
    """Mu-law samples of one audio data directory (``meta.json`` of kind ``audio``). The
    shared audio parts (labels, reading, writing, the copy audit) are ``AudioKind``'s."""

    name = "mulaw"
    clip_type = Clip
    quantised = True
    loss = staticmethod(categorical_loss)

    def __init__(self, meta: dict):
        self.meta = meta
        self.sample_rate = int(meta["sample_rate"])
        self.vocab_size = int(meta.get("mu_law", {}).get("channels", 256))
        self.label_names: list[str] = label_names_of(meta)
        self.n_labels = len(self.label_names)
        self.silence = int(mu_law_encode(np.zeros(1), self.vocab_size)[0])

    def signature(self) -> dict:
        return {
            "sample_rate": self.sample_rate,
            "mu_law": self.vocab_size,
            "labels": self.label_names,
        }

    def _data(self, clip: Clip) -> np.ndarray:
        return clip.classes

    def _encode_audio(self, audio: np.ndarray) -> np.ndarray:
        return mu_law_encode(audio, self.vocab_size)

    def _decode_audio(self, data: np.ndarray) -> np.ndarray:
        return mu_law_decode(data, self.vocab_size)

    def encode(self, samples: np.ndarray) -> torch.Tensor:
        """int16 samples [...] -> LongTensor[...] mu-law classes."""
        return torch.from_numpy(mu_law_encode(from_int16(samples), self.vocab_size))

    # -- training -------------------------------------------------------------------
    def _window(self, w: np.ndarray, receptive_field: int):
        """Windows int16 [B, R + N] -> x [B, R + N - 1] and y [B, N], the targets of x's last
        N positions: every scored target sees a whole receptive field inside the piece."""
        q = self.encode(w)
        return q[:, :-1], q[:, receptive_field:]

    def train_batches(self, split, t, seed: int, rank: int, world: int, receptive_field):
        rf = receptive_field or 1
        sampler = PieceWindows(
            split.data,
            split.pieces,
            length=rf + t.seq_len,
            batch_size=t.batch_size,
            seed=seed,
            rank=rank,
            world=world,
            labels=self._labels(split),
        )

        def batch(step: int):
            w, labels = sampler.batch(step)
            x, y = self._window(w, rf)
            return x, y, None if labels is None else torch.from_numpy(labels)

        return batch

    def valid_batches(self, split, t, receptive_field) -> list[tuple]:
        rf = receptive_field or 1
        labels = self._labels(split)
        wins = piece_windows(list(split), rf + t.seq_len, t.eval_batches * t.batch_size)
        out = []
        for a in range(0, len(wins), t.batch_size):
            chunk = wins[a : a + t.batch_size]
            x, y = self._window(np.stack([w for _, w in chunk]), rf)
            lab = None if labels is None else torch.from_numpy(labels[[i for i, _ in chunk]])
            out.append((x, y, lab))
        return out

    def valid_figures(self, nats: float) -> dict:
        return {"valid_bits_per_sample": nats / math.log(2)}

    def preview(self, model, device) -> tuple[np.ndarray, int] | None:
        """A second of audio from silence (label 0) for TensorBoard."""
        label = 0 if self.n_labels else None
        samples = int(PREVIEW_SECONDS * self.sample_rate)
        plan = Plan(samples=samples, primer=None, labels=[label], settings={}, primer_info=None)
        clip = self.sample(
            model, plan, n=1, seed=0, sampling=None, device=device, progress=False, timing=None
        )[0]
        return self.audio(clip), self.sample_rate

    # -- likelihood ------------------------------------------------------------------
    def likelihood(self, model, split, device="cpu", progress: bool = False) -> dict:
        """Every sample of every piece, scored from silence: nats and bits per sample."""
        rf = lead_in(model)
        labels = self._labels(split)
        total, n = 0.0, 0
        pieces = list(split)
        it = range(len(pieces))
        if progress:
            from tunelab.progress import progress_bar

            it = progress_bar(it, desc="scoring", unit="piece")
        for i in it:
            q = self.encode(np.asarray(pieces[i]))
            x = torch.cat([torch.full((rf,), self.silence, dtype=torch.long), q])
            label = None if labels is None else int(labels[i])
            nll = piece_nll(model, x, device, label=label)[-len(q) :] if len(q) else torch.zeros(0)
            total += float(nll.double().sum())
            n += len(q)
        return _summary(total, n, len(pieces))

    def check_data(self, data_meta: dict, where) -> None:
        other = Kind(data_meta).signature() if data_meta.get("kind") == "audio" else None
        if other != self.signature():
            raise ValueError(f"{where}: data {other} differs from the run's {self.signature()}")

    def baseline(self, datadir, split: str) -> dict:
        """The training split's mu-law class histogram (add-one smoothed) as a model."""
        counts = np.ones(self.vocab_size, np.float64)
        for sp in datadir.reference_splits():
            for p in sp:
                counts += np.bincount(self.encode(np.asarray(p)).numpy(), minlength=self.vocab_size)
        logp = np.log(counts / counts.sum())
        total, n, pieces = 0.0, 0, 0
        for p in datadir.split(split):
            q = self.encode(np.asarray(p)).numpy()
            total -= float(logp[q].sum())
            n += len(q)
            pieces += 1
        s = _summary(total, n, pieces)
        return {
            "baseline_histogram_nll_per_token": s["nll_per_token"],
            "baseline_histogram_bits_per_sample": s["bits_per_sample"],
        }

    # -- generation ------------------------------------------------------------------
    def plan(self, seconds, steps, primer, label, sampling) -> Plan:
        if steps is not None:
            raise ValueError("--steps counts MIDI grid steps; give audio lengths in --seconds")
        if sampling.top_k or sampling.top_p < 1 or sampling.argmax_prob:
            raise ValueError(
                "--top-k, --top-p and --argmax-prob apply to MIDI runs; audio takes --temperature"
            )
        self.check_label(label)
        samples = max(1, round((seconds or 4.0) * self.sample_rate))
        context, info = None, None
        if primer:
            context = self.read_primer(primer)
            info = {"file": Path(primer).name, "seconds": len(context) / self.sample_rate}
            info["from_training"] = None
            context = mu_law_encode(context, self.vocab_size)
        settings = {"seconds": samples / self.sample_rate, "samples": samples}
        settings["sample_rate"] = self.sample_rate
        labels = [] if label is None else [self.label_id(label)]
        return Plan(
            samples=samples, primer=context, labels=labels, settings=settings, primer_info=info
        )

    def _stream_labels(self, plan: Plan, n: int) -> list[int | None]:
        """Per stream: the --label given, else the labels in turn (one clip per label)."""
        if plan.labels:
            return plan.labels * n
        return [i % self.n_labels if self.n_labels else None for i in range(n)]

    def sample(
        self, model, plan: Plan, n, seed, sampling, device, progress, timing,
        save_every=None, partial=None,
    ) -> list[Clip]:  # fmt: skip
        """n streams of plan.samples; stream i depends only on (seed, i). ``partial(i)``
        names stream i's file, rewritten every ``save_every`` seconds of audio."""
        from tunelab.kinds.sampling import piece_seed

        temperature = 1.0 if sampling is None else sampling.temperature
        ids = self._stream_labels(plan, n)
        lead, rf = lead_in(model), getattr(model, "receptive_field", None)
        label = None if ids[0] is None else torch.tensor(ids)
        # generate() resolves --precision (tunelab.run.precision) into plan.settings; other
        # callers (the training preview, benchmarks) get the old unchecked default: few
        # streams are bound by memory bandwidth, where bfloat16 weights (half the bytes)
        # double the speed; many streams by arithmetic, where float32 is as fast or faster.
        weights = plan.settings.get("weights") or (
            "bfloat16" if n < BF16_BELOW_STREAMS else "float32"
        )
        plan.settings["weights"] = weights
        gen = model.generator(n, label, weights=weights)
        if getattr(gen, "parts", 1) > 1:  # one stream's matrices cut across cores
            plan.settings["parts"] = gen.parts
        # Silence first (what scoring assumes before a piece), then the primer: its last
        # receptive field, or all of it for an RNN.
        ctx = np.full(lead, self.silence, np.int64)
        if plan.primer is not None:
            ctx = np.concatenate([ctx, plan.primer])[-rf if rf else 0 :]
        gen.prime(np.tile(ctx[:-1], (n, 1)))
        first = np.full(n, ctx[-1], np.int64)
        rngs = [np.random.default_rng(piece_seed(seed, i)) for i in range(n)]
        # The model's state is fixed-size (per-layer queues); the output is kept at one byte
        # per sample (the audits need it whole), 1 MB per stream-minute at 16 kHz.
        out = np.empty((n, plan.samples), np.uint8 if self.vocab_size <= 256 else np.int64)
        bar = None
        if progress:
            from tunelab.progress import progress_bar

            bar = progress_bar(
                total=plan.samples * n, unit="sample", unit_scale=True, desc="generating"
            )
        t0, done, next_save = time.perf_counter(), 0, save_every
        while done < plan.samples:
            k = min(CHUNK, plan.samples - done)
            u = np.stack([r.random(k) for r in rngs])
            out[:, done : done + k] = gen.run(first if done == 0 else None, u, temperature)
            done += k
            if bar is not None:
                bar.update(k * n)
            if (
                partial
                and save_every
                and done < plan.samples
                and done >= next_save * self.sample_rate
            ):
                for i in range(n):
                    self.write_audio(self._decode_audio(out[i, :done]), partial(i))
                next_save += save_every
        if bar is not None:
            bar.close()
        if timing is not None:
            timing.update(prefix_s=0.0, sample_s=time.perf_counter() - t0, tokens=plan.samples)
        names = [None if i is None else self.label_names[i] for i in ids]
        return [Clip(out[i], names[i]) for i in range(n)]

    def audit(self, clips, plan, index) -> list[dict]:
        from tunelab.metrics.audio import audit_audio

        return audit_audio([self.audio(c) for c in clips], self.sample_rate, index)


def _summary(nats: float, samples: int, pieces: int) -> dict:
    per = nats / samples if samples else None
    return {
        "nll_per_token": per,
        "tokens": samples,
        "bits_per_sample": per / math.log(2) if per is not None else None,
        "samples": samples,
        "pieces": pieces,
    }
