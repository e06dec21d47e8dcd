"""The one sampling loop, and ``tunelab generate``: MIDI + WAV preview + JSON sidecars.

Per token the loop does a handful of tensor ops on [B, V]: ``step()``, add the constraint's
bias row (precomputed, looked up by a small integer state), optional temperature / top-k /
top-p, then Gumbel-max sampling with noise drawn in blocks from one ``torch.Generator`` per
piece (so piece i of seed K is the same whatever else runs), and with probability
``argmax_prob`` the argmax instead. Constraint state is a few Python ints per piece.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tunelab.atomic import atomic_path, write_json
from tunelab.constraints import FORBID, FORCE, check_tokens, make_constraint

NOISE_BLOCK = 256  # tokens of sampling noise drawn at once per piece


@dataclass
class Sampling:
    """How to pick each token. temperature 0 means greedy."""

    temperature: float = 1.0
    top_k: int = 0  # keep the k most likely tokens (0: off)
    top_p: float = 1.0  # keep the smallest set with this much probability (1: off)
    argmax_prob: float = 0.0  # take the argmax with this probability, else sample

    def check(self) -> None:
        if self.temperature < 0:
            raise ValueError("--temperature must be >= 0")
        if self.top_k < 0:
            raise ValueError("--top-k must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("--top-p must be in (0, 1]")
        if not 0 <= self.argmax_prob <= 1:
            raise ValueError("--argmax-prob must be in [0, 1]")


def piece_seed(seed: int, index: int) -> int:
    """The seed of piece ``index`` of a call with ``seed`` (independent streams per piece)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


class _Noise:
    """Gumbel noise and uniforms for one piece, drawn NOISE_BLOCK tokens at a time."""

    def __init__(self, seed: int, vocab: int, device="cpu"):
        self.g = torch.Generator(device=device).manual_seed(seed)
        self.vocab, self.i, self.device = vocab, NOISE_BLOCK, device

    def next(self) -> tuple[torch.Tensor, float]:
        if self.i == NOISE_BLOCK:
            shape, g, dev = (NOISE_BLOCK, self.vocab), self.g, self.device
            u = torch.rand(shape, generator=g, device=dev).clamp_(1e-12, 1 - 1e-7)
            self.gumbel = -torch.log(-torch.log(u))
            self.coin = torch.rand(NOISE_BLOCK, generator=g, device=dev).tolist()
            self.i = 0
        i, self.i = self.i, self.i + 1
        return self.gumbel[i], self.coin[i]


