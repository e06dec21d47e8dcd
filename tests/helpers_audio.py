"""Shared by the audio tests: signals made on the spot (sine, drum loop, WAV headers, PyAV
containers) for the decoding, tempo, tag and prepare tests; and for the audio model tests (any
family of kind mulaw) a tiny labelled audio data set, the exact-resume check and the random
inputs of the generator comparisons."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

from tunelab.config import RunConfig, load

SR = 16000


# -- signals the tests make ----------------------------------------------------------


def sine(freq=440.0, seconds=1.0, sr=44100, amp=0.5, channels=1) -> np.ndarray:
    """float32[N, C] sine."""
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def drum_loop(bpm: float, seconds: float = 8.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A synthetic drum loop, float32[N]: kick on each bar's downbeat, a noise snare on
    every beat, quiet short hats on the off-beat eighths."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    x = np.zeros(n, np.float32)
    length = int(0.05 * sr)
    t = np.arange(length)
    i = 0
    while (s := int(round(i * 30.0 / bpm * sr))) < n:
        if i % 8 == 0:
            hit = np.sin(2 * np.pi * 60 * t / sr) * np.exp(-t / (0.008 * sr))
        elif i % 2 == 0:
            hit = 0.6 * 0.7 * rng.standard_normal(length) * np.exp(-t / (0.008 * sr))
        else:
            hit = 0.25 * rng.standard_normal(length) * np.exp(-t / (0.002 * sr))
        e = min(n, s + length)
        x[s:e] += hit[: e - s]
        i += 1
    return 0.5 * x


PENTATONIC = (0, 2, 4, 7, 9)  # semitones above the base


def scale_tune(
    rng,
    seconds: float,
    base: float,
    sr: int = SR,
    harmonics: int = 1,
    amp: float = 0.2,
    scale: tuple[int, ...] = (0, 4, 7),
) -> np.ndarray:
    """Decaying notes of a quarter second, each a random note of ``scale`` (semitones; the
    default: the major triad) on ``base`` Hz, with ``harmonics`` partials (the k-th at 1/k)."""
    t = np.arange(sr // 4) / sr
    n = math.ceil(seconds * 4)
    notes = [
        sum(
            np.sin(2 * np.pi * k * base * 2 ** (rng.choice(scale) / 12) * t) / k
            for k in range(1, harmonics + 1)
        )
        for _ in range(n)
    ]
    return amp * np.exp(-4 * np.tile(t, n)) * np.concatenate(notes)[: int(seconds * sr)]


def labelled_tunes(root: Path, pieces: dict[str, int], seconds: float, **tune) -> Path:
    """ROOT/src/<split>/<low|high>/<i>.wav (``pieces``: split -> files per label) of
    ``scale_tune`` on 220 and 440 Hz, prepared into ROOT/data with the folders as labels."""
    from tunelab.data.audio.prepare import prepare_audio
    from tunelab.data.audio.synth import write_wav

    rng = np.random.default_rng(0)
    for split, n in pieces.items():
        for label, base in (("low", 220.0), ("high", 440.0)):
            for i in range(n):
                x = scale_tune(rng, seconds, base, **tune)
                write_wav(root / "src" / split / label / f"{i}.wav", x, SR)
    assert prepare_audio([root / "src"], root / "data", label="folder", workers=1) == 0
    return root / "data"


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


def write_av(path, x: np.ndarray, sr: int, fmt: str, codec: str) -> None:
    """Encode float32[N, C] with PyAV (for containers libsndfile cannot write)."""
    import av

    layout = "mono" if x.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as c:
        st = c.add_stream(codec, rate=sr, layout=layout)
        for i in range(0, len(x), 1024):
            blk = np.ascontiguousarray(x[i : i + 1024].T)
            frame = av.AudioFrame.from_ndarray(blk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = sr, i
            for p in st.encode(frame):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)


def wav_header(channels: int, rate: int, bits: int = 16, n_data: int = 0) -> bytes:
    """A canonical 44-byte PCM WAV header with arbitrary (possibly invalid) fields."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + n_data)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", n_data)
    )


# -- audio model runs -----------------------------------------------------------------


