"""The end-of-prepare summary: what the filters dropped, counted and said in plain words only
when it is more than a small share of the notes read."""

from __future__ import annotations

from collections import Counter

from tunelab.data.midi.summary import DROPPED_SHARE, dropped_notes, dropped_warnings


def test_dropped_notes_counts_each_rule_and_the_share_of_notes_read():
    filters = Counter(
        short_notes_dropped=30, drum_notes_dropped=10, duplicate_notes_merged=60, bars_cut=5
    )
    d = dropped_notes(filters, kept=900)
    assert d["notes_read"] == 900 + 30 + 10 + 60  # merged duplicates were read too
    assert d["by_rule"] == {"short_notes_dropped": 30, "drum_notes_dropped": 10}
    assert d["share"] == 0.04
    assert dropped_notes(Counter(), kept=0) == {"notes_read": 0, "by_rule": {}, "share": 0.0}


def test_under_the_threshold_nothing_is_said():
    d = dropped_notes(Counter(short_notes_dropped=4), kept=96)
    assert d["share"] <= DROPPED_SHARE
    assert dropped_warnings(d, {}) == []


def test_above_the_threshold_each_rule_is_named_with_its_share_largest_first():
    filters = Counter(short_notes_dropped=100, off_piano_notes_dropped=300, odd_notes_dropped=20)
    lines = dropped_warnings(dropped_notes(filters, kept=580), {})
    assert lines[0] == "42% of the notes read (420 of 1,000) were dropped:"
    assert lines[1].startswith("  300 (30%) lay outside the encoding's pitch range")
    assert lines[2].startswith("  100 (10%) were shorter than one grid step")
    assert lines[3] == "  20 (2%) odd notes dropped"  # a rule without words: its name
    assert len(lines) == 4