@torch.inference_mode()
def sample(
    model: torch.nn.Module,
    meta: dict,
    n: int,
    steps: int,
    seed: int = 0,
    sampling: Sampling | None = None,
    primer: list[int] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    constrain: bool = True,
    timing: dict | None = None,
) -> list[np.ndarray]:
    """Sample ``n`` pieces of ``steps`` grid steps after ``primer`` (tokens after BOS).

    Returns int64 token arrays BOS, primer, continuation, EOS. With constraints on, every
    piece is valid (``check_tokens`` finds nothing) at any length: the piece ends with EOS at
    the first step boundary once it holds ``primer steps + steps`` steps. ``timing``, if given,
    receives ``prefix_s`` (feeding BOS + primer), ``sample_s`` and ``tokens`` (sampled, per piece).
    """
    s = sampling or Sampling()
    s.check()
    V = int(meta["vocab_size"])
    bos = int(meta["specials"]["bos"])
    con = make_constraint(meta).to(device)
    cst = con.new_state(n)
    prefix = [bos, *(primer or [])]
    for tok in prefix[1:]:
        for b in range(n):
            con.advance(cst, b, tok)
    target = con.time_steps(cst, 0) + steps
    out = [list(prefix) for _ in range(n)]
    noise = [_Noise(piece_seed(seed, i), V, device) for i in range(n)]
    t0 = time.perf_counter()
    state = model.init_state(n, device)
    for tok in prefix[:-1]:  # feed the prefix; the last token's logits start sampling
        _, state = model.step(torch.full((n,), tok, device=device), state)
    x = torch.full((n,), prefix[-1], device=device)
    t1 = time.perf_counter()
    done = [False] * n
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n * steps, unit="step", desc="generating", dynamic_ncols=True)
    n_tok = 0
    while not all(done):
        logits, state = model.step(x, state)
        z = logits.float()
        if s.temperature not in (0.0, 1.0):
            z = z / s.temperature
        if constrain:
            modes = [FORCE if con.time_steps(cst, b) >= target else FORBID for b in range(n)]
            z = z + con.bias(cst, modes)
        if s.top_k and s.top_k < V:
            kth = torch.topk(z, s.top_k, dim=-1).values[:, -1:]
            z = z.masked_fill(z < kth, -math.inf)
        if s.top_p < 1.0:
            srt, order = torch.sort(z, dim=-1, descending=True)
            cum = torch.softmax(srt, dim=-1).cumsum(-1)
            drop = (cum - torch.softmax(srt, dim=-1)) >= s.top_p  # mass before it already >= p
            z = z.masked_fill(drop.scatter(-1, order, drop), -math.inf)
        drawn = [nz.next() for nz in noise]
        if s.temperature == 0.0:
            tok = z.argmax(-1)
        else:
            g = drawn[0][0][None] if n == 1 else torch.stack([d[0] for d in drawn])
            tok = (z + g).argmax(-1)
            greedy = [d[1] < s.argmax_prob for d in drawn]
            if any(greedy):
                tok = torch.where(torch.tensor(greedy, device=z.device), z.argmax(-1), tok)
        toks = tok.tolist()
        for b, t in enumerate(toks):
            if not done[b]:
                out[b].append(t)
                con.advance(cst, b, t)
                done[b] = cst.done[b] or (not constrain and len(out[b]) > 50 * (steps + 10))
        x = tok
        n_tok += 1
        if bar is not None and n_tok % 64 == 0:
            bar.n = sum(min(con.time_steps(cst, b), target) - (target - steps) for b in range(n))
            bar.set_postfix(tokens=n_tok * n, refresh=True)
    if bar is not None:
        bar.n = n * steps
        bar.close()
    if timing is not None:
        timing.update(prefix_s=t1 - t0, sample_s=time.perf_counter() - t1, tokens=n_tok)
    return [np.asarray(o, np.int64) for o in out]


