"""REMI with programs: instruments survive tokens -> MIDI -> tokens, the decoding grammar
accepts the streams, and prepare/write keep the collection's GM instruments."""

from __future__ import annotations

import numpy as np
import symusic

from tests.data.midi.test_prepare import run
from tunelab.data.midi import codec_from_meta, make_codec
from tunelab.data.store import load_datadir
from tunelab.kinds.constraints import check_tokens
from tunelab.kinds.tokens import Kind


def band(tpq: int = 480) -> symusic.Score:
    """Piano, strings (violin 40), flute (73) and drums, a violin doubling a piano note."""
    score = symusic.Score(tpq)
    rng = np.random.default_rng(0)
    for prog, lo, drum in ((0, 48, False), (40, 60, False), (73, 72, False), (0, 36, True)):
        track = symusic.Track(f"p{prog}", prog, drum)
        for i in range(12):
            track.notes.append(
                symusic.Note(i * tpq // 2, tpq // 2, lo + int(rng.integers(0, 12)), 90)
            )
        score.tracks.append(track)
    score.tracks[1].notes.append(symusic.Note(0, tpq, score.tracks[0].notes[0].pitch, 90))
    score.tempos.append(symusic.Tempo(0, qpm=120.0))
    return score


def notes_by_program(score: symusic.Score, spq: int) -> set[tuple[int, int, int]]:
    """{(program or -1 for drums, pitch, onset step)}"""
    out = set()
    for t in score.tracks:
        for n in t.notes:
            out.add((-1 if t.is_drum else t.program, n.pitch, round(n.time * spq / score.tpq)))
    return out


def test_remi_programs_round_trips_instruments():
    codec = make_codec("remi-programs", 4)
    assert codec.encoding == "remi-programs" and codec.meta()["remi"]["programs"]
    score = band()
    tokens = codec.encode(score, keep_drums=True)
    back = codec.decode(tokens)
    assert notes_by_program(back, 4) == notes_by_program(score, 4)  # doubling kept too
    assert {t.program for t in back.tracks if not t.is_drum} == {0, 40, 73}
    assert any(t.is_drum for t in back.tracks)
    assert np.array_equal(codec.encode(back, keep_drums=True), tokens)  # tokens -> MIDI -> tokens
    meta = {**codec.meta(), "max_polyphony": 8}
    assert check_tokens(tokens, meta) == []
    broken = tokens.copy()
    names = codec.token_names
    first_prog = next(i for i, t in enumerate(tokens) if names[t].startswith("Program_"))
    broken[first_prog] = tokens[first_prog + 1]  # a Pitch where the Program must come
    assert check_tokens(broken, meta)
    plain = make_codec("remi", 4)  # plain remi stays one piano track
    assert len(plain.decode(plain.encode(score)).tracks) == 1


def test_prepare_and_write_keep_the_collections_instruments(tmp_path):
    (tmp_path / "src").mkdir()
    for i in range(4):
        band().dump_midi(tmp_path / "src" / f"b{i}.mid")
    assert (
        run([tmp_path / "src"], tmp_path / "d", encoding="remi-programs", steps_per_quarter=4) == 0
    )
    dd = load_datadir(tmp_path / "d")
    assert dd.meta["encoding"] == "remi-programs"
    assert dd.stats["context"]["programs"] == [0, 40, 73]
    piece = np.asarray(dd.split("train").piece(0), np.int64)
    codec = codec_from_meta(dd.meta)
    kind = Kind(dd.meta)
    out = tmp_path / "x.mid"
    kind.write(piece, out, {"file": "x.mid"})
    written = symusic.Score(str(out))
    assert {t.program for t in written.tracks if t.note_num()} == {0, 40, 73}
    assert notes_by_program(written, 4) == notes_by_program(codec.decode(piece), 4)
