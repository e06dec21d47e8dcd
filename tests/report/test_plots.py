"""The report's pictures: each draws a PNG where it is told (atomically), or returns None when
there is nothing to draw; label text with ``$`` is drawn as text, never parsed as math."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import symusic

from tunelab.report import plots

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


def test_every_picture_is_drawn_or_none_when_there_is_nothing(tmp_path):
    rng = np.random.default_rng(0)
    cases = [
        (plots.pitch_histogram, (rng.integers(40, 90, 500),), (np.zeros(0, np.int64),)),
        (plots.loudness_histogram, (list(rng.normal(-20, 3, 50)),), ([],)),
        (plots.label_counts, (Counter({"rock": 5, "jazz": 2}),), (Counter(),)),
        (plots.spectrogram, (rng.standard_normal(8000), 8000), (np.zeros(10), 8000)),
    ]
    for fn, args, nothing in cases:
        path = tmp_path / "sub" / f"{fn.__name__}.png"
        assert fn(*args, path) == path and _is_png(path), fn.__name__
        assert fn(*nothing, tmp_path / "none.png") is None, fn.__name__
    assert not (tmp_path / "none.png").exists()
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [  # no temp files left
        "label_counts.png",
        "loudness_histogram.png",
        "pitch_histogram.png",
        "spectrogram.png",
    ]


def test_a_piano_roll_of_a_midi_file_and_of_an_empty_one(tmp_path):
    score = symusic.Score(480)
    track = symusic.Track("p", 0, False)
    for i, p in enumerate((60, 64, 67, 72)):
        track.notes.append(symusic.Note(i * 480, 480, p, 80))
    score.tracks.append(track)
    score.dump_midi(tmp_path / "a.mid")
    assert _is_png(plots.piano_roll(tmp_path / "a.mid", tmp_path / "a.png"))
    empty = symusic.Score(480)
    empty.tracks.append(symusic.Track("p", 0, False))
    empty.dump_midi(tmp_path / "e.mid")
    assert _is_png(plots.piano_roll(tmp_path / "e.mid", tmp_path / "e.png"))


@pytest.mark.filterwarnings("ignore:Tight layout not applied")  # a 40-character label
def test_untrusted_labels_are_drawn_as_text(tmp_path):
    hostile = Counter({"$\\frac$": 3, "$x^$": 2, "x" * 500: 1, "[red]y": 1})
    path = plots.label_counts(hostile, tmp_path / "labels.png")
    assert _is_png(path)  # matplotlib would raise on the math if it parsed it
    assert plots._text("$a$") == r"\$a\$" and len(plots._text("x" * 500)) == 40
