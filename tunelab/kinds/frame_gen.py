"""Generation for the frame kind (``tunelab.kinds.frames``): the plan of one ``generate`` call
and the frame-by-frame sampling loop.

The model runs on its own output frame after frame, from silence plus a little noise
(NOISE_RMS, from the stream's seed), a user's file (``--primer``) or a training clip
(``--from-training``: each stream its own, drawn by its seed; flagged ``training_primer``);
frames are joined by Hann overlap-add (``--join concat``: end to end).

Temperature. A frame model predicts each frame outright, so left alone it is a deterministic
map: every seed only changes the -60 dBFS starting noise, which the model forgets within a few
frames, and all streams end in the same sound (the ``identical`` flag). With ``--temperature
T`` each predicted frame, in normalised units, gets Gaussian noise of standard deviation
``T * FRAME_NOISE`` per feature before it is written and fed back: a draw from N(prediction,
sigma^2), the distribution an MSE-trained predictor assumes. Sigma is FRAME_NOISE times each
feature's standard deviation in the training frames (the frame statistics carried in every
checkpoint; 1 in normalised units), so the noise is scale-free across features (low FFT bins
are far louder than high ones) and needs nothing a run might lack. (The model's own residual
would be the textbook scale, but the runs already trained do not carry it, an STFT-loss model
has no per-feature residual, and the MSE runs measured had a mean squared residual of 0.7-0.9
per normalised feature, near the data's own spread anyway.) FRAME_NOISE was chosen by
measurement (README, "Frame RNNs (GRUV)"): 0.3 was the one measured level at which no short
run gave ``identical`` clips and none was flagged ``noise`` (0.2 left one STFT-loss run's clips
identical, 0.4 made the other's noise), so temperature 1, the default, is that level.
For time-form frames whose statistics carry ``fft_std`` (runs trained since), the noise is
drawn per FFT feature (FRAME_NOISE times that feature's std) and turned into time, i.e. the
noise an FFT-form run gets: white noise per time sample would be hiss with a flat spectrum
(``frame_noise``). ``--temperature 0`` is the deterministic GRUV generator. The noise of stream
i is drawn from its own generator seeded by (seed, i): the same seed gives the same audio,
sample for sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunelab.data.audio.encode import from_int16
from tunelab.kinds import frame_ops as ops

NOISE_RMS = 1e-3  # the start: silence plus noise of this RMS (-60 dBFS)
TRAINING_CLIP_S = 2.0  # --from-training: seconds of training audio that prime the model
FRAME_NOISE = 0.3  # --temperature 1: noise std per normalised feature (measured, see above)


@dataclass
class Plan:
    """One generate call, resolved."""

    samples: int
    frames: int  # frames to generate per stream
    primer: np.ndarray | None  # float32 [P] audio the model reads first (None: silence)
    labels: list[int | None]
    settings: dict
    primer_info: dict
    training: object = None  # --from-training: the split each stream draws its start clip from
    noise: float = 0.0  # std of the noise added to each predicted normalised feature


@dataclass
class Clip:
    """A generated (or read) piece: float audio, its label and its time frames (if known)."""

    audio: np.ndarray  # float32 [N]
    label: str | None
    frames: np.ndarray | None = None  # float32 [K, frame_size], before the join
    start: dict | None = None  # the training clip this stream started from


def plan(
    kind, seconds, steps, primer, label, sampling, join: str = "ola", training_clip=None
) -> Plan:
    """``training_clip``: the run's data directory, to start from a training clip."""
    if steps is not None:
        raise ValueError("--steps counts MIDI grid steps; give audio lengths in --seconds")
    if sampling is not None and (sampling.top_k or sampling.top_p < 1 or sampling.argmax_prob):
        raise ValueError(
            "frame models predict each frame outright: --top-k, --top-p and --argmax-prob do "
            "not apply (--temperature sets the noise added to each frame)"
        )
    temperature = 1.0 if sampling is None else float(sampling.temperature)
    if join not in ops.JOINS:
        raise ValueError(f"--join must be one of {', '.join(ops.JOINS)}, not {join!r}")
    if primer and training_clip:
        raise ValueError("give either --primer or --from-training, not both")
    kind.check_label(label)
    sr, size = kind.sample_rate, kind.size
    samples = max(1, round((seconds or 4.0) * sr))
    k = 1 if samples <= size else -(-(samples - size) // kind.hop) + 1
    audio, info, split = None, {"source": "silence", "noise_rms": NOISE_RMS}, None
    if primer:
        audio = kind.read_primer(primer)
        info = {"source": "file", "file": Path(primer).name, "from_training": None}
    elif training_clip:
        from tunelab.data.store import load_datadir

        split = load_datadir(training_clip).reference_splits()[0]
        if not any(p["length"] >= TRAINING_CLIP_S * sr for p in split.pieces):
            raise ValueError(f"{training_clip}: no training piece of {TRAINING_CLIP_S} s")
        info = {"source": "training", "seconds": TRAINING_CLIP_S, "from_training": True}
    if audio is not None:
        info["seconds"] = len(audio) / sr
        if len(audio) < size:
            raise ValueError(f"the primer is shorter than one frame ({size} samples)")
    noise = temperature * FRAME_NOISE
    settings = {"seconds": samples / sr, "samples": samples, "join": join}
    settings |= {"sample_rate": sr, "frames": k, "frame_noise_std": noise}
    labels = [] if label is None else [kind.label_id(label)]
    return Plan(
        samples=samples,
        frames=k,
        primer=audio,
        labels=labels,
        settings=settings,
        primer_info=info,
        training=split,
        noise=noise,
    )


def training_clip(kind, split, seed: int) -> tuple[np.ndarray, dict]:
    """TRAINING_CLIP_S seconds from a training piece, drawn by ``seed`` uniformly over every
    start that fits, and where it came from."""
    n = int(TRAINING_CLIP_S * kind.sample_rate)
    fits = np.array([max(0, p["length"] - n + 1) for p in split.pieces], np.float64)
    rng = np.random.default_rng([seed, 0x57A7])
    i = int(rng.choice(len(fits), p=fits / fits.sum()))
    at = int(rng.integers(0, fits[i]))
    clip = from_int16(np.asarray(split.piece(i)[at : at + n]))
    where = {"piece": i, "from": split.pieces[i].get("source")}
    where["offset_seconds"] = at / kind.sample_rate
    return clip, where


def sample(
    kind, model, plan: Plan, n, seed, device, progress, timing, save_every=None, partial=None
) -> list[Clip]:
    """n streams of plan.frames frames; stream i depends only on (seed, i)."""
    from tunelab.kinds.sampling import piece_seed

    ids = plan.labels * n if plan.labels else [
        i % kind.n_labels if kind.n_labels else None for i in range(n)
    ]  # fmt: skip
    label = None if ids[0] is None else torch.tensor(ids, device=device)
    start = np.zeros(kind.size, np.float32) if plan.primer is None else plan.primer
    starts, where = [start] * n, [None] * n
    if plan.training is not None:  # each stream its own training clip
        drawn = [training_clip(kind, plan.training, piece_seed(seed, i)) for i in range(n)]
        starts, where = [c for c, _ in drawn], [w for _, w in drawn]
    # every stream starts from its own noise (on the silence, the primer or the clip) and
    # draws its frame noise from the same generator after it
    rngs = [np.random.default_rng(piece_seed(seed, i)) for i in range(n)]
    noise = [r.normal(0, NOISE_RMS, len(x)) for r, x in zip(rngs, starts, strict=True)]
    ctx = np.stack([x + z for x, z in zip(starts, noise, strict=True)]).astype(np.float32)
    ctx = kind.features(ctx).to(device)
    t0 = time.perf_counter()
    out = torch.zeros(n, plan.frames, kind.vocab_size, device=device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.frames, unit="frame", desc="generating")
    next_save = save_every
    with torch.no_grad():
        state = model.init_state(n, device, label)
        for j in range(ctx.shape[1]):
            y, state = model.step(ctx[:, j], state)
        for j in range(plan.frames):
            if plan.noise > 0:  # float64 draws, so the noise is the same on every device
                y = y + torch.from_numpy(plan.noise * frame_noise(kind, rngs)).to(y)
            out[:, j] = y
            y, state = model.step(y, state)
            if bar is not None:
                bar.update(1)
            done = ops.n_samples(j + 1, kind.size, kind.hop)
            if (
                partial
                and save_every
                and j + 1 < plan.frames
                and done >= next_save * kind.sample_rate
            ):
                for i, c in enumerate(clips(kind, out[:, : j + 1], plan=plan, ids=ids)):
                    kind.write_audio(c.audio, partial(i))
                next_save += save_every
    if bar is not None:
        bar.close()
    if timing is not None:
        timing.update(prefix_s=0.0, sample_s=time.perf_counter() - t0, tokens=plan.samples)
    return clips(kind, out, plan=plan, ids=ids, where=where)


def frame_noise(kind, rngs) -> np.ndarray:
    """One frame of unit noise per stream, float64 [n, D] in normalised units: a standard
    normal draw per feature, or, for time-form frames whose statistics have ``fft_std``, a
    draw per FFT feature scaled by that feature's std in the training frames and turned back
    into time (divided by the time features' std): the noise an FFT-form run gets, so it has
    the music's average spectrum instead of white noise's (measured: white noise at
    temperature 1 made a time-form STFT run's clips ``noise``, benchmarks.md)."""
    s = kind.stats
    if kind.form != "time" or "fft_std" not in s:
        return np.stack([r.standard_normal(kind.vocab_size) for r in rngs])
    k = kind.size // 2 + 1
    z = np.stack([r.standard_normal(2 * k) for r in rngs]) * np.asarray(s["fft_std"])
    t = np.fft.irfft(z[:, :k] + 1j * z[:, k:], n=kind.size, axis=-1)
    return t / np.asarray(s["std"])


def clips(kind, f: torch.Tensor, plan: Plan, ids, where=None) -> list[Clip]:
    """Normalised frames [n, K, D] -> n clips, joined as the plan says."""
    frames = kind.time_frames(f.float().cpu())
    audio = ops.join(frames, kind.hop, plan.settings["join"])[:, : plan.samples].numpy()
    names = [None if i is None else kind.label_names[i] for i in ids]
    where = where or [None] * len(f)
    return [
        Clip(audio=audio[i], label=names[i], frames=frames[i].numpy(), start=where[i])
        for i in range(len(f))
    ]
