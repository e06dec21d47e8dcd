"""The version line: the package version, with the source's git commit when there is one."""

from __future__ import annotations

import importlib.util
import shutil

from tunelab import version as V


def _copy_outside_a_checkout(tmp_path, monkeypatch):
    """tunelab/version.py copied to tmp_path/pkg/ and imported: its source root is tmp_path."""
    (tmp_path / "pkg").mkdir()
    path = tmp_path / "pkg" / "version.py"
    shutil.copy(V.__file__, path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repo above it
    spec = importlib.util.spec_from_file_location("version_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_version_string_names_the_version_and_the_commit_when_there_is_one():
    s = V.version_string()
    assert V.version() and s.startswith(V.version())
    c = V.commit()
    assert s == (f"{V.version()} ({c})" if c else V.version())


def test_outside_a_git_checkout_there_is_no_commit(tmp_path, monkeypatch):
    copy = _copy_outside_a_checkout(tmp_path, monkeypatch)
    assert copy.commit() is None
    assert copy.version_string() == copy.version() == V.version()


def test_stamp_records_the_version_and_the_commit():
    assert V.stamp() == {"tunelab": V.version(), "commit": V.commit()}


def test_stamp_outside_a_checkout_records_no_commit(tmp_path, monkeypatch):
    copy = _copy_outside_a_checkout(tmp_path, monkeypatch)
    assert copy.stamp() == {"tunelab": V.version(), "commit": None}
