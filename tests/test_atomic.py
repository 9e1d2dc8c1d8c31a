"""`write_atomically`: every result file is replaced whole or not at all."""

import errno
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from diffbrain import _atomic
from diffbrain._atomic import exclusive_lock, write_atomically


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


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_new_file_gets_the_mode_open_would_give_it_under_the_umask(tmp_path, umask):
    """Review: new files were forced to 0644, so a umask of 077 (private results) or 002 (a group-writable
    project folder) was ignored; `open` gives 0666 less the umask."""
    previous = os.umask(umask)
    try:
        written = write_atomically(tmp_path / "a.txt", lambda file: file.write("x"))
        with open(tmp_path / "plain.txt", "w") as file:
            file.write("x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(written.stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "plain.txt"]  # no temporary file left


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


def test_a_fifo_is_written_into_not_replaced(tmp_path):
    """Review: a character device or FIFO (`--out /dev/null`, `--out /dev/stdout` into a pipe) was replaced
    by a regular file; as root that destroyed /dev/null."""
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    assert write_atomically(fifo, lambda file: file.write("t_ms,V_mV\n")) == fifo
    reader.join(timeout=5)
    assert received == ["t_ms,V_mV\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and os.listdir(tmp_path) == ["fifo"]


def test_a_process_terminated_mid_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    """During a write SIGTERM raises `SystemExit` (status 143), so the temporary file is removed; Python's
    default handler would end the process on the spot and leave ``.<name>.<hex>.tmp`` behind."""
    path = tmp_path / "result.csv"
    path.write_text("old")
    script = """
        import os, signal, sys
        from diffbrain._atomic import write_atomically

        def terminated_halfway(file):
            file.write("new, partial")
            file.flush()
            os.kill(os.getpid(), signal.SIGTERM)
            file.write(" never written")

        write_atomically(sys.argv[1], terminated_halfway)
    """
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(path)], capture_output=True)
    assert run.returncode == 143, run.stderr
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.csv"]


def test_outside_a_write_sigterm_keeps_its_handling():
    """Only the write turns SIGTERM into `SystemExit`: before and after it the default (end at once, not
    after a running compiled call returns) or the program's own handler stays."""
    script = """
        import os, signal, tempfile
        from diffbrain._atomic import write_atomically

        folder = tempfile.mkdtemp()
        signal.signal(signal.SIGTERM, lambda *_: print("own handler"))
        write_atomically(os.path.join(folder, "a"), lambda file: file.write("x"))
        print(signal.getsignal(signal.SIGTERM).__name__)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        write_atomically(os.path.join(folder, "b"), lambda file: file.write("x"))
        print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        print("still running")
    """
    command = [sys.executable, "-u", "-c", textwrap.dedent(script)]  # unbuffered: SIGTERM ends it at once
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.stdout.split() == ["<lambda>", "True"] and run.returncode == -15, run.stderr


def test_a_programs_own_sigterm_handler_runs_during_a_write_too():
    """A program that handles SIGTERM itself keeps its handler while writing: the write completes."""
    script = """
        import os, signal, tempfile
        from diffbrain._atomic import write_atomically

        signal.signal(signal.SIGTERM, lambda *_: print("own handler"))
        path = os.path.join(tempfile.mkdtemp(), "a")

        def terminated_halfway(file):
            file.write("x")
            os.kill(os.getpid(), signal.SIGTERM)
            file.write("y")

        write_atomically(path, terminated_halfway)
        print(open(path).read())
    """
    command = [sys.executable, "-u", "-c", textwrap.dedent(script)]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.stdout.split() == ["own", "handler", "xy"] and run.returncode == 0, run.stderr


def _unwritable(monkeypatch):
    """`os.open` refusing to open for writing, as for another user's 0644 lock file (root may write any)."""
    real_open = os.open

    def open_(path, flags, *mode):
        if flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *mode)

    monkeypatch.setattr(_atomic.os, "open", open_)


def test_a_lock_file_this_user_cannot_write_still_locks(tmp_path, monkeypatch):
    """Another user's lock file (0644) is opened read-only, which flock locks on a local filesystem."""
    lock = tmp_path / ".lock"
    lock.touch()
    _unwritable(monkeypatch)
    with exclusive_lock(lock):
        with pytest.raises(BlockingIOError):
            with exclusive_lock(lock, wait=False):
                pass
    with exclusive_lock(lock, wait=False):  # released
        pass


def test_a_lock_is_taken_on_a_descriptor_open_for_writing(tmp_path, monkeypatch):
    """NFS turns flock into a byte-range lock, whose exclusive form needs a file open for writing: a
    read-only descriptor gets EBADF there."""
    real_open, flags = os.open, []
    monkeypatch.setattr(_atomic.os, "open", lambda path, f, *m: (flags.append(f), real_open(path, f, *m))[1])
    with exclusive_lock(tmp_path / ".lock"):
        pass
    assert len(flags) == 1 and flags[0] & os.O_RDWR


def test_a_read_only_lock_file_on_nfs_warns_and_goes_on(tmp_path, monkeypatch):
    (tmp_path / ".lock").touch()
    _unwritable(monkeypatch)

    def nfs_flock(handle, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(_atomic.fcntl, "flock", nfs_flock)
    with pytest.warns(RuntimeWarning, match="no file lock here"):
        with exclusive_lock(tmp_path / ".lock"):
            pass


def test_a_filesystem_without_locks_warns_and_goes_on(tmp_path, monkeypatch):
    def no_locks(handle, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(_atomic.fcntl, "flock", no_locks)
    with pytest.warns(RuntimeWarning, match="no file lock here"):
        with exclusive_lock(tmp_path / ".lock"):
            ran = True
    assert ran
