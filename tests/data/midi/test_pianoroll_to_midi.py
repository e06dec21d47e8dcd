"""benchmarks/pianoroll_to_midi.py: the standard piano-roll benchmarks' pickles load safely
(numpy integer pitches allowed, any other global refused before it runs) and come back from
MIDI step for step."""

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "pianoroll_to_midi.py"


@pytest.fixture(scope="module")
def p2m():
    spec = importlib.util.spec_from_file_location("pianoroll_to_midi", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ROLLS = {
    "train": [[[60, 64, 67], [60, 64, 67], [], [62]], [[21], [108, 21]]],
    "valid": [[[48, 55], [50]]],
    "test": [[[72], [72, 76]]],
}


def test_numpy_pickle_gzipped_loads_as_ints(p2m, tmp_path):
    # Piano-midi.de.pickle stores each pitch as a numpy.int64 scalar
    rolls = {
        k: [[[np.int64(p) for p in s] for s in piece] for piece in v] for k, v in ROLLS.items()
    }
    path = tmp_path / "rolls.pickle.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(rolls, f, protocol=2)
    got = p2m.load_rolls(path)
    assert got == ROLLS
    assert all(type(p) is int for piece in got["train"] for s in piece for p in s)


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path(_Evil.target),))


def test_pickle_with_other_globals_is_refused_before_running(p2m, tmp_path):
    _Evil.target = str(tmp_path / "pwned")
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"train": [[[60]]], "x": _Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        p2m.load_rolls(path)
    assert not (tmp_path / "pwned").exists()


def test_float_pitch_is_an_error(p2m, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"train": [[[60.5]]]}')
    with pytest.raises(ValueError, match="not a MIDI pitch"):
        p2m.load_rolls(path)


def test_roll_round_trips_through_prepare(p2m, tmp_path):
    from tunelab.data.midi.prepare import prepare_midi
    from tunelab.data.store import load_datadir

    for split, pieces in ROLLS.items():
        (tmp_path / "midi" / split).mkdir(parents=True)
        for i, piece in enumerate(pieces):
            p2m.roll_to_score(piece).dump_midi(str(tmp_path / "midi" / split / f"{i}.mid"))
    out = tmp_path / "data"
    code = prepare_midi([tmp_path / "midi"], out, encoding="steps", steps_per_quarter=1, workers=1)
    assert code == 0
    dd = load_datadir(out)
    names = dd.meta["token_names"]
    for split, pieces in ROLLS.items():
        got = sorted(_roll(dd.split(split).piece(i), names) for i in range(len(pieces)))
        assert got == sorted([sorted(step) for step in piece] for piece in pieces)


def _roll(tokens, names) -> list[list[int]]:
    """Steps of sounding MIDI pitches from `steps` tokens (pitch names, then an end of step)."""
    import pretty_midi

    steps, cur = [], []
    for t in tokens:
        name = names[int(t)]
        if name in ("BOS", "EOS"):
            continue
        if name == "STEP":
            steps.append(sorted(cur))
            cur = []
        else:
            cur.append(pretty_midi.note_name_to_number(name))
    return steps
