"""Labels from tags (ID3, Vorbis, FLAC, MP4, WAV), their sanitising, and sidecar files."""

import pytest
import soundfile as sf

from tests.helpers_audio import sine, write_av
from tunelab.data.audio.tags import clean_label, load_sidecar, read_tags, sidecar_label


def test_tags_from_id3_vorbis_flac_mp4_wav(tmp_path):
    from mutagen.easyid3 import EasyID3
    from mutagen.flac import FLAC
    from mutagen.id3 import TCON, TDRC
    from mutagen.mp4 import MP4
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    x = sine(440, 0.5, 44100)
    sf.write(str(tmp_path / "a.mp3"), x, 44100, format="MP3")
    t = EasyID3()
    t.update({"genre": "Rock", "date": "1997-05-01", "artist": "Band", "title": "Song"})
    t.save(str(tmp_path / "a.mp3"))
    sf.write(str(tmp_path / "a.flac"), x, 44100)
    f = FLAC(str(tmp_path / "a.flac"))
    f.update({"genre": "Jazz", "date": "1959"})
    f.save()
    sf.write(str(tmp_path / "a.ogg"), x, 44100, format="OGG", subtype="VORBIS")
    f = OggVorbis(str(tmp_path / "a.ogg"))
    f["genre"] = "  Hip\tHop\x00 "
    f.save()
    write_av(tmp_path / "a.m4a", x, 44100, "ipod", "aac")
    f = MP4(str(tmp_path / "a.m4a"))
    f["\xa9gen"], f["\xa9day"] = ["Pop"], ["2001-02-03"]
    f.save()
    sf.write(str(tmp_path / "a.wav"), x, 44100)
    w = WAVE(str(tmp_path / "a.wav"))
    w.add_tags()
    w.tags.add(TCON(encoding=3, text=["Classical"]))
    w.tags.add(TDRC(encoding=3, text=["1801"]))
    w.save()
    assert read_tags(tmp_path / "a.mp3") == {
        "genre": "rock",
        "year": "1997",
        "artist": "band",
        "title": "song",
    }
    assert read_tags(tmp_path / "a.flac")["genre"] == "jazz"
    assert read_tags(tmp_path / "a.flac")["year"] == "1959"
    assert read_tags(tmp_path / "a.ogg")["genre"] == "hip hop"
    assert read_tags(tmp_path / "a.m4a")["genre"] == "pop"
    assert read_tags(tmp_path / "a.m4a")["year"] == "2001"
    assert read_tags(tmp_path / "a.wav")["genre"] == "classical"
    (tmp_path / "junk.mp3").write_bytes(b"junk")
    assert read_tags(tmp_path / "junk.mp3")["genre"] is None


def test_labels_are_sanitised_and_sidecars_read(tmp_path):
    assert clean_label("../../etc/passwd\n") == "../../etc/passwd"
    assert clean_label("\x00\x01 ") is None
    assert len(clean_label("x" * 500)) == 64
    (tmp_path / "l.csv").write_text("file,label\nsub/a.wav,Rock\nb.wav,Jazz\n")
    m = load_sidecar(tmp_path / "l.csv")
    assert sidecar_label(m, tmp_path / "sub" / "a.wav", [tmp_path]) == "rock"
    assert sidecar_label(m, tmp_path / "x" / "b.wav", [tmp_path]) == "jazz"
    (tmp_path / "l.json").write_text('{"a": "Folk"}')
    assert sidecar_label(load_sidecar(tmp_path / "l.json"), tmp_path / "a.wav", []) == "folk"
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError):
        load_sidecar(tmp_path / "bad.json")