def chorale_audio(root: Path, cache: Path | None = None) -> tuple[Path, Path]:
    """Two chorales rendered in four timbres, split by folder, labelled by timbre folder and
    prepared at 16 kHz in clips of 8 s: returns (data directory, source folder).

    cache: where the renders are kept (default root/cache); give the session's base temp
    folder so that test modules render them once."""
    old = os.environ.get("TUNELAB_CACHE")
    os.environ["TUNELAB_CACHE"] = str(cache or root / "cache")
    try:
        from tunelab.data.audio.builtin import builtin_chorale_audio

        items = builtin_chorale_audio(SR, limit=2, workers=1)
    finally:
        if old is None:
            del os.environ["TUNELAB_CACHE"]
        else:
            os.environ["TUNELAB_CACHE"] = old
    groups = sorted({g for _, _, g in items})
    src = root / "src"
    for path, timbre, group in items:
        split = "train"
        if group == groups[1] and timbre == "organ":
            split = "valid"
        elif group == groups[1] and timbre == "piano":
            split = "test"
        dst = src / split / timbre / path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dst)
    data = root / "data"
    from tunelab.data.audio.prepare import prepare_audio

    assert prepare_audio([src], data, label="folder", clip_seconds=8.0, workers=1) == 0
    return data, src


def records(run: Path) -> list[dict]:
    """The run's metrics.jsonl, one dict per line."""
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def assert_resumes_exactly(
    preset: str,
    data: Path,
    tmp_path: Path,
    steps: int,
    decay_steps: int,
    eval_every: int,
    extra: tuple[str, ...] = (),
) -> None:
    """Train ``steps`` straight and ``steps // 2``, stop, resume to ``steps``: the weights, the
    EMA and the logged curve (step, loss, valid_loss) must match bit for bit. ``extra``: more
    config overrides."""
    from tunelab.train import train

    def cfg(out, n):
        more = [f"train.decay_steps={decay_steps}", f"train.eval_every={eval_every}"]
        more += ["train.log_every=1", "train.ema=0.9", "train.tensorboard=false", *extra]
        args = [f"data={data}", f"out={out}", f"train.max_steps={n}", "train.progress=false"]
        return load(RunConfig, preset, args + more)

    straight, resumed = tmp_path / "a", tmp_path / "b"
    train(cfg(straight, steps))
    assert train(cfg(resumed, steps // 2)).step == steps // 2
    assert train(cfg(resumed, steps)).step == steps
    a = torch.load(straight / "checkpoints/last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints/last.pt", weights_only=True)
    for part in ("model", "ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0, msg=f"{part}.{k}")

    def curve(run):
        return [(r["step"], r.get("loss"), r.get("valid_loss")) for r in records(run)]

    assert curve(straight) == curve(resumed)


def random_streams(B: int, N: int, n_labels: int, primer_len: int, classes: int = 256):
    """Seeded inputs for comparing generators: (first LongTensor[B], uniforms float64[B, N],
    label LongTensor[3] [0, 2, 1] or None (labelled cases use B = 3), primer
    LongTensor[B, primer_len] or None)."""
    g = torch.Generator().manual_seed(1)
    first = torch.randint(0, classes, (B,), generator=g)
    uniforms = torch.rand(B, N, generator=g, dtype=torch.float64)
    label = torch.tensor([0, 2, 1]) if n_labels else None
    primer = torch.randint(0, classes, (B, primer_len), generator=g) if primer_len else None
    return first, uniforms, label, primer


def plain_bits_per_sample(model: torch.nn.Module, piece, lead: int, label: str = "piano") -> float:
    """A piece's bits per sample under one plain forward (no chunking) over ``lead`` samples
    of silence (mu-law 128) then the piece (int16 [n]), conditioned on ``label``."""
    from tunelab.data.audio.encode import from_int16, mu_law_encode

    q = torch.from_numpy(mu_law_encode(from_int16(np.asarray(piece))))
    x = torch.cat([torch.full((lead,), 128), q])
    lab = torch.tensor([["choir", "organ", "piano", "strings"].index(label)])
    with torch.no_grad():
        logits = model(x[None, :-1], lab)[0, lead - 1 :]
    nll = torch.nn.functional.cross_entropy(logits, q, reduction="sum").item()
    return nll / len(q) / math.log(2)


def assert_label_conditions_generation(run: Path, tmp_path: Path) -> None:
    """The same seed and label give the same WAV; another label gives another."""
    import soundfile as sf

    from tunelab.generate import generate

    got = {}
    for label in ("organ", "piano"):
        (w,) = generate(run, seconds=0.25, seed=3, label=label, out=tmp_path / label, audit=False)
        got[label] = sf.read(str(w))[0]
    again = generate(run, seconds=0.25, seed=3, label="organ", out=tmp_path / "again", audit=False)
    assert np.array_equal(sf.read(str(again[0]))[0], got["organ"])  # reproducible
    assert not np.array_equal(got["organ"], got["piano"])
