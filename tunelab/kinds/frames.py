"""Float audio frames (the GRUV lineage): what the loop, the evaluator and ``generate`` need.

Data: the int16 pieces of an audio data directory (as for ``mulaw``), cut into frames of
``frame_size`` samples every ``frame_hop`` (default half a frame), in time or FFT form
(``tunelab.kinds.frame_ops``). The model config chooses the form (``Kind.for_model`` puts it
in the kind's meta, ``with_settings``). Each feature is normalised by the mean and standard
deviation of the training split's frames of that form, size and hop, computed once, cached
beside the data (``frame-stats-FORM-SIZE-HOP.json``, written atomically) and kept in
``meta["frames"]["stats"]``, which the loop saves in every checkpoint: ``generate`` needs the
run alone.

Training windows: seq_len + 1 consecutive frames inside one piece, with its label; x holds
frames 0..T-1 and y frames 1..T. Losses (``frame_loss``): ``mse`` per normalised feature (the
original), or ``stft``: the multi-resolution STFT loss (its log magnitude floored
``stft_floor_db`` under the training audio's RMS; unset: at 1e-7, the first version) plus
``wave_l1`` times the mean absolute waveform error, on the overlap-added waveforms of
prediction and target, plus ``wave_mse`` times the mean squared error of the time frames
(over the data's power: 1 for silence), per window. The STFT terms cannot tell a frame a hop
late from the right one, so without a waveform term "repeat the last frame" is all but
unbeatable (docs/benchmarks.md, "frame-gru-stft: why it did not learn").

``evaluate --split``: a frame model is not a likelihood model, so the file holds its loss on
every piece of the split, whole (frames 1.. predicted from the true frames before them), as
``loss`` (per feature for mse; for stft each piece's loss, weighted by its frames) and
``mse``, next to two trivial
baselines on the same targets: the mean frame (0 in normalised units) and the last frame
repeated. ``learned`` is true only when the model's loss beats both. ``nll_per_token`` is
null; ``tokens`` counts the predicted frames.

Generation (``tunelab.kinds.frame_gen``): the model runs on its own output frame after frame,
with ``--temperature`` scaling the Gaussian noise added to each predicted frame (0: the
deterministic GRUV generator). Audits: ``tunelab.metrics.audio``, plus the mean-frame test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tunelab.atomic import write_json
from tunelab.data.audio.encode import frame_dim, from_int16
from tunelab.data.dataset import PieceWindows, piece_windows
from tunelab.kinds import frame_gen as gen
from tunelab.kinds import frame_ops as ops
from tunelab.kinds.audio_io import AudioKind, label_names_of
from tunelab.kinds.frame_gen import Clip, Plan

PREVIEW_SECONDS = 1.0


def with_settings(meta: dict, model_cfg) -> dict:
    """A copy of the data's meta with ``frames``: the frame settings of the model config (and
    the statistics already there when they were made for the same form, size and hop)."""
    cfg = dict(model_cfg) if isinstance(model_cfg, dict) else vars(model_cfg)
    size = int(cfg.get("frame_size", 1024))
    hop = int(cfg.get("frame_hop", 0)) or size // 2
    if not 0 < hop <= size:
        raise ValueError(f"frame_hop must be in 1..frame_size ({size}), got {hop}")
    have = meta.get("frames") or {}
    key = {"form": cfg.get("frame_form", "time"), "size": size, "hop": hop}
    same = all(have.get(k) == v for k, v in key.items())
    loss = {"loss": cfg.get("frame_loss", "mse"), "stft_sizes": list(cfg.get("stft_sizes", []))}
    loss["wave_l1"] = float(cfg.get("wave_l1", 1.0))
    loss["stft_floor_db"] = cfg.get("stft_floor_db")  # None: the old 1e-7 floor
    loss["wave_mse"] = float(cfg.get("wave_mse", 0.0))
    loss["conditioned"] = bool(cfg.get("frame_labels", False))
    return {**meta, "frames": {**key, **loss, "stats": have.get("stats") if same else None}}


class Kind(AudioKind):
    """Frames of one audio data directory, in the form ``meta["frames"]`` describes. The
    shared audio parts (labels, reading, writing, the copy audit) are ``AudioKind``'s."""

    name = "frames"
    clip_type = Clip
    plan_options = ("join", "training_clip")  # generate's --join and --from-training
    extra_flags = ("mean_frame",)  # the audit's mean-frame test

    @classmethod
    def for_model(cls, model_cfg, meta: dict) -> Kind:
        """The frames of ``model_cfg``'s form, size and hop on this data (``with_settings``)."""
        return cls(with_settings(meta, model_cfg))

    def __init__(self, meta: dict):
        if not isinstance(meta.get("frames"), dict):
            raise ValueError("meta has no frame settings (use tunelab.kinds.kind_for)")
        self.meta = meta
        fr = meta["frames"]
        self.form, self.size, self.hop = fr["form"], int(fr["size"]), int(fr["hop"])
        self.loss_name, self.stft_sizes, self.wave_l1 = fr["loss"], fr["stft_sizes"], fr["wave_l1"]
        self.floor_db = fr.get("stft_floor_db")  # runs before it have none: the 1e-7 floor
        self.wave_mse = float(fr.get("wave_mse", 0.0))
        self.sample_rate = int(meta["sample_rate"])
        self.vocab_size = frame_dim(self.size, self.form)  # features per frame
        self.label_names: list[str] = label_names_of(meta)
        # an unconditioned model sees no labels (and --label is refused)
        self.n_labels = len(self.label_names) if fr.get("conditioned") else 0

    def signature(self) -> dict:
        frames = {k: self.meta["frames"][k] for k in ("form", "size", "hop")}
        return {"sample_rate": self.sample_rate, "labels": self.label_names, "frames": frames}

    def _data(self, clip: Clip) -> np.ndarray:
        return clip.audio

    def _encode_audio(self, audio: np.ndarray) -> np.ndarray:
        return audio  # frames keep float audio; the frames are cut from it as needed

    def _decode_audio(self, data: np.ndarray) -> np.ndarray:
        return data

    # -- statistics ------------------------------------------------------------------
    @property
    def stats(self) -> dict:
        s = self.meta["frames"]["stats"]
        if s is None:
            raise ValueError("frame statistics are missing (the run was never trained?)")
        return s

    def fit(self, split) -> None:
        """Per-feature mean and std of the split's frames: from the cache beside the data,
        else computed (float64, piece by piece) and cached. Time-form frames also get the std
        of their FFT features (``fft_std``), which shapes the frame noise of generation like the
        music's spectrum (``tunelab.kinds.frame_gen``)."""
        if self.meta["frames"]["stats"] is not None:
            return
        name = f"frame-stats-{self.form}-{self.size}-{self.hop}.json"
        where = getattr(split.data, "filename", None)  # the split's .bin, in the data dir
        cache = Path(where).parent / name if where else None
        if cache is not None and cache.exists():
            stats = json.loads(cache.read_text(encoding="utf-8"))
            if self.form != "time" or "fft_std" in stats:  # else: cached before fft_std
                self.meta["frames"]["stats"] = stats
                return
        s1 = s2 = f2 = 0.0
        n, energy, samples = 0, 0.0, 0
        for piece in split:
            x = torch.from_numpy(from_int16(np.asarray(piece))).double()
            energy, samples = energy + float(x.square().sum()), samples + len(x)
            for a in range(0, max(0, len(x) - self.size) + 1, 4096 * self.hop):  # bounded memory
                part = x[a : a + 4095 * self.hop + self.size]
                f = ops.cut(part, self.size, self.hop, form=self.form)
                s1, s2, n = s1 + f.sum(0), s2 + f.square().sum(0), n + len(f)
                if self.form == "time":  # the FFT features' mean is ~0: their RMS is the std
                    f2 = f2 + ops.cut(part, self.size, self.hop, form="fft").square().sum(0)
        if n == 0:
            raise ValueError(f"no piece holds a whole frame of {self.size} samples")
        mean = s1 / n
        std = (s2 / n - mean.square()).clamp(min=0).sqrt().clamp(min=1e-6)
        stats = {"mean": mean.tolist(), "std": std.tolist(), "frames": n}
        stats["rms"] = (energy / max(samples, 1)) ** 0.5
        if self.form == "time":
            stats["fft_std"] = (f2 / n).sqrt().tolist()
        if cache is not None:
            write_json(cache, stats)
        self.meta["frames"]["stats"] = stats

    def _norm(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stats
        return (
            torch.tensor(s["mean"], dtype=torch.float32, device=device),
            torch.tensor(s["std"], dtype=torch.float32, device=device),
        )

    def features(self, x) -> torch.Tensor:
        """float audio [..., N] -> normalised features FloatTensor[..., K, D]."""
        mean, std = self._norm()
        x = torch.as_tensor(x, dtype=torch.float32)
        return (ops.cut(x, self.size, self.hop, form=self.form) - mean) / std

    def time_frames(self, f: torch.Tensor) -> torch.Tensor:
        """Normalised features [..., K, D] -> time frames [..., K, frame_size]."""
        mean, std = self._norm(f.device)
        return ops.to_time(f * std + mean, self.size, self.form)

    def waveform(self, f: torch.Tensor, join: str = "ola") -> torch.Tensor:
        """Normalised features [B, K, D] -> audio [B, (K - 1) * hop + frame_size]."""
        return ops.join(self.time_frames(f), self.hop, join)

    # -- training -------------------------------------------------------------------
    def train_batches(self, split, t, seed: int, rank: int, world: int, receptive_field):
        self.fit(split)
        length = ops.n_samples(t.seq_len + 1, self.size, self.hop)
        sampler = PieceWindows(
            split.data,
            split.pieces,
            length=length,
            batch_size=t.batch_size,
            seed=seed,
            rank=rank,
            world=world,
            labels=self._labels(split),
        )

        def batch(step: int):
            w, labels = sampler.batch(step)
            f = self.features(from_int16(w))
            return f[:, :-1], f[:, 1:], None if labels is None else torch.from_numpy(labels)

        return batch

    def valid_batches(self, split, t, receptive_field) -> list[tuple]:
        length = ops.n_samples(t.seq_len + 1, self.size, self.hop)
        labels = self._labels(split)
        wins = piece_windows(list(split), length, t.eval_batches * t.batch_size)
        out = []
        for a in range(0, len(wins), t.batch_size):
            chunk = wins[a : a + t.batch_size]
            f = self.features(from_int16(np.stack([w for _, w in chunk])))
            lab = None if labels is None else torch.from_numpy(labels[[i for i, _ in chunk]])
            out.append((f[:, :-1], f[:, 1:], lab))
        return out

    def loss(self, out: torch.Tensor, y: torch.Tensor, x=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum, count): squared error over features (mse), or the STFT loss (plus the waveform
        terms) per window."""
        out, y = out.float(), y.float()
        if self.loss_name == "mse":
            return (out - y).square().sum(), torch.tensor(out.numel(), device=out.device)
        a, b = self.waveform(out), self.waveform(y)
        floor = 0.0 if self.floor_db is None else self.stats["rms"] * 10 ** (-self.floor_db / 20)
        per = ops.stft_loss(a, b, self.stft_sizes, floor)
        if self.wave_l1:
            per = per + self.wave_l1 * (a - b).abs().mean(dim=1)
        if self.wave_mse:  # on every frame whole: overlap-add would leave the samples where
            # the Hann window is near 0 free (measured: errors of 100x there, which generation
            # then feeds back); in units of the data's power: 1 for silence, 0 when exact
            se = (self.time_frames(out) - self.time_frames(y)).square().mean(dim=(1, 2))
            per = per + self.wave_mse * se / self.stats["rms"] ** 2
        return per.sum(), torch.tensor(len(per), device=out.device)

    def preview(self, model, device) -> tuple[np.ndarray, int] | None:
        """A second of audio from silence (label 0) for TensorBoard."""
        plan = self.plan(PREVIEW_SECONDS, steps=None, primer=None, label=None, sampling=None)
        plan.labels = [0] if self.n_labels else []
        clip = self.sample(
            model, plan, n=1, seed=0, sampling=None, device=device, progress=False, timing=None
        )[0]
        return clip.audio, self.sample_rate

    # -- evaluation --------------------------------------------------------------------
    def _scores(self, pred: torch.Tensor, y: torch.Tensor) -> tuple[float, float, int]:
        """(loss sum, squared error sum, frames) of one piece's predictions [1, K, D]."""
        if self.loss_name == "mse":
            total = float((pred - y).square().sum())
        else:  # per frame: the piece is one window
            total = float(self.loss(pred, y)[0]) * y.shape[1]
        return total, float((pred - y).square().sum()), y.shape[1]

    @torch.no_grad()
    def likelihood(self, model, split, device="cpu", progress: bool = False) -> dict:
        """The model's loss on every piece whole, beside the mean-frame and last-frame
        baselines on the same targets (module docstring)."""
        labels = self._labels(split)
        names = ("model", "baseline_mean_frame", "baseline_repeat_last_frame")
        tot = {k: np.zeros(2) for k in names}
        frames, pieces = 0, 0
        it = range(len(split))
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="scoring", unit="piece")
        for i in it:
            f = self.features(from_int16(np.asarray(split.piece(i))))[None].to(device)
            if f.shape[1] < 2:
                continue
            lab = None if labels is None else torch.tensor([int(labels[i])], device=device)
            x, y = f[:, :-1], f[:, 1:]
            for k, pred in zip(names, (model(x, lab).float(), torch.zeros_like(y), x), strict=True):
                loss, se, n = self._scores(pred, y)
                tot[k] += (loss, se)
            frames, pieces = frames + n, pieces + 1
        if not frames:
            raise ValueError(f"no piece of the split holds two frames of {self.size} samples")
        per = self.vocab_size if self.loss_name == "mse" else 1
        out = {"loss_name": self.loss_name, "nll_per_token": None, "tokens": frames}
        out |= {"frames": frames, "pieces": pieces}
        for k in names:
            pre = "" if k == "model" else k + "_"
            out[pre + "loss"] = tot[k][0] / (frames * per)
            out[pre + "mse"] = tot[k][1] / (frames * self.vocab_size)
        out["learned"] = bool(
            out["loss"] < out["baseline_mean_frame_loss"]
            and out["loss"] < out["baseline_repeat_last_frame_loss"]
        )
        return out

    # baseline(): none apart, the trivial baselines come with the model's figures (``likelihood``)

    def check_data(self, data_meta: dict, where) -> None:
        other = {"sample_rate": data_meta.get("sample_rate"), "labels": label_names_of(data_meta)}
        mine = {"sample_rate": self.sample_rate, "labels": self.label_names}
        if data_meta.get("kind") != "audio" or other != mine:
            raise ValueError(f"{where}: data {other} differs from the run's {mine}")

    # -- generation (tunelab.kinds.frame_gen) -------------------------------------------
    def plan(
        self, seconds, steps, primer, label, sampling, join: str = "ola", training_clip=None
    ) -> Plan:
        """``training_clip``: the run's data directory, to start from a training clip."""
        return gen.plan(
            self,
            seconds=seconds,
            steps=steps,
            primer=primer,
            label=label,
            sampling=sampling,
            join=join,
            training_clip=training_clip,
        )

    def sample(
        self, model, plan: Plan, n, seed, sampling, device, progress, timing,
        save_every=None, partial=None,
    ) -> list[Clip]:  # fmt: skip
        """n streams of plan.frames frames; stream i depends only on (seed, i)."""
        return gen.sample(
            self,
            model,
            plan,
            n=n,
            seed=seed,
            device=device,
            progress=progress,
            timing=timing,
            save_every=save_every,
            partial=partial,
        )

    def audit(self, clips, plan, index) -> list[dict]:
        """The audio audits, the RMS envelope, and the mean-frame test on each clip's frames
        (on frames cut from the audio for files read from disk)."""
        from tunelab.metrics import audio as am

        audits = am.audit_audio([c.audio for c in clips], self.sample_rate, index)
        mean = self.time_frames(torch.zeros(1, self.vocab_size))[0].numpy()
        for c, a in zip(clips, audits, strict=True):
            fr = c.frames
            if fr is None:
                fr = ops.cut(torch.as_tensor(c.audio), self.size, self.hop).numpy()
            a |= am.mean_frame_dominance(fr, mean, x=c.audio, data_rms=self.stats["rms"])
            env = am.rms_envelope(c.audio, self.sample_rate, am.ENVELOPE_S)
            a["rms_envelope_dbfs"] = [round(float(v), 1) for v in env]
            if a["mean_frame_cosine"] >= am.MEAN_FRAME_COSINE:
                a["flags"] = sorted({*a["flags"], "mean_frame"})
        return audits

    def describe(self, clip: Clip) -> dict:
        out = super().describe(clip)
        return out | ({"training_start": clip.start} if clip.start else {})
