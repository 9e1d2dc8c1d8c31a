"""`write_atomically`: every result file is replaced whole or not at all."""

import os
import stat

import numpy as np
import pytest

from diffbrain._atomic import write_atomically


def test_the_file_is_synced_to_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    calls = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda *paths: (calls.append("replace"), replace(*paths))[1])
    path = write_atomically(tmp_path / "a.txt", lambda file: file.write("data"))
    assert calls == ["fsync", "replace"] and path.read_text() == "data"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")

    def half_then_fail(file):
        file.write("new, partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["result.json"]


def test_binary_files_and_csv_newlines(tmp_path):
    arrays = write_atomically(tmp_path / "a.npz", lambda file: np.savez(file, x=np.arange(3)), "wb")
    np.testing.assert_array_equal(np.load(arrays)["x"], np.arange(3))
    table = write_atomically(tmp_path / "t.csv", lambda file: file.write("a\r\nb\r\n"), newline="")
    assert table.read_bytes() == b"a\r\nb\r\n"


def test_written_files_are_readable_by_the_group_and_others(tmp_path):
    mode = stat.S_IMODE(write_atomically(tmp_path / "a.txt", lambda file: file.write("x")).stat().st_mode)
    assert mode == 0o644


def test_a_mode_that_is_not_a_write_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'a'"):
        write_atomically(tmp_path / "a.txt", lambda file: file.write("x"), "a")
    assert not os.listdir(tmp_path)


def test_a_link_stays_a_link_and_a_file_keeps_its_mode(tmp_path):
    """Review: writing through a symbolic link replaced the link with a regular file (its target kept the
    old content), and rewriting a group-writable file reset its mode to 0644."""
    target, link = tmp_path / "target.csv", tmp_path / "link.csv"
    target.write_text("old\n")
    link.symlink_to(target)
    write_atomically(link, lambda file: file.write("new\n"))
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link.csv", "target.csv"]
    shared = tmp_path / "shared.csv"
    shared.write_text("x")
    os.chmod(shared, 0o664)
    write_atomically(shared, lambda file: file.write("y"))
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664 and shared.read_text() == "y"
