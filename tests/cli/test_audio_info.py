"""``tunelab info`` on an audio data directory: the table, the plots, and untrusted label
text shown as text (never as rich markup or matplotlib math)."""

import pytest
import soundfile as sf

from tests.data.audio.test_prepare import SR, _prepare, make_collection
from tests.helpers_audio import sine
from tunelab.cli.info import show_info


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return make_collection(tmp_path_factory.mktemp("coll"))


def test_info_tables_and_plots(collection, tmp_path, capsys):
    out = tmp_path / "data"
    assert _prepare(collection, out) == 0
    assert show_info(out, plots=True) == 0
    text = capsys.readouterr().out
    assert "rock" in text and "accepted" in text
    for name in ("labels.png", "years.png", "durations.png", "loudness.png"):
        assert (out / "plots" / name).stat().st_size > 1000


def test_hostile_labels_are_shown_as_text(tmp_path, capsys):
    """Labels are untrusted tag text: rich markup and matplotlib math are shown, not parsed."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        sf.write(str(src / f"{i}.wav"), sine(300 + 100 * i, 0.5, SR), SR)
    side = tmp_path / "labels.csv"
    side.write_text('path,label\n0.wav,[/rock]\n1.wav,$\\frac$\n2.wav,"[red]x"\n')
    out = tmp_path / "data"
    assert _prepare(src, out, label=str(side)) == 0
    assert show_info(out, plots=True) == 0
    text = capsys.readouterr().out
    assert "[/rock]" in text and "$\\frac$" in text and "[red]x" in text
    assert (out / "plots" / "labels.png").stat().st_size > 1000