# ---------------------------------------------------------------------------
# tunelab generate
# ---------------------------------------------------------------------------
def safe_name(text: str, limit: int = 60) -> str:
    """A file-name component from untrusted text: [A-Za-z0-9._-] only, no leading dots."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")
    return name[:limit] or "untitled"


def steps_for_seconds(seconds: float, meta: dict) -> int:
    """Grid steps lasting ``seconds`` at the training tempo: s * qpm / 60 * steps_per_quarter."""
    qpm = float(meta.get("tempo_qpm") or 120.0)
    return max(1, round(seconds * qpm / 60.0 * int(meta["steps_per_quarter"])))


def load_primer(path: str | Path, meta: dict) -> list[int]:
    """Encode a MIDI primer with the run's codec; tokens after BOS, without EOS. Tokens that
    break the decoding rules (e.g. more simultaneous keys than the training data ever had)
    are dropped with a warning, so the continuation starts from a valid state."""
    import symusic

    from tunelab.data.midi import Rejected, codec_from_meta

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


def generate(
    run_dir: str | Path,
    n: int = 1,
    seconds: float | None = 30.0,
    steps: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    sampling: Sampling | None = None,
    primer: str | Path | None = None,
    which: str = "best",
    device: str = "cpu",
    wav: bool = True,
    audit: bool = True,
    progress: bool = True,
    timing: dict | None = None,
) -> list[Path]:
    """Generate ``n`` pieces; write MIDI, WAV previews and sidecars. Returns the MIDI paths.
    ``timing`` (optional) receives the sampling loop's figures (see ``sample``)."""
    from tunelab.checkpoint import load_run
    from tunelab.data.midi import codec_from_meta
    from tunelab.evaluate import (
        _clean,
        audit_rolls,
        roll_from_tokens,
        roll_tail,
        training_index,
    )
    from tunelab.metrics import WINDOW, copy_audit

    sampling = sampling or Sampling()
    sampling.check()
    if n < 1:
        raise ValueError("--n must be >= 1")
    if (steps is not None and steps < 1) or (
        steps is None and seconds is not None and seconds <= 0
    ):
        raise ValueError("the length (--seconds or --steps) must be positive")
    run = load_run(run_dir, which, device=device)
    meta = run.meta
    if meta.get("kind", "midi") != "midi":
        raise ValueError(f"{run_dir}: generate supports MIDI runs; this run is {meta.get('kind')}")
    codec = codec_from_meta(meta)
    spq, qpm = int(meta["steps_per_quarter"]), float(meta.get("tempo_qpm") or 120.0)
    gen_steps = steps if steps is not None else steps_for_seconds(seconds or 30.0, meta)
    primer_tokens = load_primer(primer, meta) if primer else []
    out_dir = Path(out) if out else Path(run_dir) / "samples"
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    index, reference = (None, "audit disabled")
    if audit:
        index, reference = training_index(meta, run.config.get("data"))
        if index is None:
            warnings.warn(f"copy audit skipped: {reference}", stacklevel=2)
    primer_steps = codec.count_steps([*primer_tokens, meta["specials"]["eos"]]) if primer else 0
    primer_info = None
    if primer:
        primer_info = {"file": Path(primer).name, "steps": primer_steps, "from_training": None}
        if index is not None and primer_steps:
            pa = copy_audit(
                roll_from_tokens([meta["specials"]["bos"], *primer_tokens], meta), index
            )
            # From the training set: most of its windows, or a long run, appear verbatim there.
            primer_info["from_training"] = bool(
                pa["copied_window_fraction_transposed"] >= 0.5
                or pa["longest_copy_steps_transposed"] >= min(primer_steps, 2 * WINDOW)
            )
            primer_info["audit"] = pa

    pieces = sample(
        run.model,
        meta,
        n,
        gen_steps,
        seed,
        sampling,
        primer_tokens,
        device,
        progress,
        timing=timing,
    )
    rolls = [roll_tail(roll_from_tokens(p, meta), primer_steps) for p in pieces]
    problems = [check_tokens(p, meta) for p in pieces]
    audits = audit_rolls(rolls, problems, index, spq)

    stem = (safe_name(Path(primer).stem) + "-" if primer else "") + f"seed{seed}"
    written = []
    for i, (tokens, a) in enumerate(zip(pieces, audits, strict=True)):
        flags = a.pop("flags")
        if primer_info and primer_info["from_training"]:
            flags.append("training_primer")
        if "most_similar" in a:
            a["most_similar"] = f"{stem}-{a['most_similar']:02d}.mid"
        name = f"{stem}-{i:02d}"
        score = codec.decode(tokens, qpm)
        mid = out_dir / f"{name}.mid"
        _dump_midi(score, mid)
        total_steps = codec.count_steps(tokens)
        side = {
            "file": mid.name,
            "kind": "midi",
            "checkpoint": str(run.path),
            "checkpoint_step": run.step,
            "seed": seed,
            "index": i,
            "piece_seed": piece_seed(seed, i),
            "settings": {
                **asdict(sampling),
                "steps": gen_steps,
                "seconds": gen_steps / spq * 60.0 / qpm,
                "tempo_qpm": qpm,
                "n": n,
                "constraints": True,
                "primer": primer_info,
            },
            "label": None,
            "duration_seconds": total_steps / spq * 60.0 / qpm,
            "steps": total_steps,
            "tokens": len(tokens),
            "audit_reference": reference,
            "audit": a,
            "flags": flags,
        }
        write_json(mid.with_name(mid.name + ".json"), _clean(side))
        written.append(mid)
        if wav:
            _write_preview(score, out_dir / f"{name}.wav", _clean(side))
    return written


def _dump_midi(score, path: Path) -> None:
    with atomic_path(path) as tmp:
        score.dump_midi(str(tmp))


def _write_preview(score, path: Path, side: dict, sr: int = 16000) -> None:
    """WAV preview with the SoundFont synthesizer (skipped with a warning if it fails)."""

    try:
        from tunelab.synth import render_midi, write_wav

        audio = render_midi(score, sample_rate=sr, peak=0.8)
        write_wav(path, audio, sr)
    except Exception as e:  # a preview must never cost the MIDI file
        warnings.warn(f"{path.name}: WAV preview skipped ({e})", stacklevel=2)
        return
    write_json(
        path.with_name(path.name + ".json"),
        {**side, "file": path.name, "kind": "audio", "preview_of": side["file"], "sample_rate": sr},
    )
