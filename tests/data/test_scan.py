"""Finding the input files: by extension (any case), the split a train/valid/test folder
fixes, duplicates named twice, and missing sources named before any work."""

from __future__ import annotations

import pytest

from tunelab.data.scan import AUDIO_EXTS, MIDI_EXTS, guess_kind, require_sources, scan


def _touch(root, *names):
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")


def test_scan_finds_by_extension_in_any_case_and_sorts(tmp_path):
    _touch(tmp_path, "b.MID", "a.mid", "sub/c.Midi", "sub/x.kar", "notes.txt", "d.wav")
    found = scan([tmp_path], MIDI_EXTS)
    assert [f.path.relative_to(tmp_path).as_posix() for f in found] == [
        "a.mid",
        "b.MID",
        "sub/c.Midi",
        "sub/x.kar",
    ]
    assert all(f.split is None and f.display == str(f.path) for f in found)
    assert [f.path.name for f in scan([tmp_path], AUDIO_EXTS)] == ["d.wav"]


def test_split_folders_fix_the_split_below_the_source_only(tmp_path):
    src = tmp_path / "test"  # a source that is itself named "test" fixes nothing
    _touch(src, "Train/rock/a.mid", "VALID/b.mid", "deep/test/c.mid", "d.mid")
    got = {f.path.name: f.split for f in scan([src], MIDI_EXTS)}
    assert got == {"a.mid": "train", "b.mid": "valid", "c.mid": "test", "d.mid": None}


def test_a_file_named_twice_is_found_once_and_a_file_source_is_taken_as_is(tmp_path):
    _touch(tmp_path, "a.mid", "odd.name")
    found = scan([tmp_path, tmp_path / "a.mid", tmp_path / "odd.name"], MIDI_EXTS)
    assert [f.path.name for f in found] == ["a.mid", "odd.name"]  # named files: any suffix


def test_missing_sources_are_named(tmp_path):
    _touch(tmp_path, "a.mid")
    gone = tmp_path / "gone"
    with pytest.raises(FileNotFoundError, match="gone: no such file"):
        require_sources([tmp_path, gone])
    with pytest.raises(FileNotFoundError, match="gone"):
        scan([tmp_path, gone], MIDI_EXTS)
    require_sources([tmp_path, tmp_path / "a.mid"])  # no error


def test_guess_kind_of_a_folder_of_one_kind(tmp_path):
    _touch(tmp_path / "m", "a.mid", "b.midi", "readme.txt")
    _touch(tmp_path / "w", "a.flac", "b.OGG", "c.mp3")
    assert guess_kind([tmp_path / "m"]) == "midi"
    assert guess_kind([tmp_path / "w"]) == "audio"


def test_guess_kind_of_named_files_and_of_a_mixed_folder(tmp_path):
    (tmp_path / "song.wav").write_bytes(b"RIFF")
    (tmp_path / "tune.mid").write_bytes(b"MThd")
    assert guess_kind([tmp_path / "song.wav"]) == "audio"  # a file given by name
    assert guess_kind([tmp_path / "tune.mid"]) == "midi"
    with pytest.raises(ValueError, match="found 1 MIDI and 1 audio files"):
        guess_kind([tmp_path])
