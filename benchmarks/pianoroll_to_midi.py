"""Write a piano-roll benchmark (Boulanger-Lewandowski's format) as MIDI folders.

The standard polyphonic benchmarks (JSB chorales, Nottingham, MuseData, Piano-midi.de) ship as
``{"train": [...], "valid": [...], "test": [...]}``: each piece a list of time steps, each step
the list of sounding MIDI pitches. This writes ``OUT/train/*.mid``, ``OUT/valid/*.mid`` and
``OUT/test/*.mid``, one quarter note per step at 120 qpm (a pitch sounding in consecutive steps is
one held note), so that

    tunelab prepare OUT --steps-per-quarter 1 --encoding steps --out DATA

keeps the benchmark's own split and gives back the same piano roll, step for step.

    python benchmarks/pianoroll_to_midi.py jsb-chorales-quarter.json /tmp/jsb-midi

Reads JSON (for example czhuang/JSB-Chorales-dataset's ``jsb-chorales-quarter.json``) or the
original ``.pickle`` files, gzipped or not (``Piano-midi.de.pickle`` stores its pitches as numpy
integers). The pickle is read with an unpickler that builds only lists, dicts, strings and
numbers, numpy integer scalars included, never other objects.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import pickle
from pathlib import Path

import symusic

TPQ = 480


# The only globals a piano-roll pickle may name: numpy's scalar constructor and dtype (pitches
# stored as numpy.int64), and the bytes encoder that Python 3's protocol-2 pickles use for the
# scalar's bytes. They build plain numbers from bytes; nothing else is looked up.
_NUMPY_SCALAR = {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _PlainUnpickler(pickle.Unpickler):
    """Plain containers and numbers only (no code runs on load)."""

    def find_class(self, module, name):
        if (module, name) in _NUMPY_SCALAR:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a piano-roll pickle")


def load_rolls(path: Path) -> dict[str, list[list[list[int]]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if ".json" in path.suffixes:
        data = json.loads(raw)
    else:
        data = _PlainUnpickler(io.BytesIO(raw), encoding="latin1").load()
    # anything but an integer (a float pitch, a numpy object scalar) is refused by _pitch
    return {k: [[[_pitch(p) for p in step] for step in piece] for piece in data[k]] for k in data}


def _pitch(p) -> int:
    """p as an int (Python and numpy integers); ValueError for anything else."""
    if isinstance(p, bool) or not hasattr(p, "__index__"):
        raise ValueError(f"not a MIDI pitch: {p!r}")
    return int(p.__index__())


def roll_to_score(piece: list[list[int]]) -> symusic.Score:
    """One quarter per step; a pitch held over consecutive steps becomes one note."""
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, 120.0))
    track = symusic.Track("piano", 0)
    started: dict[int, int] = {}
    for t, step in enumerate([*piece, []]):
        now = set(step)
        for p in [p for p in started if p not in now]:
            s = started.pop(p)
            track.notes.append(symusic.Note(s * TPQ, (t - s) * TPQ, p, 80))
        for p in now:
            started.setdefault(p, t)
    score.tracks.append(track)
    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path, help="piano-roll JSON or pickle with train/valid/test")
    ap.add_argument("out", type=Path, help="folder to write train/, valid/, test/ into")
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the printed figures as JSON")
    args = ap.parse_args()
    rolls = load_rolls(args.src)
    counts = {}
    for split, pieces in rolls.items():
        folder = args.out / split
        folder.mkdir(parents=True, exist_ok=True)
        for i, piece in enumerate(pieces):
            roll_to_score(piece).dump_midi(str(folder / f"{split}_{i:03d}.mid"))
        steps = sum(len(p) for p in pieces)
        print(f"{split}: {len(pieces)} pieces, {steps} steps -> {folder}")
        counts[split] = {"pieces": len(pieces), "steps": steps, "folder": str(folder)}
    if args.json:
        from tunelab.atomic import write_json

        write_json(args.json, {"src": str(args.src), "splits": counts})


if __name__ == "__main__":
    main()
