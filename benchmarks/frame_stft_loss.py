"""The frame STFT loss against reference predictions: why the first ``frame-gru-stft`` could
not learn, and what the preset's loss says instead.

On the valid split of an audio data directory, each piece whole (as ``evaluate`` scores it),
time frames of 512 every 256: the STFT loss's parts (spectral convergence, log magnitude, the
L1 waveform error, the squared error of the time frames) and the two losses' totals for the
trivial baselines (mean frame, last frame repeated), silence, the true next frames plus noise
20 dB down (a nearly right prediction), half the true frames (right phase, 6 dB too quiet) and,
with ``--run``, that run's model.

    python benchmarks/frame_stft_loss.py DATA_DIR [--run RUN_DIR] [--pieces 4] [--json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from tunelab.data.audio.encode import from_int16
from tunelab.data.store import load_datadir
from tunelab.kinds import frame_ops as ops
from tunelab.kinds.frames import Kind

OLD = {"wave_l1": 1.0}  # the first preset: log floor 1e-7, L1 waveform term
NEW = {"wave_l1": 0.0, "wave_mse": 1.0, "stft_floor_db": 40.0}  # the preset now


def parts(kind: Kind, pred: torch.Tensor, y: torch.Tensor, floor: float) -> dict:
    """The loss parts of one piece's prediction [1, K, D] against its targets."""
    a, b = kind.waveform(pred), kind.waveform(y)
    sc = lm = 0.0
    for n in kind.stft_sizes:
        A, B = ops._magnitude(a, n), ops._magnitude(b, n)
        sc += float(torch.linalg.norm(B - A) / torch.linalg.norm(B)) / len(kind.stft_sizes)
        e = floor * (3 * n / 8) ** 0.5
        lm += float(((B + e).log() - (A + e).log()).abs().mean()) / len(kind.stft_sizes)
    l1 = float((a - b).abs().mean())
    mse = float((kind.time_frames(pred) - kind.time_frames(y)).square().mean())
    mse /= kind.stats["rms"] ** 2  # the squared error of the time frames, in the data's power
    return {"sc": sc, "log_mag": lm, "l1": l1, "wave_mse": mse}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--run", help="a frame run whose model is scored too")
    p.add_argument("--pieces", type=int, default=4, help="valid pieces scored (the first N)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    d = load_datadir(args.data)
    cfg = {
        "frame_size": 512,
        "frame_hop": 256,
        "frame_loss": "stft",
        "stft_sizes": [256, 512, 1024],
    }
    kind = Kind.for_model(cfg | NEW, dict(d.meta))
    kind.fit(d.split("train"))
    model = None
    if args.run:
        from tunelab.run.checkpoint import load_run

        model = load_run(args.run).model.eval()
    g = torch.Generator().manual_seed(0)
    rows: dict[str, list[dict]] = {}
    valid = d.split("valid")
    for i in range(min(args.pieces, len(valid))):
        f = kind.features(from_int16(np.asarray(valid.piece(i))))[None]
        x, y = f[:, :-1], f[:, 1:]
        mean, std = kind._norm()
        preds = {
            "mean frame (baseline)": torch.zeros_like(y),
            "last frame repeated (baseline)": x,
            "silence": (torch.zeros_like(y) - mean) / std,
            "true + noise 20 dB down": y + 0.1 * torch.randn(y.shape, generator=g),
            "true x 0.5": (y * std + mean) * 0.5 / std - mean / std,
        }
        if model is not None:
            with torch.no_grad():
                preds["the run's model"] = model(x).float()
        for name, pred in preds.items():
            old = parts(kind, pred, y, 0.0)
            new = parts(kind, pred, y, kind.stats["rms"] * 10 ** (-NEW["stft_floor_db"] / 20))
            row = {f"old_{k}": v for k, v in old.items()} | {f"new_{k}": v for k, v in new.items()}
            row["old_loss"] = old["sc"] + old["log_mag"] + old["l1"]
            row["new_loss"] = new["sc"] + new["log_mag"] + new["wave_mse"]
            rows.setdefault(name, []).append(row)
    table = {k: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for k, v in rows.items()}
    if args.json:
        print(json.dumps(table, indent=1))
        return
    print("| prediction | old: SC | old: log mag | old: L1 | **old loss** | new: log mag "
          "(40 dB floor) | new: frame MSE | **new loss** |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k, r in table.items():
        cells = [r["old_sc"], r["old_log_mag"], r["old_l1"], r["old_loss"], r["new_log_mag"]]
        cells += [r["new_wave_mse"], r["new_loss"]]
        print(f"| {k} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
