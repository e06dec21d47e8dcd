"""Fuzzed inputs: random and mutated real MIDI and audio files through `tunelab prepare`.

Each hypothesis example writes a folder of files (real fixtures, mutated: bytes flipped,
cut, inserted, overwritten; plus random bytes behind real magic numbers) and runs
`tunelab prepare` on it in a subprocess limited to 4 GiB of address space and 90 s. The
contract: exit 0, and every input file appears in manifest.jsonl as accepted or rejected
with a reason; never a traceback, a crash, a hang past the bound, or unbounded memory
(a reader that asks for more than the limit gets MemoryError, a rejection).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.data.midi.test_prepare import EOT, raw_note, smf, tune, write_tune
from tests.helpers_audio import drum_loop, sine, wav_header

ADDRESS_SPACE = 4 * 2**30
TIME_BOUND_S = 90
SR = 16000


def _midi_seeds(folder: Path) -> list[bytes]:
    write_tune(folder / "a.mid", tune(3))
    write_tune(folder / "b.mid", tune(7), tpq=96, qpm=90)
    text = b"\x00\xff\x03\x05piano\x00\xff\x51\x03\x07\xa1\x20"  # track name, tempo
    raw = smf([text + raw_note(60) + raw_note(64) + EOT, raw_note(67) + EOT])
    return [(folder / "a.mid").read_bytes(), (folder / "b.mid").read_bytes(), raw]


def _audio_seeds(folder: Path) -> list[tuple[str, bytes]]:
    x = 0.5 * drum_loop(110, 1.5, seed=3)
    sf.write(str(folder / "a.wav"), x, SR)
    sf.write(str(folder / "b.flac"), sine(440, 1.0, SR, amp=0.3, channels=2), SR)
    sf.write(str(folder / "c.ogg"), x, SR, format="OGG", subtype="VORBIS")
    sf.write(str(folder / "d.mp3"), x, SR, format="MP3")
    names = ["a.wav", "b.flac", "c.ogg", "d.mp3"]
    return [(n, (folder / n).read_bytes()) for n in names]


MAGIC = [b"MThd", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"ID3\x03\x00", b"\xff\xfb"]

mutation = st.tuples(
    st.sampled_from(["flip", "cut", "insert", "overwrite", "zero_run"]),
    st.floats(0, 1),
    st.binary(min_size=1, max_size=16),
)
mutated = st.tuples(st.integers(0, 10), st.lists(mutation, min_size=1, max_size=6))


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, blob in ops:
        i = int(where * max(0, len(b) - 1))
        if op == "flip" and b:
            b[i] ^= blob[0] or 1
        elif op == "cut":
            del b[i:]
        elif op == "insert":
            b[i:i] = blob
        elif op == "overwrite":
            b[i : i + len(blob)] = blob
        elif op == "zero_run":
            b[i : i + 4] = b"\xff\xff\xff\x7f"  # a huge length/size field
    return bytes(b)


def run_prepare(src: Path, out: Path, kind: str) -> subprocess.CompletedProcess:
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    cmd = [sys.executable, "-m", "tunelab", "prepare", str(src), "--out", str(out)]
    return subprocess.run(
        [*cmd, "--kind", kind, "--workers", "2", "--split", "1,0,0"],
        env=env,
        preexec_fn=limits,
        capture_output=True,
        text=True,
        timeout=TIME_BOUND_S,
    )


def check_every_file_reported(src: Path, out: Path, proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    names = sorted(Path(e["path"]).name for e in entries)
    assert names == sorted(p.name for p in src.iterdir())
    for e in entries:
        assert e["status"] in ("accepted", "rejected")
        assert e["status"] == "accepted" or e["reason"]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    return _midi_seeds(folder), _audio_seeds(folder)


FUZZ = settings(
    max_examples=int(os.environ.get("TUNELAB_FUZZ_EXAMPLES", "3")),
    deadline=None,
    derandomize=True,  # the same inputs on every run: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _check_prepared(kind: str, made: list[tuple[str, bytes]]) -> None:
    """Write the files (name, bytes) into a fresh folder, prepare it as ``kind`` and check
    that every file is reported (check_every_file_reported); the folder is removed after."""
    root = Path(tempfile.mkdtemp(prefix=f"fuzz-{kind}-"))
    try:
        src = root / "src"
        src.mkdir()
        for name, data in made:
            (src / name).write_bytes(data)
        check_every_file_reported(src, root / "out", run_prepare(src, root / "out", kind))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@FUZZ
@given(
    files=st.lists(mutated, min_size=6, max_size=14),
    noise=st.lists(st.tuples(st.integers(0, 5), st.binary(max_size=3000)), max_size=4),
)
def test_fuzzed_midi_files_are_accepted_or_rejected(seeds, files, noise):
    midi, _ = seeds
    made = [("pristine.mid", midi[0])]  # something usable: exit 0, a manifest
    made += [
        (f"m{i:02d}.mid", mutate(midi[s % len(midi)], ops)) for i, (s, ops) in enumerate(files)
    ]
    made += [(f"n{i}.mid", MAGIC[m] + blob) for i, (m, blob) in enumerate(noise)]
    _check_prepared("midi", made)


@FUZZ
@given(
    files=st.lists(mutated, min_size=4, max_size=8),
    noise=st.lists(st.tuples(st.integers(0, 5), st.binary(max_size=3000)), max_size=3),
)
def test_fuzzed_audio_files_are_accepted_or_rejected(seeds, files, noise):
    _, audio = seeds
    made = [("pristine.wav", audio[0][1])]
    for i, (s, ops) in enumerate(files):
        name, data = audio[s % len(audio)]
        made.append((f"m{i:02d}{Path(name).suffix}", mutate(data, ops)))
    made += [(f"n{i}.wav", MAGIC[m] + blob) for i, (m, blob) in enumerate(noise)]
    header = wav_header(2, 44100, 16, n_data=2**31 - 8)  # claims 2 GiB of samples
    made.append(("huge_claim.wav", header + np.zeros(64, np.int16).tobytes()))
    _check_prepared("audio", made)
