"""engine.io.files: atomic writes (no temp files left, umask honoured) and output checks."""

from __future__ import annotations

import os

import pytest

from engine.errors import UsageError
from engine.io.files import atomic_write_bytes, atomic_write_text, check_outputs, check_writable


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "out.mztab"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\r\n")
    assert path.read_bytes() == b"two\r\n"  # newlines as given
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in path.parent.iterdir()] == ["out.mztab"]


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_exception_mid_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch, error):
    path = tmp_path / "out.csv"
    path.write_text("old")

    def fail(fd):
        raise error()

    monkeypatch.setattr(os, "fsync", fail)  # after the data is written, before the replace
    with pytest.raises(error):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_permissions_follow_the_umask(tmp_path, umask_022):
    path = tmp_path / "out.mztab"
    atomic_write_text(path, "x")
    assert path.stat().st_mode & 0o777 == 0o644


def test_output_equal_to_an_input_is_refused(tmp_path, monkeypatch):
    spectra = tmp_path / "run.mgf"
    spectra.write_text("")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="same file as the input") as info:
        check_outputs([spectra], ["run.mgf"])  # relative, same after resolve
    assert "\n" not in str(info.value)


def test_hard_link_to_an_input_is_refused(tmp_path):
    spectra = tmp_path / "run.mgf"
    spectra.write_text("")
    os.link(spectra, tmp_path / "out.mztab")
    with pytest.raises(UsageError, match="input"):
        check_outputs([spectra], [tmp_path / "out.mztab"])


def test_csv_equal_to_mztab_is_refused_and_distinct_outputs_pass(tmp_path):
    out = tmp_path / "out.mztab"
    with pytest.raises(UsageError, match="same file as the output"):
        check_outputs([tmp_path / "a.mgf"], [out, tmp_path / "." / "out.mztab"])
    check_outputs([tmp_path / "a.mgf"], [out, out.with_suffix(".csv")])


def test_check_writable_probes_and_leaves_nothing_behind(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "out.json")  # folders still to be made are fine
    assert list(tmp_path.iterdir()) == []  # the probe is gone and no folder was made
    (tmp_path / "notes.txt").write_text("kept")
    with pytest.raises(UsageError, match="notes.txt is not a folder"):
        check_writable(tmp_path / "notes.txt" / "out.json")
    with pytest.raises(UsageError, match="it is a folder"):
        check_writable(tmp_path)
    check_writable(tmp_path, folder=True)
    with pytest.raises(UsageError, match="it is a file"):
        check_writable(tmp_path / "notes.txt", folder=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc, where nobody can create files")
def test_check_writable_refuses_a_place_even_root_cannot_write():
    with pytest.raises(UsageError, match="cannot write /proc/out.json"):
        check_writable("/proc/out.json")
